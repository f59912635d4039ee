mod common;

// Transaction and batch Bundles (R4 http.html#transaction) loading the Synthea fixture, and
// Patient/$everything over what they stored.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use common::{FHIR_JSON, Reply, TestServer, send};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// The fixture
// ---------------------------------------------------------------------------------------------

const FIXTURE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/synthea-4p");

/// Every type in the fixture, in the order the transaction lists them.
const TYPES: [&str; 11] = [
    "AllergyIntolerance",
    "Condition",
    "DocumentReference",
    "Encounter",
    "Immunization",
    "Location",
    "MedicationRequest",
    "Organization",
    "Patient",
    "Practitioner",
    "Procedure",
];

/// The types referenced by conditional references and created with `ifNoneExist`.
const SHARED: [&str; 3] = ["Practitioner", "Organization", "Location"];

/// The fixture's resources, type by type, line by line.
fn fixture() -> Vec<Value> {
    let mut resources = Vec::new();
    for resource_type in TYPES {
        let text = std::fs::read_to_string(format!("{FIXTURE}/{resource_type}.ndjson"))
            .unwrap_or_else(|error| panic!("{resource_type}.ndjson: {error}"));
        for line in text.lines().filter(|line| !line.trim().is_empty()) {
            let resource: Value = serde_json::from_str(line).unwrap();
            assert_eq!(resource["resourceType"], resource_type);
            resources.push(resource);
        }
    }
    resources
}

fn key(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap(),
        resource["id"].as_str().unwrap()
    )
}

/// `identifier={system}|{value}` of the first identifier.
fn first_identifier(resource: &Value) -> String {
    let identifier = &resource["identifier"][0];
    format!(
        "{}|{}",
        identifier["system"].as_str().unwrap(),
        identifier["value"].as_str().unwrap()
    )
}

/// Every `reference` string in `value`, in document order.
fn references(value: &Value) -> Vec<String> {
    let mut found = Vec::new();
    collect_references(value, &mut found);
    found
}

