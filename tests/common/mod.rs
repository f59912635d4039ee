//! Shared by the black-box tests: a real server on a free loopback port, and a small HTTP
//! client that never turns a status into an error.
#![allow(dead_code, unreachable_pub)]

use std::net::TcpListener;
use std::sync::mpsc;
use std::thread;

use fhirop::server::FhirServer;
use serde_json::Value;

/// A server running on its own thread with its own actix system.
pub struct TestServer {
    /// `http://127.0.0.1:{port}/fhir/R4`
    pub base_url: String,
    /// The listening address.
    pub addr: std::net::SocketAddr,
}

impl TestServer {
    /// Serves `fhir` under its base path on a free loopback port.
    pub fn start(fhir: FhirServer) -> TestServer {
        let base_path = fhir.state().base_path().to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
        let addr = listener.local_addr().expect("the bound address");
        let (ready, started) = mpsc::channel();
        thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = actix_web::HttpServer::new(move || actix_web::App::new().service(fhir.scope()))
                    .workers(1)
                    .disable_signals()
                    .listen(listener)
                    .expect("listen")
                    .run();
                ready.send(()).expect("the test is waiting");
                server.await
            })
        });
        started.recv().expect("the server thread started");
        TestServer {
            base_url: format!("http://{addr}{base_path}"),
            addr,
        }
    }

    /// The example server (`cargo run`), as `fhirop_server::start` builds it.
    pub fn example() -> TestServer {
        let (ready, started) = mpsc::channel();
        thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let mut config = fhirop_server::Config::for_tests();
                config.workers = Some(1);
                let running = fhirop_server::start(&config).await.expect("the example server starts");
                ready
                    .send((running.addr, running.base_url))
                    .expect("the test is waiting");
                running.server.await
            })
        });
        let (addr, base_url) = started.recv().expect("the server thread started");
        TestServer { base_url, addr }
    }

    /// The example server started with `config` (its address, store, Bot limits, levels).
    pub fn example_with(config: fhirop_server::Config) -> TestServer {
        let (ready, started) = mpsc::channel();
        thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let running = fhirop_server::start(&config).await.expect("the example server starts");
                ready
                    .send((running.addr, running.base_url))
                    .expect("the test is waiting");
                running.server.await
            })
        });
        let (addr, base_url) = started.recv().expect("the server thread started");
        TestServer { base_url, addr }
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// GET `path` (relative to the base URL).
    pub fn get(&self, path: &str) -> Reply {
        send("GET", &self.url(path), &[], None)
    }

    /// POST `body` as `application/fhir+json` to `path`.
    pub fn post(&self, path: &str, body: &str) -> Reply {
        send(
            "POST",
            &self.url(path),
            &[("Content-Type", "application/fhir+json")],
            Some(body.as_bytes()),
        )
    }

    /// POST a JSON value as `application/fhir+json` to `path`.
    pub fn post_json(&self, path: &str, body: &Value) -> Reply {
        self.post(path, &body.to_string())
    }
}

