//! HTTP hygiene around operations: request and response media types, content negotiation,
//! `_pretty`, malformed and oversized bodies, panicking handlers and unknown paths.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{FHIR_JSON, Reply, TestServer, send};
use fhirop::format::PLAIN_JSON;
use fhirop::prelude::*;
use serde_json::{Value, json};

/// Echoes a text.
#[operation(name = "$echo", idempotent = true)]
async fn echo(#[op_param] text: Option<String>) -> String {
    text.unwrap_or_else(|| "nothing".into())
}

/// Counts the entries of a posted resource's `entry`.
#[operation(name = "$take", resource = "Patient")]
async fn take(#[op_param] note: Option<String>, #[op_param] resource: Option<Resource>) -> Parameters {
    Parameters::new()
        .add("note", note)
        .add("type", resource.map(|resource| resource.resource_type().to_owned()))
}

/// Always panics.
#[operation(name = "$boom", idempotent = true)]
async fn boom(#[op_param] how: Option<String>) -> String {
    panic!("the handler blew up: {}", how.unwrap_or_default())
}

/// Answers after it waited twice: for a wake-up it asks for at once, then for a timer.
#[operation(name = "$later", idempotent = true)]
async fn later(#[op_param] text: Option<String>) -> String {
    tokio::task::yield_now().await;
    tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    format!("later: {}", text.unwrap_or_default())
}

/// Panics after it waited.
#[operation(name = "$boom-later", idempotent = true)]
async fn boom_later() -> String {
    tokio::task::yield_now().await;
    panic!("the handler blew up after waiting")
}

const LIMIT: usize = 1024;

fn server() -> TestServer {
    TestServer::start(
        FhirServer::builder()
            .base_path("/fhir/R4")
            .body_limit(LIMIT)
            .operations(operations![echo, take, boom, later, boom_later])
            .build()
            .unwrap(),
    )
}

fn echoed(text: &str) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": text}]})
}

fn take_body(note: &str) -> String {
    json!({"resourceType": "Parameters", "parameter": [{"name": "note", "valueString": note}]}).to_string()
}

fn post_with(server: &TestServer, path: &str, headers: &[(&str, &str)], body: &str) -> Reply {
    send("POST", &server.url(path), headers, Some(body.as_bytes()))
}

fn get_with(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> Reply {
    send("GET", &server.url(path), headers, None)
}

fn assert_outcome(reply: &Reply, status: u16, code: &str) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{}", reply.body);
    assert_eq!(reply.issue_codes(), [code], "{}", reply.body);
}

// ---------------------------------------------------------------------------------------------
// Request media types
// ---------------------------------------------------------------------------------------------

#[test]
fn request_bodies_are_accepted_as_fhir_json_and_json() {
    let server = server();
    let expected = json!({"resourceType": "Parameters", "parameter": [{"name": "note", "valueString": "hi"}]});
    for content_type in [
        "application/fhir+json",
        "application/json",
        "application/fhir+json; charset=utf-8",
        "application/json;charset=UTF-8",
        "Application/FHIR+JSON",
    ] {
        let reply = post_with(
            &server,
            "/Patient/$take",
            &[("Content-Type", content_type)],
            &take_body("hi"),
        );
        assert_eq!(reply.status, 200, "{content_type}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{content_type}");
        assert_eq!(reply.json(), expected, "{content_type}");
    }
}

#[test]
fn a_body_declared_as_another_media_type_is_415() {
    let server = server();
    for content_type in [
        "text/plain",
        "application/fhir+xml",
        "application/x-www-form-urlencoded",
    ] {
        let reply = post_with(
            &server,
            "/Patient/$take",
            &[("Content-Type", content_type)],
            &take_body("hi"),
        );
        assert_outcome(&reply, 415, "not-supported");
    }
}

