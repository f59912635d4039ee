// Summarises a patient's record with the store: link it to an instance-level OperationDefinition
// on Patient with OUT parameters `conditions` (integer), `encounters` (integer) and `latest`
// (Encounter 0..1). event.resource is the Patient the operation was invoked on.
export async function handler(medplum, event) {
  const patient = event.resource;
  const reference = 'Patient/' + patient.id;
  const conditions = await medplum.searchResources('Condition', { patient: reference, _count: 1000 });
  const encounters = await medplum.searchResources('Encounter', {
    patient: reference,
    _sort: '-_lastUpdated',
    _count: 1000,
  });
  console.log('summarised', reference, conditions.length, encounters.length);
  return {
    conditions: conditions.length,
    encounters: encounters.length,
    latest: encounters[0],
  };
}