fn collect_references(value: &Value, found: &mut Vec<String>) {
    match value {
        Value::Object(members) => {
            for (name, member) in members {
                match member {
                    Value::String(reference) if name == "reference" => found.push(reference.clone()),
                    other => collect_references(other, found),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|item| collect_references(item, found)),
        _ => {}
    }
}

/// Applies `rewrite` to every `reference` string in `value`.
fn map_references(value: &mut Value, rewrite: &dyn Fn(&str) -> String) {
    match value {
        Value::Object(members) => {
            for (name, member) in members.iter_mut() {
                match member {
                    Value::String(reference) if name == "reference" => *reference = rewrite(reference),
                    other => map_references(other, rewrite),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| map_references(item, rewrite)),
        _ => {}
    }
}

/// The fixture as a transaction: shared resources as conditional creates, every other one as
/// a POST with its references to the fixture rewritten to `urn:uuid:`.
fn transaction_bundle(resources: &[Value]) -> Value {
    let known: BTreeSet<String> = resources.iter().map(key).collect();
    let entries: Vec<Value> = resources
        .iter()
        .map(|resource| {
            let resource_type = resource["resourceType"].as_str().unwrap();
            let id = resource["id"].as_str().unwrap();
            if SHARED.contains(&resource_type) {
                json!({
                    "fullUrl": format!("urn:uuid:{id}"),
                    "resource": resource,
                    "request": {
                        "method": "POST",
                        "url": resource_type,
                        "ifNoneExist": format!("identifier={}", first_identifier(resource)),
                    }
                })
            } else {
                let mut resource = resource.clone();
                map_references(&mut resource, &|reference| {
                    if known.contains(reference) {
                        format!("urn:uuid:{}", reference.split_once('/').unwrap().1)
                    } else {
                        reference.to_owned()
                    }
                });
                json!({
                    "fullUrl": format!("urn:uuid:{id}"),
                    "resource": resource,
                    "request": {"method": "POST", "url": resource_type}
                })
            }
        })
        .collect();
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

/// The fixture loaded into a server.
struct Loaded {
    resources: Vec<Value>,
    /// `Type/original id` → new id.
    new_ids: HashMap<String, String>,
    /// `Type?identifier=system|value` → `Type/original id` of the shared resources.
    conditionals: HashMap<String, String>,
    response: Value,
}

impl Loaded {
    /// Where an original reference must point after the transaction: `Type/new id`.
    fn resolve(&self, reference: &str) -> String {
        let original = if reference.contains('?') {
            self.conditionals
                .get(reference)
                .unwrap_or_else(|| panic!("the fixture has the target of {reference}"))
                .clone()
        } else {
            reference.to_owned()
        };
        let resource_type = original.split_once('/').unwrap().0;
        let new_id = self
            .new_ids
            .get(&original)
            .unwrap_or_else(|| panic!("{original} was created"));
        format!("{resource_type}/{new_id}")
    }

    fn new_key(&self, original: &str) -> String {
        self.resolve(original)
    }
}

fn load(server: &TestServer) -> Loaded {
    let resources = fixture();
    let bundle = transaction_bundle(&resources);
    let reply = server.post_json("", &bundle);
    assert_eq!(reply.status, 200, "{}", &reply.body[..reply.body.len().min(2000)]);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    let response = reply.json();
    assert_eq!(response["resourceType"], "Bundle");
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().expect("response entries");
    assert_eq!(entries.len(), resources.len(), "one response per entry");
    let mut new_ids = HashMap::new();
    for (resource, entry) in resources.iter().zip(entries) {
        let resource_type = resource["resourceType"].as_str().unwrap();
        let status = entry["response"]["status"].as_str().unwrap_or_default();
        assert!(status.starts_with("201"), "{}: {entry}", key(resource));
        let location = entry["response"]["location"].as_str().expect("a location");
        let relative = location
            .strip_prefix(&format!("{}/", server.base_url))
            .unwrap_or(location);
        let parts: Vec<&str> = relative.split('/').collect();
        assert_eq!(parts.len(), 4, "Type/id/_history/1: {location}");
        assert_eq!(parts[0], resource_type, "{location}");
        assert_eq!(&parts[2..], ["_history", "1"], "{location}");
        assert_ne!(parts[1], resource["id"].as_str().unwrap(), "a POST gets a new id");
        if let Some(etag) = entry["response"].get("etag") {
            assert_eq!(etag, "W/\"1\"");
        }
        assert!(
            new_ids.insert(key(resource), parts[1].to_owned()).is_none(),
            "each original once"
        );
    }
    let new_id_set: BTreeSet<&String> = new_ids.values().collect();
    assert_eq!(new_id_set.len(), resources.len(), "every entry got its own id");
    let conditionals = resources
        .iter()
        .filter(|resource| SHARED.contains(&resource["resourceType"].as_str().unwrap()))
        .map(|resource| {
            (
                format!(
                    "{}?identifier={}",
                    resource["resourceType"].as_str().unwrap(),
                    first_identifier(resource)
                ),
                key(resource),
            )
        })
        .collect();
    Loaded {
        resources,
        new_ids,
        conditionals,
        response,
    }
}

fn total(server: &TestServer, resource_type: &str) -> u64 {
    let reply = server.get(&format!("/{resource_type}?_summary=count"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.json()["total"]
        .as_u64()
        .unwrap_or_else(|| panic!("a total: {}", reply.body))
}

fn totals(server: &TestServer, types: &[&str]) -> BTreeMap<String, u64> {
    types
        .iter()
        .map(|resource_type| ((*resource_type).to_owned(), total(server, resource_type)))
        .collect()
}

/// Every current resource of a type, by id.
fn all_of(server: &TestServer, resource_type: &str) -> HashMap<String, Value> {
    let reply = server.get(&format!("/{resource_type}?_count=1000"));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let bundle = reply.json();
    assert!(
        bundle["link"]
            .as_array()
            .is_none_or(|links| links.iter().all(|link| link["relation"] != "next")),
        "one page"
    );
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            (
                entry["resource"]["id"].as_str().unwrap().to_owned(),
                entry["resource"].clone(),
            )
        })
        .collect()
}

fn post_bundle(server: &TestServer, bundle: &Value) -> Reply {
    server.post_json("", bundle)
}

// ---------------------------------------------------------------------------------------------
// Transaction
// ---------------------------------------------------------------------------------------------

#[test]
fn transaction_loads_the_fixture_and_resolves_every_reference() {
    let server = TestServer::example();
    let loaded = load(&server);

    // Exactly the fixture was created: one resource per entry, shared ones once.
    let mut expected_totals: BTreeMap<String, u64> = BTreeMap::new();
    for resource in &loaded.resources {
        *expected_totals
            .entry(resource["resourceType"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(totals(&server, &TYPES), expected_totals);

    let mut stored: HashMap<String, Value> = HashMap::new();
    for resource_type in TYPES {
        for (id, resource) in all_of(&server, resource_type) {
            stored.insert(format!("{resource_type}/{id}"), resource);
        }
    }
    assert_eq!(stored.len(), loaded.resources.len());

    // No reference is a urn:uuid or a conditional one any more, and each points at a
    // stored resource.
    let mut targets = BTreeSet::new();
    for (key, resource) in &stored {
        for reference in references(resource) {
            assert!(!reference.starts_with("urn:"), "{key} still has {reference}");
            assert!(!reference.contains('?'), "{key} still has {reference}");
            assert_eq!(reference.split('/').count(), 2, "{key}: {reference}");
            targets.insert(reference);
        }
    }
    for target in &targets {
        assert!(stored.contains_key(target), "{target} is stored");
    }

    // Each stored resource is the fixture's, with its new id and every reference resolved.
    for original in &loaded.resources {
        let new_key = loaded.new_key(&key(original));
        let body = stored.get(&new_key).unwrap_or_else(|| panic!("{new_key} stored"));
        let mut expected = original.clone();
        expected["id"] = json!(new_key.split_once('/').unwrap().1);
        map_references(&mut expected, &|reference| loaded.resolve(reference));
        let mut actual = body.clone();
        let meta = actual["meta"].as_object_mut().expect("meta");
        assert_eq!(meta.shift_remove("versionId"), Some(json!("1")), "{new_key}");
        assert!(meta.shift_remove("lastUpdated").is_some(), "{new_key}");
        assert_eq!(meta.shift_remove("project"), Some(json!("default")), "{new_key}");
        if meta.is_empty() {
            actual.as_object_mut().unwrap().shift_remove("meta");
        }
        assert_eq!(actual, expected, "{} stored as {new_key}", key(original));
    }

    // Each Patient's resources reference its new id, which the search index knows too.
    for patient in loaded.resources.iter().filter(|r| r["resourceType"] == "Patient") {
        let original = key(patient);
        let new_reference = loaded.resolve(&original);
        for (resource_type, link) in [
            ("Encounter", "subject"),
            ("Condition", "subject"),
            ("Procedure", "subject"),
            ("MedicationRequest", "subject"),
            ("Immunization", "patient"),
            ("AllergyIntolerance", "patient"),
            ("DocumentReference", "subject"),
        ] {
            let in_fixture = loaded
                .resources
                .iter()
                .filter(|r| r["resourceType"] == resource_type && r[link]["reference"] == original.as_str())
                .count() as u64;
            let reply = server.get(&format!("/{resource_type}?{link}={new_reference}&_summary=count"));
            assert_eq!(reply.status, 200, "{}", reply.body);
            assert_eq!(
                reply.json()["total"],
                in_fixture,
                "{resource_type}?{link}={new_reference} ({original} in the fixture)"
            );
            let reply = server.get(&format!("/{resource_type}?{link}={original}&_summary=count"));
            assert_eq!(reply.json()["total"], 0, "nothing references {original} any more");
        }
    }
    assert!(loaded.response["entry"].as_array().unwrap().len() > 400);
}

#[test]
fn conditional_create_in_a_second_transaction_creates_nothing() {
    let server = TestServer::example();
    let loaded = load(&server);
    let practitioner = loaded
        .resources
        .iter()
        .find(|r| r["resourceType"] == "Practitioner")
        .unwrap()
        .clone();
    let existing = loaded.resolve(&key(&practitioner));
    let before = totals(&server, &TYPES);
    let criteria = format!("identifier={}", first_identifier(&practitioner));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
        "fullUrl": "urn:uuid:5c3b0c52-0000-4000-8000-000000000001",
        "resource": practitioner,
        "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": criteria}
    }]});
    let reply = post_bundle(&server, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["type"], "transaction-response");
    let entries = response["entry"].as_array().unwrap();
    assert_eq!(entries.len(), 1);
    let status = entries[0]["response"]["status"].as_str().unwrap();
    assert!(status.starts_with("200"), "{status}");
    let location = entries[0]["response"]["location"].as_str().unwrap();
    let relative = location
        .strip_prefix(&format!("{}/", server.base_url))
        .unwrap_or(location);
    let type_and_id: Vec<&str> = relative.split('/').take(2).collect();
    assert_eq!(
        type_and_id.join("/"),
        existing,
        "the location of the existing Practitioner"
    );
    assert_eq!(totals(&server, &TYPES), before, "nothing was created");
    let read = server.get(&format!("/{existing}"));
    assert_eq!(read.header("etag"), Some("W/\"1\""), "nor updated");

    // In a transaction with a new Encounter that references it conditionally, the conditional
    // create matches and the reference resolves to the existing Practitioner.
    let conditional = format!("Practitioner?{criteria}");
    let patient = loaded.resolve(&key(loaded
        .resources
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .unwrap()));
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:5c3b0c52-0000-4000-8000-000000000002",
         "resource": bundle["entry"][0]["resource"],
         "request": {"method": "POST", "url": "Practitioner", "ifNoneExist": criteria}},
        {"fullUrl": "urn:uuid:5c3b0c52-0000-4000-8000-000000000003",
         "resource": {"resourceType": "Encounter", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": patient},
            "participant": [
                {"individual": {"reference": conditional}},
                {"individual": {"reference": "urn:uuid:5c3b0c52-0000-4000-8000-000000000002"}}
            ]},
         "request": {"method": "POST", "url": "Encounter"}}
    ]});
    let reply = post_bundle(&server, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    let entries = response["entry"].as_array().unwrap();
    assert!(entries[0]["response"]["status"].as_str().unwrap().starts_with("200"));
    assert!(entries[1]["response"]["status"].as_str().unwrap().starts_with("201"));
    let encounter_location = entries[1]["response"]["location"].as_str().unwrap();
    let encounter_id = encounter_location
        .trim_start_matches(&format!("{}/", server.base_url))
        .split('/')
        .nth(1)
        .unwrap();
    let encounter = server.get(&format!("/Encounter/{encounter_id}")).json();
    assert_eq!(
        encounter["participant"][0]["individual"]["reference"],
        existing.as_str()
    );
    assert_eq!(
        encounter["participant"][1]["individual"]["reference"],
        existing.as_str()
    );
    assert_eq!(total(&server, "Practitioner"), before["Practitioner"]);
    assert_eq!(total(&server, "Encounter"), before["Encounter"] + 1);
}