#[test]
fn invalid_json_is_400_with_line_and_column() {
    let server = server();
    let reply = server.post(
        "/Patient/$take",
        "{\n  \"resourceType\": \"Parameters\",\n  \"parameter\": [}",
    );
    assert_outcome(&reply, 400, "structure");
    let diagnostics = reply.json()["issue"][0]["diagnostics"].as_str().unwrap().to_owned();
    assert!(diagnostics.contains("line 3"), "{diagnostics}");
    assert!(diagnostics.contains("column"), "{diagnostics}");
    // JSON that is not an object is refused too.
    assert_outcome(&server.post("/Patient/$take", "[1, 2]"), 400, "structure");
}

#[test]
fn a_body_over_the_limit_is_413() {
    let server = server();
    let small = take_body(&"x".repeat(LIMIT / 2));
    assert!(small.len() <= LIMIT);
    assert_eq!(server.post("/Patient/$take", &small).status, 200);
    let large = take_body(&"x".repeat(LIMIT * 2));
    let reply = server.post("/Patient/$take", &large);
    assert_outcome(&reply, 413, "too-long");
    // The server still answers afterwards.
    assert_eq!(server.get("/$echo").status, 200);
}

/// Sends a raw HTTP/1.1 request and returns the raw response (the server closes the
/// connection: the request says `Connection: close`).
fn raw_http(server: &TestServer, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.write_all(request).unwrap();
    let mut response = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(read) => response.extend_from_slice(&buffer[..read]),
        }
    }
    String::from_utf8_lossy(&response).into_owned()
}

