//! Durability of the SQLite store: every write the server answered with a 2xx survives the
//! process being killed with SIGKILL (no graceful shutdown) and reads back unchanged after a
//! restart on the same data directory.
//!
//! The test runs the real `fhirop-server` binary and talks to it over HTTP/1.1 with the small
//! client below (std only).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The admin token the server under test is started with.
const ADMIN_TOKEN: &str = "durability-admin-token";

use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// A minimal HTTP/1.1 client
// ---------------------------------------------------------------------------------------------

#[derive(Debug)]
struct Response {
    status: u16,
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Response {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.as_str())
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|error| panic!("not JSON ({error}): {}", self.text()))
    }
}

/// Sends one request on a fresh connection (`Connection: close`) and reads the whole reply.
fn request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Response> {
    let mut stream = TcpStream::connect(addr)?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut head =
        format!("{method} {target} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/fhir+json\r\n");
    head.push_str(&format!("Authorization: Bearer {ADMIN_TOKEN}\r\n"));
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    let body = body.unwrap_or_default();
    if !body.is_empty() || matches!(method, "POST" | "PUT") {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_response(&raw).map_err(|message| std::io::Error::new(std::io::ErrorKind::InvalidData, message))
}

fn parse_response(raw: &[u8]) -> Result<Response, String> {
    let end = raw
        .windows(4)
        .position(|window| window == b"\r\n\r\n")
        .ok_or("no end of headers")?;
    let head = std::str::from_utf8(&raw[..end]).map_err(|error| error.to_string())?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("no status line")?;
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    let rest = &raw[end + 4..];
    let chunked = headers
        .iter()
        .any(|(name, value)| name == "transfer-encoding" && value.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)?
    } else if let Some(length) = headers
        .iter()
        .find(|(name, _)| name == "content-length")
        .and_then(|(_, value)| value.parse::<usize>().ok())
    {
        rest.get(..length).ok_or("a short body")?.to_vec()
    } else {
        rest.to_vec()
    };
    Ok(Response { status, headers, body })
}

fn dechunk(mut data: &[u8]) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    loop {
        let line_end = data
            .windows(2)
            .position(|window| window == b"\r\n")
            .ok_or("a chunk size line")?;
        let size_text = std::str::from_utf8(&data[..line_end]).map_err(|error| error.to_string())?;
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|error| format!("chunk size {size_text:?}: {error}"))?;
        data = &data[line_end + 2..];
        if size == 0 {
            return Ok(body);
        }
        body.extend_from_slice(data.get(..size).ok_or("a short chunk")?);
        data = data.get(size + 2..).ok_or("a chunk without CRLF")?;
    }
}

// ---------------------------------------------------------------------------------------------
// The server process
// ---------------------------------------------------------------------------------------------

/// A running `fhirop-server` process; killed when dropped.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// `/fhir/R4`
    base_path: String,
    /// `http://127.0.0.1:port/fhir/R4`
    base_url: String,
}

