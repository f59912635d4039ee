//! Access policies: what a project member may read, write and invoke.

mod common;

use common::{Reply, TestServer, admin_post, send, send_unauthenticated};
use serde_json::{Value, json};

struct Member {
    token: String,
}

fn member(server: &TestServer, project: &str, policy: Option<&str>) -> Member {
    let mut body = json!({"name": "member"});
    if let Some(policy) = policy {
        body["accessPolicy"] = json!({"reference": format!("AccessPolicy/{policy}")});
    }
    let client = admin_post(server, &format!("/admin/projects/{project}/client"), &body).json();
    let form = format!(
        "grant_type=client_credentials&client_id={}&client_secret={}",
        client["id"].as_str().unwrap(),
        client["secret"].as_str().unwrap()
    );
    let reply = send_unauthenticated(
        "POST",
        &format!("http://{}/oauth2/token", server.addr),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(form.as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    Member {
        token: reply.json()["access_token"].as_str().unwrap().to_owned(),
    }
}

impl Member {
    fn call(&self, server: &TestServer, method: &str, path: &str, body: Option<Value>) -> Reply {
        let bearer = format!("Bearer {}", self.token);
        let text = body.map(|body| body.to_string());
        send(
            method,
            &server.url(path),
            &[("Authorization", &bearer), ("Content-Type", "application/fhir+json")],
            text.as_deref().map(str::as_bytes),
        )
    }

    fn create(&self, server: &TestServer, resource: Value) -> String {
        let reply = self.call(
            server,
            "POST",
            &format!("/{}", resource["resourceType"].as_str().unwrap()),
            Some(resource),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        reply.json()["id"].as_str().unwrap().to_owned()
    }

    fn count(&self, server: &TestServer, resource_type: &str) -> u64 {
        let reply = self.call(server, "GET", &format!("/{resource_type}?_summary=count"), None);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["total"].as_u64().unwrap()
    }
}

/// A project with a full-access member and a restricted one (Patient read-write,
/// Observation read-only).
fn setup() -> (TestServer, Member, Member) {
    let server = TestServer::example();
    let project = admin_post(&server, "/admin/projects", &json!({"name": "clinic"})).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let full = member(&server, &project, None);
    let policy = full.create(
        &server,
        json!({"resourceType": "AccessPolicy", "name": "front desk", "resource": [
            {"resourceType": "Patient"},
            {"resourceType": "Observation", "readonly": true},
        ]}),
    );
    let restricted = member(&server, &project, Some(&policy));
    (server, full, restricted)
}

fn forbidden(reply: &Reply) {
    assert_eq!(reply.status, 403, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["forbidden"]);
}

#[test]
fn rest_interactions_follow_the_policy_and_store_nothing_when_denied() {
    let (server, full, restricted) = setup();
    let patient = restricted.create(&server, json!({"resourceType": "Patient"}));
    let observation = full.create(
        &server,
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "subject": {"reference": format!("Patient/{patient}")}}),
    );
    full.create(
        &server,
        json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient}")}}),
    );
    assert_eq!(
        restricted
            .call(&server, "GET", &format!("/Observation/{observation}"), None)
            .status,
        200
    );
    forbidden(&restricted.call(
        &server,
        "POST",
        "/Observation",
        Some(json!({"resourceType": "Observation", "status": "final", "code": {"text": "y"}})),
    ));
    forbidden(&restricted.call(&server, "DELETE", &format!("/Observation/{observation}"), None));
    forbidden(&restricted.call(&server, "GET", "/Condition", None));
    forbidden(&restricted.call(&server, "GET", &format!("/Condition/{patient}"), None));
    assert_eq!(full.count(&server, "Observation"), 1, "nothing was stored or deleted");
    let transaction = restricted.call(
        &server,
        "POST",
        "",
        Some(json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "POST", "url": "Patient"}, "resource": {"resourceType": "Patient"}},
            {"request": {"method": "POST", "url": "Encounter"}, "resource": {"resourceType": "Encounter", "status": "planned", "class": {"code": "AMB"}}},
        ]})),
    );
    forbidden(&transaction);
    assert_eq!(full.count(&server, "Patient"), 1, "the transaction stored nothing");
}

