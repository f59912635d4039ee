//! Bots over HTTP: Medplum's custom FHIR operations walkthrough, `$deploy`, `$execute`, hot
//! (re)registration of Bot-backed OperationDefinitions, levels, validation before the
//! JavaScript runs, `event`, output shapes, failures and the `medplum` API inside Bots.
//! Limits, concurrency and restarts are in `bots_limits.rs`.

mod common;

use std::process::Command;

use common::{
    BOT_IMPLEMENTATION, FHIR_JSON, Reply, TestServer, all_ok, bot_definition, create, define, deployed, new_bot,
    parameters, send,
};
use serde_json::{Value, json};

/// What `$execute` answers with: the Bot's raw value as JSON.
const RAW_JSON: &str = "application/json; charset=utf-8";

/// The Bot of the walkthrough's step 1, verbatim.
const SEED_BOT: &str = r#"exports.handler = async function (medplum, event) {
  const patient = event.input;

  // Your custom logic here
  patient.identifier = patient.identifier || [];
  patient.identifier.push({
    system: 'https://example.com/patient-id',
    value: '12345',
  });

  return patient;
};"#;

/// The OperationDefinition of the walkthrough's step 3, verbatim, for `Bot/{bot}`.
fn seed_definition(bot: &str) -> Value {
    json!({
      "resourceType": "OperationDefinition",
      "extension": [
        {
          "url": "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation",
          "valueReference": {
            "reference": format!("Bot/{bot}")
          }
        }
      ],
      "name": "my-custom-operation",
      "status": "active",
      "kind": "operation",
      "code": "my-custom-operation",
      "system": true,
      "type": false,
      "instance": false,
      "parameter": [
        {
          "use": "in",
          "name": "input",
          "type": "Patient",
          "min": 1,
          "max": "1"
        },
        {
          "use": "out",
          "name": "return",
          "type": "Patient",
          "min": 1,
          "max": "1"
        }
      ]
    })
}

/// The Patient of the walkthrough's step 4, verbatim.
fn seed_patient() -> Value {
    json!({
      "resourceType": "Patient",
      "name": [
        {
          "family": "Smith",
          "given": ["John"]
        }
      ]
    })
}

fn seed_patient_with_identifier() -> Value {
    json!({
        "resourceType": "Patient",
        "name": [{"family": "Smith", "given": ["John"]}],
        "identifier": [{"system": "https://example.com/patient-id", "value": "12345"}],
    })
}

/// POSTs `{"code": code}` to `Bot/{bot}/$deploy`.
fn deploy(server: &TestServer, bot: &str, code: &str) -> Reply {
    server.post_json(&format!("/Bot/{bot}/$deploy"), &json!({ "code": code }))
}

/// POSTs `input` to `Bot/{bot}/$execute`.
fn execute(server: &TestServer, bot: &str, input: &Value) -> Reply {
    server.post_json(&format!("/Bot/{bot}/$execute"), input)
}

/// Executes and expects a 200 with the raw value.
fn executed(server: &TestServer, bot: &str, input: &Value) -> Value {
    let reply = execute(server, bot, input);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(RAW_JSON));
    reply.json()
}

/// `Bundle.total` of a search.
fn total(server: &TestServer, path: &str) -> u64 {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64().expect("a total")
}

