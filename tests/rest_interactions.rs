mod common;

// The FHIR REST interactions of the example server (R4 http.html) over HTTP: create, read,
// vread, update, delete, history, the input rules, and what /metadata says of them.

use std::collections::BTreeSet;

use common::{FHIR_JSON, Reply, TestServer, send};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

fn put(server: &TestServer, path: &str, body: &Value, extra_headers: &[(&str, &str)]) -> Reply {
    let mut headers = vec![("Content-Type", "application/fhir+json")];
    headers.extend_from_slice(extra_headers);
    send("PUT", &server.url(path), &headers, Some(body.to_string().as_bytes()))
}

fn put_raw(server: &TestServer, path: &str, content_type: &str, body: &str) -> Reply {
    send(
        "PUT",
        &server.url(path),
        &[("Content-Type", content_type)],
        Some(body.as_bytes()),
    )
}

fn post_raw(server: &TestServer, path: &str, content_type: &str, body: &str) -> Reply {
    send(
        "POST",
        &server.url(path),
        &[("Content-Type", content_type)],
        Some(body.as_bytes()),
    )
}

fn delete(server: &TestServer, path: &str) -> Reply {
    send("DELETE", &server.url(path), &[], None)
}

/// How many current resources of `resource_type` the server has (`_summary=count`).
fn count(server: &TestServer, resource_type: &str) -> u64 {
    let reply = server.get(&format!("/{resource_type}?_summary=count"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let body = reply.json();
    assert_eq!(body["type"], "searchset", "{body}");
    assert!(body.get("entry").is_none(), "_summary=count returns no entries: {body}");
    body["total"].as_u64().unwrap_or_else(|| panic!("a total: {body}"))
}

/// Asserts an OperationOutcome with an error issue and `status`.
fn assert_error(reply: &Reply, status: u16, context: &str) {
    assert_eq!(reply.status, status, "{context}: {}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{context}");
    let body = reply.json();
    assert_eq!(body["resourceType"], "OperationOutcome", "{context}: {body}");
    let issues = body["issue"]
        .as_array()
        .unwrap_or_else(|| panic!("{context}: issues in {body}"));
    assert!(!issues.is_empty(), "{context}: {body}");
    assert!(
        issues
            .iter()
            .any(|issue| matches!(issue["severity"].as_str(), Some("error" | "fatal"))),
        "{context}: an error issue in {body}"
    );
}

fn is_instant(text: &str) -> bool {
    // YYYY-MM-DDThh:mm:ss(.sss)?(Z|+hh:mm|-hh:mm)
    let bytes = text.as_bytes();
    bytes.len() >= 20
        && bytes[4] == b'-'
        && bytes[7] == b'-'
        && bytes[10] == b'T'
        && bytes[13] == b':'
        && bytes[16] == b':'
        && (text.ends_with('Z') || text[19..].contains('+') || text[19..].contains('-'))
}

fn patient(family: &str) -> Value {
    json!({
        "resourceType": "Patient",
        "active": true,
        "name": [{"family": family, "given": ["Anna"]}],
        "gender": "female",
        "birthDate": "1980-05-06"
    })
}

/// Creates a Patient and returns the response body.
fn create_patient(server: &TestServer, family: &str) -> Value {
    let reply = server.post_json("/Patient", &patient(family));
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()
}

/// The body without what the server sets in `meta` (versionId, lastUpdated, and the
/// project, checked here to be the admin's default project): what the client controls.
fn without_version(resource: &Value) -> Value {
    let mut resource = resource.clone();
    if let Some(meta) = resource.get_mut("meta").and_then(Value::as_object_mut) {
        meta.shift_remove("versionId");
        meta.shift_remove("lastUpdated");
        assert_eq!(meta.shift_remove("project"), Some(json!("default")));
        if meta.is_empty() {
            resource.as_object_mut().unwrap().shift_remove("meta");
        }
    }
    resource
}

// ---------------------------------------------------------------------------------------------
// create and read
// ---------------------------------------------------------------------------------------------

#[test]
fn create_answers_201_with_location_etag_and_a_server_assigned_id() {
    let server = TestServer::example();
    let mut sent = patient("Created");
    // R4 create: an id in the body is ignored, the server assigns its own.
    sent["id"] = json!("chosen-by-client");
    let reply = server.post_json("/Patient", &sent);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    let body = reply.json();
    let id = body["id"].as_str().expect("a server-assigned id").to_owned();
    assert_ne!(id, "chosen-by-client", "the server assigns the id of a create");
    assert!(
        !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.'),
        "{id} is a valid FHIR id"
    );
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/Patient/{id}/_history/1", server.base_url).as_str())
    );
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert_eq!(body["resourceType"], "Patient");
    assert_eq!(body["meta"]["versionId"], "1");
    let last_updated = body["meta"]["lastUpdated"].as_str().expect("meta.lastUpdated");
    assert!(is_instant(last_updated), "{last_updated} is an instant");
    // Everything the client sent is kept.
    let mut expected = sent.clone();
    expected["id"] = json!(id);
    assert_eq!(without_version(&body), expected);

    // The new resource reads back as created, and nothing else was stored.
    let read = server.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    assert_eq!(read.json(), body);
    assert_eq!(server.get("/Patient/chosen-by-client").status, 404);
    assert_eq!(count(&server, "Patient"), 1);
}

#[test]
fn read_returns_the_current_version_with_its_etag() {
    let server = TestServer::example();
    let created = create_patient(&server, "Reader");
    let id = created["id"].as_str().unwrap();
    let reply = server.get(&format!("/Patient/{id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert_eq!(reply.json(), created);
}

#[test]
fn read_of_an_unknown_resource_is_404_with_an_operation_outcome() {
    let server = TestServer::example();
    create_patient(&server, "Someone");
    let reply = server.get("/Patient/does-not-exist");
    assert_error(&reply, 404, "GET /Patient/does-not-exist");
    assert!(reply.issue_codes().contains(&"not-found".to_owned()), "{}", reply.body);
    assert!(reply.header("etag").is_none());
}

#[test]
fn last_modified_is_an_http_date_matching_meta_last_updated() {
    // RFC 9110 §8.8.2: Last-Modified = HTTP-date (IMF-fixdate, e.g. "Sun, 06 Nov 1994 08:49:37 GMT").
    let server = TestServer::example();
    let created = create_patient(&server, "Dated");
    let id = created["id"].as_str().unwrap();
    let last_updated = created["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let reply = server.get(&format!("/Patient/{id}"));
    assert_eq!(reply.status, 200);
    let Some(header) = reply.header("last-modified") else {
        return; // Last-Modified is optional; when present it must be an HTTP-date.
    };
    let expected = http_date(&last_updated);
    assert_eq!(
        header, expected,
        "Last-Modified must be an HTTP-date (meta.lastUpdated is {last_updated})"
    );
}

/// `2024-03-05T07:08:09.123Z` → `Tue, 05 Mar 2024 07:08:09 GMT`
fn http_date(instant: &str) -> String {
    let year: i64 = instant[0..4].parse().unwrap();
    let month: i64 = instant[5..7].parse().unwrap();
    let day: i64 = instant[8..10].parse().unwrap();
    let time = &instant[11..19];
    assert!(instant.ends_with('Z'), "the server writes UTC instants: {instant}");
    // Days from civil (Hinnant) to get the weekday.
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((month + 9) % 12) + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let month_name = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ][(month - 1) as usize];
    format!("{weekday}, {day:02} {month_name} {year} {time} GMT")
}

// ---------------------------------------------------------------------------------------------
// update
// ---------------------------------------------------------------------------------------------

#[test]
fn update_with_the_same_id_makes_version_2() {
    let server = TestServer::example();
    let created = create_patient(&server, "Before");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut changed = patient("After");
    changed["id"] = json!(id);
    let reply = put(&server, &format!("/Patient/{id}"), &changed, &[]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    if let Some(location) = reply.header("location") {
        assert_eq!(location, format!("{}/Patient/{id}/_history/2", server.base_url));
    }
    let body = reply.json();
    assert_eq!(body["id"], id.as_str());
    assert_eq!(body["meta"]["versionId"], "2");
    let first = created["meta"]["lastUpdated"].as_str().unwrap();
    let second = body["meta"]["lastUpdated"].as_str().expect("meta.lastUpdated");
    assert!(is_instant(second));
    assert!(second >= first, "{second} is not before {first}");
    assert_eq!(without_version(&body), changed);

    let read = server.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200);
    assert_eq!(read.header("etag"), Some("W/\"2\""));
    assert_eq!(read.json(), body);
    assert_eq!(read.json()["name"][0]["family"], "After");
    assert_eq!(count(&server, "Patient"), 1);
}

#[test]
fn update_as_create_with_a_client_id_answers_201() {
    let server = TestServer::example();
    let mut sent = patient("Chosen");
    sent["id"] = json!("client-id-1");
    let reply = put(&server, "/Patient/client-id-1", &sent, &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert_eq!(
        reply.header("location"),
        Some(format!("{}/Patient/client-id-1/_history/1", server.base_url).as_str())
    );
    let body = reply.json();
    assert_eq!(body["id"], "client-id-1");
    assert_eq!(body["meta"]["versionId"], "1");
    assert_eq!(without_version(&body), sent);
    let read = server.get("/Patient/client-id-1");
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), body);
    assert_eq!(count(&server, "Patient"), 1);
}

#[test]
fn if_match_with_an_old_version_is_412_and_changes_nothing() {
    let server = TestServer::example();
    let created = create_patient(&server, "One");
    let id = created["id"].as_str().unwrap().to_owned();
    let mut second = patient("Two");
    second["id"] = json!(id);
    let reply = put(&server, &format!("/Patient/{id}"), &second, &[("If-Match", "W/\"1\"")]);
    assert_eq!(
        reply.status, 200,
        "If-Match on the current version succeeds: {}",
        reply.body
    );
    let version_2 = server.get(&format!("/Patient/{id}")).json();
    assert_eq!(version_2["meta"]["versionId"], "2");

    let mut third = patient("Three");
    third["id"] = json!(id);
    let reply = put(&server, &format!("/Patient/{id}"), &third, &[("If-Match", "W/\"1\"")]);
    assert_error(&reply, 412, "If-Match W/\"1\" on version 2");

    let read = server.get(&format!("/Patient/{id}"));
    assert_eq!(read.status, 200);
    assert_eq!(read.header("etag"), Some("W/\"2\""));
    assert_eq!(read.json(), version_2, "a failed If-Match changes nothing");
    let history = server.get(&format!("/Patient/{id}/_history")).json();
    assert_eq!(history["entry"].as_array().map(Vec::len), Some(2), "{history}");
    assert_eq!(server.get(&format!("/Patient/{id}/_history/3")).status, 404);

    // The current version as If-Match succeeds.
    let reply = put(&server, &format!("/Patient/{id}"), &third, &[("If-Match", "W/\"2\"")]);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("W/\"3\""));
}

// ---------------------------------------------------------------------------------------------
// delete, vread, history
// ---------------------------------------------------------------------------------------------

#[test]
fn delete_answers_200_and_then_read_is_410_gone() {
    let server = TestServer::example();
    let created = create_patient(&server, "Doomed");
    let keep = create_patient(&server, "Kept");
    let id = created["id"].as_str().unwrap().to_owned();
    let reply = delete(&server, &format!("/Patient/{id}"));
    assert_eq!(reply.status, 200, "{}", reply.body);

    let read = server.get(&format!("/Patient/{id}"));
    assert_error(&read, 410, "read after delete");
    // The deleted resource is no longer found by search; the other one is.
    assert_eq!(count(&server, "Patient"), 1);
    let search = server.get(&format!("/Patient?_id={id}")).json();
    assert_eq!(search["total"], 0, "{search}");
    let keep_id = keep["id"].as_str().unwrap();
    assert_eq!(server.get(&format!("/Patient/{keep_id}")).status, 200);

    // Its old version is still readable.
    let vread = server.get(&format!("/Patient/{id}/_history/1"));
    assert_eq!(vread.status, 200, "{}", vread.body);
    assert_eq!(vread.json(), created);

    // Deleting it again has no effect (R4: 200 or 204).
    let again = delete(&server, &format!("/Patient/{id}"));
    assert!(matches!(again.status, 200 | 204), "{} {}", again.status, again.body);
    assert_error(
        &server.get(&format!("/Patient/{id}")),
        410,
        "read after the second delete",
    );
}

#[test]
fn vread_returns_each_version_body() {
    let server = TestServer::example();
    let version_1 = create_patient(&server, "First");
    let id = version_1["id"].as_str().unwrap().to_owned();
    let mut update = patient("Second");
    update["id"] = json!(id);
    let version_2 = put(&server, &format!("/Patient/{id}"), &update, &[]).json();

    let reply = server.get(&format!("/Patient/{id}/_history/1"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.header("etag"), Some("W/\"1\""));
    assert_eq!(reply.json(), version_1);
    assert_eq!(reply.json()["name"][0]["family"], "First");

    let reply = server.get(&format!("/Patient/{id}/_history/2"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("etag"), Some("W/\"2\""));
    assert_eq!(reply.json(), version_2);

    assert_error(
        &server.get(&format!("/Patient/{id}/_history/3")),
        404,
        "vread of a version that does not exist",
    );
    assert_error(
        &server.get("/Patient/unknown/_history/1"),
        404,
        "vread of an unknown resource",
    );
}

#[test]
fn history_lists_every_version_newest_first() {
    let server = TestServer::example();
    let version_1 = create_patient(&server, "V1");
    let id = version_1["id"].as_str().unwrap().to_owned();
    let mut versions = vec![version_1];
    for family in ["V2", "V3"] {
        let mut update = patient(family);
        update["id"] = json!(id);
        let reply = put(&server, &format!("/Patient/{id}"), &update, &[]);
        assert_eq!(reply.status, 200, "{}", reply.body);
        versions.push(reply.json());
    }
    // An unrelated resource does not show up in this history.
    create_patient(&server, "Other");

    let reply = server.get(&format!("/Patient/{id}/_history"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "history");
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 3, "{bundle}");
    if let Some(total) = bundle.get("total") {
        assert_eq!(total, 3);
    }
    for (entry, expected) in entries.iter().zip(versions.iter().rev()) {
        assert_eq!(&entry["resource"], expected, "newest first");
        assert_eq!(entry["fullUrl"], format!("{}/Patient/{id}", server.base_url));
        let version = expected["meta"]["versionId"].as_str().unwrap();
        assert_eq!(entry["response"]["etag"], format!("W/\"{version}\""));
    }

    // After a delete the history starts with the deletion, without a resource.
    assert_eq!(delete(&server, &format!("/Patient/{id}")).status, 200);
    let bundle = server.get(&format!("/Patient/{id}/_history")).json();
    let entries = bundle["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 4, "{bundle}");
    assert!(entries[0].get("resource").is_none(), "{}", entries[0]);
    assert_eq!(entries[0]["request"]["method"], "DELETE");
    assert_eq!(entries[0]["response"]["etag"], "W/\"4\"");
    for (entry, expected) in entries[1..].iter().zip(versions.iter().rev()) {
        assert_eq!(&entry["resource"], expected);
    }

    assert_error(
        &server.get("/Patient/unknown/_history"),
        404,
        "history of an unknown resource",
    );
}

// ---------------------------------------------------------------------------------------------
// input rules
// ---------------------------------------------------------------------------------------------

#[test]
fn invalid_bodies_are_400_and_store_nothing() {
    let server = TestServer::example();
    let cases: Vec<(&str, String)> = vec![
        ("not JSON", "{\"resourceType\": \"Patient\", ".to_owned()),
        ("a JSON array", json!([{"resourceType": "Patient"}]).to_string()),
        ("a JSON string", json!("Patient").to_string()),
        ("no resourceType", json!({"name": [{"family": "X"}]}).to_string()),
        ("an unknown resourceType", json!({"resourceType": "Foo"}).to_string()),
        (
            "a resourceType other than the URL's",
            json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}).to_string(),
        ),
        ("an empty body", String::new()),
    ];
    for (what, body) in &cases {
        let reply = server.post("/Patient", body);
        assert_error(&reply, 400, &format!("POST /Patient with {what}"));
        let reply = put_raw(&server, "/Patient/p1", "application/fhir+json", body);
        assert_error(&reply, 400, &format!("PUT /Patient/p1 with {what}"));
    }
    assert_eq!(count(&server, "Patient"), 0);
    assert_eq!(count(&server, "Observation"), 0);
    assert_eq!(server.get("/Patient/p1").status, 404);
}

#[test]
fn update_needs_the_url_id_in_the_body() {
    let server = TestServer::example();
    let mut other_id = patient("Mismatch");
    other_id["id"] = json!("xyz");
    let reply = put(&server, "/Patient/abc", &other_id, &[]);
    assert_error(&reply, 400, "PUT /Patient/abc with id xyz");
    assert_eq!(server.get("/Patient/abc").status, 404);
    assert_eq!(server.get("/Patient/xyz").status, 404);

    let reply = put(&server, "/Patient/abc", &patient("NoId"), &[]);
    assert_error(&reply, 400, "PUT /Patient/abc without id");
    assert_eq!(server.get("/Patient/abc").status, 404);

    // And an existing resource is not changed by such a PUT.
    let mut existing = patient("Existing");
    existing["id"] = json!("abc");
    assert_eq!(put(&server, "/Patient/abc", &existing, &[]).status, 201);
    let reply = put(&server, "/Patient/abc", &other_id, &[]);
    assert_error(&reply, 400, "PUT /Patient/abc with id xyz on an existing resource");
    let reply = put(&server, "/Patient/abc", &patient("NoId"), &[]);
    assert_error(&reply, 400, "PUT /Patient/abc without id on an existing resource");
    let read = server.get("/Patient/abc");
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    assert_eq!(read.json()["name"][0]["family"], "Existing");
    assert_eq!(count(&server, "Patient"), 1);
}

#[test]
fn invalid_ids_in_the_url_are_400() {
    let server = TestServer::example();
    let too_long = "a".repeat(65);
    let longest = "b".repeat(64);
    for id in [too_long.as_str(), "a_b", "a%20b", "%C3%A9"] {
        let decoded = id.replace("%20", " ").replace("%C3%A9", "é");
        let mut body = patient("BadId");
        body["id"] = json!(decoded);
        let reply = put(&server, &format!("/Patient/{id}"), &body, &[]);
        assert_error(&reply, 400, &format!("PUT /Patient/{id}"));
        assert_error(
            &server.get(&format!("/Patient/{id}")),
            400,
            &format!("GET /Patient/{id}"),
        );
        assert_error(
            &server.get(&format!("/Patient/{id}/_history/1")),
            400,
            &format!("GET /Patient/{id}/_history/1"),
        );
        assert_error(
            &delete(&server, &format!("/Patient/{id}")),
            400,
            &format!("DELETE /Patient/{id}"),
        );
    }
    assert_eq!(count(&server, "Patient"), 0);

    // 64 characters is still an id.
    let mut body = patient("Longest");
    body["id"] = json!(longest);
    let reply = put(&server, &format!("/Patient/{longest}"), &body, &[]);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(server.get(&format!("/Patient/{longest}")).status, 200);
}

#[test]
fn a_body_id_that_is_not_a_valid_id_is_refused_by_update() {
    let server = TestServer::example();
    let mut body = patient("Numeric");
    body["id"] = json!(12);
    let reply = put(&server, "/Patient/12", &body, &[]);
    assert_error(&reply, 400, "PUT with a numeric id");
    assert_eq!(count(&server, "Patient"), 0);
}

#[test]
fn content_type_text_plain_is_415() {
    let server = TestServer::example();
    let body = patient("Plain").to_string();
    let reply = post_raw(&server, "/Patient", "text/plain", &body);
    assert_error(&reply, 415, "POST text/plain");
    let mut with_id = patient("Plain");
    with_id["id"] = json!("plain");
    let reply = put_raw(&server, "/Patient/plain", "text/plain", &with_id.to_string());
    assert_error(&reply, 415, "PUT text/plain");
    assert_eq!(count(&server, "Patient"), 0);
    assert_eq!(server.get("/Patient/plain").status, 404);

    // application/json is accepted.
    let reply = post_raw(&server, "/Patient", "application/json", &body);
    assert_eq!(reply.status, 201, "{}", reply.body);
    assert_eq!(count(&server, "Patient"), 1);
}

#[test]
fn unknown_resource_type_in_the_url_is_an_error_and_stores_nothing() {
    let server = TestServer::example();
    let reply = server.post_json("/Foo", &json!({"resourceType": "Foo"}));
    assert!(
        matches!(reply.status, 400 | 404),
        "POST /Foo: {} {}",
        reply.status,
        reply.body
    );
    assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    assert!(matches!(server.get("/Foo/1").status, 400 | 404));
}

// ---------------------------------------------------------------------------------------------
// /metadata
// ---------------------------------------------------------------------------------------------

fn capability_of(server: &TestServer, resource_type: &str) -> Value {
    let reply = server.get("/metadata");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let statement = reply.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    let resources = statement["rest"][0]["resource"].as_array().expect("rest.resource");
    let matching: Vec<&Value> = resources
        .iter()
        .filter(|resource| resource["type"] == resource_type)
        .collect();
    assert_eq!(matching.len(), 1, "one entry for {resource_type}");
    matching[0].clone()
}

fn search_params_of(capability: &Value) -> BTreeSet<(String, String)> {
    capability["searchParam"]
        .as_array()
        .expect("searchParam")
        .iter()
        .map(|param| {
            (
                param["name"].as_str().expect("name").to_owned(),
                param["type"].as_str().expect("type").to_owned(),
            )
        })
        .collect()
}

#[test]
fn metadata_lists_patient_interactions_and_search_params() {
    let server = TestServer::example();
    let patient = capability_of(&server, "Patient");
    let interactions: BTreeSet<&str> = patient["interaction"]
        .as_array()
        .expect("interaction")
        .iter()
        .map(|interaction| interaction["code"].as_str().expect("code"))
        .collect();
    let expected: BTreeSet<&str> = [
        "read",
        "vread",
        "update",
        "delete",
        "history-instance",
        "create",
        "search-type",
    ]
    .into_iter()
    .collect();
    assert_eq!(interactions, expected);
    assert_eq!(patient["versioning"], "versioned");
    assert_eq!(patient["readHistory"], true);
    assert_eq!(patient["updateCreate"], true);

    let params = search_params_of(&patient);
    for (name, kind) in [
        ("_id", "token"),
        ("_lastUpdated", "date"),
        ("name", "string"),
        ("family", "string"),
        ("given", "string"),
        ("birthdate", "date"),
        ("gender", "token"),
        ("identifier", "token"),
    ] {
        assert!(
            params.contains(&(name.to_owned(), kind.to_owned())),
            "Patient searchParam {name} ({kind}) in {params:?}"
        );
    }
    let names: Vec<&String> = params.iter().map(|(name, _)| name).collect();
    let unique: BTreeSet<&String> = names.iter().copied().collect();
    assert_eq!(names.len(), unique.len(), "each parameter once: {names:?}");

    let observation = search_params_of(&capability_of(&server, "Observation"));
    for (name, kind) in [
        ("patient", "reference"),
        ("subject", "reference"),
        ("code", "token"),
        ("date", "date"),
        ("status", "token"),
    ] {
        assert!(
            observation.contains(&(name.to_owned(), kind.to_owned())),
            "Observation searchParam {name} ({kind}) in {observation:?}"
        );
    }
}

#[test]
fn every_advertised_patient_search_param_is_accepted_in_strict_mode() {
    let server = TestServer::example();
    create_patient(&server, "Strict");
    let params = search_params_of(&capability_of(&server, "Patient"));
    for (name, kind) in params {
        let value = match kind.as_str() {
            "token" | "string" => "x",
            "date" => "ge2000",
            "reference" => "Patient/x",
            other => panic!("unexpected type {other} of {name}"),
        };
        let reply = send(
            "GET",
            &server.url(&format!("/Patient?{name}={value}")),
            &[("Prefer", "handling=strict")],
            None,
        );
        assert_eq!(reply.status, 200, "advertised {name} ({kind}): {}", reply.body);
        assert_eq!(reply.json()["type"], "searchset");
    }
}
