//! The example server's native operations, over HTTP (issue 2, item 9).

mod common;

use common::{FHIR_JSON, TestServer};
use serde_json::json;

#[test]
fn healthcheck_answers_all_ok_on_get_and_post() {
    let server = TestServer::example();
    for reply in [server.get("/$healthcheck"), server.post("/$healthcheck", "")] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(
            reply.json(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "information", "code": "informational", "details": {"text": "All OK"}
            }]})
        );
    }
}

#[test]
fn hello_greets_by_name_and_defaults_to_world() {
    let server = TestServer::example();
    let named = server.get("/Patient/$hello?name=World");
    assert_eq!(named.status, 200);
    assert_eq!(named.header("content-type"), Some(FHIR_JSON));
    assert_eq!(
        named.json(),
        json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": "Hello, World"}]})
    );
    let posted = server.post_json(
        "/Patient/$hello",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "name", "valueString": "Ada"}]}),
    );
    assert_eq!(posted.json()["parameter"][0]["valueString"], "Hello, Ada");
    assert_eq!(
        server.get("/Patient/$hello").json()["parameter"][0]["valueString"],
        "Hello, World"
    );
}

#[test]
fn add_identifier_appends_to_a_parameters_or_bare_patient_and_refuses_get() {
    let server = TestServer::example();
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Smith", "given": ["John"]}]});
    let expected = json!({
        "resourceType": "Patient",
        "name": [{"family": "Smith", "given": ["John"]}],
        "identifier": [{"system": "https://example.com/patient-id", "value": "12345"}],
    });
    let wrapped = server.post_json(
        "/Patient/$add-identifier",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "resource", "resource": patient}]}),
    );
    assert_eq!(wrapped.status, 200, "{}", wrapped.body);
    assert_eq!(wrapped.json(), expected);
    let bare = server.post_json("/Patient/$add-identifier", &patient);
    assert_eq!(bare.json(), expected);
    let get = server.get("/Patient/$add-identifier");
    assert_eq!(get.status, 405);
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(get.issue_codes(), ["not-supported"]);
    let wrong_type = server.post_json("/Patient/$add-identifier", &json!({"resourceType": "Observation"}));
    assert_eq!(wrong_type.status, 400);
    assert_eq!(wrong_type.issue_codes(), ["value"]);
}

#[test]
fn metadata_lists_the_native_operations() {
    let server = TestServer::example();
    let metadata = server.get("/metadata").json();
    assert_eq!(
        metadata["rest"][0]["operation"],
        json!([{
            "name": "healthcheck",
            "definition": server.url("/OperationDefinition/s-healthcheck"),
        }])
    );
    let patient = metadata["rest"][0]["resource"]
        .as_array()
        .unwrap()
        .iter()
        .find(|resource| resource["type"] == "Patient")
        .unwrap()
        .clone();
    let names: Vec<&str> = patient["operation"]
        .as_array()
        .unwrap()
        .iter()
        .map(|op| op["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["hello", "add-identifier", "everything"]);
}

/// GETs `url` as the admin with `headers`: status, headers (lower-case names) and raw body.
fn get_raw(url: &str, headers: &[(&str, &str)]) -> (u16, Vec<(String, String)>, Vec<u8>) {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = ureq::http::Request::builder()
        .uri(url)
        .header("Authorization", format!("Bearer {}", common::ADMIN_TOKEN));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let mut response = agent.run(request.body(()).unwrap()).unwrap();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap().to_owned()))
        .collect();
    let status = response.status().as_u16();
    (status, headers, response.body_mut().read_to_vec().unwrap())
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

#[test]
fn metadata_is_gzip_encoded_for_clients_that_accept_it() {
    use std::io::Read as _;
    let server = TestServer::example();
    let url = server.url("/metadata");
    let (status, headers, plain) = get_raw(&url, &[]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), None);
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
    let statement: serde_json::Value = serde_json::from_slice(&plain).unwrap();
    assert_eq!(statement["resourceType"], "CapabilityStatement");

    let (status, headers, encoded) = get_raw(&url, &[("Accept-Encoding", "br;q=1.0, gzip;q=0.8")]);
    assert_eq!(status, 200);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
    assert_eq!(header(&headers, "vary"), Some("Accept-Encoding"));
    assert_eq!(header(&headers, "content-type"), Some(FHIR_JSON));
    assert!(
        encoded.len() * 4 < plain.len(),
        "{} of {} bytes",
        encoded.len(),
        plain.len()
    );
    let mut decoded = Vec::new();
    flate2::read::GzDecoder::new(&encoded[..])
        .read_to_end(&mut decoded)
        .unwrap();
    assert_eq!(decoded, plain);

    for refusing in ["gzip;q=0, identity", "identity", "br", "*;q=0"] {
        let (status, headers, body) = get_raw(&url, &[("Accept-Encoding", refusing)]);
        assert_eq!(status, 200);
        assert_eq!(header(&headers, "content-encoding"), None, "{refusing}");
        assert_eq!(body, plain, "{refusing}");
    }
    let (_, headers, _) = get_raw(&url, &[("Accept-Encoding", "*")]);
    assert_eq!(header(&headers, "content-encoding"), Some("gzip"));
}
