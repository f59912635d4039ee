//! Every kind of return type, `manual_response` and `manual_request`.

use fhirop::actix_web::{HttpRequest, HttpResponse};
use fhirop::prelude::*;

/// Several OUT parameters.
#[derive(Parameters)]
struct Summary {
    total: u32,
    #[param(name = "first-seen")]
    first: Option<DateTime>,
    codes: Vec<Coding>,
    patient: Option<Resource>,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Patient(serde_json::Value);
fhirop::resource_type!(Patient, "Patient");

#[operation(name = "$resource")]
async fn returns_resource() -> Resource {
    Resource(serde_json::json!({"resourceType": "Patient"}))
}

#[operation(name = "$user-resource")]
async fn returns_user_resource() -> Patient {
    Patient(serde_json::json!({"resourceType": "Patient"}))
}

#[operation(name = "$bundle")]
async fn returns_bundle() -> Bundle {
    Bundle::searchset()
}

#[operation(name = "$outcome")]
async fn returns_outcome() -> OperationOutcome {
    OperationOutcome::information("done")
}

#[operation(name = "$string")]
async fn returns_string() -> String {
    String::new()
}

#[operation(name = "$bool")]
async fn returns_bool() -> bool {
    true
}

#[operation(name = "$date")]
async fn returns_date() -> Result<Date, OperationError> {
    Date::parse("2024-01-01").map_err(|message| OperationError::invalid(message))
}

#[operation(name = "$coding")]
async fn returns_coding() -> Coding {
    Coding::default()
}

#[operation(name = "$maybe")]
async fn returns_option() -> Option<Code> {
    None
}

#[operation(name = "$many")]
async fn returns_vec() -> Vec<Quantity> {
    Vec::new()
}

#[operation(name = "$parameters")]
async fn returns_parameters() -> Parameters {
    Parameters::new().add("answer", 42).add("note", "text")
}

#[operation(name = "$summary")]
async fn returns_derived() -> Result<Summary, OperationError> {
    Ok(Summary {
        total: 0,
        first: None,
        codes: Vec::new(),
        patient: None,
    })
}

#[operation(name = "$unit")]
async fn returns_unit() {}

#[operation(name = "$unit-result")]
async fn returns_unit_result() -> Result<(), OperationError> {
    Err(OperationError::invalid("no"))
}

#[operation(name = "$http", manual_response)]
async fn returns_http() -> HttpResponse {
    HttpResponse::Ok().content_type("text/plain").body("plain text")
}

#[operation(name = "$text", idempotent = true, manual_response = true)]
async fn returns_responder(#[op_param] name: Option<String>) -> String {
    name.unwrap_or_default()
}

#[operation(name = "$http-fhir")]
async fn returns_http_without_manual_response() -> HttpResponse {
    HttpResponse::NoContent().finish()
}

#[operation(name = "$raw", resource = "Binary", manual_request, manual_response)]
async fn raw(request: HttpRequest, body: RawBody, context: OperationContext) -> HttpResponse {
    let _ = (request.path(), context.method());
    HttpResponse::Ok().body(body.0)
}

#[operation(name = "$raw-fhir", manual_request = true)]
async fn raw_fhir(body: RawBody) -> Result<Resource, OperationError> {
    let json = serde_json::from_slice(&body.0).map_err(|error| OperationError::invalid(error.to_string()))?;
    Resource::new(json).map_err(OperationError::invalid)
}

fn main() {
    let server = FhirServer::builder()
        .operations(operations![
            returns_resource,
            returns_user_resource,
            returns_bundle,
            returns_outcome,
            returns_string,
            returns_bool,
            returns_date,
            returns_coding,
            returns_option,
            returns_vec,
            returns_parameters,
            returns_derived,
            returns_unit,
            returns_unit_result,
            returns_http,
            returns_responder,
            returns_http_without_manual_response,
            raw,
            raw_fhir,
        ])
        .build();
    let _ = server;
}
