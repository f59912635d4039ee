// Appends an identifier to the Patient it is given: the Bot of Medplum's custom-operation guide.
// Deploy it, then link it with an OperationDefinition (input Patient 1..1, return Patient 1..1).
exports.handler = async function (medplum, event) {
  const patient = event.input;
  patient.identifier = patient.identifier || [];
  patient.identifier.push({
    system: 'https://example.com/patient-id',
    value: '12345',
  });
  return patient;
};