/// How many OperationDefinitions the store holds (POST `_search` goes to the store; GET
/// `/OperationDefinition` lists the registered operations).
fn stored_definitions(server: &TestServer) -> u64 {
    let reply = send(
        "POST",
        &server.url("/OperationDefinition/_search"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(b""),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64().expect("a total")
}

/// The stored OperationDefinition `id`, read from the store (POST `_search`).
fn stored_definition(server: &TestServer, id: &str) -> Value {
    let reply = send(
        "POST",
        &server.url("/OperationDefinition/_search"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(format!("_id={id}").as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    assert_eq!(bundle["total"], 1, "{bundle}");
    bundle["entry"][0]["resource"].clone()
}

/// The operations `/metadata` lists at the system level.
fn system_operations(server: &TestServer) -> Vec<Value> {
    let metadata = server.get("/metadata");
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    metadata.json()["rest"][0]["operation"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The operations `/metadata` lists for `resource_type`.
fn type_operations(server: &TestServer, resource_type: &str) -> Vec<Value> {
    let metadata = server.get("/metadata");
    assert_eq!(metadata.status, 200, "{}", metadata.body);
    metadata.json()["rest"][0]["resource"]
        .as_array()
        .expect("rest[0].resource")
        .iter()
        .find(|resource| resource["type"] == resource_type)
        .and_then(|resource| resource["operation"].as_array().cloned())
        .unwrap_or_default()
}

/// Every resource type `/metadata` lists an operation named `code` for.
fn types_listing(server: &TestServer, code: &str) -> Vec<String> {
    server.get("/metadata").json()["rest"][0]["resource"]
        .as_array()
        .expect("rest[0].resource")
        .iter()
        .filter(|resource| {
            resource["operation"]
                .as_array()
                .is_some_and(|operations| operations.iter().any(|operation| operation["name"] == code))
        })
        .map(|resource| resource["type"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn not_supported(reply: &Reply) {
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["not-supported"]);
}

// ---------------------------------------------------------------------------------------
// 1. The walkthrough
// ---------------------------------------------------------------------------------------

#[test]
fn seed_walkthrough_adds_the_identifier() {
    let server = TestServer::example();
    // Step 1: create a Bot.
    let created = server.post_json(
        "/Bot",
        &json!({"resourceType": "Bot", "name": "my-custom-operation-bot"}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    assert_eq!(created.header("content-type"), Some(FHIR_JSON));
    let bot = created.json()["id"].as_str().expect("an id").to_owned();
    assert!(
        created
            .header("location")
            .is_some_and(|location| location.starts_with(&server.url(&format!("/Bot/{bot}/_history/")))),
        "{:?}",
        created.headers
    );
    // Step 2: deploy its code.
    let deployed = server.post_json(&format!("/Bot/{bot}/$deploy"), &json!({ "code": SEED_BOT }));
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    assert_eq!(deployed.header("content-type"), Some(FHIR_JSON));
    assert_eq!(deployed.json(), all_ok());
    // Step 3: the OperationDefinition.
    let defined = server.post_json("/OperationDefinition", &seed_definition(&bot));
    assert_eq!(defined.status, 201, "{}", defined.body);
    assert_eq!(defined.json()["code"], "my-custom-operation");
    // Step 4: invoke it.
    let reply = server.post_json("/Patient/$my-custom-operation", &seed_patient());
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.json(), seed_patient_with_identifier());
    // The identifier is appended to the ones the Patient already has.
    let mut with_one = seed_patient();
    with_one["identifier"] = json!([{"system": "urn:mine", "value": "a"}]);
    let reply = server.post_json("/Patient/$my-custom-operation", &with_one);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json()["identifier"],
        json!([
            {"system": "urn:mine", "value": "a"},
            {"system": "https://example.com/patient-id", "value": "12345"}
        ])
    );
}

/// Whether a `curl` is on PATH.
fn curl_available() -> bool {
    match Command::new("curl").arg("--version").output() {
        Ok(output) => output.status.success(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => false,
        Err(error) => panic!("curl could not run: {error}"),
    }
}

/// Runs `curl` with `args`; returns (status, body).
fn curl(args: &[&str]) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-sS", "--noproxy", "*", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl runs");
    assert!(
        output.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let text = String::from_utf8(output.stdout).expect("UTF-8");
    let (body, status) = text.rsplit_once('\n').expect("the status line");
    (status.trim().parse().expect("a status"), body.to_owned())
}

#[test]
fn seed_walkthrough_with_curl() {
    if !curl_available() {
        eprintln!("curl is not on PATH: the curl walkthrough is skipped");
        return;
    }
    let server = TestServer::example();
    let json_headers = [
        "-H",
        "Content-Type: application/fhir+json",
        "-H",
        "Authorization: Bearer test-admin-token",
    ];
    let post = |url: String, body: String| -> (u16, Value) {
        let mut args: Vec<&str> = vec!["-X", "POST", &url];
        args.extend(json_headers);
        args.extend(["--data-binary", &body]);
        let (status, body) = curl(&args);
        (
            status,
            serde_json::from_str(&body).unwrap_or_else(|_| panic!("not JSON: {body}")),
        )
    };
    let (status, created) = post(
        server.url("/Bot"),
        json!({"resourceType": "Bot", "name": "curl-bot"}).to_string(),
    );
    assert_eq!(status, 201, "{created}");
    let bot = created["id"].as_str().expect("an id").to_owned();
    let (status, deployed) = post(
        server.url(&format!("/Bot/{bot}/$deploy")),
        json!({ "code": SEED_BOT }).to_string(),
    );
    assert_eq!((status, deployed), (200, all_ok()));
    let (status, defined) = post(server.url("/OperationDefinition"), seed_definition(&bot).to_string());
    assert_eq!(status, 201, "{defined}");
    // Step 4 exactly as the walkthrough writes the body.
    let body = r#"{
    "resourceType": "Patient",
    "name": [
      {
        "family": "Smith",
        "given": ["John"]
      }
    ]
  }"#;
    let (status, patient) = post(server.url("/Patient/$my-custom-operation"), body.to_owned());
    assert_eq!(status, 200, "{patient}");
    assert_eq!(patient, seed_patient_with_identifier());
}

// ---------------------------------------------------------------------------------------
// 2. $deploy
// ---------------------------------------------------------------------------------------

#[test]
fn deploy_accepts_plain_json_and_parameters() {
    let server = TestServer::example();
    let bot = create(&server, &json!({"resourceType": "Bot", "name": "forms"}));
    deployed(&server, &bot, "exports.handler = async () => 'plain';");
    assert_eq!(executed(&server, &bot, &json!({})), json!("plain"));
    let reply = server.post_json(
        &format!("/Bot/{bot}/$deploy"),
        &parameters(json!([{"name": "code", "valueString": "exports.handler = async () => 'parameters';"}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.json(), all_ok());
    assert_eq!(executed(&server, &bot, &json!({})), json!("parameters"));
    // The code is stored on the Bot.
    let stored = server.get(&format!("/Bot/{bot}"));
    assert_eq!(stored.status, 200);
    assert_eq!(stored.json()["code"], "exports.handler = async () => 'parameters';");
    // Medplum's `filename` is accepted next to the code.
    let reply = server.post_json(
        &format!("/Bot/{bot}/$deploy"),
        &json!({"code": "export async function handler() { return 'module'; }", "filename": "index.js"}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(executed(&server, &bot, &json!({})), json!("module"));
}

#[test]
fn deploy_refuses_missing_code_and_syntax_errors_and_keeps_the_deployed_code() {
    let server = TestServer::example();
    let bot = new_bot(&server, "exports.handler = async () => 'first';");
    for body in [
        json!({}),
        json!({"code": ""}),
        json!({"filename": "index.js"}),
        parameters(json!([{"name": "filename", "valueString": "index.js"}])),
    ] {
        let reply = server.post_json(&format!("/Bot/{bot}/$deploy"), &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(
            reply.json(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "invalid", "diagnostics": "Missing code"
            }]}),
            "{body}"
        );
    }
    let broken = deploy(
        &server,
        &bot,
        "exports.handler = async function () {\n  return 1 +;\n};",
    );
    assert_eq!(broken.status, 400, "{}", broken.body);
    assert_eq!(broken.header("content-type"), Some(FHIR_JSON));
    assert_eq!(broken.issue_codes(), ["processing"]);
    let message = broken.diagnostics();
    assert!(message.starts_with("syntax error: "), "{message}");
    assert!(message.contains("unexpected token"), "the engine's message: {message}");
    assert!(message.contains("line 2"), "{message}");
    // The first version still answers, and is still the stored code.
    assert_eq!(executed(&server, &bot, &json!({})), json!("first"));
    assert_eq!(
        server.get(&format!("/Bot/{bot}")).json()["code"],
        "exports.handler = async () => 'first';"
    );
}

#[test]
fn deploy_to_an_unknown_bot_is_404() {
    let server = TestServer::example();
    let reply = deploy(&server, "no-such-bot", "exports.handler = async () => 1;");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["not-found"]);
    assert!(reply.diagnostics().contains("Bot/no-such-bot"), "{}", reply.body);
    let get = server.get("/Bot/no-such-bot/$deploy");
    assert_eq!(get.status, 405, "{}", get.body);
    assert_eq!(get.header("allow"), Some("POST"));
}

// ---------------------------------------------------------------------------------------
// 3. $execute
// ---------------------------------------------------------------------------------------

#[test]
fn execute_returns_the_raw_value() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async function (medplum, event) {\n  return { seen: event.input.x + 1, kind: typeof event.input };\n};",
    );
    assert_eq!(
        executed(&server, &bot, &json!({"x": 1})),
        json!({"seen": 2, "kind": "object"})
    );
    let strings = new_bot(
        &server,
        "exports.handler = async (medplum, event) => 'hi ' + event.input.name;",
    );
    assert_eq!(executed(&server, &strings, &json!({"name": "Ada"})), json!("hi Ada"));
    let nothing = new_bot(&server, "exports.handler = async () => undefined;");
    assert_eq!(executed(&server, &nothing, &json!({})), Value::Null);
    // A resource comes back as it is, not shaped by any OperationDefinition.
    let outcome = new_bot(
        &server,
        "exports.handler = async () => ({resourceType: 'OperationOutcome', issue: [{severity: 'error', code: 'not-found'}]});",
    );
    assert_eq!(
        executed(&server, &outcome, &json!({})),
        json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]})
    );
    let unknown = execute(&server, "no-such-bot", &json!({}));
    assert_eq!(unknown.status, 404, "{}", unknown.body);
    assert_eq!(unknown.issue_codes(), ["not-found"]);
}

#[test]
fn execute_get_passes_the_query_as_input_with_repeats_as_arrays() {
    let server = TestServer::example();
    let bot = new_bot(&server, "exports.handler = async (medplum, event) => event.input;");
    let reply = server.get(&format!("/Bot/{bot}/$execute?a=1&a=2&b=x"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(RAW_JSON));
    assert_eq!(reply.json(), json!({"a": ["1", "2"], "b": "x"}));
    let reply = server.get(&format!("/Bot/{bot}/$execute?only=one"));
    assert_eq!(reply.json(), json!({"only": "one"}));
}

#[test]
fn execute_by_identifier_finds_the_bot() {
    let server = TestServer::example();
    let first = create(
        &server,
        &json!({"resourceType": "Bot", "name": "a", "identifier": [{"system": "urn:bots", "value": "a"}]}),
    );
    deployed(
        &server,
        &first,
        "exports.handler = async (medplum, event) => ({bot: 'a', input: event.input});",
    );
    let second = create(
        &server,
        &json!({"resourceType": "Bot", "name": "b", "identifier": [{"system": "urn:bots", "value": "b"}]}),
    );
    deployed(
        &server,
        &second,
        "exports.handler = async (medplum, event) => ({bot: 'b', input: event.input});",
    );

    let reply = server.get("/Bot/$execute?identifier=urn:bots|a&x=1");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(RAW_JSON));
    assert_eq!(reply.json(), json!({"bot": "a", "input": {"x": "1"}}));
    let reply = server.post_json("/Bot/$execute?identifier=urn:bots%7Cb", &json!({"y": 2}));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"bot": "b", "input": {"y": 2}}));
    let reply = server.get("/Bot/$execute?identifier=urn:bots|zzz");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["not-found"]);
    let reply = server.get("/Bot/$execute");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["invalid"]);
}

