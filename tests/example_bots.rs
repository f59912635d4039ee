//! The sample Bots under examples/bots/ run as their comments say.

mod common;

use common::{TestServer, create, define, new_bot_named};
use serde_json::json;

#[test]
fn add_identifier_bot_appends_the_identifier() {
    let server = TestServer::example();
    let bot = new_bot_named(&server, "example", include_str!("../examples/bots/add-identifier.js"));
    define(
        &server,
        &bot,
        json!({
            "name": "add-identifier-js", "status": "active", "kind": "operation", "code": "add-identifier-js",
            "system": true, "type": false, "instance": false,
            "parameter": [{"use": "in", "name": "input", "type": "Patient", "min": 1, "max": "1"},
                          {"use": "out", "name": "return", "type": "Patient", "min": 1, "max": "1"}],
        }),
    );
    let reply = server.post_json(
        "/Patient/$add-identifier-js",
        &json!({"resourceType": "Patient", "name": [{"family": "Smith"}]}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({"resourceType": "Patient", "name": [{"family": "Smith"}],
               "identifier": [{"system": "https://example.com/patient-id", "value": "12345"}]})
    );
}

#[test]
fn patient_summary_bot_counts_conditions_and_encounters() {
    let server = TestServer::example();
    let patient = create(&server, &json!({"resourceType": "Patient"}));
    for _ in 0..2 {
        create(
            &server,
            &json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient}")}}),
        );
    }
    let encounter = create(
        &server,
        &json!({"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
               "subject": {"reference": format!("Patient/{patient}")}}),
    );
    let bot = new_bot_named(&server, "example", include_str!("../examples/bots/patient-summary.js"));
    define(
        &server,
        &bot,
        json!({
            "name": "summary", "status": "active", "kind": "operation", "code": "summary",
            "resource": ["Patient"], "system": false, "type": false, "instance": true,
            "parameter": [{"use": "out", "name": "conditions", "type": "integer", "min": 1, "max": "1"},
                          {"use": "out", "name": "encounters", "type": "integer", "min": 1, "max": "1"},
                          {"use": "out", "name": "latest", "type": "Encounter", "min": 0, "max": "1"}],
        }),
    );
    let reply = server.get(&format!("/Patient/{patient}/$summary"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["parameter"][0], json!({"name": "conditions", "valueInteger": 2}));
    assert_eq!(body["parameter"][1], json!({"name": "encounters", "valueInteger": 1}));
    assert_eq!(body["parameter"][2]["name"], "latest");
    assert_eq!(body["parameter"][2]["resource"]["id"], json!(encounter));
}