#[test]
fn conditional_urls_in_a_transaction_match_by_their_search_not_their_text() {
    // `ifNoneExist` is the query part of a URL: percent-encoding it does not change the search,
    // so a reference written without encoding resolves to the resource it creates, and a
    // second entry with the same search creates nothing.
    let server = TestServer::example();
    let practitioner = json!({"resourceType": "Practitioner",
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-npi", "value": "1234567893"}],
        "name": [{"family": "Encoded"}]});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:7a7a7a7a-0000-4000-8000-000000000001",
         "resource": practitioner,
         "request": {"method": "POST", "url": "Practitioner",
            "ifNoneExist": "identifier=http%3A%2F%2Fhl7.org%2Ffhir%2Fsid%2Fus-npi%7C1234567893"}},
        {"fullUrl": "urn:uuid:7a7a7a7a-0000-4000-8000-000000000002",
         "resource": practitioner,
         "request": {"method": "POST", "url": "Practitioner",
            "ifNoneExist": "identifier=http://hl7.org/fhir/sid/us-npi|1234567893"}},
        {"fullUrl": "urn:uuid:7a7a7a7a-0000-4000-8000-000000000003",
         "resource": {"resourceType": "Encounter", "status": "finished", "class": {"code": "AMB"},
            "participant": [{"individual": {
                "reference": "Practitioner?identifier=http://hl7.org/fhir/sid/us-npi|1234567893"}}]},
         "request": {"method": "POST", "url": "Encounter"}}
    ]});
    let reply = post_bundle(&server, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(total(&server, "Practitioner"), 1, "one Practitioner for one identifier");
    let practitioners = all_of(&server, "Practitioner");
    let id = practitioners.keys().next().unwrap();
    let encounters = all_of(&server, "Encounter");
    let encounter = encounters.values().next().unwrap();
    assert_eq!(
        encounter["participant"][0]["individual"]["reference"],
        format!("Practitioner/{id}")
    );
}