// ---------------------------------------------------------------------------------------
// 4. Hot add, replace, remove
// ---------------------------------------------------------------------------------------

#[test]
fn system_definitions_are_added_replaced_and_removed_at_once() {
    let server = TestServer::example();
    let bot = new_bot(&server, "exports.handler = async () => 'answered';");
    not_supported(&server.post_json("/$hot-one", &parameters(json!([]))));
    assert!(
        system_operations(&server)
            .iter()
            .all(|operation| operation["name"] != "hot-one")
    );
    let out = json!([{"name": "return", "use": "out", "min": 1, "max": "1", "type": "string"}]);
    let answer = parameters(json!([{"name": "return", "valueString": "answered"}]));

    let id = define(
        &server,
        &bot,
        json!({"code": "hot-one", "system": true, "type": false, "instance": false, "parameter": out}),
    );
    assert!(
        system_operations(&server).contains(&json!({
            "name": "hot-one", "definition": server.url(&format!("/OperationDefinition/{id}"))
        })),
        "{:?}",
        system_operations(&server)
    );
    assert!(types_listing(&server, "hot-one").is_empty());
    let read = server.get(&format!("/OperationDefinition/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.header("content-type"), Some(FHIR_JSON));
    let read = read.json();
    assert_eq!(read["resourceType"], "OperationDefinition");
    assert_eq!(read["id"], id.as_str());
    assert_eq!(read["code"], "hot-one");
    assert_eq!(
        (&read["system"], &read["type"], &read["instance"]),
        (&json!(true), &json!(false), &json!(false))
    );
    assert_eq!(read["parameter"], out);
    assert_eq!(
        read["extension"],
        json!([{"url": BOT_IMPLEMENTATION, "valueReference": {"reference": format!("Bot/{bot}")}}])
    );
    let call = server.post_json("/$hot-one", &parameters(json!([])));
    assert_eq!(call.status, 200, "{}", call.body);
    assert_eq!(call.header("content-type"), Some(FHIR_JSON));
    assert_eq!(call.json(), answer);
    assert_eq!(server.get("/$hot-one").json(), answer);

    // A new version under another code replaces the operation.
    let mut replacement = bot_definition(
        &bot,
        json!({"code": "hot-two", "system": true, "type": false, "instance": false, "parameter": out}),
    );
    replacement["id"] = json!(id);
    let put = send(
        "PUT",
        &server.url(&format!("/OperationDefinition/{id}")),
        &[("Content-Type", "application/fhir+json")],
        Some(replacement.to_string().as_bytes()),
    );
    assert_eq!(put.status, 200, "{}", put.body);
    assert_eq!(put.json()["meta"]["versionId"], "2");
    let old = server.post_json("/$hot-one", &parameters(json!([])));
    not_supported(&old);
    assert!(old.diagnostics().contains("hot-one"), "{}", old.body);
    let new = server.post_json("/$hot-two", &parameters(json!([])));
    assert_eq!(new.status, 200, "{}", new.body);
    assert_eq!(new.json(), answer);
    let operations = system_operations(&server);
    assert!(
        operations.iter().all(|operation| operation["name"] != "hot-one"),
        "{operations:?}"
    );
    assert!(
        operations
            .contains(&json!({"name": "hot-two", "definition": server.url(&format!("/OperationDefinition/{id}"))})),
        "{operations:?}"
    );
    assert_eq!(
        server.get(&format!("/OperationDefinition/{id}")).json()["code"],
        "hot-two"
    );

    // A version naming a missing Bot is refused and changes nothing.
    let mut orphaned = replacement.clone();
    orphaned["code"] = json!("hot-three");
    orphaned["extension"][0]["valueReference"]["reference"] = json!("Bot/missing");
    let put = send(
        "PUT",
        &server.url(&format!("/OperationDefinition/{id}")),
        &[("Content-Type", "application/fhir+json")],
        Some(orphaned.to_string().as_bytes()),
    );
    assert_eq!(put.status, 400, "{}", put.body);
    assert_eq!(put.issue_codes(), ["invalid"]);
    assert_eq!(stored_definition(&server, &id)["meta"]["versionId"], "2");
    assert_eq!(stored_definition(&server, &id)["code"], "hot-two");
    not_supported(&server.post_json("/$hot-three", &parameters(json!([]))));
    assert_eq!(server.post_json("/$hot-two", &parameters(json!([]))).json(), answer);

    // Deleting the definition removes the operation.
    let deleted = send("DELETE", &server.url(&format!("/OperationDefinition/{id}")), &[], None);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    not_supported(&server.post_json("/$hot-two", &parameters(json!([]))));
    assert!(
        system_operations(&server)
            .iter()
            .all(|operation| operation["name"] != "hot-two")
    );
    let gone = server.get(&format!("/OperationDefinition/{id}"));
    assert_eq!(gone.status, 404, "{}", gone.body);
    // The native operations are untouched.
    assert_eq!(server.get("/$healthcheck").status, 200);
}

#[test]
fn type_and_instance_definitions_are_listed_per_resource_type() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async (medplum, event) => ({resourceType: 'Parameters'});",
    );
    let id = define(
        &server,
        &bot,
        json!({"code": "tagged", "resource": ["Patient", "Observation"], "system": false, "type": true, "instance": true}),
    );
    let entry = json!({"name": "tagged", "definition": server.url(&format!("/OperationDefinition/{id}"))});
    assert!(
        type_operations(&server, "Patient").contains(&entry),
        "{:?}",
        type_operations(&server, "Patient")
    );
    assert!(type_operations(&server, "Observation").contains(&entry));
    let mut listing = types_listing(&server, "tagged");
    listing.sort();
    assert_eq!(listing, ["Observation", "Patient"]);
    assert!(
        system_operations(&server)
            .iter()
            .all(|operation| operation["name"] != "tagged")
    );
    let read = server.get(&format!("/OperationDefinition/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["resource"], json!(["Patient", "Observation"]));
    let call = server.post_json("/Observation/$tagged", &parameters(json!([])));
    assert_eq!(call.status, 200, "{}", call.body);
    assert_eq!(call.json(), json!({"resourceType": "Parameters"}));
    let deleted = send("DELETE", &server.url(&format!("/OperationDefinition/{id}")), &[], None);
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert!(types_listing(&server, "tagged").is_empty());
    not_supported(&server.post_json("/Observation/$tagged", &parameters(json!([]))));
}

#[test]
fn a_definition_naming_a_missing_bot_is_refused_and_not_stored() {
    let server = TestServer::example();
    let before = stored_definitions(&server);
    let registered = server.get("/OperationDefinition").json()["total"].clone();
    for reference in ["Bot/does-not-exist", "Patient/123"] {
        let mut body = bot_definition("x", json!({"code": "orphan", "system": true}));
        body["extension"][0]["valueReference"]["reference"] = json!(reference);
        let reply = server.post_json("/OperationDefinition", &body);
        assert_eq!(reply.status, 400, "{reference}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.issue_codes(), ["invalid"]);
        assert!(reply.diagnostics().contains(reference), "{}", reply.body);
    }
    assert_eq!(stored_definitions(&server), before);
    assert_eq!(server.get("/OperationDefinition").json()["total"], registered);
    not_supported(&server.post_json("/$orphan", &parameters(json!([]))));
    assert!(
        system_operations(&server)
            .iter()
            .all(|operation| operation["name"] != "orphan")
    );
    // The same definition with an existing Bot is stored (so the count above can move).
    let bot = new_bot(&server, "exports.handler = async () => ({});");
    define(&server, &bot, json!({"code": "orphan", "system": true}));
    assert_eq!(stored_definitions(&server), before + 1);
}

#[test]
fn a_definition_clashing_with_a_native_operation_is_refused_and_not_stored() {
    let server = TestServer::example();
    let bot = new_bot(&server, "exports.handler = async () => 'bot';");
    let before = stored_definitions(&server);
    for fields in [
        json!({"code": "hello", "resource": ["Patient"], "system": false, "type": true, "instance": false}),
        json!({"code": "healthcheck", "system": true}),
        json!({"code": "deploy", "resource": ["Bot"], "instance": true}),
    ] {
        let reply = server.post_json("/OperationDefinition", &bot_definition(&bot, fields.clone()));
        assert_eq!(reply.status, 400, "{fields}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.issue_codes(), ["duplicate"], "{fields}");
        assert!(
            reply
                .diagnostics()
                .contains(fields["code"].as_str().unwrap_or_default())
        );
    }
    assert_eq!(stored_definitions(&server), before);
    let hello = server.get("/Patient/$hello?name=Ada");
    assert_eq!(hello.status, 200, "{}", hello.body);
    assert_eq!(
        hello.json(),
        json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": "Hello, Ada"}]})
    );
    // The same code at another type does not clash.
    define(
        &server,
        &bot,
        json!({"code": "hello", "resource": ["Observation"], "type": true, "parameter": [
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "string"}
        ]}),
    );
    assert_eq!(stored_definitions(&server), before + 1);
    assert_eq!(
        server.get("/Observation/$hello").json(),
        json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": "bot"}]})
    );
    assert_eq!(
        server.get("/Patient/$hello").json()["parameter"][0]["valueString"],
        "Hello, World"
    );
    // Nor may a second Bot operation take a code another Bot operation answers at that level.
    define(&server, &bot, json!({"code": "mine", "system": true}));
    let reply = server.post_json(
        "/OperationDefinition",
        &bot_definition(&bot, json!({"code": "mine", "system": true})),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["duplicate"]);
    assert_eq!(stored_definitions(&server), before + 2);
}

// ---------------------------------------------------------------------------------------
// 5. Levels
// ---------------------------------------------------------------------------------------

fn system_only(server: &TestServer) {
    let bot = new_bot(server, "exports.handler = async () => 'system';");
    define(
        server,
        &bot,
        json!({"code": "sys-only", "system": true, "type": false, "instance": false, "parameter": [
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "string"}
        ]}),
    );
}

#[test]
fn a_system_operation_answers_at_the_type_level_and_is_listed_at_the_system_level_only() {
    let server = TestServer::example();
    system_only(&server);
    let answer = parameters(json!([{"name": "return", "valueString": "system"}]));
    for path in ["/$sys-only", "/Patient/$sys-only", "/Observation/$sys-only"] {
        let reply = server.post_json(path, &parameters(json!([])));
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.json(), answer, "{path}");
    }
    assert_eq!(
        system_operations(&server)
            .iter()
            .filter(|operation| operation["name"] == "sys-only")
            .count(),
        1
    );
    assert!(types_listing(&server, "sys-only").is_empty());
}

#[test]
fn strict_levels_refuse_undeclared_levels() {
    let mut config = fhirop_server::Config::for_tests();
    config.strict_operation_levels = true;
    let server = TestServer::example_with(config);
    system_only(&server);
    let reply = server.post_json("/Patient/$sys-only", &parameters(json!([])));
    not_supported(&reply);
    let message = reply.diagnostics();
    assert!(message.contains("type level of Patient"), "{message}");
    assert!(message.contains("system ([base]/$sys-only)"), "{message}");
    let reply = server.post_json("/$sys-only", &parameters(json!([])));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        parameters(json!([{"name": "return", "valueString": "system"}]))
    );
}

