mod common;

// Hostile input, black box: bad and stolen tokens, one project reaching into another, path
// tricks sent over a raw socket, header injection, oversized and deeply nested bodies, and the
// rate limit. Every case checks the exact answer and that nothing was stored or changed.

use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use common::{ADMIN_TOKEN, Reply, TestServer, as_client, client, origin, project, send, send_unauthenticated, token};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers: projects, clients and tokens (as tests/projects.rs makes them).
// ---------------------------------------------------------------------------------------------

/// A project with one client: (project id, client id, token).
fn tenant(server: &TestServer, name: &str) -> (String, String, String) {
    let project_id = project(server, name);
    let (client_id, secret) = client(server, &project_id);
    let access = token(server, &client_id, &secret);
    (project_id, client_id, access)
}

/// How many Patients the caller of `token` sees (`_summary=count`).
fn patient_count(server: &TestServer, token: &str) -> u64 {
    let reply = as_client(server, token, "GET", "/Patient?_summary=count", None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"].as_u64().unwrap()
}

fn patient(gender: &str) -> Value {
    json!({"resourceType": "Patient", "gender": gender})
}

/// Creates a Patient as the caller of `token`; its id.
fn create_patient(server: &TestServer, token: &str, gender: &str) -> String {
    let reply = as_client(server, token, "POST", "/Patient", Some(&patient(gender)));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().unwrap().to_owned()
}

/// A 401 `login` with a Bearer challenge; `error` is the challenge's `error` parameter.
fn assert_unauthorized(reply: &Reply, error: Option<&str>, case: &str) {
    assert_eq!(reply.status, 401, "{case}: {}", reply.body);
    assert_eq!(reply.issue_codes(), ["login"], "{case}");
    let challenge = reply
        .header("www-authenticate")
        .unwrap_or_else(|| panic!("{case}: no WWW-Authenticate"));
    assert!(challenge.starts_with("Bearer realm=\"fhirop\""), "{case}: {challenge}");
    match error {
        Some(error) => assert!(challenge.contains(&format!("error=\"{error}\"")), "{case}: {challenge}"),
        None => assert!(!challenge.contains("error="), "{case}: {challenge}"),
    }
}

/// Replaces every occurrence of each `ids` with `ID`, so two bodies can be compared by shape.
fn masked(body: &str, ids: &[&str]) -> Value {
    let mut text = body.to_owned();
    for id in ids {
        text = text.replace(id, "ID");
    }
    serde_json::from_str(&text).unwrap()
}

// ---------------------------------------------------------------------------------------------
// Helpers: a raw HTTP/1.1 client that sends bytes exactly as written.
// ---------------------------------------------------------------------------------------------

struct RawReply {
    status: u16,
    /// The status line and headers, as received.
    head: String,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl std::fmt::Debug for RawReply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}\n\n{}", self.head, String::from_utf8_lossy(&self.body))
    }
}

impl RawReply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|error| panic!("not JSON ({error}): {}", String::from_utf8_lossy(&self.body)))
    }

    fn issue_codes(&self) -> Vec<String> {
        let body = self.json();
        assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        body["issue"]
            .as_array()
            .unwrap()
            .iter()
            .map(|issue| issue["code"].as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// Undoes `Transfer-Encoding: chunked`.
fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let Some(line_end) = body.windows(2).position(|pair| pair == b"\r\n") else {
            return out;
        };
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        if size == 0 {
            return out;
        }
        let start = line_end + 2;
        let end = (start + size).min(body.len());
        out.extend_from_slice(&body[start..end]);
        body = body.get(end + 2..).unwrap_or_default();
    }
}