fn chunked_post(server: &TestServer, chunks: &[String]) -> String {
    let mut request = format!(
        "POST /fhir/R4/Patient/$take HTTP/1.1\r\nHost: {}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    );
    for chunk in chunks {
        request.push_str(&format!("{:x}\r\n{chunk}\r\n", chunk.len()));
    }
    request.push_str("0\r\n\r\n");
    raw_http(server, request.as_bytes())
}

#[test]
fn a_chunked_body_is_read_and_limited_too() {
    let server = server();
    let body = take_body("chunked");
    let (head, tail) = body.split_at(body.len() / 2);
    let response = chunked_post(&server, &[head.to_owned(), tail.to_owned()]);
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#"{"name":"note","valueString":"chunked"}"#),
        "{response}"
    );
    let body = take_body(&"x".repeat(LIMIT));
    let (head, tail) = body.split_at(LIMIT - 100);
    let response = chunked_post(&server, &[head.to_owned(), tail.to_owned()]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains(r#""code":"too-long""#), "{response}");
    // One chunk over the limit on its own.
    let response = chunked_post(&server, &[body]);
    assert!(response.starts_with("HTTP/1.1 413"), "{response}");
    assert!(response.contains(r#""code":"too-long""#), "{response}");
}

#[test]
fn deeply_nested_json_is_400_structure() {
    let server = server();
    let depth = 150;
    let body = format!(
        r#"{{"resourceType": "Parameters", "parameter": [{{"name": "resource", "resource": {{"resourceType": "Basic", "x": {}1{}}}}}]}}"#,
        "[".repeat(depth),
        "]".repeat(depth)
    );
    assert!(body.len() < LIMIT);
    let reply = server.post("/Patient/$take", &body);
    assert_outcome(&reply, 400, "structure");
}

// ---------------------------------------------------------------------------------------------
// Response media types and negotiation
// ---------------------------------------------------------------------------------------------

#[test]
fn responses_are_fhir_json_by_default() {
    let server = server();
    for reply in [
        server.get("/$echo?text=a"),
        get_with(&server, "/$echo?text=a", &[("Accept", "application/fhir+json")]),
        get_with(&server, "/$echo?text=a", &[("Accept", "*/*")]),
        get_with(&server, "/$echo?text=a", &[("Accept", "")]),
        get_with(
            &server,
            "/$echo?text=a",
            &[("Accept", "application/fhir+json; fhirVersion=4.0")],
        ),
    ] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.json(), echoed("a"));
    }
}

#[test]
fn plain_json_when_the_client_asks_for_it() {
    let server = server();
    for reply in [
        get_with(&server, "/$echo?text=a", &[("Accept", "application/json")]),
        server.get("/$echo?text=a&_format=application%2Fjson"),
        post_with(&server, "/$echo?text=a", &[("Accept", "application/json")], ""),
    ] {
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(PLAIN_JSON));
        assert_eq!(reply.header("content-type"), Some("application/json; charset=utf-8"));
        assert_eq!(reply.json(), echoed("a"));
    }
    // Errors follow the same negotiation.
    let reply = get_with(&server, "/$echo?bogus=1", &[("Accept", "application/json")]);
    assert_eq!(reply.status, 400);
    assert_eq!(reply.header("content-type"), Some(PLAIN_JSON));
    assert_eq!(reply.issue_codes(), ["not-supported"]);
}

#[test]
fn format_parameter_values() {
    let server = server();
    for (format, content_type) in [
        ("json", FHIR_JSON),
        ("application%2Ffhir%2Bjson", FHIR_JSON),
        // Typed without percent-encoding, the `+` arrives as a space.
        ("application/fhir+json", FHIR_JSON),
        ("APPLICATION%2FJSON", PLAIN_JSON),
        ("application%2Fjson", PLAIN_JSON),
    ] {
        let reply = server.get(&format!("/$echo?text=a&_format={format}"));
        assert_eq!(reply.status, 200, "{format}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(content_type), "{format}");
        assert_eq!(reply.json(), echoed("a"));
    }
    // `_format` wins over Accept.
    let reply = get_with(&server, "/$echo?text=a&_format=json", &[("Accept", "application/json")]);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
}

#[test]
fn accept_with_q_values_picks_json() {
    let server = server();
    for (accept, content_type) in [
        ("application/fhir+xml, application/json;q=0.5", PLAIN_JSON),
        ("application/json;q=0.9, application/fhir+json;q=0.8", PLAIN_JSON),
        ("application/json;q=0.5, application/fhir+json", FHIR_JSON),
        (
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            FHIR_JSON,
        ),
    ] {
        let reply = get_with(&server, "/$echo?text=a", &[("Accept", accept)]);
        assert_eq!(reply.status, 200, "{accept}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(content_type), "{accept}");
        assert_eq!(reply.json(), echoed("a"));
    }
}

#[test]
fn only_xml_is_406() {
    let server = server();
    for reply in [
        get_with(&server, "/$echo?text=a", &[("Accept", "application/fhir+xml")]),
        get_with(&server, "/$echo?text=a", &[("Accept", "application/xml, text/xml")]),
        get_with(
            &server,
            "/$echo?text=a",
            &[("Accept", "application/json;q=0, application/fhir+xml")],
        ),
        server.get("/$echo?text=a&_format=xml"),
        server.get("/$echo?text=a&_format=application%2Ffhir%2Bxml"),
        get_with(&server, "/$echo?text=a&_format=xml", &[("Accept", "application/json")]),
        get_with(&server, "/metadata", &[("Accept", "application/fhir+xml")]),
        get_with(&server, "/OperationDefinition", &[("Accept", "application/fhir+xml")]),
    ] {
        assert_outcome(&reply, 406, "not-supported");
    }
}

#[test]
fn pretty_printing() {
    let server = server();
    let reply = server.get("/$echo?text=a&_pretty=true");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert!(reply.body.contains('\n'), "{}", reply.body);
    assert!(
        reply.body.contains("\n  \"resourceType\": \"Parameters\""),
        "{}",
        reply.body
    );
    assert_eq!(reply.json(), echoed("a"));
    // Not pretty by default or with `_pretty=false`.
    for path in ["/$echo?text=a", "/$echo?text=a&_pretty=false"] {
        let reply = server.get(path);
        assert!(!reply.body.contains('\n'), "{}", reply.body);
        assert_eq!(reply.json(), echoed("a"));
    }
    // Errors, metadata and definitions too.
    let reply = server.get("/$echo?bogus=1&_pretty=true");
    assert_eq!(reply.status, 400);
    assert!(reply.body.contains("\n  \"issue\": ["), "{}", reply.body);
    let reply = server.get("/metadata?_pretty=true");
    assert!(
        reply.body.contains("\n  \"resourceType\": \"CapabilityStatement\""),
        "{}",
        reply.body
    );
    let reply = server.get("/OperationDefinition/s-echo?_pretty=true");
    assert!(
        reply.body.contains("\n  \"resourceType\": \"OperationDefinition\""),
        "{}",
        reply.body
    );
}

#[test]
fn metadata_is_cached_but_honours_the_format_of_each_request() {
    let server = server();
    let first = server.get("/metadata");
    assert_eq!(first.header("content-type"), Some(FHIR_JSON));
    let plain = get_with(&server, "/metadata", &[("Accept", "application/json")]);
    assert_eq!(plain.status, 200);
    assert_eq!(plain.header("content-type"), Some(PLAIN_JSON));
    assert_eq!(plain.json(), first.json());
    let pretty = server.get("/metadata?_pretty=true");
    assert_eq!(pretty.json(), first.json());
}

#[test]
fn metadata_and_definitions_only_answer_get() {
    let server = server();
    for path in ["/metadata", "/OperationDefinition", "/OperationDefinition/s-echo"] {
        let reply = server.post(path, "");
        assert_outcome(&reply, 405, "not-supported");
        assert_eq!(reply.header("allow"), Some("GET"), "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// Failures
// ---------------------------------------------------------------------------------------------

#[test]
fn a_panicking_handler_is_500_and_the_server_keeps_serving() {
    let server = server();
    let reply = server.get("/$boom?how=badly");
    assert_outcome(&reply, 500, "exception");
    assert_eq!(
        reply.json(),
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error",
            "code": "exception",
            "diagnostics": "operation $boom failed unexpectedly; the server logged the details",
        }]})
    );
    // The panic message is not leaked to the client.
    assert!(!reply.body.contains("blew up"), "{}", reply.body);
    let reply = server.get("/$echo?text=after");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), echoed("after"));
    // And again, to be sure the worker survived more than once.
    assert_eq!(server.post("/$boom", "").status, 500);
    assert_eq!(server.get("/$echo?text=again").json(), echoed("again"));
}

