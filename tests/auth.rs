//! Authentication of the example server: bearer tokens, 401s that say how to authenticate,
//! and the one open endpoint.

mod common;

use common::{ADMIN_TOKEN, FHIR_JSON, TestServer, send, send_unauthenticated};
use serde_json::json;

fn patient_count(server: &TestServer) -> u64 {
    let reply = server.get("/Patient?_summary=count");
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64().expect("a total")
}

#[test]
fn requests_without_a_valid_bearer_token_are_401_and_change_nothing() {
    let server = TestServer::example();
    let body = json!({"resourceType": "Patient"}).to_string();
    // (case, headers, the `error` the challenge names)
    type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Option<&'a str>);
    let cases: [Case; 5] = [
        ("missing", vec![], None),
        (
            "wrong token",
            vec![("Authorization", "Bearer not-the-token")],
            Some("invalid_token"),
        ),
        ("Basic scheme", vec![("Authorization", "Basic dGVzdDp0ZXN0")], None),
        ("no scheme", vec![("Authorization", ADMIN_TOKEN)], None),
        ("empty token", vec![("Authorization", "Bearer ")], None),
    ];
    for (case, headers, error) in cases {
        let mut headers = headers;
        headers.push(("Content-Type", "application/fhir+json"));
        let reply = send_unauthenticated("POST", &server.url("/Patient"), &headers, Some(body.as_bytes()));
        assert_eq!(reply.status, 401, "{case}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{case}");
        assert_eq!(reply.issue_codes(), ["login"], "{case}");
        let challenge = reply.header("www-authenticate").unwrap_or_default().to_owned();
        assert!(challenge.starts_with("Bearer realm=\"fhirop\""), "{case}: {challenge}");
        assert_eq!(
            challenge.contains("invalid_token"),
            error.is_some(),
            "{case}: {challenge}"
        );
    }
    assert_eq!(patient_count(&server), 0, "nothing was stored");
    let operation = send_unauthenticated("GET", &server.url("/$healthcheck"), &[], None);
    assert_eq!(operation.status, 401);
    let outside = send_unauthenticated("GET", &format!("http://{}/", server.addr), &[], None);
    assert_eq!(outside.status, 401);
}

#[test]
fn metadata_is_open_to_get_only() {
    let server = TestServer::example();
    let metadata = send_unauthenticated("GET", &server.url("/metadata"), &[], None);
    assert_eq!(metadata.status, 200);
    assert_eq!(metadata.json()["resourceType"], "CapabilityStatement");
    let posted = send_unauthenticated("POST", &server.url("/metadata"), &[], Some(b"{}"));
    assert_eq!(posted.status, 401);
    let definitions = send_unauthenticated("GET", &server.url("/OperationDefinition"), &[], None);
    assert_eq!(definitions.status, 401);
}

#[test]
fn the_admin_token_reaches_everything_in_the_default_project() {
    let server = TestServer::example();
    let created = server.post_json("/Patient", &json!({"resourceType": "Patient"}));
    assert_eq!(created.status, 201, "{}", created.body);
    let lower_case_scheme = send(
        "GET",
        &server.url("/$healthcheck"),
        &[("Authorization", &format!("bearer {ADMIN_TOKEN}"))],
        None,
    );
    assert_eq!(lower_case_scheme.status, 200);
    assert_eq!(patient_count(&server), 1);
}

#[test]
fn a_client_over_its_rate_gets_429_with_retry_after() {
    let mut config = fhirop_server::Config::for_tests();
    config.rate_limit = 1;
    let server = TestServer::example_with(config);
    let replies: Vec<_> = (0..4).map(|_| server.get("/$healthcheck")).collect();
    let throttled = replies
        .iter()
        .find(|reply| reply.status == 429)
        .expect("a burst of one request per second admits at most two of four immediate requests");
    assert_eq!(throttled.header("retry-after"), Some("1"));
    assert_eq!(throttled.issue_codes(), ["throttled"]);
    assert_eq!(replies[0].status, 200);
    // The open endpoint is not counted.
    assert_eq!(
        send_unauthenticated("GET", &server.url("/metadata"), &[], None).status,
        200
    );
}

#[test]
fn parameter_count_and_json_depth_limits_are_configurable() {
    let mut config = fhirop_server::Config::for_tests();
    config.max_parameters = 3;
    config.max_json_depth = 5;
    let server = TestServer::example_with(config);
    let entries: Vec<_> = (0..4).map(|_| json!({"name": "name", "valueString": "x"})).collect();
    let too_many = server.post_json(
        "/Patient/$hello",
        &json!({"resourceType": "Parameters", "parameter": entries}),
    );
    assert_eq!(too_many.status, 400, "{}", too_many.body);
    assert_eq!(too_many.issue_codes(), ["too-costly"]);
    let deep = json!({"resourceType": "Patient", "extension": [{"extension": [{"extension": [{"url": "x"}]}]}]});
    let refused = server.post_json("/Patient", &deep);
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert_eq!(refused.issue_codes(), ["structure"]);
    let within = server.post_json(
        "/Patient",
        &json!({"resourceType": "Patient", "name": [{"given": ["a"]}]}),
    );
    assert_eq!(within.status, 201, "{}", within.body);
}