/// Writes `request` to the server as is and reads the whole response (the request is expected
/// to say `Connection: close`).
fn raw(addr: SocketAddr, request: &[u8]) -> RawReply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    stream.set_write_timeout(Some(Duration::from_secs(30))).unwrap();
    // The server may answer (and close) before it has read a body it refuses.
    let _ = stream.write_all(request);
    let _ = stream.flush();
    let mut bytes = Vec::new();
    // A reset after the response arrived still leaves the response in `bytes`.
    let _ = stream.read_to_end(&mut bytes);
    let head_end = bytes
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete response: {:?}", String::from_utf8_lossy(&bytes)));
    let head = String::from_utf8_lossy(&bytes[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let mut parts = status_line.splitn(3, ' ');
    assert_eq!(parts.next(), Some("HTTP/1.1"), "{status_line}");
    let status = parts
        .next()
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("bad status line: {status_line}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let mut body = bytes[head_end + 4..].to_vec();
    if headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.eq_ignore_ascii_case("chunked"))
    {
        body = dechunk(&body);
    }
    RawReply {
        status,
        head,
        headers,
        body,
    }
}

/// `METHOD target HTTP/1.1` as the admin, with `extra` header lines and an optional body.
fn raw_admin(server: &TestServer, method: &str, target: &str, extra: &str, body: Option<&[u8]>) -> RawReply {
    let mut request = format!(
        "{method} {target} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nAccept: application/fhir+json\r\n{extra}Connection: close\r\n",
        server.addr
    )
    .into_bytes();
    if let Some(body) = body {
        request.extend_from_slice(
            format!(
                "Content-Type: application/fhir+json\r\nContent-Length: {}\r\n",
                body.len()
            )
            .as_bytes(),
        );
    }
    request.extend_from_slice(b"\r\n");
    if let Some(body) = body {
        request.extend_from_slice(body);
    }
    raw(server.addr, &request)
}

fn assert_not_5xx(reply: &RawReply, case: &str) {
    assert!(
        reply.status < 500,
        "{case}: {} {}",
        reply.status,
        String::from_utf8_lossy(&reply.body)
    );
}

// ---------------------------------------------------------------------------------------------
// 1. Tokens
// ---------------------------------------------------------------------------------------------

#[test]
fn missing_garbled_and_forged_tokens_are_401_login_and_store_nothing() {
    let server = TestServer::example();
    let (_, _, good) = tenant(&server, "victim");
    let before = patient_count(&server, &good);
    let admin_before = patient_count(&server, ADMIN_TOKEN);

    let missing = send_unauthenticated("GET", &server.url("/Patient"), &[], None);
    assert_unauthorized(&missing, None, "no Authorization");
    let missing_post = send_unauthenticated(
        "POST",
        &server.url("/Patient"),
        &[("Content-Type", "application/fhir+json")],
        Some(patient("female").to_string().as_bytes()),
    );
    assert_unauthorized(&missing_post, None, "no Authorization, POST");

    // A flipped byte in the middle of the signature (`payload.signature`).
    let (payload, signature) = good.split_once('.').unwrap();
    let mut flipped = signature.as_bytes().to_vec();
    let middle = flipped.len() / 2;
    flipped[middle] = if flipped[middle] == b'A' { b'B' } else { b'A' };
    let flipped = format!("{payload}.{}", String::from_utf8(flipped).unwrap());
    assert_ne!(flipped, good);

    for (case, bad) in [
        ("garbled", "###"),
        ("random base64", "dGhpcyBpcyBub3QgYSB0b2tlbiBhdCBhbGwsIGp1c3QgYnl0ZXM="),
        ("JWT-looking", "a.b.c"),
        ("flipped signature byte", flipped.as_str()),
        ("admin token with a suffix", &format!("{ADMIN_TOKEN}x")),
    ] {
        assert_unauthorized(
            &as_client(&server, bad, "GET", "/Patient", None),
            Some("invalid_token"),
            case,
        );
        assert_unauthorized(
            &as_client(&server, bad, "POST", "/Patient", Some(&patient("female"))),
            Some("invalid_token"),
            case,
        );
    }
    // Not the Bearer scheme at all.
    let basic = send(
        "GET",
        &server.url("/Patient"),
        &[("Authorization", "Basic dXNlcjpwYXNz")],
        None,
    );
    assert_unauthorized(&basic, None, "Basic scheme");

    assert_eq!(patient_count(&server, &good), before, "nothing stored in the project");
    assert_eq!(
        patient_count(&server, ADMIN_TOKEN),
        admin_before,
        "nothing stored in the default project"
    );
    // The genuine token still works after all that.
    assert_eq!(as_client(&server, &good, "GET", "/Patient", None).status, 200);
}

#[test]
fn an_expired_token_is_401_login() {
    let mut config = fhirop_server::Config::for_tests();
    config.token_ttl = 0;
    let server = TestServer::example_with(config);
    let admin_before = patient_count(&server, ADMIN_TOKEN);
    let (_, _, expired) = tenant(&server, "short-lived");
    assert_unauthorized(
        &as_client(&server, &expired, "GET", "/Patient", None),
        Some("invalid_token"),
        "expired, GET",
    );
    assert_unauthorized(
        &as_client(&server, &expired, "POST", "/Patient", Some(&patient("male"))),
        Some("invalid_token"),
        "expired, POST",
    );
    assert_eq!(patient_count(&server, ADMIN_TOKEN), admin_before);
}

#[test]
fn a_revoked_clients_token_is_401_login_and_stores_nothing() {
    let server = TestServer::example();
    let (project_id, revoked_client, revoked) = tenant(&server, "clinic");
    let (other_client, other_secret) = client(&server, &project_id);
    let other = token(&server, &other_client, &other_secret);
    create_patient(&server, &revoked, "female");
    assert_eq!(patient_count(&server, &other), 1);

    let deleted = send(
        "DELETE",
        &format!(
            "{}/admin/projects/{project_id}/client/{revoked_client}",
            origin(&server)
        ),
        &[],
        None,
    );
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    assert_unauthorized(
        &as_client(&server, &revoked, "GET", "/Patient", None),
        Some("invalid_token"),
        "revoked, GET",
    );
    assert_unauthorized(
        &as_client(&server, &revoked, "POST", "/Patient", Some(&patient("male"))),
        Some("invalid_token"),
        "revoked, POST",
    );
    assert_eq!(patient_count(&server, &other), 1, "the revoked token stored nothing");
}

// ---------------------------------------------------------------------------------------------
// 2. Cross-project
// ---------------------------------------------------------------------------------------------

#[test]
fn project_a_cannot_read_search_change_or_delete_project_bs_patient() {
    let server = TestServer::example();
    let (_, _, a) = tenant(&server, "a");
    let (_, _, b) = tenant(&server, "b");
    let b_id = create_patient(&server, &b, "female");
    let b_path = format!("/Patient/{b_id}");
    let b_before = as_client(&server, &b, "GET", &b_path, None);
    assert_eq!(b_before.status, 200);
    // An id of the same form that exists nowhere.
    let nowhere = "00000000-0000-4000-8000-000000000000";

    // Read: a 404 indistinguishable from a missing id.
    let read = as_client(&server, &a, "GET", &b_path, None);
    let missing = as_client(&server, &a, "GET", &format!("/Patient/{nowhere}"), None);
    assert_eq!(read.status, 404, "{}", read.body);
    assert_eq!(missing.status, 404);
    assert_eq!(read.issue_codes(), ["not-found"]);
    assert_eq!(masked(&read.body, &[&b_id]), masked(&missing.body, &[nowhere]));
    assert_eq!(read.header("content-type"), missing.header("content-type"));

    // Search: nothing of B's, by any route.
    for search in [
        format!("/Patient?_id={b_id}"),
        "/Patient?gender=female".to_owned(),
        "/Patient".to_owned(),
    ] {
        let reply = as_client(&server, &a, "GET", &search, None);
        assert_eq!(reply.status, 200, "{search}: {}", reply.body);
        assert_eq!(reply.json()["total"], 0, "{search}: {}", reply.body);
        assert!(reply.json().get("entry").is_none(), "{search}: {}", reply.body);
    }

    // Version read and batch: the same isolation.
    let vread = as_client(&server, &a, "GET", &format!("{b_path}/_history/1"), None);
    assert_eq!(vread.status, 404, "{}", vread.body);
    assert_eq!(vread.issue_codes(), ["not-found"]);
    let batch = as_client(
        &server,
        &a,
        "POST",
        "",
        Some(&json!({"resourceType": "Bundle", "type": "batch", "entry": [
            {"request": {"method": "GET", "url": format!("Patient/{b_id}")}},
            {"request": {"method": "DELETE", "url": format!("Patient/{b_id}")}},
        ]})),
    );
    assert_eq!(batch.status, 200, "{}", batch.body);
    assert!(!batch.body.contains("female"), "{}", batch.body);
    let statuses: Vec<Value> = batch.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| entry["response"]["status"].clone())
        .collect();
    // The read is B's 404; the delete is the idempotent no-op on A's side (nothing of B's).
    assert_eq!(
        statuses,
        [json!("404 Not Found"), json!("204 No Content")],
        "{}",
        batch.body
    );
    assert_eq!(
        batch.json()["entry"][0]["response"]["outcome"]["issue"][0]["code"],
        "not-found"
    );
    assert_eq!(as_client(&server, &b, "GET", &b_path, None).json(), b_before.json());

    // History: B's versions stay B's.
    let history = as_client(&server, &a, "GET", &format!("{b_path}/_history"), None);
    assert_eq!(history.status, 404, "{}", history.body);
    assert_eq!(history.issue_codes(), ["not-found"]);

    // Delete: 404, and B's Patient is still there for B.
    let delete = as_client(&server, &a, "DELETE", &b_path, None);
    assert_eq!(delete.status, 404, "{}", delete.body);
    assert_eq!(delete.issue_codes(), ["not-found"]);
    let after_delete = as_client(&server, &b, "GET", &b_path, None);
    assert_eq!(after_delete.status, 200);
    assert_eq!(after_delete.json(), b_before.json());

    // Update: A's PUT makes A's own Patient under that id (update-as-create); B's is untouched.
    let update = as_client(
        &server,
        &a,
        "PUT",
        &b_path,
        Some(&json!({"resourceType": "Patient", "id": b_id, "gender": "male"})),
    );
    assert_eq!(update.status, 201, "{}", update.body);
    assert_eq!(
        update.json()["meta"]["versionId"],
        "1",
        "a new resource, not B's version 2"
    );
    let after_update = as_client(&server, &b, "GET", &b_path, None);
    assert_eq!(after_update.status, 200);
    assert_eq!(after_update.json(), b_before.json(), "B's Patient is unchanged");
    assert_eq!(after_update.header("etag"), b_before.header("etag"));
    assert_eq!(patient_count(&server, &b), 1);
}

