//! The server's native operations, written with the fhirop macros.

use fhirop::prelude::*;
use serde_json::{Value, json};

/// Reports that the server is up (IBM FHIR Server's `$healthcheck`).
#[operation(name = "$healthcheck", idempotent = true, system = true)]
pub async fn healthcheck() -> OperationOutcome {
    OperationOutcome::information("All OK")
}

/// Greets someone.
#[operation(name = "$hello", idempotent = true, resource = "Patient", type_level = true)]
pub async fn hello(
    /// Who to greet (default: World).
    #[op_param(name = "name")]
    name: Option<String>,
) -> String {
    format!("Hello, {}", name.as_deref().unwrap_or("World"))
}

/// The identifier `$add-identifier` appends.
pub fn example_identifier() -> Value {
    json!({"system": "https://example.com/patient-id", "value": "12345"})
}

/// Appends the identifier `https://example.com/patient-id|12345` to the posted Patient and
/// returns it: the native twin of the JavaScript Bot in Medplum's custom-operation guide.
#[operation(name = "$add-identifier", resource = "Patient", type_level = true)]
pub async fn add_identifier(
    /// The Patient to add the identifier to.
    #[op_param(name = "resource")]
    patient: Patient,
) -> Result<Patient, OperationError> {
    let mut patient = patient;
    let Value::Object(members) = &mut patient.0 else {
        return Err(OperationError::invalid("the Patient must be a JSON object"));
    };
    match members.entry("identifier").or_insert_with(|| Value::Array(Vec::new())) {
        Value::Array(identifiers) => identifiers.push(example_identifier()),
        _ => {
            return Err(OperationError::bad_value(
                "resource",
                "Patient.identifier must be an array",
            ));
        }
    }
    Ok(patient)
}

/// A Patient resource, kept as JSON so that nothing the client sent is lost.
#[derive(Debug, Clone)]
pub struct Patient(pub Value);

fhirop::resource_type!(Patient(Value), "Patient");
