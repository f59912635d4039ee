//! What operations return, over HTTP: resources as the body, values wrapped in `Parameters`,
//! OUT parameters, errors, manual requests and responses, and handler-set status and headers.

mod common;

use common::{FHIR_JSON, Reply, TestServer, send};
use fhirop::actix_web::http::StatusCode;
use fhirop::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Test operations
// ---------------------------------------------------------------------------------------------

/// A Patient, kept as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct PatientResource(Value);

fhirop::resource_type!(PatientResource, "Patient");

/// Reads a Patient.
#[operation(name = "$read-me", idempotent = true, resource = "Patient")]
async fn read_me(#[id_param] id: IdParam) -> PatientResource {
    PatientResource(json!({"resourceType": "Patient", "id": id.id, "active": true}))
}

/// Returns a generic resource.
#[operation(name = "$any-resource", idempotent = true)]
async fn any_resource() -> Resource {
    let json = r#"{"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1.50}}"#;
    Resource::new(serde_json::from_str(json).unwrap()).unwrap()
}

/// Returns a Bundle.
#[operation(name = "$bundle", idempotent = true)]
async fn bundle() -> Bundle {
    let mut bundle = Bundle::new("collection");
    bundle
        .entries
        .push(json!({"resource": {"resourceType": "Patient", "id": "1"}}));
    bundle
}

/// Counts something.
#[operation(name = "$count", idempotent = true)]
async fn count() -> i32 {
    42
}

/// Returns a decimal as written.
#[operation(name = "$decimal", idempotent = true)]
async fn decimal() -> Decimal {
    Decimal::parse("1.50").unwrap()
}

/// Returns a Coding.
#[operation(name = "$coding", idempotent = true)]
async fn coding() -> Coding {
    Coding {
        system: Some(Uri::parse("http://loinc.org").unwrap()),
        code: Some(Code::parse("1234-5").unwrap()),
        ..Coding::default()
    }
}

/// Maybe returns something.
#[operation(name = "$maybe", idempotent = true)]
async fn maybe(#[op_param] give: Option<bool>) -> Option<String> {
    give.unwrap_or(false).then(|| "given".to_owned())
}

/// Returns nothing.
#[operation(name = "$nothing")]
async fn nothing() {}

/// Says all is well.
#[operation(name = "$fine", idempotent = true)]
async fn fine() -> OperationOutcome {
    OperationOutcome::information("All fine")
}

/// What `$stats` returns.
#[derive(Debug, Parameters)]
struct Stats {
    /// How many.
    total: u32,
    /// A label.
    #[param(name = "label-text")]
    label: String,
    /// Absent when not known.
    note: Option<String>,
    /// The codes seen.
    codes: Vec<Code>,
    /// The patient.
    patient: PatientResource,
}

/// Several OUT parameters from a struct.
#[operation(name = "$stats", idempotent = true)]
async fn stats() -> Result<Stats, OperationError> {
    Ok(Stats {
        total: 3,
        label: "three".into(),
        note: None,
        codes: vec![Code::parse("a").unwrap(), Code::parse("b").unwrap()],
        patient: PatientResource(json!({"resourceType": "Patient", "id": "p"})),
    })
}

/// A Parameters built by hand.
#[operation(name = "$built", idempotent = true)]
async fn built() -> Parameters {
    Parameters::new()
        .add("a", "x")
        .add("b", vec![1u32, 2])
        .add("c", None::<String>)
        .add("d", Some(true))
        .add(
            "coding",
            Coding {
                code: Some(Code::parse("c").unwrap()),
                ..Coding::default()
            },
        )
        .add("resource", Resource::new(json!({"resourceType": "Basic"})).unwrap())
}

/// Always conflicts.
#[operation(name = "$conflict")]
async fn conflict() -> Result<String, OperationError> {
    Err(OperationError::new(
        StatusCode::CONFLICT,
        IssueType::Conflict,
        "the resource was changed meanwhile",
    ))
}

/// Fails with a 404 and a header.
#[operation(name = "$gone", idempotent = true)]
async fn gone() -> Result<PatientResource, OperationError> {
    Err(OperationError::not_found("no such thing").with_header("Retry-After", "120"))
}