/// A response: status, headers (lower-case names) and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Reply {
    /// The first value of header `name`.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    /// The body as JSON.
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.body))
    }

    /// The issues of an OperationOutcome body.
    pub fn issues(&self) -> Vec<Value> {
        let body = self.json();
        assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
        body["issue"].as_array().cloned().expect("issues")
    }

    /// The diagnostics of every issue of an OperationOutcome body, one a line.
    pub fn diagnostics(&self) -> String {
        self.issues()
            .iter()
            .filter_map(|issue| issue["diagnostics"].as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// The issue codes of an OperationOutcome body.
    pub fn issue_codes(&self) -> Vec<String> {
        self.issues()
            .iter()
            .map(|issue| issue["code"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// The `expression`s of every issue of an OperationOutcome body.
    pub fn issue_expressions(&self) -> Vec<String> {
        self.issues()
            .iter()
            .flat_map(|issue| issue["expression"].as_array().cloned().unwrap_or_default())
            .map(|expression| expression.as_str().unwrap_or_default().to_owned())
            .collect()
    }
}

/// The admin token of the example server in tests.
pub const ADMIN_TOKEN: &str = fhirop_server::config::TEST_ADMIN_TOKEN;

/// Sends any request as the admin (unless `headers` has its own Authorization); a 4xx or 5xx
/// is a reply, not an error.
pub fn send(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    let admin = format!("Bearer {ADMIN_TOKEN}");
    let mut with_auth: Vec<(&str, &str)> = headers.to_vec();
    if !headers
        .iter()
        .any(|(name, _)| name.eq_ignore_ascii_case("authorization"))
    {
        with_auth.push(("Authorization", &admin));
    }
    send_unauthenticated(method, url, &with_auth, body)
}

/// Sends a request with exactly `headers` (no credentials added).
pub fn send_unauthenticated(method: &str, url: &str, headers: &[(&str, &str)], body: Option<&[u8]>) -> Reply {
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let mut request = ureq::http::Request::builder().method(method).uri(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let result = match body {
        Some(body) => agent.run(request.body(body.to_vec()).expect("a valid request")),
        None => agent.run(request.body(()).expect("a valid request")),
    };
    let mut response = result.unwrap_or_else(|error| panic!("{method} {url} failed: {error}"));
    let status = response.status().as_u16();
    let headers = response
        .headers()
        .iter()
        .map(|(name, value)| (name.as_str().to_owned(), value.to_str().unwrap_or_default().to_owned()))
        .collect();
    let body = response.body_mut().read_to_string().unwrap_or_default();
    Reply { status, headers, body }
}

/// The `application/fhir+json; charset=utf-8` every FHIR response carries by default.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";

/// `http://{addr}`: where the admin API and the token endpoint live.
pub fn origin(server: &TestServer) -> String {
    format!("http://{}", server.addr)
}

/// POSTs JSON to the admin API as the admin.
pub fn admin_post(server: &TestServer, path: &str, body: &Value) -> Reply {
    send(
        "POST",
        &format!("{}{path}", origin(server)),
        &[("Content-Type", "application/json")],
        Some(body.to_string().as_bytes()),
    )
}

/// Creates a project; returns its id.
pub fn project(server: &TestServer, name: &str) -> String {
    let reply = admin_post(server, "/admin/projects", &serde_json::json!({"name": name}));
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.json()["resourceType"], "Project");
    assert_eq!(reply.json()["name"], name);
    reply.json()["id"].as_str().expect("a project id").to_owned()
}

/// Creates a client in `project`; returns (client id, secret).
pub fn client(server: &TestServer, project: &str) -> (String, String) {
    let reply = admin_post(
        server,
        &format!("/admin/projects/{project}/client"),
        &serde_json::json!({"name": "app"}),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["resourceType"], "ClientApplication");
    (
        body["id"].as_str().expect("a client id").to_owned(),
        body["secret"].as_str().expect("a secret").to_owned(),
    )
}

/// POSTs a form to the token endpoint with `headers`.
pub fn token_request(server: &TestServer, headers: &[(&str, &str)], form: &str) -> Reply {
    let mut headers = headers.to_vec();
    headers.push(("Content-Type", "application/x-www-form-urlencoded"));
    send_unauthenticated(
        "POST",
        &format!("{}/oauth2/token", origin(server)),
        &headers,
        Some(form.as_bytes()),
    )
}

/// An access token for a client by its credentials.
pub fn token(server: &TestServer, client_id: &str, secret: &str) -> String {
    let reply = token_request(
        server,
        &[],
        &format!("grant_type=client_credentials&client_id={client_id}&client_secret={secret}"),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["access_token"]
        .as_str()
        .expect("an access token")
        .to_owned()
}

/// A request with `Authorization: Bearer {token}` (any text, however broken).
pub fn as_client(server: &TestServer, token: &str, method: &str, path: &str, body: Option<&Value>) -> Reply {
    let bearer = format!("Bearer {token}");
    let text = body.map(Value::to_string);
    send(
        method,
        &server.url(path),
        &[("Authorization", &bearer), ("Content-Type", "application/fhir+json")],
        text.as_deref().map(str::as_bytes),
    )
}

/// The extension that links an OperationDefinition to the Bot implementing it (Medplum's).
pub const BOT_IMPLEMENTATION: &str = "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation";

/// The OperationOutcome a successful `$deploy` answers.
pub fn all_ok() -> Value {
    serde_json::json!({"resourceType": "OperationOutcome", "issue": [{
        "severity": "information", "code": "informational", "details": {"text": "All OK"}
    }]})
}

/// Creates `resource` at `[base]/{resourceType}` (expecting 201); returns its id.
pub fn create(server: &TestServer, resource: &Value) -> String {
    let resource_type = resource["resourceType"].as_str().expect("a resourceType");
    let reply = server.post_json(&format!("/{resource_type}"), resource);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().expect("the created id").to_owned()
}

/// Deploys `code` to `Bot/{bot}` and checks the answer.
pub fn deployed(server: &TestServer, bot: &str, code: &str) {
    let reply = server.post_json(&format!("/Bot/{bot}/$deploy"), &serde_json::json!({ "code": code }));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.json(), all_ok());
}

/// A new Bot named `name` running `code`; returns its id.
pub fn new_bot_named(server: &TestServer, name: &str, code: &str) -> String {
    let id = create(server, &serde_json::json!({"resourceType": "Bot", "name": name}));
    deployed(server, &id, code);
    id
}

/// An OperationDefinition implemented by `Bot/{bot}` with `fields` (code, levels,
/// parameters); `name` defaults to the code.
pub fn bot_definition(bot: &str, fields: Value) -> Value {
    let mut definition = serde_json::json!({
        "resourceType": "OperationDefinition",
        "extension": [{"url": BOT_IMPLEMENTATION, "valueReference": {"reference": format!("Bot/{bot}")}}],
        "status": "active",
        "kind": "operation",
    });
    let Value::Object(fields) = fields else {
        panic!("fields must be an object")
    };
    for (key, value) in fields {
        definition[key] = value;
    }
    if definition.get("name").is_none() {
        definition["name"] = definition["code"].clone();
    }
    definition
}

/// A new Bot running `code`; returns its id.
pub fn new_bot(server: &TestServer, code: &str) -> String {
    new_bot_named(server, "test bot", code)
}

/// Stores a Bot-backed OperationDefinition (see [`bot_definition`]); returns its id.
pub fn define(server: &TestServer, bot: &str, fields: Value) -> String {
    let reply = server.post_json("/OperationDefinition", &bot_definition(bot, fields));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()["id"].as_str().expect("the definition's id").to_owned()
}

/// A `Parameters` resource with `entries` as its `parameter`.
pub fn parameters(entries: Value) -> Value {
    serde_json::json!({"resourceType": "Parameters", "parameter": entries})
}