#[test]
fn a_transaction_with_one_invalid_entry_stores_nothing() {
    let server = TestServer::example();
    let loaded = load(&server);
    let practitioner = loaded
        .resources
        .iter()
        .find(|r| r["resourceType"] == "Practitioner")
        .unwrap();
    let practitioner_new = loaded.resolve(&key(practitioner));
    // An existing resource to aim a failing update at.
    let existing = json!({"resourceType": "Patient", "id": "existing", "name": [{"family": "Existing"}]});
    let reply = send(
        "PUT",
        &server.url("/Patient/existing"),
        &[("Content-Type", "application/fhir+json")],
        Some(existing.to_string().as_bytes()),
    );
    assert_eq!(reply.status, 201, "{}", reply.body);
    // Two patients with one identifier, to make ifNoneExist ambiguous.
    for _ in 0..2 {
        let reply = server.post_json(
            "/Patient",
            &json!({"resourceType": "Patient", "identifier": [{"system": "urn:twins", "value": "1"}]}),
        );
        assert_eq!(reply.status, 201);
    }
    let types = ["Patient", "Observation", "Practitioner", "Encounter"];
    let before = totals(&server, &types);

    let good_patient = json!({
        "fullUrl": "urn:uuid:0f0e0d0c-0000-4000-8000-000000000001",
        "resource": {"resourceType": "Patient", "name": [{"family": "Rolledback"}]},
        "request": {"method": "POST", "url": "Patient"}
    });
    let good_observation = json!({
        "fullUrl": "urn:uuid:0f0e0d0c-0000-4000-8000-000000000002",
        "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "urn:uuid:0f0e0d0c-0000-4000-8000-000000000001"},
            "performer": [{"reference": practitioner_new}]},
        "request": {"method": "POST", "url": "Observation"}
    });
    let cases: Vec<(&str, Value)> = vec![
        (
            "a resource of unknown type",
            json!({"resource": {"resourceType": "Foo"}, "request": {"method": "POST", "url": "Foo"}}),
        ),
        (
            "a resource whose type is not the request URL's",
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}},
                "request": {"method": "POST", "url": "Patient"}}),
        ),
        (
            "a conditional reference matching nothing",
            json!({"resource": {"resourceType": "Encounter", "status": "finished",
                    "class": {"code": "AMB"},
                    "participant": [{"individual": {"reference": "Practitioner?identifier=urn:nobody|0"}}]},
                "request": {"method": "POST", "url": "Encounter"}}),
        ),
        (
            "a conditional reference matching several",
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                    "subject": {"reference": "Patient?identifier=urn:twins|1"}},
                "request": {"method": "POST", "url": "Observation"}}),
        ),
        (
            "an ifNoneExist matching several",
            json!({"resource": {"resourceType": "Patient"},
                "request": {"method": "POST", "url": "Patient", "ifNoneExist": "identifier=urn:twins|1"}}),
        ),
        (
            "an update whose ifMatch is not the current version",
            json!({"resource": {"resourceType": "Patient", "id": "existing", "name": [{"family": "Changed"}]},
                "request": {"method": "PUT", "url": "Patient/existing", "ifMatch": "W/\"7\""}}),
        ),
        (
            "an entry without a request",
            json!({"resource": {"resourceType": "Patient"}}),
        ),
        (
            "a PATCH entry",
            json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PATCH", "url": "Patient/existing"}}),
        ),
    ];
    for (what, bad) in cases {
        for bad_first in [false, true] {
            let entries = if bad_first {
                vec![bad.clone(), good_patient.clone(), good_observation.clone()]
            } else {
                vec![good_patient.clone(), good_observation.clone(), bad.clone()]
            };
            let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
            let reply = post_bundle(&server, &bundle);
            assert!(
                (400..500).contains(&reply.status),
                "a transaction with {what}: {} {}",
                reply.status,
                reply.body
            );
            assert_eq!(
                reply.json()["resourceType"],
                "OperationOutcome",
                "a transaction with {what}"
            );
            assert_eq!(
                totals(&server, &types),
                before,
                "nothing from a transaction with {what}"
            );
        }
    }
    let read = server.get("/Patient/existing");
    assert_eq!(read.header("etag"), Some("W/\"1\""));
    assert_eq!(read.json()["name"][0]["family"], "Existing");
    let search = server.get("/Patient?family=Rolledback&_summary=count").json();
    assert_eq!(search["total"], 0);

    // The same entries without the bad one go through.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction",
        "entry": [good_patient, good_observation]});
    let reply = post_bundle(&server, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(total(&server, "Patient"), before["Patient"] + 1);
    assert_eq!(total(&server, "Observation"), before["Observation"] + 1);
}