#[test]
fn project_a_cannot_run_everything_on_bs_patient_nor_bs_bot_operations() {
    let server = TestServer::example();
    let (_, _, a) = tenant(&server, "a");
    let (_, _, b) = tenant(&server, "b");
    let b_id = create_patient(&server, &b, "female");
    let nowhere = "00000000-0000-4000-8000-000000000000";

    let everything = as_client(&server, &a, "GET", &format!("/Patient/{b_id}/$everything"), None);
    let missing = as_client(&server, &a, "GET", &format!("/Patient/{nowhere}/$everything"), None);
    assert_eq!(everything.status, 404, "{}", everything.body);
    assert_eq!(everything.issue_codes(), ["not-found"]);
    assert_eq!(masked(&everything.body, &[&b_id]), masked(&missing.body, &[nowhere]));
    assert!(!everything.body.contains("female"));
    // B's own call works, so the 404 is isolation, not a broken operation.
    assert_eq!(
        as_client(&server, &b, "GET", &format!("/Patient/{b_id}/$everything"), None).status,
        200
    );

    // A Bot-backed system operation that only B defines.
    let bot = as_client(
        &server,
        &b,
        "POST",
        "/Bot",
        Some(&json!({"resourceType": "Bot", "name": "only-b"})),
    );
    assert_eq!(bot.status, 201, "{}", bot.body);
    let bot_id = bot.json()["id"].as_str().unwrap().to_owned();
    let deployed = as_client(
        &server,
        &b,
        "POST",
        &format!("/Bot/{bot_id}/$deploy"),
        Some(&json!({"code": "exports.handler = async () => ({ answer: 'secret of b' });"})),
    );
    assert_eq!(deployed.status, 200, "{}", deployed.body);
    let definition = as_client(
        &server,
        &b,
        "POST",
        "/OperationDefinition",
        Some(&json!({
            "resourceType": "OperationDefinition",
            "extension": [{"url": "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation",
                           "valueReference": {"reference": format!("Bot/{bot_id}")}}],
            "name": "only-b", "status": "active", "kind": "operation", "code": "only-b",
            "system": true, "type": false, "instance": false,
            "parameter": [{"use": "out", "name": "answer", "type": "string", "min": 1, "max": "1"}],
        })),
    );
    assert_eq!(definition.status, 201, "{}", definition.body);
    assert_eq!(
        as_client(&server, &b, "POST", "/$only-b", None).json()["parameter"][0]["valueString"],
        "secret of b"
    );

    let hidden = as_client(&server, &a, "POST", "/$only-b", None);
    let unknown = as_client(&server, &a, "POST", "/$only-x", None);
    assert_eq!(hidden.status, 404, "{}", hidden.body);
    assert_eq!(hidden.issue_codes(), ["not-supported"]);
    assert_eq!(masked(&hidden.body, &["only-b"]), masked(&unknown.body, &["only-x"]));
    assert!(!hidden.body.contains("secret of b"));
    // Nor can A reach B's Bot by id.
    let bot_read = as_client(&server, &a, "GET", &format!("/Bot/{bot_id}"), None);
    assert_eq!(bot_read.status, 404, "{}", bot_read.body);
    let execute = as_client(
        &server,
        &a,
        "POST",
        &format!("/Bot/{bot_id}/$execute"),
        Some(&json!({})),
    );
    assert_eq!(execute.status, 404, "{}", execute.body);
    assert_eq!(patient_count(&server, &a), 0);
    assert_eq!(patient_count(&server, &b), 1);
}