// ---------------------------------------------------------------------------------------
// 6. Validation before the JavaScript runs
// ---------------------------------------------------------------------------------------

#[test]
fn input_is_validated_before_the_bot_runs() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async function (medplum, event) {\n  await medplum.createResource({resourceType: 'Basic', code: {text: 'ran'}});\n  return {};\n};",
    );
    define(
        &server,
        &bot,
        json!({"code": "checked", "resource": ["Patient"], "type": true, "affectsState": true, "parameter": [
            {"name": "count", "use": "in", "min": 1, "max": "1", "type": "integer"},
            {"name": "flag", "use": "in", "min": 0, "max": "1", "type": "boolean"},
        ]}),
    );
    let cases = [
        (
            parameters(json!([{"name": "flag", "valueBoolean": true}])),
            "required",
            "missing required parameter 'count'",
        ),
        (
            parameters(json!([{"name": "count", "valueString": "3"}])),
            "value",
            "expected valueInteger, got valueString",
        ),
        (
            parameters(json!([{"name": "count", "valueInteger": 1}, {"name": "count", "valueInteger": 2}])),
            "invalid",
            "parameter 'count' is given 2 times; at most 1 allowed",
        ),
    ];
    for (body, code, message) in cases {
        let reply = server.post_json("/Patient/$checked", &body);
        assert_eq!(reply.status, 400, "{body}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.issue_codes(), [code], "{}", reply.body);
        assert_eq!(reply.issue_expressions(), ["count"]);
        assert_eq!(reply.diagnostics(), message);
    }
    let get = server.get("/Patient/$checked?count=1");
    assert_eq!(get.status, 405, "{}", get.body);
    assert_eq!(get.header("allow"), Some("POST"));
    assert_eq!(get.issue_codes(), ["not-supported"]);
    assert_eq!(total(&server, "/Basic"), 0, "the Bot ran for an invalid call");
    // A valid call runs it (once).
    let reply = server.post_json(
        "/Patient/$checked",
        &parameters(json!([{"name": "count", "valueInteger": 3}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"resourceType": "Parameters"}));
    let basics = server.get("/Basic");
    assert_eq!(basics.json()["total"], 1);
    assert_eq!(basics.json()["entry"][0]["resource"]["code"], json!({"text": "ran"}));
}

// ---------------------------------------------------------------------------------------
// 7. event
// ---------------------------------------------------------------------------------------

fn secret_bot(server: &TestServer, code: &str) -> String {
    let bot = create(
        server,
        &json!({"resourceType": "Bot", "name": "eventful", "secret": [{"name": "apiKey", "valueString": "s3cret"}]}),
    );
    deployed(server, &bot, code);
    bot
}

/// The headers every event test sends besides the content type.
const CLIENT_HEADERS: [(&str, &str); 3] = [
    ("Authorization", "Bearer test-admin-token"),
    ("Cookie", "session=abc"),
    ("X-Custom", "custom-value"),
];

fn post_with_headers(server: &TestServer, path: &str, body: &Value, extra: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/fhir+json")];
    headers.extend(CLIENT_HEADERS);
    headers.extend(extra);
    send("POST", &server.url(path), &headers, Some(body.to_string().as_bytes()))
}

fn assert_headers_without_credentials(event: &Value) {
    let headers = event["headers"].as_object().expect("event.headers is an object");
    assert_eq!(headers.get("x-custom"), Some(&json!("custom-value")), "{headers:?}");
    assert!(
        headers
            .keys()
            .all(|name| !name.eq_ignore_ascii_case("authorization") && !name.eq_ignore_ascii_case("cookie")),
        "{headers:?}"
    );
}

#[test]
fn an_updated_bot_is_what_the_next_execution_sees() {
    let server = TestServer::example();
    let bot = secret_bot(
        &server,
        "exports.handler = async (medplum, event) => [event.bot.display, event.secrets];",
    );
    assert_eq!(
        executed(&server, &bot, &json!({})),
        json!(["eventful", {"apiKey": {"name": "apiKey", "valueString": "s3cret"}}])
    );
    assert_eq!(audit_events_of(&server, &bot, 1).len(), 1);
    // The stored Bot (with its code) under a new name, with a new secret and no AuditEvents.
    let mut stored = server.get(&format!("/Bot/{bot}")).json();
    stored["name"] = json!("renamed");
    stored["secret"] = json!([{"name": "token", "valueString": "t0ken"}]);
    stored["auditEventTrigger"] = json!("never");
    let reply = send(
        "PUT",
        &server.url(&format!("/Bot/{bot}")),
        &[("Content-Type", "application/fhir+json")],
        Some(stored.to_string().as_bytes()),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        executed(&server, &bot, &json!({})),
        json!(["renamed", {"token": {"name": "token", "valueString": "t0ken"}}])
    );
    // The writer keeps order: once a later execution's event is stored, this one's would be.
    let later = new_bot(&server, "exports.handler = async () => 'later';");
    assert_eq!(executed(&server, &later, &json!({})), json!("later"));
    audit_events_of(&server, &later, 1);
    assert_eq!(audit_events_of(&server, &bot, 1).len(), 1, "auditEventTrigger never");
}

#[test]
fn execute_event_carries_input_content_type_bot_secrets_and_trace_id() {
    let server = TestServer::example();
    let bot = secret_bot(&server, "exports.handler = async (medplum, event) => event;");
    let patient = json!({"resourceType": "Patient", "name": [{"family": "Bare"}]});
    let wrapped = parameters(json!([{"name": "patient", "resource": patient}, {"name": "n", "valueInteger": 1}]));
    for input in [&patient, &wrapped] {
        let reply = post_with_headers(&server, &format!("/Bot/{bot}/$execute"), input, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(RAW_JSON));
        let event = reply.json();
        assert_eq!(&event["input"], input);
        assert_eq!(event["contentType"], "application/fhir+json");
        assert_eq!(event["bot"]["reference"], format!("Bot/{bot}"));
        assert_eq!(
            event["secrets"],
            json!({"apiKey": {"name": "apiKey", "valueString": "s3cret"}})
        );
        let trace = event["traceId"].as_str().expect("a traceId");
        assert!(!trace.is_empty());
        assert!(event["headers"].is_object(), "{event}");
    }
}

#[test]
fn execute_event_headers_exclude_authorization_and_cookie() {
    let server = TestServer::example();
    let bot = secret_bot(&server, "exports.handler = async (medplum, event) => event;");
    let reply = post_with_headers(&server, &format!("/Bot/{bot}/$execute"), &json!({"x": 1}), &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_headers_without_credentials(&reply.json());
}

/// A Bot operation returning `event` inside a resource (`return` is a `Resource`).
fn event_operation(server: &TestServer) -> String {
    let bot = secret_bot(
        server,
        "exports.handler = async (medplum, event) => ({resourceType: 'Basic', event: event});",
    );
    define(
        server,
        &bot,
        json!({"code": "eventful", "resource": ["Patient"], "type": true, "instance": true, "parameter": [
            {"name": "count", "use": "in", "min": 0, "max": "1", "type": "integer"},
            {"name": "flag", "use": "in", "min": 0, "max": "1", "type": "boolean"},
            {"name": "subject", "use": "in", "min": 0, "max": "1", "type": "Patient"},
            {"name": "tag", "use": "in", "min": 0, "max": "*", "type": "string"},
            {"name": "pair", "use": "in", "min": 0, "max": "1", "part": [
                {"name": "a", "use": "in", "min": 1, "max": "1", "type": "string"},
                {"name": "b", "use": "in", "min": 0, "max": "1", "type": "integer"}
            ]},
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Resource"}
        ]}),
    );
    bot
}

#[test]
fn operation_event_has_typed_parameters_headers_and_the_bot() {
    let server = TestServer::example();
    let bot = event_operation(&server);
    let subject = json!({"resourceType": "Patient", "name": [{"family": "Subject"}]});
    let body = parameters(json!([
        {"name": "count", "valueInteger": 7},
        {"name": "flag", "valueBoolean": true},
        {"name": "subject", "resource": subject},
        {"name": "tag", "valueString": "a"},
        {"name": "tag", "valueString": "b"},
        {"name": "pair", "part": [{"name": "a", "valueString": "x"}, {"name": "b", "valueInteger": 2}]},
    ]));
    let reply = post_with_headers(&server, "/Patient/$eventful", &body, &[("X-Trace-Id", "trace-123")]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    let returned = reply.json();
    assert_eq!(returned["resourceType"], "Basic");
    let event = &returned["event"];
    assert_eq!(
        event["parameters"],
        json!({"count": 7, "flag": true, "subject": subject, "tag": ["a", "b"], "pair": {"a": "x", "b": 2}})
    );
    assert_eq!(event["input"], body, "a Parameters body stays a Parameters");
    assert_eq!(event["contentType"], "application/fhir+json");
    assert_eq!(event["traceId"], "trace-123");
    assert_eq!(event["bot"]["reference"], format!("Bot/{bot}"));
    assert_eq!(
        event["secrets"],
        json!({"apiKey": {"name": "apiKey", "valueString": "s3cret"}})
    );
    assert_headers_without_credentials(event);
    assert!(event.get("resource").is_none(), "no target at the type level: {event}");

    // A bare Patient body stays bare and binds to the one resource parameter.
    let reply = post_with_headers(&server, "/Patient/$eventful", &subject, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event = &reply.json()["event"];
    assert_eq!(event["input"], subject);
    assert_eq!(event["parameters"], json!({"subject": subject}));
    assert!(
        event["traceId"].as_str().is_some_and(|trace| !trace.is_empty()),
        "{event}"
    );

    // GET: the query is the input; the parameters are typed.
    let reply = server.get("/Patient/$eventful?count=3&flag=false&tag=a&tag=b");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event = &reply.json()["event"];
    assert_eq!(
        event["input"],
        json!({"count": "3", "flag": "false", "tag": ["a", "b"]})
    );
    assert_eq!(
        event["parameters"],
        json!({"count": 3, "flag": false, "tag": ["a", "b"]})
    );
}

#[test]
fn instance_operation_event_has_the_target_resource() {
    let server = TestServer::example();
    event_operation(&server);
    let created = server.post_json(
        "/Patient",
        &json!({"resourceType": "Patient", "name": [{"family": "Target"}]}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("an id").to_owned();
    let stored = server.get(&format!("/Patient/{id}")).json();
    let reply = server.get(&format!("/Patient/{id}/$eventful?count=1"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let event = &reply.json()["event"];
    assert_eq!(event["resource"], stored);
    assert_eq!(event["input"], json!({"count": "1"}));
    assert_eq!(event["parameters"], json!({"count": 1}));
    let reply = server.post_json(
        &format!("/Patient/{id}/$eventful"),
        &parameters(json!([{"name": "flag", "valueBoolean": true}])),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["event"]["resource"], stored);
    let missing = server.get("/Patient/no-such-patient/$eventful");
    assert_eq!(missing.status, 404, "{}", missing.body);
    assert_eq!(missing.issue_codes(), ["not-found"]);
}

// ---------------------------------------------------------------------------------------
// 8. Output shapes
// ---------------------------------------------------------------------------------------

/// One Bot behind several definitions: it returns what `event.input.case` names.
const SHAPES_BOT: &str = r#"exports.handler = async function (medplum, event) {
  switch (event.input.case) {
    case 'patient': return {resourceType: 'Patient', id: 'p1', name: [{family: 'Shape'}]};
    case 'observation': return {resourceType: 'Observation', status: 'final', code: {text: 'x'}};
    case 'many': return {
      count: 2,
      note: 'hi',
      flag: true,
      when: '2024-01-02T03:04:05Z',
      patient: [{resourceType: 'Patient', id: 'a'}, {resourceType: 'Patient', id: 'b'}],
      coding: {system: 'urn:s', code: 'c'},
      pair: [{a: 'x', n: 1}, {a: 'y'}],
    };
    case 'missing': return {note: 'no count'};
    case 'string-count': return {count: 'two'};
    case 'unknown-out': return {count: 1, other: 2};
    default: return {anything: 'at all'};
  }
};"#;

fn case(name: &str) -> String {
    format!("case={name}")
}

#[test]
fn output_is_shaped_by_the_out_parameters() {
    let server = TestServer::example();
    let bot = new_bot(&server, SHAPES_BOT);
    let case_in = json!({"name": "case", "use": "in", "min": 1, "max": "1", "type": "string"});
    define(
        &server,
        &bot,
        json!({"code": "shape-resource", "system": true, "parameter": [
            case_in, {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Patient"}
        ]}),
    );
    define(
        &server,
        &bot,
        json!({"code": "shape-none", "system": true, "parameter": [case_in]}),
    );
    define(
        &server,
        &bot,
        json!({"code": "shape-many", "system": true, "parameter": [
            case_in,
            {"name": "count", "use": "out", "min": 1, "max": "1", "type": "integer"},
            {"name": "note", "use": "out", "min": 0, "max": "1", "type": "string"},
            {"name": "flag", "use": "out", "min": 0, "max": "1", "type": "boolean"},
            {"name": "when", "use": "out", "min": 0, "max": "1", "type": "dateTime"},
            {"name": "patient", "use": "out", "min": 0, "max": "*", "type": "Patient"},
            {"name": "coding", "use": "out", "min": 0, "max": "1", "type": "Coding"},
            {"name": "pair", "use": "out", "min": 0, "max": "*", "part": [
                {"name": "a", "use": "out", "min": 1, "max": "1", "type": "string"},
                {"name": "n", "use": "out", "min": 0, "max": "1", "type": "integer"}
            ]}
        ]}),
    );

    let reply = server.get(&format!("/$shape-resource?{}", case("patient")));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(
        reply.json(),
        json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Shape"}]})
    );

    let reply = server.get(&format!("/$shape-none?{}", case("anything")));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!({"resourceType": "Parameters"}));

    let reply = server.get(&format!("/$shape-many?{}", case("many")));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(
        reply.json(),
        parameters(json!([
            {"name": "count", "valueInteger": 2},
            {"name": "note", "valueString": "hi"},
            {"name": "flag", "valueBoolean": true},
            {"name": "when", "valueDateTime": "2024-01-02T03:04:05Z"},
            {"name": "patient", "resource": {"resourceType": "Patient", "id": "a"}},
            {"name": "patient", "resource": {"resourceType": "Patient", "id": "b"}},
            {"name": "coding", "valueCoding": {"system": "urn:s", "code": "c"}},
            {"name": "pair", "part": [{"name": "a", "valueString": "x"}, {"name": "n", "valueInteger": 1}]},
            {"name": "pair", "part": [{"name": "a", "valueString": "y"}]},
        ]))
    );
    // The order of the entries is the definition's.
    let names: Vec<Value> = reply.json()["parameter"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["name"].clone())
        .collect();
    assert_eq!(
        names,
        [
            "count", "note", "flag", "when", "patient", "patient", "coding", "pair", "pair"
        ]
    );
}

#[test]
fn output_that_does_not_match_the_definition_is_a_500() {
    let server = TestServer::example();
    let bot = new_bot(&server, SHAPES_BOT);
    let case_in = json!({"name": "case", "use": "in", "min": 1, "max": "1", "type": "string"});
    define(
        &server,
        &bot,
        json!({"code": "shape-resource", "system": true, "parameter": [
            case_in, {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Patient"}
        ]}),
    );
    define(
        &server,
        &bot,
        json!({"code": "shape-counted", "system": true, "parameter": [
            case_in,
            {"name": "count", "use": "out", "min": 1, "max": "1", "type": "integer"},
            {"name": "note", "use": "out", "min": 0, "max": "1", "type": "string"}
        ]}),
    );
    let cases = [
        (
            "/$shape-resource",
            "observation",
            vec!["'return'", "Patient", "Observation"],
        ),
        ("/$shape-resource", "anything", vec!["'return'", "Patient"]),
        ("/$shape-counted", "missing", vec!["'count'", "required"]),
        ("/$shape-counted", "string-count", vec!["'count'", "integer"]),
        ("/$shape-counted", "unknown-out", vec!["'other'"]),
    ];
    for (path, name, expected) in cases {
        let reply = server.get(&format!("{path}?{}", case(name)));
        assert_eq!(reply.status, 500, "{path} {name}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.issue_codes(), ["exception"], "{}", reply.body);
        let message = reply.diagnostics();
        assert!(
            message.starts_with("the Bot's value does not match the OperationDefinition: "),
            "{message}"
        );
        for part in expected {
            assert!(message.contains(part), "{path} {name}: {message} should name {part}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// 9. Failures
// ---------------------------------------------------------------------------------------

#[test]
fn a_throw_is_a_400_with_the_message_and_line() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async function (medplum, event) {\n  const x = 1;\n  throw new Error('boom ' + x);\n};",
    );
    let reply = execute(&server, &bot, &json!({}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["processing"]);
    let message = reply.diagnostics();
    assert!(message.contains("boom 1"), "{message}");
    assert!(message.contains("line 3"), "{message}");
    // The same through an operation, and for a TypeError the engine raises.
    let typed = new_bot(
        &server,
        "exports.handler = async function (medplum, event) {\n\n\n  return event.input.missing.deeper;\n};",
    );
    define(&server, &typed, json!({"code": "type-error", "system": true}));
    let reply = server.post_json("/$type-error", &parameters(json!([])));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["processing"]);
    let message = reply.diagnostics();
    assert!(message.contains("TypeError"), "{message}");
    assert!(message.contains("line 4"), "{message}");
}

#[test]
fn a_returned_operation_outcome_answers_with_its_status() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async (medplum, event) => ({resourceType: 'OperationOutcome', issue: [{severity: 'error', code: event.input.code, diagnostics: 'x'}]});",
    );
    define(
        &server,
        &bot,
        json!({"code": "fail-with", "system": true, "parameter": [
            {"name": "code", "use": "in", "min": 1, "max": "1", "type": "code"}
        ]}),
    );
    for (code, status) in [
        ("not-found", 404),
        ("forbidden", 403),
        ("conflict", 409),
        ("invalid", 400),
        ("processing", 400),
    ] {
        let reply = server.get(&format!("/$fail-with?code={code}"));
        assert_eq!(reply.status, status, "{code}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(
            reply.json(),
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": code, "diagnostics": "x"}]}),
            "{code}"
        );
    }
    // An informational outcome is a value, not an error.
    let info = new_bot(
        &server,
        "exports.handler = async () => ({resourceType: 'OperationOutcome', issue: [{severity: 'information', code: 'informational', diagnostics: 'fine'}]});",
    );
    define(
        &server,
        &info,
        json!({"code": "inform", "system": true, "parameter": [
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "OperationOutcome"}
        ]}),
    );
    let reply = server.post_json("/$inform", &parameters(json!([])));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json()["issue"][0]["diagnostics"], "fine");
}

// ---------------------------------------------------------------------------------------
// 10. The medplum API against the store
// ---------------------------------------------------------------------------------------

#[test]
fn medplum_create_read_update_and_search() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        r#"exports.handler = async function (medplum, event) {
  const created = await medplum.createResource({resourceType: 'Patient', name: [{family: 'Api'}], identifier: [{system: 'urn:api', value: '1'}]});
  const read = await medplum.readResource('Patient', created.id);
  const viaReference = await medplum.readReference({reference: 'Patient/' + created.id});
  const updated = await medplum.updateResource({...read, gender: 'female'});
  const bundle = await medplum.search('Patient', {identifier: 'urn:api|1'});
  const list = await medplum.searchResources('Patient', 'identifier=urn:api|1');
  const one = await medplum.searchOne('Patient', {identifier: 'urn:api|1'});
  const none = await medplum.searchOne('Patient', {identifier: 'urn:api|none'});
  return {created, read, viaReference, updated, bundle, list, one, noneIsUndefined: none === undefined};
};"#,
    );
    let value = executed(&server, &bot, &json!({}));
    let created = &value["created"];
    let id = created["id"].as_str().expect("an id");
    assert_eq!(created["resourceType"], "Patient");
    assert_eq!(created["name"], json!([{"family": "Api"}]));
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(&value["read"], created);
    assert_eq!(&value["viaReference"], created);
    assert_eq!(value["updated"]["id"], id);
    assert_eq!(value["updated"]["gender"], "female");
    assert_eq!(value["updated"]["meta"]["versionId"], "2");
    let bundle = &value["bundle"];
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 1);
    assert_eq!(bundle["entry"][0]["resource"], value["updated"]);
    assert_eq!(value["list"], json!([value["updated"]]));
    assert_eq!(value["one"], value["updated"]);
    assert_eq!(value["noneIsUndefined"], true);
    // The writes are in the store.
    let stored = server.get(&format!("/Patient/{id}"));
    assert_eq!(stored.status, 200, "{}", stored.body);
    assert_eq!(stored.json(), value["updated"]);
}

#[test]
fn medplum_upsert_creates_then_updates_by_query() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        r#"exports.handler = async (medplum, event) =>
  medplum.upsertResource({resourceType: 'Patient', identifier: [{system: 'urn:up', value: '1'}], name: [{family: event.input.family}]}, 'identifier=urn:up|1');"#,
    );
    let first = executed(&server, &bot, &json!({"family": "First"}));
    assert_eq!(first["meta"]["versionId"], "1");
    assert_eq!(first["name"], json!([{"family": "First"}]));
    let second = executed(&server, &bot, &json!({"family": "Second"}));
    assert_eq!(second["id"], first["id"]);
    assert_eq!(second["meta"]["versionId"], "2");
    assert_eq!(second["name"], json!([{"family": "Second"}]));
    let found = server.get("/Patient?identifier=urn:up|1").json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"], second);
}

#[test]
fn medplum_patch_delete_and_batch() {
    let server = TestServer::example();
    let created = server.post_json(
        "/Patient",
        &json!({"resourceType": "Patient", "name": [{"family": "Before"}]}),
    );
    assert_eq!(created.status, 201, "{}", created.body);
    let id = created.json()["id"].as_str().expect("an id").to_owned();
    let patch = new_bot(
        &server,
        r#"exports.handler = async (medplum, event) => medplum.patchResource('Patient', event.input.id, [
  {op: 'add', path: '/gender', value: 'male'},
  {op: 'replace', path: '/name/0/family', value: 'Patched'},
]);"#,
    );
    let patched = executed(&server, &patch, &json!({ "id": id }));
    assert_eq!(patched["id"], id.as_str());
    assert_eq!(patched["gender"], "male");
    assert_eq!(patched["name"], json!([{"family": "Patched"}]));
    assert_eq!(patched["meta"]["versionId"], "2");
    assert_eq!(server.get(&format!("/Patient/{id}")).json(), patched);

    let delete = new_bot(
        &server,
        r#"exports.handler = async function (medplum, event) {
  const deleted = await medplum.deleteResource('Patient', event.input.id);
  try {
    await medplum.readResource('Patient', event.input.id);
    return {deleted, readAfter: 'succeeded'};
  } catch (e) {
    return {deleted: deleted === undefined ? 'undefined' : deleted, readAfter: e.outcome};
  }
};"#,
    );
    let value = executed(&server, &delete, &json!({ "id": id }));
    assert_eq!(value["readAfter"]["resourceType"], "OperationOutcome", "{value}");
    assert_eq!(value["readAfter"]["issue"][0]["code"], "deleted", "{value}");
    let gone = server.get(&format!("/Patient/{id}"));
    assert_eq!(gone.status, 410, "{}", gone.body);

    let batch = new_bot(
        &server,
        r#"exports.handler = async (medplum) => medplum.executeBatch({resourceType: 'Bundle', type: 'batch', entry: [
  {request: {method: 'POST', url: 'Patient'}, resource: {resourceType: 'Patient', name: [{family: 'Batched'}]}},
  {request: {method: 'POST', url: 'Observation'}, resource: {resourceType: 'Observation', status: 'final', code: {text: 'x'}}},
]});"#,
    );
    let response = executed(&server, &batch, &json!({}));
    assert_eq!(response["resourceType"], "Bundle");
    assert_eq!(response["type"], "batch-response");
    let statuses: Vec<Value> = response["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .map(|entry| entry["response"]["status"].clone())
        .collect();
    assert_eq!(statuses, ["201 Created", "201 Created"]);
    assert_eq!(total(&server, "/Patient?family=Batched"), 1);
    assert_eq!(total(&server, "/Observation"), 1);
}