#[test]
fn a_batch_with_one_bad_entry_stores_the_good_ones() {
    let server = TestServer::example();
    let before = totals(&server, &["Patient", "Observation"]);
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": {"resourceType": "Patient", "name": [{"family": "BatchOne"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Foo"}, "request": {"method": "POST", "url": "Foo"}},
        {"resource": {"resourceType": "Patient", "name": [{"family": "BatchTwo"}]},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": "Patient?identifier=urn:nobody|0"}},
         "request": {"method": "POST", "url": "Observation"}},
        {"request": {"method": "GET", "url": "Patient/unknown"}},
        {"resource": {"resourceType": "Patient", "id": "batch-put", "name": [{"family": "BatchPut"}]},
         "request": {"method": "PUT", "url": "Patient/batch-put"}},
    ]});
    let reply = post_bundle(&server, &bundle);
    assert_eq!(reply.status, 200, "{}", reply.body);
    let response = reply.json();
    assert_eq!(response["resourceType"], "Bundle");
    assert_eq!(response["type"], "batch-response");
    let entries = response["entry"].as_array().expect("entries");
    assert_eq!(entries.len(), 6, "one response per entry");
    let statuses: Vec<&str> = entries
        .iter()
        .map(|entry| entry["response"]["status"].as_str().unwrap_or_default())
        .collect();
    let codes: Vec<&str> = statuses
        .iter()
        .map(|status| status.get(..3).unwrap_or_default())
        .collect();
    assert_eq!(codes[0], "201", "{statuses:?}");
    assert!(codes[1].starts_with('4'), "{statuses:?}");
    assert_eq!(codes[2], "201", "{statuses:?}");
    assert!(codes[3].starts_with('4'), "{statuses:?}");
    assert_eq!(codes[4], "404", "{statuses:?}");
    assert_eq!(codes[5], "201", "{statuses:?}");
    for index in [1, 3, 4] {
        assert_eq!(
            entries[index]["response"]["outcome"]["resourceType"], "OperationOutcome",
            "entry {index}: {}",
            entries[index]
        );
    }
    for (index, family) in [(0, "BatchOne"), (2, "BatchTwo"), (5, "BatchPut")] {
        let location = entries[index]["response"]["location"].as_str().expect("a location");
        let relative = location
            .strip_prefix(&format!("{}/", server.base_url))
            .unwrap_or(location);
        let read = server.get(&format!("/{relative}"));
        assert_eq!(read.status, 200, "{location}: {}", read.body);
        assert_eq!(read.json()["name"][0]["family"], family);
    }
    assert_eq!(total(&server, "Patient"), before["Patient"] + 3);
    assert_eq!(total(&server, "Observation"), before["Observation"]);
}