/// Echoes the raw request.
#[operation(name = "$raw", manual_request)]
async fn raw(req: actix_web::HttpRequest, body: RawBody) -> Parameters {
    let content_type = req
        .headers()
        .get("content-type")
        .and_then(|value| value.to_str().ok())
        .map(str::to_owned);
    Parameters::new()
        .add("method", req.method().as_str())
        .add("query", req.query_string())
        .add("contentType", content_type)
        .add("body", String::from_utf8_lossy(&body.0).into_owned())
}

/// Echoes the raw request, and may be called with GET.
#[operation(name = "$raw-read", idempotent = true, manual_request)]
async fn raw_read(req: actix_web::HttpRequest, body: RawBody) -> Parameters {
    raw(req, body).await
}

/// Says hi in plain text.
#[operation(name = "$text", idempotent = true, manual_response)]
async fn text() -> actix_web::HttpResponse {
    actix_web::HttpResponse::Ok().content_type("text/plain").body("hi")
}

/// Accepts the work for later.
#[operation(name = "$accept", resource = "Patient")]
async fn accept(ctx: OperationContext, #[op_param] job: Option<String>) -> Result<String, OperationError> {
    ctx.set_status(StatusCode::ACCEPTED);
    ctx.insert_header(
        "Content-Location",
        &format!("{}/jobs/{}", ctx.base_url(), job.as_deref().unwrap_or("1")),
    )?;
    Ok("accepted".into())
}

fn server() -> TestServer {
    TestServer::start(
        FhirServer::builder()
            .base_path("/fhir/R4")
            .operations(operations![
                read_me,
                any_resource,
                bundle,
                count,
                decimal,
                coding,
                maybe,
                nothing,
                fine,
                stats,
                built,
                conflict,
                gone,
                raw,
                raw_read,
                text,
                accept
            ])
            .build()
            .unwrap(),
    )
}

fn assert_ok(reply: &Reply, expected: &Value) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(&reply.json(), expected);
}

fn exact(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------------

#[test]
fn a_returned_resource_is_the_body() {
    let server = server();
    assert_ok(
        &server.get("/Patient/abc/$read-me"),
        &json!({"resourceType": "Patient", "id": "abc", "active": true}),
    );
    let reply = server.get("/$any-resource");
    assert_ok(
        &reply,
        &exact(r#"{"resourceType": "Observation", "status": "final", "valueQuantity": {"value": 1.50}}"#),
    );
    assert!(reply.body.contains(r#""value":1.50"#), "{}", reply.body);
    assert_ok(
        &server.get("/$bundle"),
        &json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient", "id": "1"}}
        ]}),
    );
    assert_ok(
        &server.get("/$fine"),
        &json!({"resourceType": "OperationOutcome", "issue": [
            {"severity": "information", "code": "informational", "details": {"text": "All fine"}}
        ]}),
    );
}

#[test]
fn a_returned_value_is_the_return_parameter() {
    let server = server();
    assert_ok(
        &server.get("/$count"),
        &json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueInteger": 42}]}),
    );
    let reply = server.get("/$decimal");
    assert_ok(
        &reply,
        &exact(r#"{"resourceType": "Parameters", "parameter": [{"name": "return", "valueDecimal": 1.50}]}"#),
    );
    assert!(reply.body.contains("1.50"), "{}", reply.body);
    assert_ok(
        &server.get("/$coding"),
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "return", "valueCoding": {"system": "http://loinc.org", "code": "1234-5"}}
        ]}),
    );
}

#[test]
fn optional_and_unit_returns() {
    let server = server();
    assert_ok(
        &server.get("/$maybe?give=true"),
        &json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": "given"}]}),
    );
    assert_ok(&server.get("/$maybe"), &json!({"resourceType": "Parameters"}));
    assert_ok(&server.post("/$nothing", ""), &json!({"resourceType": "Parameters"}));
}