#[test]
fn medplum_errors_reject_with_an_error_carrying_the_outcome() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        r#"exports.handler = async function (medplum, event) {
  try {
    await medplum.readResource('Patient', 'missing');
    return 'no error';
  } catch (e) {
    return {isError: e instanceof Error, message: e.message, outcome: e.outcome};
  }
};"#,
    );
    assert_eq!(
        executed(&server, &bot, &json!({})),
        json!({
            "isError": true,
            "message": "Patient/missing is not known",
            "outcome": {"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "not-found", "diagnostics": "Patient/missing is not known"
            }]}
        })
    );
    let invalid = new_bot(
        &server,
        r#"exports.handler = async function (medplum) {
  try {
    await medplum.createResource({name: 'no type'});
    return 'no error';
  } catch (e) {
    return e.outcome;
  }
};"#,
    );
    let outcome = executed(&server, &invalid, &json!({}));
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "invalid");
    // Not caught, the rejection fails the execution.
    let uncaught = new_bot(
        &server,
        "exports.handler = async function (medplum) {\n  return await medplum.readResource('Patient', 'missing');\n};",
    );
    let reply = execute(&server, &uncaught, &json!({}));
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["processing"]);
    assert!(
        reply.diagnostics().contains("Patient/missing is not known"),
        "{}",
        reply.body
    );
}