#[test]
fn everything_returns_only_what_the_caller_may_read() {
    let (server, full, restricted) = setup();
    let patient = full.create(&server, json!({"resourceType": "Patient"}));
    for resource in [
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}}),
        json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{patient}")}}),
    ] {
        full.create(&server, resource);
    }
    let types = |reply: &Reply| {
        let mut types: Vec<String> = reply.json()["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| entry["resource"]["resourceType"].as_str().unwrap().to_owned())
            .collect();
        types.sort();
        types
    };
    let everything = format!("/Patient/{patient}/$everything");
    assert_eq!(
        types(&full.call(&server, "GET", &everything, None)),
        ["Condition", "Observation", "Patient"]
    );
    assert_eq!(
        types(&restricted.call(&server, "GET", &everything, None)),
        ["Observation", "Patient"]
    );
}

#[test]
fn operations_need_read_access_write_access_when_they_affect_state_and_bots_need_bot_access() {
    let (server, full, restricted) = setup();
    assert_eq!(restricted.call(&server, "GET", "/Patient/$hello", None).status, 200);
    let added = restricted.call(
        &server,
        "POST",
        "/Patient/$add-identifier",
        Some(json!({"resourceType": "Patient"})),
    );
    assert_eq!(added.status, 200, "{}", added.body);
    assert_eq!(
        restricted.call(&server, "GET", "/$healthcheck", None).status,
        200,
        "an open system operation"
    );
    let bot = full.create(&server, json!({"resourceType": "Bot", "name": "echo"}));
    let deployed = full.call(
        &server,
        "POST",
        &format!("/Bot/{bot}/$deploy"),
        Some(json!({"code": "exports.handler = async (medplum, event) => ({ok: true});"})),
    );
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    let definition = full.call(
        &server,
        "POST",
        "/OperationDefinition",
        Some(json!({
            "resourceType": "OperationDefinition",
            "extension": [{"url": "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation",
                           "valueReference": {"reference": format!("Bot/{bot}")}}],
            "name": "ping", "status": "active", "kind": "operation", "code": "ping",
            "system": true, "type": false, "instance": false, "parameter": [],
        })),
    );
    assert_eq!(definition.status, 201, "{}", definition.body);
    assert_eq!(full.call(&server, "POST", "/$ping", None).status, 200);
    forbidden(&restricted.call(&server, "POST", "/$ping", None));
}

#[test]
fn a_bot_acts_with_its_own_membership_or_as_its_caller_with_run_as_user() {
    let server = TestServer::example();
    let project = admin_post(&server, "/admin/projects", &json!({"name": "clinic"})).json()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let full = member(&server, &project, None);
    let readonly = full.create(
        &server,
        json!({"resourceType": "AccessPolicy", "name": "reader", "resource": [
            {"resourceType": "Patient", "readonly": true}, {"resourceType": "Bot"},
        ]}),
    );
    let code = "exports.handler = async (medplum) => {\n  try {\n    const created = await medplum.createResource({resourceType: 'Patient'});\n    return {created: created.id};\n  } catch (e) {\n    return e.outcome;\n  }\n};";
    let mut bots = Vec::new();
    for run_as_user in [false, true] {
        let reply = admin_post(
            &server,
            &format!("/admin/projects/{project}/bot"),
            &json!({"name": "writer", "runAsUser": run_as_user,
                    "accessPolicy": {"reference": format!("AccessPolicy/{readonly}")}}),
        );
        assert_eq!(reply.status, 201, "{}", reply.body);
        let bot = reply.json()["id"].as_str().unwrap().to_owned();
        let deployed = full.call(
            &server,
            "POST",
            &format!("/Bot/{bot}/$deploy"),
            Some(json!({"code": code})),
        );
        assert_eq!(deployed.status, 200, "{}", deployed.body);
        bots.push(bot);
    }
    let as_itself = full.call(&server, "POST", &format!("/Bot/{}/$execute", bots[0]), Some(json!({})));
    assert_eq!(as_itself.status, 200, "{}", as_itself.body);
    assert_eq!(
        as_itself.json()["issue"][0]["code"],
        "forbidden",
        "its own policy reads Patients only"
    );
    let as_caller = full.call(&server, "POST", &format!("/Bot/{}/$execute", bots[1]), Some(json!({})));
    assert!(
        as_caller.json()["created"].is_string(),
        "runAsUser: the caller may write: {}",
        as_caller.body
    );
    assert_eq!(full.count(&server, "Patient"), 1);
}