#[test]
fn a_bundle_that_is_not_a_batch_or_transaction_is_400() {
    let server = TestServer::example();
    for bundle in [
        json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}}]}),
        json!({"resourceType": "Patient"}),
    ] {
        let reply = post_bundle(&server, &bundle);
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    }
    assert_eq!(total(&server, "Patient"), 0);
}

// ---------------------------------------------------------------------------------------------
// $everything
// ---------------------------------------------------------------------------------------------

/// Where each fixture type links to its patient (the Patient compartment, for this data).
fn compartment_links(resource_type: &str) -> &'static [&'static [&'static str]] {
    match resource_type {
        "Encounter" => &[&["subject"], &["participant", "individual"]],
        "Condition" | "MedicationRequest" | "Procedure" | "DocumentReference" => &[&["subject"]],
        "Immunization" | "AllergyIntolerance" => &[&["patient"]],
        _ => &[],
    }
}

/// The references at `path` (arrays walked through).
fn references_at(resource: &Value, path: &[&str]) -> Vec<String> {
    let mut current = vec![resource];
    for segment in path {
        let mut next = Vec::new();
        for value in current {
            match &value[*segment] {
                Value::Array(items) => next.extend(items.iter()),
                Value::Null => {}
                other => next.push(other),
            }
        }
        current = next;
    }
    current
        .into_iter()
        .filter_map(|value| value["reference"].as_str().map(str::to_owned))
        .collect()
}

/// What `$everything` returns for one patient: `Type/new id` → search mode.
fn expected_everything(loaded: &Loaded, patient: &Value, types: Option<&[&str]>) -> BTreeMap<String, String> {
    let admits = |resource_type: &str| types.is_none_or(|types| types.contains(&resource_type));
    let patient_key = key(patient);
    let mut expected = BTreeMap::new();
    expected.insert(loaded.resolve(&patient_key), "match".to_owned());
    let members: Vec<&Value> = loaded
        .resources
        .iter()
        .filter(|resource| {
            let resource_type = resource["resourceType"].as_str().unwrap();
            compartment_links(resource_type)
                .iter()
                .any(|path| references_at(resource, path).contains(&patient_key))
        })
        .collect();
    for member in &members {
        if admits(member["resourceType"].as_str().unwrap()) {
            expected.insert(loaded.resolve(&key(member)), "match".to_owned());
        }
    }
    let member_keys: BTreeSet<String> = members.iter().map(|member| key(member)).collect();
    for member in std::iter::once(&patient).chain(members.iter()) {
        if !admits(member["resourceType"].as_str().unwrap()) {
            continue;
        }
        for reference in references(member) {
            let resolved = loaded.resolve(&reference);
            let target_type = resolved.split_once('/').unwrap().0;
            if SHARED.contains(&target_type) {
                if admits(target_type) {
                    expected.entry(resolved).or_insert_with(|| "include".to_owned());
                }
            } else {
                // This fixture only references the patient's own resources otherwise.
                assert!(
                    reference == patient_key || member_keys.contains(&reference),
                    "{} references {reference} outside the compartment",
                    key(member)
                );
            }
        }
    }
    expected
}

/// Reads an `$everything` searchset into `Type/id` → mode; asserts its shape.
fn everything_entries(server: &TestServer, bundle: &Value, context: &str) -> Vec<(String, String)> {
    assert_eq!(bundle["resourceType"], "Bundle", "{context}");
    assert_eq!(bundle["type"], "searchset", "{context}");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|entry| {
            let resource = &entry["resource"];
            let key = key(resource);
            assert_eq!(
                entry["fullUrl"],
                format!("{}/{key}", server.base_url),
                "{context}: fullUrl"
            );
            let mode = entry["search"]["mode"].as_str().unwrap_or_default().to_owned();
            (key, mode)
        })
        .collect()
}

fn as_map(entries: Vec<(String, String)>, context: &str) -> BTreeMap<String, String> {
    let mut map = BTreeMap::new();
    for (key, mode) in entries {
        assert!(
            map.insert(key.clone(), mode).is_none(),
            "{context}: {key} appears twice"
        );
    }
    map
}

fn patients(loaded: &Loaded) -> Vec<Value> {
    loaded
        .resources
        .iter()
        .filter(|resource| resource["resourceType"] == "Patient")
        .cloned()
        .collect()
}