/// Polls `[base]/AuditEvent` until one names `Bot/{bot}`, a bounded number of times.
fn audit_events_of(server: &TestServer, bot: &str, expected: usize) -> Vec<Value> {
    let reference = format!("Bot/{bot}");
    for _ in 0..500 {
        let events: Vec<Value> = server.get("/AuditEvent?_count=1000").json()["entry"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter()
            .map(|entry| entry["resource"].clone())
            .filter(|event| event["entity"][0]["what"]["reference"] == reference.as_str())
            .collect();
        if events.len() >= expected {
            return events;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("no AuditEvent for {reference} after 500 polls");
}

#[test]
fn console_output_ends_up_in_the_audit_event() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async function (medplum, event) {\n  console.log('hello', {a: 1});\n  console.warn('careful');\n  return 'done';\n};",
    );
    assert_eq!(executed(&server, &bot, &json!({})), json!("done"));
    let events = audit_events_of(&server, &bot, 1);
    assert_eq!(events.len(), 1, "{events:?}");
    let event = &events[0];
    assert_eq!(event["resourceType"], "AuditEvent");
    assert_eq!(event["outcome"], "0");
    assert_eq!(event["outcomeDesc"], "log: hello {\"a\":1}\nwarn: careful");
    assert_eq!(event["source"]["observer"]["reference"], format!("Bot/{bot}"));
    assert_eq!(event["type"]["code"], "execute");
    assert!(event["id"].is_string() && event["meta"]["versionId"] == "1", "{event}");

    // A failed execution is recorded too, with its error.
    let failing = new_bot(
        &server,
        "exports.handler = async function () {\n  console.log('before');\n  throw new Error('broken');\n};",
    );
    assert_eq!(execute(&server, &failing, &json!({})).status, 400);
    let events = audit_events_of(&server, &failing, 1);
    assert_eq!(events[0]["outcome"], "4");
    assert_eq!(events[0]["entity"][0]["what"]["reference"], format!("Bot/{failing}"));
    let description = events[0]["outcomeDesc"].as_str().expect("a description");
    assert!(description.contains("broken"), "{description}");
}

const AUDITED_BOT: &str = "exports.handler = async function (medplum, event) {\n  if (event.input.say) console.log(event.input.say);\n  if (event.input.fail) throw new Error('failed');\n  return 'ok';\n};";

/// A Bot with `trigger` as its auditEventTrigger, run through a quiet success, a success
/// with console output and a failure, in that order.
fn run_audited_bot(server: &TestServer, trigger: &str) -> String {
    let bot = create(
        server,
        &json!({"resourceType": "Bot", "name": "audited", "auditEventTrigger": trigger}),
    );
    deployed(server, &bot, AUDITED_BOT);
    assert_eq!(executed(server, &bot, &json!({})), json!("ok"));
    assert_eq!(executed(server, &bot, &json!({"say": "something"})), json!("ok"));
    assert_eq!(execute(server, &bot, &json!({"fail": true})).status, 400);
    bot
}

/// What each recorded execution of `bot` was (quiet, output, error), sorted.
fn recorded_kinds(events: &[Value]) -> Vec<&'static str> {
    let mut kinds: Vec<&'static str> = events
        .iter()
        .map(
            |event| match (event["outcome"].as_str(), event["outcomeDesc"].as_str()) {
                (Some("4"), _) => "error",
                // A quiet run has no description at all (FHIR strings are never empty).
                (_, None) => "quiet",
                _ => "output",
            },
        )
        .collect();
    kinds.sort_unstable();
    kinds
}