#[test]
fn a_handler_that_waits_is_answered_when_it_finishes() {
    let server = server();
    // A GET runs to the handler's first wait while the call is made; the rest runs in the
    // connection's task, which must be woken for both waits.
    let reply = server.get("/$later?text=get");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.json(), echoed("later: get"));
    let reply = server.post(
        "/$later",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "text", "valueString": "post"}]}).to_string(),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), echoed("later: post"));
    let reply = server.get("/$boom-later");
    assert_outcome(&reply, 500, "exception");
    assert_eq!(
        reply.json()["issue"][0]["diagnostics"],
        "operation $boom-later failed unexpectedly; the server logged the details"
    );
    assert_eq!(server.get("/$echo?text=after").json(), echoed("after"));
}

#[test]
fn unknown_paths_under_the_base_are_404_operation_outcomes() {
    let server = server();
    for path in [
        "/Patient/123",
        "/Patient",
        "/",
        "/foo/bar/baz/qux/quux",
        "/Patient/1/_history/2",
    ] {
        let reply = server.get(path);
        assert_outcome(&reply, 404, "not-supported");
    }
    let reply = send("DELETE", &server.url("/Patient/123"), &[], None);
    assert_outcome(&reply, 404, "not-supported");
    // The error honours the negotiated format.
    let reply = get_with(&server, "/Patient/123", &[("Accept", "application/json")]);
    assert_eq!(reply.status, 404);
    assert_eq!(reply.header("content-type"), Some(PLAIN_JSON));
}