impl Server {
    /// Starts the binary on a free port with `data_dir`, and waits until it answers.
    fn start(data_dir: &Path) -> Server {
        let mut command = Command::new(env!("CARGO_BIN_EXE_fhirop-server"));
        command
            .args(["--addr", "127.0.0.1:0", "--base-path", "/fhir/R4", "--workers", "2"])
            .arg("--data-dir")
            .arg(data_dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .env("RUST_LOG", "warn");
        for variable in [
            "FHIROP_ADDR",
            "FHIROP_BASE_PATH",
            "FHIROP_BODY_LIMIT",
            "FHIROP_DATA_DIR",
            "FHIROP_MEMORY",
            "FHIROP_WORKERS",
        ] {
            command.env_remove(variable);
        }
        command.env("FHIROP_ADMIN_TOKEN", ADMIN_TOKEN);
        let mut child = command.spawn().expect("the fhirop-server binary starts");
        let stdout = child.stdout.take().expect("stdout");
        let mut lines = BufReader::new(stdout);
        let base_url = loop {
            let mut line = String::new();
            let read = lines.read_line(&mut line).expect("the server's stdout");
            if read == 0 {
                let status = child.wait().ok();
                panic!("fhirop-server exited before listening: {status:?}");
            }
            if let Some(url) = line.trim().strip_prefix("fhirop listening on ") {
                break url.to_owned();
            }
        };
        // Keep draining stdout so the server never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        let rest = base_url.strip_prefix("http://").expect("an http URL");
        let (host, base_path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
        let addr: SocketAddr = host.parse().expect("a socket address in the URL");
        assert_ne!(addr.port(), 0, "the printed URL has the real port: {base_url}");
        let server = Server {
            child,
            addr,
            base_path: base_path.to_owned(),
            base_url,
        };
        server.wait_until_ready();
        server
    }

    /// Retries a connection (and /metadata) until the server answers.
    fn wait_until_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            match request(self.addr, "GET", &format!("{}/metadata", self.base_path), &[], None) {
                Ok(response) if response.status == 200 => return,
                other => {
                    assert!(Instant::now() < deadline, "the server never got ready: {other:?}");
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
        }
    }

    fn send(&self, method: &str, path: &str, body: Option<&Value>, headers: &[(&str, &str)]) -> Response {
        let target = format!("{}{path}", self.base_path);
        let text = body.map(Value::to_string);
        let mut all_headers = headers.to_vec();
        if text.is_some() {
            all_headers.push(("Content-Type", "application/fhir+json"));
        }
        request(
            self.addr,
            method,
            &target,
            &all_headers,
            text.as_deref().map(str::as_bytes),
        )
        .unwrap_or_else(|error| panic!("{method} {target}: {error}"))
    }

    fn get(&self, path: &str) -> Response {
        self.send("GET", path, None, &[])
    }

    /// SIGKILL: no graceful shutdown, no chance to flush anything.
    fn kill(mut self) {
        self.child.kill().expect("kill the server");
        self.child.wait().expect("reap the server");
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------------------
// What the test expects to read back
// ---------------------------------------------------------------------------------------------

/// `Type/id` → every version's body (`None` for a deletion), oldest first.
#[derive(Default)]
struct Expected {
    versions: BTreeMap<String, Vec<Option<Value>>>,
}

impl Expected {
    /// Records a write the server answered with 200 or 201.
    fn record(&mut self, response: &Response) -> Value {
        assert!(
            matches!(response.status, 200 | 201),
            "{} {}",
            response.status,
            response.text()
        );
        let body = response.json();
        let key = format!(
            "{}/{}",
            body["resourceType"].as_str().unwrap(),
            body["id"].as_str().unwrap()
        );
        self.push(&key, Some(body.clone()));
        body
    }

    fn push(&mut self, key: &str, body: Option<Value>) {
        let versions = self.versions.entry(key.to_owned()).or_default();
        if let Some(body) = &body {
            assert_eq!(
                body["meta"]["versionId"],
                (versions.len() + 1).to_string(),
                "{key}: versions count up"
            );
        }
        versions.push(body);
    }

    /// Reads every resource and version back from `server`.
    fn verify(&self, server: &Server) {
        let mut current_per_type: BTreeMap<String, u64> = BTreeMap::new();
        for (key, versions) in &self.versions {
            let resource_type = key.split_once('/').unwrap().0;
            let current_version = versions.len();
            let read = server.get(&format!("/{key}"));
            match versions.last().unwrap() {
                Some(body) => {
                    *current_per_type.entry(resource_type.to_owned()).or_default() += 1;
                    assert_eq!(read.status, 200, "read {key}: {}", read.text());
                    assert_eq!(read.json(), *body, "{key} reads back the same");
                    let etag = format!("W/\"{current_version}\"");
                    assert_eq!(read.header("etag"), Some(etag.as_str()), "{key}");
                }
                None => {
                    current_per_type.entry(resource_type.to_owned()).or_default();
                    assert_eq!(read.status, 410, "read of deleted {key}: {}", read.text());
                }
            }
            for (index, version) in versions.iter().enumerate() {
                let vread = server.get(&format!("/{key}/_history/{}", index + 1));
                match version {
                    Some(body) => {
                        assert_eq!(vread.status, 200, "vread {key} v{}: {}", index + 1, vread.text());
                        assert_eq!(vread.json(), *body, "{key} version {}", index + 1);
                    }
                    None => assert_eq!(vread.status, 410, "vread of the deletion of {key}"),
                }
            }
            let history = server.get(&format!("/{key}/_history"));
            assert_eq!(history.status, 200, "{key}: {}", history.text());
            let entries = history.json()["entry"].as_array().map_or(0, Vec::len);
            assert_eq!(entries, versions.len(), "{key}: every version in the history");
        }
        // The search index survived too.
        for (resource_type, count) in current_per_type {
            let search = server.get(&format!("/{resource_type}?_summary=count"));
            assert_eq!(search.status, 200, "{}", search.text());
            assert_eq!(search.json()["total"], count, "{resource_type} count");
        }
    }
}

/// Writes resources of every kind the REST API offers and records what the server answered.
fn write_some(server: &Server, expected: &mut Expected, round: usize) {
    // Creates.
    let mut created = Vec::new();
    for index in 0..20 {
        let patient = json!({"resourceType": "Patient",
            "name": [{"family": format!("Durable{round}x{index}"), "given": ["Änne"]}],
            "birthDate": "1970-01-01",
            "extension": [{"url": "http://example.org/decimal", "valueDecimal": 1.50}]});
        let body = expected.record(&server.send("POST", "/Patient", Some(&patient), &[]));
        created.push(body);
    }
    // Updates, twice for some.
    for (index, body) in created.iter().enumerate().take(8) {
        let id = body["id"].as_str().unwrap();
        let mut changed = body.clone();
        changed["active"] = json!(true);
        changed.as_object_mut().unwrap().shift_remove("meta");
        let updated = expected.record(&server.send("PUT", &format!("/Patient/{id}"), Some(&changed), &[]));
        if index % 2 == 0 {
            let mut again = updated.clone();
            again["gender"] = json!("female");
            expected.record(&server.send(
                "PUT",
                &format!("/Patient/{id}"),
                Some(&again),
                &[("If-Match", "W/\"2\"")],
            ));
        }
    }
    // Update-as-create with client ids.
    for index in 0..3 {
        let id = format!("client-{round}-{index}");
        let patient = json!({"resourceType": "Patient", "id": id, "name": [{"family": "Client"}]});
        expected.record(&server.send("PUT", &format!("/Patient/{id}"), Some(&patient), &[]));
    }
    // Deletes.
    for body in created.iter().skip(15) {
        let key = format!("Patient/{}", body["id"].as_str().unwrap());
        let response = server.send("DELETE", &format!("/{key}"), None, &[]);
        assert_eq!(response.status, 200, "{}", response.text());
        expected.push(&key, None);
    }
    // A transaction.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:3d3d3d3d-0000-4000-8000-000000000001",
         "resource": {"resourceType": "Patient", "name": [{"family": format!("Bundled{round}")}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"fullUrl": "urn:uuid:3d3d3d3d-0000-4000-8000-000000000002",
         "resource": {"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": "urn:uuid:3d3d3d3d-0000-4000-8000-000000000001"},
            "valueQuantity": {"value": 72.0, "unit": "/min"}},
         "request": {"method": "POST", "url": "Observation"}}
    ]});
    let response = server.send("POST", "", Some(&bundle), &[]);
    assert_eq!(response.status, 200, "{}", response.text());
    let response = response.json();
    for entry in response["entry"].as_array().unwrap() {
        let location = entry["response"]["location"].as_str().expect("a location");
        let key: Vec<&str> = location.split('/').collect();
        let key = format!("{}/{}", key[key.len() - 4], key[key.len() - 3]);
        // What the transaction stored, read while the first server still runs.
        let read = server.get(&format!("/{key}"));
        assert_eq!(read.status, 200);
        expected.push(&key, Some(read.json()));
    }
}

#[test]
fn every_acknowledged_write_survives_sigkill_and_restart() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let mut expected = Expected::default();

    let first = Server::start(data.path());
    assert!(first.base_url.ends_with("/fhir/R4"), "{}", first.base_url);
    write_some(&first, &mut expected, 1);
    expected.verify(&first);
    first.kill();
    assert!(
        data.path().join("fhirop.db").exists(),
        "the database is in the data directory"
    );

    let second = Server::start(data.path());
    expected.verify(&second);
    // More writes on the restarted server, then another kill right after the last answer.
    write_some(&second, &mut expected, 2);
    second.kill();

    let third = Server::start(data.path());
    expected.verify(&third);
    assert!(expected.versions.len() > 40);
}

#[test]
fn a_fresh_data_directory_starts_empty() {
    let data = tempfile::tempdir().expect("a temporary directory");
    let server = Server::start(data.path());
    let search = server.get("/Patient?_summary=count");
    assert_eq!(search.status, 200, "{}", search.text());
    assert_eq!(search.json()["total"], 0);
    server.kill();
}