#[test]
fn the_audit_event_trigger_decides_which_executions_are_recorded() {
    let server = TestServer::example();
    // Medplum's values. Each Bot's failure is recorded (except with `never`) and comes last;
    // the writer keeps order, so once it is stored every earlier event is too.
    let never = run_audited_bot(&server, "never");
    for (trigger, expected) in [
        ("always", vec!["error", "output", "quiet"]),
        ("on-error", vec!["error"]),
        ("on-output", vec!["error", "output"]),
    ] {
        let bot = run_audited_bot(&server, trigger);
        let events = audit_events_of(&server, &bot, expected.len());
        assert_eq!(recorded_kinds(&events), expected, "{trigger}");
    }
    // Recorded before the others, had it been recorded at all.
    assert_eq!(audit_events_of(&server, &never, 0), Vec::<Value>::new());
    // No trigger is `always`.
    let default = new_bot(&server, AUDITED_BOT);
    assert_eq!(executed(&server, &default, &json!({})), json!("ok"));
    assert_eq!(recorded_kinds(&audit_events_of(&server, &default, 1)), ["quiet"]);
}

#[test]
fn console_output_of_a_failed_execution_is_kept_in_the_audit_event() {
    let server = TestServer::example();
    let failing = new_bot(
        &server,
        "exports.handler = async function () {\n  console.log('before');\n  throw new Error('broken');\n};",
    );
    assert_eq!(execute(&server, &failing, &json!({})).status, 400);
    let events = audit_events_of(&server, &failing, 1);
    assert_eq!(events[0]["outcome"], "4");
    let description = events[0]["outcomeDesc"].as_str().expect("a description");
    assert!(description.starts_with("log: before\n"), "{description}");
    assert!(description.contains("broken"), "{description}");
}
