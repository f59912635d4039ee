//! Bots under pressure: time, memory and stack limits, promises that never settle, 100
//! concurrent invocations, a redeploy while requests are in flight, and a restart on the
//! same data directory.

mod common;

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;

use common::{FHIR_JSON, Reply, TestServer, create, define, deployed, new_bot, parameters};
use serde_json::json;

fn execute(server: &TestServer, bot: &str) -> Reply {
    server.post_json(&format!("/Bot/{bot}/$execute"), &json!({}))
}

// ---------------------------------------------------------------------------------------
// Limits
// ---------------------------------------------------------------------------------------

#[test]
fn an_infinite_loop_ends_at_the_bots_timeout_with_504() {
    let server = TestServer::example();
    let bot = create(&server, &json!({"resourceType": "Bot", "name": "looper", "timeout": 1}));
    deployed(
        &server,
        &bot,
        "exports.handler = async function () {\n  for (;;) {}\n};",
    );
    let reply = execute(&server, &bot);
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["timeout"]);
    assert_eq!(reply.diagnostics(), "the Bot did not finish within 1000 ms");
    // The same through an operation.
    define(&server, &bot, json!({"code": "loop", "system": true}));
    let reply = server.post_json("/$loop", &parameters(json!([])));
    assert_eq!(reply.status, 504, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["timeout"]);
    // The workers are free again.
    let quick = new_bot(&server, "exports.handler = async () => 'quick';");
    let reply = execute(&server, &quick);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), json!("quick"));
}

#[test]
fn an_allocation_bomb_is_too_costly_and_the_next_bot_still_runs() {
    let server = TestServer::example();
    let bomb = new_bot(
        &server,
        "exports.handler = async function () {\n  const a = [];\n  for (;;) a.push('x'.repeat(1000) + a.length);\n};",
    );
    let other = new_bot(&server, "exports.handler = async (medplum, event) => ({ok: true});");
    let reply = execute(&server, &bomb);
    assert_eq!(reply.status, 500, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["too-costly"]);
    assert_eq!(reply.diagnostics(), "the Bot ran out of memory");
    // Every worker (2 in the test configuration) answers again, several times.
    for _ in 0..6 {
        let reply = execute(&server, &other);
        assert_eq!(reply.status, 200, "{}", reply.body);
        assert_eq!(reply.json(), json!({"ok": true}));
    }
    // And the bomb fails the same way a second time.
    let again = execute(&server, &bomb);
    assert_eq!(again.status, 500, "{}", again.body);
    assert_eq!(again.issue_codes(), ["too-costly"]);
}

#[test]
fn deep_recursion_is_a_400_naming_the_stack() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "function f(n) {\n  return f(n + 1) + 1;\n}\nexports.handler = async function () {\n  return f(0);\n};",
    );
    let reply = execute(&server, &bot);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["processing"]);
    let message = reply.diagnostics();
    assert!(message.contains("stack"), "{message}");
    let reply = execute(&server, &new_bot(&server, "exports.handler = async () => 1;"));
    assert_eq!((reply.status, reply.json()), (200, json!(1)));
}

#[test]
fn a_promise_that_never_settles_is_a_400() {
    let server = TestServer::example();
    let bot = new_bot(
        &server,
        "exports.handler = async function () {\n  return new Promise(() => {});\n};",
    );
    let reply = execute(&server, &bot);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["processing"]);
    assert!(reply.diagnostics().contains("never settled"), "{}", reply.body);
    // Awaiting it inside the handler is the same.
    let awaiting = new_bot(
        &server,
        "exports.handler = async function () {\n  await new Promise(() => {});\n  return 'unreachable';\n};",
    );
    let reply = execute(&server, &awaiting);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["processing"]);
}

// ---------------------------------------------------------------------------------------
// Concurrency
// ---------------------------------------------------------------------------------------

#[test]
fn a_hundred_concurrent_invocations_get_their_own_results() {
    let server = Arc::new(TestServer::example());
    let bot = new_bot(
        &server,
        "exports.handler = async (medplum, event) => ({n: event.parameters.n * 2, echo: event.parameters.label});",
    );
    define(
        &server,
        &bot,
        json!({"code": "double", "system": true, "parameter": [
            {"name": "n", "use": "in", "min": 1, "max": "1", "type": "integer"},
            {"name": "label", "use": "in", "min": 1, "max": "1", "type": "string"},
            {"name": "n", "use": "out", "min": 1, "max": "1", "type": "integer"},
            {"name": "echo", "use": "out", "min": 1, "max": "1", "type": "string"}
        ]}),
    );
    let count = 100;
    let start = Arc::new(Barrier::new(count));
    let threads: Vec<_> = (0..count)
        .map(|i| {
            let (server, start) = (server.clone(), start.clone());
            thread::spawn(move || {
                start.wait();
                let body = parameters(json!([
                    {"name": "n", "valueInteger": i},
                    {"name": "label", "valueString": format!("call-{i}")}
                ]));
                (i, server.post_json("/$double", &body))
            })
        })
        .collect();
    for handle in threads {
        let (i, reply) = handle.join().expect("the thread finished");
        assert_eq!(reply.status, 200, "call {i}: {}", reply.body);
        assert_eq!(
            reply.json(),
            parameters(json!([
                {"name": "n", "valueInteger": i * 2},
                {"name": "echo", "valueString": format!("call-{i}")}
            ])),
            "call {i}"
        );
    }
}