fn get_everything(server: &TestServer, path: &str) -> Value {
    let reply = server.get(path);
    assert_eq!(reply.status, 200, "{path}: {}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{path}");
    reply.json()
}

#[test]
fn everything_returns_the_patient_its_compartment_and_what_it_references() {
    let server = TestServer::example();
    let loaded = load(&server);
    let patients = patients(&loaded);
    assert_eq!(patients.len(), 4);
    for patient in &patients {
        let patient_new = loaded.resolve(&key(patient));
        let expected = expected_everything(&loaded, patient, None);
        assert!(
            expected.values().any(|mode| mode == "include"),
            "the fixture references practitioners"
        );
        let path = format!("/{patient_new}/$everything?_count=1000");
        let bundle = get_everything(&server, &path);
        let entries = everything_entries(&server, &bundle, &path);
        assert_eq!(
            entries.first().map(|(key, _)| key.as_str()),
            Some(patient_new.as_str()),
            "{path}: the patient comes first"
        );
        let actual = as_map(entries, &path);
        let missing: Vec<&String> = expected.keys().filter(|key| !actual.contains_key(*key)).collect();
        let extra: Vec<&String> = actual.keys().filter(|key| !expected.contains_key(*key)).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{path}: missing {missing:?}, extra {extra:?}"
        );
        assert_eq!(actual, expected, "{path}: search modes");
        assert_eq!(bundle["total"], json!(expected.len()), "{path}: total");
        assert!(
            bundle["link"]
                .as_array()
                .is_none_or(|links| links.iter().all(|link| link["relation"] != "next")),
            "{path}: one page"
        );
    }
}

#[test]
fn everything_type_filter_restricts_and_keeps_the_patient() {
    let server = TestServer::example();
    let loaded = load(&server);
    for patient in patients(&loaded) {
        let patient_new = loaded.resolve(&key(&patient));
        for (query, types) in [
            ("_type=Condition", &["Condition"][..]),
            ("_type=Condition,Encounter", &["Condition", "Encounter"]),
            ("_type=Condition&_type=Encounter", &["Condition", "Encounter"]),
            ("_type=Encounter,Practitioner", &["Encounter", "Practitioner"]),
        ] {
            let path = format!("/{patient_new}/$everything?{query}&_count=1000");
            let bundle = get_everything(&server, &path);
            let actual = as_map(everything_entries(&server, &bundle, &path), &path);
            let expected = expected_everything(&loaded, &patient, Some(types));
            assert_eq!(actual, expected, "{path}");
            assert!(actual.contains_key(&patient_new), "{path}: the patient is always there");
            assert!(
                actual
                    .keys()
                    .all(|key| key == &patient_new || types.contains(&key.split_once('/').unwrap().0)),
                "{path}: only {types:?}"
            );
        }
        // Conditions only: the patient and its conditions, nothing else.
        let path = format!("/{patient_new}/$everything?_type=Condition&_count=1000");
        let bundle = get_everything(&server, &path);
        let conditions = loaded
            .resources
            .iter()
            .filter(|r| r["resourceType"] == "Condition" && r["subject"]["reference"] == key(&patient).as_str())
            .count();
        assert_eq!(bundle["entry"].as_array().map_or(0, Vec::len), conditions + 1, "{path}");
    }
}

/// Follows `next` links from `first_path` and returns every entry seen, checking each page.
fn follow_pages(server: &TestServer, first_path: &str, page_size: usize, total: usize) -> BTreeMap<String, String> {
    let mut url = server.url(first_path);
    let mut seen = Vec::new();
    let mut pages = 0;
    loop {
        let reply = send("GET", &url, &[], None);
        assert_eq!(reply.status, 200, "{url}: {}", reply.body);
        let bundle = reply.json();
        let entries = everything_entries(server, &bundle, &url);
        assert!(entries.len() <= page_size, "{url}: at most {page_size} entries");
        assert!(!entries.is_empty(), "{url}: a page is not empty");
        assert_eq!(bundle["total"], json!(total), "{url}: total");
        if pages > 0 {
            assert!(
                bundle["link"]
                    .as_array()
                    .is_some_and(|links| links.iter().any(|link| link["relation"] == "previous")),
                "{url}: a previous link"
            );
        }
        seen.extend(entries);
        pages += 1;
        assert!(pages <= total, "paging ends");
        let next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|link| link["relation"] == "next")
            .and_then(|link| link["url"].as_str())
            .map(str::to_owned);
        match next {
            Some(next) => url = next,
            None => break,
        }
    }
    assert_eq!(pages, total.div_ceil(page_size), "{first_path}: pages");
    as_map(seen, first_path)
}

/// The patient with the most data.
fn biggest_patient(loaded: &Loaded) -> Value {
    patients(loaded)
        .into_iter()
        .max_by_key(|patient| expected_everything(loaded, patient, None).len())
        .unwrap()
}

