//! The baseline: bare actix-web handlers answering the same requests with no framework.
//! W1 writes a fixed pre-serialized body; W2 parses the Parameters, appends the identifier to
//! its Patient and serializes the Patient.

use std::io::Write as _;
use std::net::TcpListener;

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::{Value, json};

use super::{BASE, Error, Workload};

pub(crate) const HELLO: &str =
    r#"{"resourceType":"Parameters","parameter":[{"name":"return","valueString":"Hello, World"}]}"#;

async fn hello() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/fhir+json; charset=utf-8")
        .body(HELLO)
}

async fn add_identifier(body: web::Bytes) -> HttpResponse {
    let Ok(mut parameters) = serde_json::from_slice::<Value>(&body) else {
        return HttpResponse::BadRequest().finish();
    };
    let mut patient = parameters["parameter"][0]["resource"].take();
    if let Some(identifiers) = patient
        .as_object_mut()
        .map(|patient| patient.entry("identifier").or_insert_with(|| json!([])))
        .and_then(Value::as_array_mut)
    {
        identifiers.push(json!({"system": "https://example.com/patient-id", "value": "12345"}));
    }
    match serde_json::to_vec(&patient) {
        Ok(bytes) => HttpResponse::Ok()
            .content_type("application/fhir+json; charset=utf-8")
            .body(bytes),
        Err(_) => HttpResponse::InternalServerError().finish(),
    }
}

/// The environment variable naming a file with fhirop's CapabilityStatement, which the
/// baseline then serves as a fixed body at `/metadata`.
pub(crate) const STATEMENT_FILE: &str = "FHIROP_BENCH_STATEMENT";

async fn statement(body: web::Data<web::Bytes>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/fhir+json; charset=utf-8")
        .body(body.get_ref().clone())
}

/// Runs the baseline on a free loopback port with one worker and prints its base URL.
pub(crate) fn serve() -> Result<(), Error> {
    let statement_body = match std::env::var_os(STATEMENT_FILE) {
        Some(path) => web::Bytes::from(std::fs::read(path)?),
        None => web::Bytes::new(),
    };
    actix_web::rt::System::new().block_on(async {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let server = HttpServer::new(move || {
            App::new()
                .app_data(web::Data::new(statement_body.clone()))
                .route(&format!("{BASE}/Patient/$hello"), web::get().to(hello))
                .route(
                    &format!("{BASE}/Patient/$add-identifier"),
                    web::post().to(add_identifier),
                )
                .route(&format!("{BASE}/metadata"), web::get().to(statement))
        })
        .workers(1)
        .listen(listener)?
        .run();
        println!("http://{addr}{BASE}");
        std::io::stdout().flush()?;
        server.await?;
        Ok(())
    })
}

/// The baseline's workloads, named as the fhirop workloads they stand beside.
pub(crate) fn workloads() -> Vec<(&'static str, Workload)> {
    vec![
        (
            "W0",
            Workload {
                name: "base-W0",
                method: "GET",
                path: "/metadata".into(),
                body: None,
                check: |status, body| status == 200 && body["resourceType"] == "CapabilityStatement",
                headers: &[],
                baseline: None,
            },
        ),
        (
            "W1",
            Workload {
                name: "base-W1",
                method: "GET",
                path: "/Patient/$hello?name=World".into(),
                body: None,
                check: |status, body| status == 200 && body["parameter"][0]["valueString"] == "Hello, World",
                headers: &[],
                baseline: None,
            },
        ),
        (
            "W2",
            Workload {
                name: "base-W2",
                method: "POST",
                path: "/Patient/$add-identifier".into(),
                body: Some(super::W2_BODY.into()),
                check: |status, body| status == 200 && body["identifier"][0]["value"] == "12345",
                headers: &[],
                baseline: None,
            },
        ),
    ]
}