#[test]
fn a_redeploy_while_requests_are_in_flight_answers_old_or_new() {
    let server = Arc::new(TestServer::example());
    let bot = new_bot(&server, "exports.handler = async () => 'old';");
    define(
        &server,
        &bot,
        json!({"code": "which", "system": true, "parameter": [
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "string"}
        ]}),
    );
    let answer = |text: &str| parameters(json!([{"name": "return", "valueString": text}]));
    let deployed_flag = Arc::new(AtomicBool::new(false));
    let (results, received) = mpsc::channel::<(usize, bool, Reply)>();
    let clients = 6;
    let threads: Vec<_> = (0..clients)
        .map(|client| {
            let (server, deployed_flag, results) = (server.clone(), deployed_flag.clone(), results.clone());
            thread::spawn(move || {
                // Until a request that started after the redeploy has answered (bounded).
                for _ in 0..5_000 {
                    let after_deploy = deployed_flag.load(Ordering::SeqCst);
                    let reply = server.post_json("/$which", &parameters(json!([])));
                    let done = after_deploy;
                    results
                        .send((client, after_deploy, reply))
                        .expect("the test is listening");
                    if done {
                        return;
                    }
                }
            })
        })
        .collect();
    drop(results);
    // Let some requests answer with the old code first.
    let mut seen = Vec::new();
    while seen.len() < 3 * clients {
        seen.push(received.recv().expect("requests answer"));
    }
    deployed(&server, &bot, "exports.handler = async () => 'new';");
    deployed_flag.store(true, Ordering::SeqCst);
    seen.extend(received.iter());
    for handle in threads {
        handle.join().expect("the client finished");
    }
    let (old, new) = (answer("old"), answer("new"));
    let mut saw_new = vec![false; clients];
    for (client, after_deploy, reply) in &seen {
        assert_eq!(reply.status, 200, "{}", reply.body);
        let body = reply.json();
        assert!(body == old || body == new, "{body}");
        if *after_deploy {
            assert_eq!(
                body, new,
                "a request sent after the redeploy answered with the old code"
            );
        }
        if body == new {
            saw_new[*client] = true;
        } else {
            assert!(!saw_new[*client], "client {client} saw the old code after the new one");
        }
    }
    assert!(
        saw_new.iter().all(|saw| *saw),
        "every client finished with the new code"
    );
    assert!(
        seen.iter().filter(|(_, _, reply)| reply.json() == old).count() >= 3 * clients,
        "the old code answered first"
    );
}

// ---------------------------------------------------------------------------------------
// Restart
// ---------------------------------------------------------------------------------------

/// A unique directory under the system's temp dir, removed when dropped.
struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_nanos();
        let path = std::env::temp_dir().join(format!("fhirop-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("the temp dir");
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

#[test]
fn bot_operations_survive_a_restart_on_the_same_data_dir() {
    let dir = TempDir::new("bots-restart");
    let config = || {
        let mut config = fhirop_server::Config::for_tests();
        config.memory = false;
        config.data_dir = dir.0.clone();
        config
    };
    let first = TestServer::example_with(config());
    let bot = new_bot(
        &first,
        "exports.handler = async (medplum, event) => 'persisted ' + event.parameters.who;",
    );
    let id = define(
        &first,
        &bot,
        json!({"code": "persisted", "resource": ["Patient"], "system": true, "type": true, "parameter": [
            {"name": "who", "use": "in", "min": 1, "max": "1", "type": "string"},
            {"name": "return", "use": "out", "min": 1, "max": "1", "type": "string"}
        ]}),
    );
    let expected = parameters(json!([{"name": "return", "valueString": "persisted Ada"}]));
    let reply = first.get("/Patient/$persisted?who=Ada");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), expected);
    drop(first);

    // The first server is no longer used; a new one starts on the same database.
    let second = TestServer::example_with(config());
    for path in ["/Patient/$persisted?who=Ada", "/$persisted?who=Ada"] {
        let reply = second.get(path);
        assert_eq!(reply.status, 200, "{path}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.json(), expected, "{path}");
    }
    let entry = json!({"name": "persisted", "definition": second.url(&format!("/OperationDefinition/{id}"))});
    let metadata = second.get("/metadata").json();
    assert!(
        metadata["rest"][0]["operation"]
            .as_array()
            .is_some_and(|operations| operations.contains(&entry)),
        "{}",
        metadata["rest"][0]["operation"]
    );
    let patient = metadata["rest"][0]["resource"]
        .as_array()
        .expect("resources")
        .iter()
        .find(|resource| resource["type"] == "Patient")
        .cloned()
        .expect("Patient");
    assert!(
        patient["operation"]
            .as_array()
            .is_some_and(|operations| operations.contains(&entry)),
        "{patient}"
    );
    let read = second.get(&format!("/OperationDefinition/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.json()["code"], "persisted");
    // The Bot's code survived too: a redeploy on the new server answers at once.
    deployed(
        &second,
        &bot,
        "exports.handler = async (medplum, event) => 'redeployed ' + event.parameters.who;",
    );
    assert_eq!(
        second.get("/$persisted?who=Ada").json(),
        parameters(json!([{"name": "return", "valueString": "redeployed Ada"}]))
    );
}