#[test]
fn a_parameters_struct_gives_one_out_parameter_per_field() {
    let server = server();
    assert_ok(
        &server.get("/$stats"),
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "total", "valueUnsignedInt": 3},
            {"name": "label-text", "valueString": "three"},
            {"name": "codes", "valueCode": "a"},
            {"name": "codes", "valueCode": "b"},
            {"name": "patient", "resource": {"resourceType": "Patient", "id": "p"}},
        ]}),
    );
    // The definition lists the OUT parameters.
    let definition = server.get("/OperationDefinition/s-stats").json();
    assert_eq!(
        definition["parameter"],
        json!([
            {"name": "total", "use": "out", "min": 1, "max": "1", "documentation": "How many.", "type": "unsignedInt"},
            {"name": "label-text", "use": "out", "min": 1, "max": "1", "documentation": "A label.", "type": "string"},
            {"name": "note", "use": "out", "min": 0, "max": "1",
             "documentation": "Absent when not known.", "type": "string"},
            {"name": "codes", "use": "out", "min": 0, "max": "*", "documentation": "The codes seen.", "type": "code"},
            {"name": "patient", "use": "out", "min": 1, "max": "1", "documentation": "The patient.", "type": "Patient"},
        ])
    );
}

#[test]
fn a_built_parameters_is_returned_as_built() {
    let server = server();
    assert_ok(
        &server.get("/$built"),
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "a", "valueString": "x"},
            {"name": "b", "valueUnsignedInt": 1},
            {"name": "b", "valueUnsignedInt": 2},
            {"name": "d", "valueBoolean": true},
            {"name": "coding", "valueCoding": {"code": "c"}},
            {"name": "resource", "resource": {"resourceType": "Basic"}},
        ]}),
    );
}

#[test]
fn an_error_result_is_an_operation_outcome_with_its_status() {
    let server = server();
    let reply = server.post("/$conflict", "");
    assert_eq!(reply.status, 409, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(
        reply.json(),
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "conflict", "diagnostics": "the resource was changed meanwhile"
        }]})
    );
    let reply = server.get("/$gone");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.header("retry-after"), Some("120"));
    assert_eq!(
        reply.json(),
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error", "code": "not-found", "diagnostics": "no such thing"
        }]})
    );
}

#[test]
fn manual_request_receives_the_raw_request_and_body() {
    let server = server();
    let body = r#"{"resourceType": "Parameters", "parameter": [{"name": "anything", "valueString": "goes"}]}"#;
    assert_ok(
        &server.post("/$raw?x=1&y=2", body),
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "method", "valueString": "POST"},
            {"name": "query", "valueString": "x=1&y=2"},
            {"name": "contentType", "valueString": "application/fhir+json"},
            {"name": "body", "valueString": body},
        ]}),
    );
}

#[test]
fn manual_request_binds_and_checks_nothing() {
    let server = server();
    for (content_type, body) in [("text/plain", "hello"), ("application/fhir+json", "{not json")] {
        let reply = send(
            "POST",
            &server.url("/$raw"),
            &[("Content-Type", content_type)],
            Some(body.as_bytes()),
        );
        assert_ok(
            &reply,
            &json!({"resourceType": "Parameters", "parameter": [
                {"name": "method", "valueString": "POST"},
                {"name": "query", "valueString": ""},
                {"name": "contentType", "valueString": content_type},
                {"name": "body", "valueString": body},
            ]}),
        );
    }
    // It still affects state: GET is refused.
    let reply = server.get("/$raw");
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(reply.header("allow"), Some("POST"));
}

#[test]
fn an_idempotent_manual_request_is_called_with_get() {
    let server = server();
    assert_ok(
        &server.get("/$raw-read?x=1"),
        &json!({"resourceType": "Parameters", "parameter": [
            {"name": "method", "valueString": "GET"},
            {"name": "query", "valueString": "x=1"},
            {"name": "body", "valueString": ""},
        ]}),
    );
}

#[test]
fn manual_response_can_be_any_content_type() {
    let server = server();
    for reply in [server.get("/$text"), server.post("/$text", "")] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some("text/plain"));
        assert_eq!(reply.body, "hi");
    }
}

#[test]
fn manual_response_operations_have_no_out_parameters() {
    let server = server();
    let definition = server.get("/OperationDefinition/s-text").json();
    assert_eq!(definition["code"], "text");
    assert_eq!(definition.get("parameter"), None, "{definition}");
}

#[test]
fn handler_sets_status_and_headers() {
    let server = server();
    let reply = server.post("/Patient/$accept?job=42", "");
    assert_eq!(reply.status, 202, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.header("content-location"), Some(server.url("/jobs/42").as_str()));
    assert_eq!(
        reply.json(),
        json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": "accepted"}]})
    );
    // The status and headers belong to that call only.
    let reply = server.get("/$count");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-location"), None);
}