#[test]
fn everything_pages_through_the_same_set() {
    let server = TestServer::example();
    let loaded = load(&server);
    let patient = biggest_patient(&loaded);
    let expected = expected_everything(&loaded, &patient, None);
    assert!(expected.len() > 20, "several pages");
    let patient_new = loaded.resolve(&key(&patient));
    let path = format!("/{patient_new}/$everything?_count=10");
    let actual = follow_pages(&server, &path, 10, expected.len());
    assert_eq!(actual, expected);
}

#[test]
fn everything_paging_keeps_the_type_filter() {
    let server = TestServer::example();
    let loaded = load(&server);
    let patient = biggest_patient(&loaded);
    let types = ["Condition", "Encounter"];
    let expected = expected_everything(&loaded, &patient, Some(&types));
    assert!(expected.len() > 10, "several pages");
    let patient_new = loaded.resolve(&key(&patient));
    let path = format!("/{patient_new}/$everything?_type=Condition,Encounter&_count=5");
    let actual = follow_pages(&server, &path, 5, expected.len());
    assert_eq!(actual, expected);
}

#[test]
fn everything_at_type_level_returns_every_patients_data() {
    let server = TestServer::example();
    let loaded = load(&server);
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for patient in patients(&loaded) {
        for (key, mode) in expected_everything(&loaded, &patient, None) {
            expected.entry(key).or_insert(mode);
        }
    }
    let path = "/Patient/$everything?_count=1000";
    let bundle = get_everything(&server, path);
    let actual = as_map(everything_entries(&server, &bundle, path), path);
    let missing: Vec<&String> = expected.keys().filter(|key| !actual.contains_key(*key)).collect();
    let extra: Vec<&String> = actual.keys().filter(|key| !expected.contains_key(*key)).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "missing {missing:?}, extra {extra:?}"
    );
    assert_eq!(actual, expected);
    assert_eq!(bundle["total"], json!(expected.len()));
    // Everything in the fixture belongs to or is referenced by one of the four patients.
    assert_eq!(expected.len(), loaded.resources.len());
}

#[test]
fn everything_of_an_unknown_patient_is_404() {
    let server = TestServer::example();
    load(&server);
    let reply = server.get("/Patient/does-not-exist/$everything");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.json()["resourceType"], "OperationOutcome");
    assert!(reply.issue_codes().contains(&"not-found".to_owned()), "{}", reply.body);
    let reply = server.get("/Patient/does-not-exist/$everything?_type=Condition");
    assert_eq!(reply.status, 404, "{}", reply.body);
}

#[test]
fn everything_of_a_deleted_patient_is_410() {
    let server = TestServer::example();
    let reply = server.post_json("/Patient", &json!({"resourceType": "Patient"}));
    let id = reply.json()["id"].as_str().unwrap().to_owned();
    assert_eq!(server.get(&format!("/Patient/{id}/$everything")).status, 200);
    let reply = send("DELETE", &server.url(&format!("/Patient/{id}")), &[], None);
    assert_eq!(reply.status, 200);
    let reply = server.get(&format!("/Patient/{id}/$everything"));
    assert_eq!(reply.status, 410, "{}", reply.body);
    assert_eq!(reply.json()["resourceType"], "OperationOutcome");
}

#[test]
fn everything_operation_definition_lists_its_parameters() {
    let server = TestServer::example();
    let reply = server.get("/OperationDefinition/Patient-it-everything");
    assert_eq!(reply.status, 200, "{}", reply.body);
    let definition = reply.json();
    assert_eq!(definition["resourceType"], "OperationDefinition");
    assert_eq!(definition["id"], "Patient-it-everything");
    assert_eq!(definition["code"], "everything");
    assert_eq!(definition["resource"], json!(["Patient"]));
    assert_eq!(definition["system"], false);
    assert_eq!(definition["type"], true);
    assert_eq!(definition["instance"], true);
    assert_eq!(definition["affectsState"], false);
    let parameters = definition["parameter"].as_array().expect("parameters");
    for (name, use_, min, max, fhir_type) in [
        ("start", "in", 0, "1", "date"),
        ("end", "in", 0, "1", "date"),
        ("_since", "in", 0, "1", "instant"),
        ("_type", "in", 0, "*", "code"),
        ("_count", "in", 0, "1", "integer"),
        ("return", "out", 1, "1", "Bundle"),
    ] {
        let matching: Vec<&Value> = parameters.iter().filter(|p| p["name"] == name).collect();
        assert_eq!(matching.len(), 1, "one parameter {name}: {parameters:?}");
        let parameter = matching[0];
        assert_eq!(parameter["use"], use_, "{name}");
        assert_eq!(parameter["min"], min, "{name}");
        assert_eq!(parameter["max"], max, "{name}");
        assert_eq!(parameter["type"], fhir_type, "{name}");
    }
}