// ---------------------------------------------------------------------------------------------
// 3. Path tricks (raw socket: nothing normalizes the path)
// ---------------------------------------------------------------------------------------------

#[test]
fn path_tricks_are_4xx_never_5xx_and_create_nothing() {
    let server = TestServer::example();
    let before = patient_count(&server, ADMIN_TOKEN);
    let body = patient("female").to_string();

    // Dot segments are not resolved: /Patient/../Patient is no REST endpoint.
    for method in ["GET", "POST", "PUT", "DELETE"] {
        let reply = raw_admin(
            &server,
            method,
            "/fhir/R4/Patient/../Patient",
            "",
            Some(body.as_bytes()),
        );
        assert_eq!(reply.status, 404, "{method} /Patient/../Patient: {:?}", reply);
        assert_eq!(reply.issue_codes(), ["not-supported"]);
    }

    // An encoded `..` does not climb out of the FHIR base to the admin API.
    let escape = raw_admin(
        &server,
        "POST",
        "/fhir/R4/%2E%2E/admin/projects",
        "",
        Some(br#"{"name":"escaped"}"#),
    );
    assert_eq!(escape.status, 404, "{escape:?}");
    assert_eq!(escape.issue_codes(), ["not-supported"]);
    let escape_get = raw_admin(&server, "GET", "/fhir/R4/%2e%2e/%2e%2e/admin/projects", "", None);
    assert_eq!(escape_get.status, 404, "{escape_get:?}");

    // An encoded `$` is the operation.
    let everything = raw_admin(&server, "GET", "/fhir/R4/Patient/%24everything", "", None);
    assert_eq!(everything.status, 200, "{everything:?}");
    assert_eq!(everything.json()["resourceType"], "Bundle");

    // An encoded slash does not split the segment.
    for method in ["GET", "POST"] {
        let reply = raw_admin(&server, method, "/fhir/R4/Patient%2F123", "", Some(body.as_bytes()));
        assert_eq!(reply.status, 404, "{method} Patient%2F123: {reply:?}");
        assert_eq!(reply.issue_codes(), ["not-supported"]);
    }
    let slash_id = raw_admin(&server, "PUT", "/fhir/R4/Patient/a%2Fb", "", Some(body.as_bytes()));
    assert_eq!(slash_id.status, 400, "{slash_id:?}");
    assert_eq!(slash_id.issue_codes(), ["invalid"]);

    // Ids outside R4's rule: 65 characters, non-ASCII, and a 10,000-character segment.
    let long_id = "a".repeat(65);
    let huge = "a".repeat(10_000);
    for id in [long_id.as_str(), "%C3%A9", huge.as_str(), "%00", "a%20b"] {
        let shown = &id[..id.len().min(16)];
        let read = raw_admin(&server, "GET", &format!("/fhir/R4/Patient/{id}"), "", None);
        assert_eq!(read.status, 400, "GET Patient/{shown}: {read:?}");
        assert_eq!(read.issue_codes(), ["invalid"], "GET Patient/{shown}");
        let put_body = json!({"resourceType": "Patient", "id": id}).to_string();
        let update = raw_admin(
            &server,
            "PUT",
            &format!("/fhir/R4/Patient/{id}"),
            "",
            Some(put_body.as_bytes()),
        );
        assert_eq!(update.status, 400, "PUT Patient/{shown}: {update:?}");
        assert_eq!(update.issue_codes(), ["invalid"], "PUT Patient/{shown}");
        let delete = raw_admin(&server, "DELETE", &format!("/fhir/R4/Patient/{id}"), "", None);
        assert_eq!(delete.status, 400, "DELETE Patient/{shown}: {delete:?}");
        let operation = raw_admin(&server, "GET", &format!("/fhir/R4/Patient/{id}/$everything"), "", None);
        assert_eq!(operation.status, 400, "GET Patient/{shown}/$everything: {operation:?}");
        assert_eq!(operation.issue_codes(), ["invalid"]);
    }
    // A 10,000-character segment where the type goes.
    for method in ["GET", "POST"] {
        let reply = raw_admin(&server, method, &format!("/fhir/R4/{huge}"), "", Some(body.as_bytes()));
        assert_eq!(reply.status, 404, "{method} /{{10,000 chars}}: {}", reply.status);
        assert_eq!(reply.issue_codes(), ["not-supported"]);
        let operation = raw_admin(&server, method, &format!("/fhir/R4/${huge}"), "", None);
        assert_not_5xx(&operation, "a 10,000-character operation code");
        assert_eq!(operation.status, 404);
        assert_eq!(operation.issue_codes(), ["not-supported"]);
    }

    assert_eq!(
        patient_count(&server, ADMIN_TOKEN),
        before,
        "no path trick created a Patient"
    );
}

// ---------------------------------------------------------------------------------------------
// 4. Header injection
// ---------------------------------------------------------------------------------------------

fn assert_no_injected_header(reply: &RawReply, case: &str) {
    assert!(reply.header("set-cookie").is_none(), "{case}: {}", reply.head);
    assert!(reply.header("x-trace-id").is_none(), "{case}: {}", reply.head);
    assert!(
        !reply.head.to_ascii_lowercase().contains("injected"),
        "{case}: {}",
        reply.head
    );
}

#[test]
fn header_values_with_cr_or_lf_are_refused_or_ignored_and_never_reflected() {
    let server = TestServer::example();
    let before = patient_count(&server, ADMIN_TOKEN);
    let body = patient("female").to_string();

    // A bare CR inside a header value: not valid HTTP, so 400 before any handler runs.
    for method in ["GET", "POST"] {
        let target = if method == "GET" {
            "/fhir/R4/Patient?_summary=count"
        } else {
            "/fhir/R4/Patient"
        };
        let reply = raw_admin(
            &server,
            method,
            target,
            "X-Trace-Id: abc\rSet-Cookie: injected=1\r\n",
            (method == "POST").then_some(body.as_bytes()),
        );
        assert_eq!(reply.status, 400, "bare CR, {method}: {reply:?}");
        assert_no_injected_header(&reply, "bare CR");
    }

    // CRLF inside what was meant to be one value is just a second request header: ignored.
    let split = raw_admin(
        &server,
        "GET",
        "/fhir/R4/Patient?_summary=count",
        "X-Trace-Id: abc\r\nSet-Cookie: injected=1\r\n",
        None,
    );
    assert_eq!(split.status, 200, "{split:?}");
    assert_no_injected_header(&split, "CRLF");

    // A bare LF is read as a line break (a second, ignored request header); never reflected.
    let lf = raw_admin(
        &server,
        "GET",
        "/fhir/R4/Patient?_summary=count",
        "X-Trace-Id: abc\nSet-Cookie: injected=1\r\n",
        None,
    );
    assert_eq!(lf.status, 200, "{lf:?}");
    assert_no_injected_header(&lf, "bare LF");

    // Percent-encoded CRLF in a query parameter and in an error message (the path) stays text.
    let encoded = raw_admin(&server, "GET", "/fhir/R4/Nope%0d%0aSet-Cookie:%20injected=1", "", None);
    assert_eq!(encoded.status, 404, "{encoded:?}");
    assert_no_injected_header(&encoded, "encoded CRLF in the path");
    let query = raw_admin(
        &server,
        "GET",
        "/fhir/R4/Patient?_count=%0d%0aSet-Cookie:%20injected=1",
        "",
        None,
    );
    assert_eq!(query.status, 400, "{query:?}");
    assert_eq!(query.issue_codes(), ["value"]);
    assert_no_injected_header(&query, "encoded CRLF in the query");

    assert_eq!(patient_count(&server, ADMIN_TOKEN), before);
}

// ---------------------------------------------------------------------------------------------
// 5. Huge and deep JSON
// ---------------------------------------------------------------------------------------------

/// A Patient whose `extension` member nests `arrays` arrays (the Patient object is one more level).
fn nested_patient(arrays: usize) -> String {
    format!(
        r#"{{"resourceType":"Patient","extension":{}{}}}"#,
        "[".repeat(arrays),
        "]".repeat(arrays)
    )
}

#[test]
fn json_nested_101_deep_is_400_structure_and_99_is_no_5xx() {
    let server = TestServer::example();
    let before = patient_count(&server, ADMIN_TOKEN);

    let too_deep = nested_patient(100);
    let create = server.post("/Patient", &too_deep);
    assert_eq!(create.status, 400, "{}", create.body);
    assert_eq!(create.issue_codes(), ["structure"]);
    let operation = server.post("/Patient/$add-identifier", &too_deep);
    assert_eq!(operation.status, 400, "{}", operation.body);
    assert_eq!(operation.issue_codes(), ["structure"]);
    let bundle = server.post(
        "",
        &format!(
            r#"{{"resourceType":"Bundle","x":{}{}}}"#,
            "[".repeat(100),
            "]".repeat(100)
        ),
    );
    assert_eq!(bundle.status, 400, "{}", bundle.body);
    assert_eq!(bundle.issue_codes(), ["structure"]);

    // Depth 99: Parameters(1) > parameter[](2) > entry(3) > Patient(4) > 95 arrays.
    let parameters = format!(
        r#"{{"resourceType":"Parameters","parameter":[{{"name":"resource","resource":{{"resourceType":"Patient","extension":{}{}}}}}]}}"#,
        "[".repeat(95),
        "]".repeat(95)
    );
    let deep = server.post("/Patient/$add-identifier", &parameters);
    assert!(deep.status < 500, "{}", deep.body);
    assert_eq!(deep.status, 200, "{}", deep.body);
    assert_eq!(deep.json()["identifier"][0]["value"], "12345");

    assert_eq!(patient_count(&server, ADMIN_TOKEN), before);
}

#[test]
fn a_body_over_the_limit_is_413() {
    let mut config = fhirop_server::Config::for_tests();
    config.body_limit = 1024;
    let server = TestServer::example_with(config);
    let before = patient_count(&server, ADMIN_TOKEN);
    let big = json!({"resourceType": "Patient", "name": [{"text": "x".repeat(2000)}]}).to_string();

    let create = server.post("/Patient", &big);
    assert_eq!(create.status, 413, "{}", create.body);
    assert_eq!(create.issue_codes(), ["too-long"]);
    let operation = server.post(
        "/Patient/$add-identifier",
        &json!({"resourceType": "Parameters", "parameter": [{"name": "resource",
            "resource": {"resourceType": "Patient", "name": [{"text": "x".repeat(2000)}]}}]})
        .to_string(),
    );
    assert_eq!(operation.status, 413, "{}", operation.body);
    assert_eq!(operation.issue_codes(), ["too-long"]);

    // Chunked, so no Content-Length warns the server: refused while reading.
    let mut request = format!(
        "POST /fhir/R4/Patient HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ADMIN_TOKEN}\r\nContent-Type: application/fhir+json\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        server.addr
    )
    .into_bytes();
    for chunk in big.as_bytes().chunks(256) {
        request.extend_from_slice(format!("{:x}\r\n", chunk.len()).as_bytes());
        request.extend_from_slice(chunk);
        request.extend_from_slice(b"\r\n");
    }
    request.extend_from_slice(b"0\r\n\r\n");
    let chunked = raw(server.addr, &request);
    assert_eq!(chunked.status, 413, "{chunked:?}");
    assert_eq!(chunked.issue_codes(), ["too-long"]);

    // A body within the limit still works.
    let small = server.post("/Patient", &patient("female").to_string());
    assert_eq!(small.status, 201, "{}", small.body);
    assert_eq!(patient_count(&server, ADMIN_TOKEN), before + 1);
}

#[test]
fn ten_thousand_parameters_are_too_costly_and_invalid_utf8_is_400() {
    let server = TestServer::example();
    let before = patient_count(&server, ADMIN_TOKEN);

    let entries: Vec<Value> = (0..10_000)
        .map(|_| json!({"name": "resource", "resource": {"resourceType": "Patient"}}))
        .collect();
    let costly = server.post_json(
        "/Patient/$add-identifier",
        &json!({"resourceType": "Parameters", "parameter": entries}),
    );
    assert_eq!(costly.status, 400, "{}", &costly.body[..costly.body.len().min(500)]);
    assert_eq!(costly.issue_codes(), ["too-costly"]);

    let mut invalid = br#"{"resourceType":"Patient","name":[{"family":""#.to_vec();
    invalid.extend_from_slice(&[0xff, 0xfe, 0xc3]);
    invalid.extend_from_slice(br#""}]}"#);
    for path in ["/Patient", "/Patient/$add-identifier"] {
        let reply = send(
            "POST",
            &server.url(path),
            &[("Content-Type", "application/fhir+json")],
            Some(&invalid),
        );
        assert_eq!(reply.status, 400, "{path}: {}", reply.body);
        assert_eq!(reply.issue_codes(), ["structure"], "{path}");
    }
    let put = send(
        "PUT",
        &server.url("/Patient/utf8"),
        &[("Content-Type", "application/fhir+json")],
        Some(&invalid),
    );
    assert_eq!(put.status, 400, "{}", put.body);
    assert_eq!(put.issue_codes(), ["structure"]);
    assert_eq!(server.get("/Patient/utf8").status, 404);

    assert_eq!(patient_count(&server, ADMIN_TOKEN), before);
}

// ---------------------------------------------------------------------------------------------
// 6. Rate limit
// ---------------------------------------------------------------------------------------------

fn assert_throttled(reply: &Reply) {
    assert_eq!(reply.status, 429, "{}", reply.body);
    assert_eq!(reply.issue_codes(), ["throttled"]);
    let retry_after: u64 = reply
        .header("retry-after")
        .expect("Retry-After")
        .parse()
        .expect("Retry-After in seconds");
    assert!(retry_after >= 1);
}

fn rate_limited_server() -> TestServer {
    let mut config = fhirop_server::Config::for_tests();
    config.rate_limit = 2;
    TestServer::example_with(config)
}

#[test]
fn rapid_requests_get_429_with_retry_after_and_throttled_writes_store_nothing() {
    let server = rate_limited_server();
    let mut created = 0u64;
    let mut throttled = None;
    for _ in 0..200 {
        let reply = server.post_json("/Patient", &patient("female"));
        match reply.status {
            201 => created += 1,
            429 => {
                throttled = Some(reply);
                break;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let throttled = throttled.expect("a 429 within 200 rapid requests");
    assert_throttled(&throttled);
    assert!(created >= 1, "the burst admits at least one request");

    // Wait for the bucket to refill (bounded poll), then count what was stored.
    let mut total = None;
    for _ in 0..100 {
        let reply = server.get("/Patient?_summary=count");
        if reply.status == 200 {
            total = reply.json()["total"].as_u64();
            break;
        }
        assert_throttled(&reply);
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(total, Some(created), "only the admitted creates were stored");
}

#[test]
fn wrong_tokens_are_throttled_too() {
    let server = rate_limited_server();
    let mut refused = 0;
    let mut throttled = None;
    for index in 0..200 {
        let reply = as_client(&server, &format!("guess-{index}"), "GET", "/Patient", None);
        match reply.status {
            401 => {
                assert_unauthorized(&reply, Some("invalid_token"), "a guess");
                refused += 1;
            }
            429 => {
                throttled = Some(reply);
                break;
            }
            other => panic!("unexpected {other}: {}", reply.body),
        }
    }
    let throttled = throttled.expect("guessing is throttled within 200 attempts");
    assert_throttled(&throttled);
    assert!(refused >= 1);
    // Missing credentials count against the same address.
    let anonymous = (0..200)
        .map(|_| send_unauthenticated("GET", &server.url("/Patient"), &[], None))
        .find(|reply| {
            if reply.status == 401 {
                assert_unauthorized(reply, None, "anonymous");
            }
            reply.status != 401
        })
        .expect("anonymous requests are throttled within 200 attempts");
    assert_throttled(&anonymous);
}

#[test]
fn guessing_client_secrets_at_the_token_endpoint_is_throttled_too() {
    let server = rate_limited_server();
    let project_id = project(&server, "clinic");
    let (client_id, _) = client(&server, &project_id);
    let mut last = None;
    for index in 0..200 {
        let reply = send_unauthenticated(
            "POST",
            &format!("{}/oauth2/token", origin(&server)),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(format!("grant_type=client_credentials&client_id={client_id}&client_secret=guess{index}").as_bytes()),
        );
        if reply.status != 401 {
            last = Some(reply);
            break;
        }
        assert_eq!(reply.json()["error"], "invalid_client");
    }
    let throttled = last.expect("200 wrong client secrets in a row, none throttled (all 401 invalid_client)");
    assert_eq!(throttled.status, 429, "{}", throttled.body);
    assert!(throttled.header("retry-after").is_some());
}
