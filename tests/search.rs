mod common;

// Search over HTTP (R4 search.html) on the example server: the common parameters, Patient's
// string, token and date parameters, references and tokens on clinical resources, paging,
// sorting, _summary/_total, POST _search, and the handling of unknown parameters.

use std::collections::{BTreeMap, BTreeSet};

use common::{FHIR_JSON, Reply, TestServer, send};
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Percent-encodes every byte but the unreserved ones.
fn enc(text: &str) -> String {
    text.bytes()
        .map(|byte| {
            if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
                (byte as char).to_string()
            } else {
                format!("%{byte:02X}")
            }
        })
        .collect()
}

/// `a=1&b=2`, encoded.
fn query(pairs: &[(&str, &str)]) -> String {
    pairs
        .iter()
        .map(|(name, value)| format!("{}={}", enc(name), enc(value)))
        .collect::<Vec<_>>()
        .join("&")
}

fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::new();
    let mut index = 0;
    while index < bytes.len() {
        match bytes[index] {
            b'+' => out.push(b' '),
            b'%' if index + 2 < bytes.len() => {
                let hex = std::str::from_utf8(&bytes[index + 1..index + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                index += 2;
            }
            other => out.push(other),
        }
        index += 1;
    }
    String::from_utf8(out).unwrap()
}

/// The decoded query pairs of a URL.
fn url_pairs(url: &str) -> Vec<(String, String)> {
    let Some((_, query)) = url.split_once('?') else {
        return Vec::new();
    };
    query
        .split('&')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(name), decode(value))
        })
        .collect()
}

fn link<'a>(bundle: &'a Value, relation: &str) -> Option<&'a str> {
    bundle["link"]
        .as_array()?
        .iter()
        .find(|link| link["relation"] == relation)
        .and_then(|link| link["url"].as_str())
}

/// GETs an absolute URL.
fn get_url(url: &str) -> Reply {
    send("GET", url, &[], None)
}

/// A searchset: asserts 200 and the Bundle's shape.
fn searchset(reply: &Reply, context: &str) -> Value {
    assert_eq!(reply.status, 200, "{context}: {}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{context}");
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle", "{context}");
    assert_eq!(bundle["type"], "searchset", "{context}");
    for entry in bundle["entry"].as_array().into_iter().flatten() {
        assert_eq!(entry["search"]["mode"], "match", "{context}: {entry}");
        let resource = &entry["resource"];
        let full_url = entry["fullUrl"].as_str().unwrap_or_default();
        let expected_tail = format!(
            "/{}/{}",
            resource["resourceType"].as_str().unwrap(),
            resource["id"].as_str().unwrap()
        );
        assert!(full_url.ends_with(&expected_tail), "{context}: fullUrl {full_url}");
    }
    bundle
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|entry| entry["resource"]["id"].as_str().expect("an id").to_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// The ids a search finds (one page holds them all); checks `total` and the self link.
fn find(server: &TestServer, resource_type: &str, pairs: &[(&str, &str)]) -> BTreeSet<String> {
    let mut all = pairs.to_vec();
    all.push(("_count", "1000"));
    let context = format!("{resource_type}?{}", query(pairs));
    let bundle = searchset(&server.get(&format!("/{resource_type}?{}", query(&all))), &context);
    let ids = entry_ids(&bundle);
    let unique: BTreeSet<String> = ids.iter().cloned().collect();
    assert_eq!(ids.len(), unique.len(), "{context}: no duplicates in {ids:?}");
    assert_eq!(bundle["total"], json!(ids.len()), "{context}: total");
    assert!(link(&bundle, "next").is_none(), "{context}");
    // The self link repeats the parameters used.
    let self_link = link(&bundle, "self").unwrap_or_else(|| panic!("{context}: a self link"));
    assert!(
        self_link.starts_with(&server.url(&format!("/{resource_type}?"))),
        "{context}: {self_link}"
    );
    let self_pairs: BTreeSet<(String, String)> = url_pairs(self_link)
        .into_iter()
        .filter(|(name, _)| name != "_count")
        .collect();
    let sent: BTreeSet<(String, String)> = pairs
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    assert_eq!(self_pairs, sent, "{context}: the self link shows the parameters used");
    unique
}

fn set(ids: &[&str]) -> BTreeSet<String> {
    ids.iter().map(|id| (*id).to_owned()).collect()
}

fn put(server: &TestServer, resource: &Value) -> Value {
    let resource_type = resource["resourceType"].as_str().unwrap();
    let id = resource["id"].as_str().unwrap();
    let reply = send(
        "PUT",
        &server.url(&format!("/{resource_type}/{id}")),
        &[("Content-Type", "application/fhir+json")],
        Some(resource.to_string().as_bytes()),
    );
    assert!(
        matches!(reply.status, 200 | 201),
        "PUT {resource_type}/{id}: {}",
        reply.body
    );
    reply.json()
}

fn create(server: &TestServer, resource: &Value) -> Value {
    let resource_type = resource["resourceType"].as_str().unwrap();
    let reply = server.post_json(&format!("/{resource_type}"), resource);
    assert_eq!(reply.status, 201, "{}", reply.body);
    reply.json()
}

/// Five patients with ids p1..p5.
fn patients(server: &TestServer) {
    for patient in [
        json!({"resourceType": "Patient", "id": "p1",
            "identifier": [{"system": "urn:sys:a", "value": "A1"}, {"system": "urn:sys:a", "value": "A9"}],
            "name": [{"family": "Müller", "given": ["Anna", "Maria"]}],
            "gender": "female", "birthDate": "1980-05-06"}),
        json!({"resourceType": "Patient", "id": "p2",
            "identifier": [{"system": "urn:sys:b", "value": "A1"}],
            "name": [{"family": "Mulligan", "given": ["Bob"]}],
            "gender": "male", "birthDate": "1975-12-31"}),
        json!({"resourceType": "Patient", "id": "p3",
            "identifier": [{"value": "A1"}],
            "name": [{"family": "Smith", "given": ["Anna"]}],
            "gender": "female", "birthDate": "1990"}),
        json!({"resourceType": "Patient", "id": "p4",
            "identifier": [{"system": "urn:sys:a", "value": "B2"}],
            "name": [{"family": "Schöller", "given": ["Carl"]}],
            "gender": "other", "birthDate": "2001-02-03"}),
        json!({"resourceType": "Patient", "id": "p5",
            "name": [{"family": "Muller", "given": ["Maria"]}, {"family": "Jones", "given": ["Mia"]}],
            "gender": "unknown", "birthDate": "1980-12-31"}),
    ] {
        put(server, &patient);
    }
}

// ---------------------------------------------------------------------------------------------
// Common parameters
// ---------------------------------------------------------------------------------------------

#[test]
fn search_by_id() {
    let server = TestServer::example();
    patients(&server);
    assert_eq!(find(&server, "Patient", &[("_id", "p1")]), set(&["p1"]));
    assert_eq!(find(&server, "Patient", &[("_id", "p1,p3")]), set(&["p1", "p3"]));
    assert_eq!(find(&server, "Patient", &[("_id", "nobody")]), set(&[]));
    assert_eq!(find(&server, "Patient", &[]), set(&["p1", "p2", "p3", "p4", "p5"]));
    // _id of another type finds nothing.
    assert_eq!(find(&server, "Observation", &[("_id", "p1")]), set(&[]));
}

#[test]
fn search_by_last_updated() {
    let server = TestServer::example();
    let mut updated: BTreeMap<String, String> = BTreeMap::new();
    for index in 0..6 {
        let body = create(
            &server,
            &json!({"resourceType": "Patient", "name": [{"family": format!("T{index}")}]}),
        );
        updated.insert(
            body["id"].as_str().unwrap().to_owned(),
            body["meta"]["lastUpdated"].as_str().unwrap().to_owned(),
        );
    }
    let matching = |keep: &dyn Fn(&str) -> bool| -> BTreeSet<String> {
        updated
            .iter()
            .filter(|(_, last_updated)| keep(last_updated))
            .map(|(id, _)| id.clone())
            .collect()
    };
    let times: Vec<String> = updated.values().cloned().collect::<BTreeSet<_>>().into_iter().collect();
    // The server writes instants in UTC with milliseconds, so text order is time order.
    for time in &times {
        assert!(time.len() == 24 && time.ends_with('Z'), "{time}");
        let ge = find(&server, "Patient", &[("_lastUpdated", &format!("ge{time}"))]);
        assert_eq!(ge, matching(&|t| t >= time.as_str()), "ge{time}");
        let lt = find(&server, "Patient", &[("_lastUpdated", &format!("lt{time}"))]);
        assert_eq!(lt, matching(&|t| t < time.as_str()), "lt{time}");
        assert!(!lt.is_empty() || time == &times[0]);
    }
    // A range: ge the second time and lt the last.
    if times.len() >= 3 {
        let (low, high) = (&times[1], &times[times.len() - 1]);
        let range = find(
            &server,
            "Patient",
            &[
                ("_lastUpdated", &format!("ge{low}")),
                ("_lastUpdated", &format!("lt{high}")),
            ],
        );
        assert_eq!(range, matching(&|t| t >= low.as_str() && t < high.as_str()));
    }
    // Dates far away.
    let all: BTreeSet<String> = updated.keys().cloned().collect();
    assert_eq!(find(&server, "Patient", &[("_lastUpdated", "ge2000-01-01")]), all);
    assert_eq!(find(&server, "Patient", &[("_lastUpdated", "lt2000-01-01")]), set(&[]));
    assert_eq!(find(&server, "Patient", &[("_lastUpdated", "gt2999")]), set(&[]));
}

#[test]
fn count_pages_with_self_next_and_previous_links() {
    let server = TestServer::example();
    let mut created = BTreeSet::new();
    for index in 0..23 {
        let body = create(
            &server,
            &json!({"resourceType": "Patient", "gender": "female",
            "name": [{"family": format!("Page{index}")}]}),
        );
        created.insert(body["id"].as_str().unwrap().to_owned());
    }
    // One male patient that the search does not find.
    create(&server, &json!({"resourceType": "Patient", "gender": "male"}));

    let first = searchset(
        &server.get(&format!("/Patient?{}", query(&[("gender", "female"), ("_count", "5")]))),
        "first page",
    );
    assert_eq!(first["total"], 23);
    assert!(
        link(&first, "previous").is_none(),
        "the first page has no previous link"
    );
    let self_pairs = url_pairs(link(&first, "self").expect("self"));
    assert!(
        self_pairs.contains(&("gender".into(), "female".into())),
        "{self_pairs:?}"
    );
    assert!(self_pairs.contains(&("_count".into(), "5".into())), "{self_pairs:?}");

    let mut seen: Vec<String> = Vec::new();
    let mut pages = vec![first];
    loop {
        let page = pages.last().unwrap();
        let ids = entry_ids(page);
        assert!(ids.len() <= 5, "a page holds at most _count entries");
        seen.extend(ids);
        let Some(next) = link(page, "next") else { break };
        assert!(
            next.starts_with(&server.url("/Patient?")),
            "next link on the same base: {next}"
        );
        let next_page = searchset(&get_url(next), next);
        assert_eq!(next_page["total"], 23);
        assert!(
            link(&next_page, "previous").is_some(),
            "page {} has a previous link",
            pages.len() + 1
        );
        assert!(pages.len() < 10, "paging ends");
        pages.push(next_page);
    }
    assert_eq!(pages.len(), 5, "23 matches in pages of 5");
    assert_eq!(entry_ids(pages.last().unwrap()).len(), 3);
    let unique: BTreeSet<String> = seen.iter().cloned().collect();
    assert_eq!(seen.len(), unique.len(), "no resource repeats across pages: {seen:?}");
    assert_eq!(unique, created, "every match is seen once");

    // previous of the second page is the first page.
    let previous = link(&pages[1], "previous").unwrap();
    let back = searchset(&get_url(previous), previous);
    assert_eq!(entry_ids(&back), entry_ids(&pages[0]));
    // The last page's previous is the fourth page.
    let previous = link(&pages[4], "previous").unwrap();
    assert_eq!(
        entry_ids(&searchset(&get_url(previous), previous)),
        entry_ids(&pages[3])
    );
}

#[test]
fn sort_by_last_updated_both_ways() {
    let server = TestServer::example();
    let mut ids = Vec::new();
    for index in 0..8 {
        let body = create(
            &server,
            &json!({"resourceType": "Patient", "name": [{"family": format!("S{index}")}]}),
        );
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    // Updating the first one makes it the most recently updated.
    let mut first = server.get(&format!("/Patient/{}", ids[0])).json();
    first["active"] = json!(true);
    let newest = put(&server, &first)["meta"]["lastUpdated"].as_str().unwrap().to_owned();
    let all: BTreeSet<String> = ids.iter().cloned().collect();

    let read = |sort: &str| -> Vec<(String, String)> {
        let bundle = searchset(&server.get(&format!("/Patient?_sort={}&_count=100", enc(sort))), sort);
        bundle["entry"]
            .as_array()
            .unwrap()
            .iter()
            .map(|entry| {
                (
                    entry["resource"]["id"].as_str().unwrap().to_owned(),
                    entry["resource"]["meta"]["lastUpdated"].as_str().unwrap().to_owned(),
                )
            })
            .collect()
    };
    let ascending = read("_lastUpdated");
    assert_eq!(ascending.iter().map(|(id, _)| id.clone()).collect::<BTreeSet<_>>(), all);
    assert!(
        ascending.windows(2).all(|pair| pair[0].1 <= pair[1].1),
        "oldest first: {ascending:?}"
    );
    assert_eq!(ascending.last().unwrap().1, newest);

    let descending = read("-_lastUpdated");
    assert_eq!(
        descending.iter().map(|(id, _)| id.clone()).collect::<BTreeSet<_>>(),
        all
    );
    assert!(
        descending.windows(2).all(|pair| pair[0].1 >= pair[1].1),
        "newest first: {descending:?}"
    );
    assert_eq!(descending[0].1, newest);
    assert_eq!(descending.len(), 8);
}

#[test]
fn summary_count_returns_the_total_without_entries() {
    let server = TestServer::example();
    patients(&server);
    let reply = server.get("/Patient?gender=female&_summary=count");
    let bundle = searchset(&reply, "_summary=count");
    assert_eq!(bundle["total"], 2);
    assert!(bundle.get("entry").is_none(), "{bundle}");
    let self_pairs = url_pairs(link(&bundle, "self").expect("self"));
    assert!(
        self_pairs.contains(&("gender".into(), "female".into())),
        "{self_pairs:?}"
    );
    assert!(
        self_pairs.contains(&("_summary".into(), "count".into())),
        "{self_pairs:?}"
    );
    assert!(link(&bundle, "next").is_none());

    let all = searchset(&server.get("/Patient?_summary=count"), "all");
    assert_eq!(all["total"], 5);
    assert!(all.get("entry").is_none());
}

#[test]
fn total_none_leaves_the_total_out() {
    let server = TestServer::example();
    patients(&server);
    let bundle = searchset(&server.get("/Patient?gender=female&_total=none"), "_total=none");
    assert!(bundle.get("total").is_none(), "{bundle}");
    let ids: BTreeSet<String> = entry_ids(&bundle).into_iter().collect();
    assert_eq!(ids, set(&["p1", "p3"]));
}

// ---------------------------------------------------------------------------------------------
// Patient parameters
// ---------------------------------------------------------------------------------------------

#[test]
fn name_is_a_case_and_accent_insensitive_prefix() {
    let server = TestServer::example();
    patients(&server);
    let mull = set(&["p1", "p2", "p5"]); // Müller, Mulligan, Muller
    assert_eq!(find(&server, "Patient", &[("name", "müll")]), mull);
    assert_eq!(find(&server, "Patient", &[("name", "MUL")]), mull);
    assert_eq!(find(&server, "Patient", &[("name", "mull")]), mull);
    assert_eq!(find(&server, "Patient", &[("name", "Müller")]), set(&["p1", "p5"]));
    assert_eq!(find(&server, "Patient", &[("name", "MULLER")]), set(&["p1", "p5"]));
    assert_eq!(find(&server, "Patient", &[("name", "schoe")]), set(&[]));
    assert_eq!(find(&server, "Patient", &[("name", "scho")]), set(&["p4"]));
    // Any part of the name: given names, and the second name of p5.
    assert_eq!(find(&server, "Patient", &[("name", "ann")]), set(&["p1", "p3"]));
    assert_eq!(find(&server, "Patient", &[("name", "jon")]), set(&["p5"]));
    // A prefix, not a substring.
    assert_eq!(find(&server, "Patient", &[("name", "ller")]), set(&[]));
    assert_eq!(find(&server, "Patient", &[("name", "xyz")]), set(&[]));
}

#[test]
fn name_exact_and_contains() {
    let server = TestServer::example();
    patients(&server);
    assert_eq!(find(&server, "Patient", &[("name:exact", "Müller")]), set(&["p1"]));
    assert_eq!(find(&server, "Patient", &[("name:exact", "Muller")]), set(&["p5"]));
    assert_eq!(find(&server, "Patient", &[("name:exact", "müller")]), set(&[]));
    assert_eq!(find(&server, "Patient", &[("name:exact", "Müll")]), set(&[]));
    assert_eq!(
        find(&server, "Patient", &[("name:contains", "ller")]),
        set(&["p1", "p4", "p5"])
    );
    assert_eq!(
        find(&server, "Patient", &[("name:contains", "LLER")]),
        set(&["p1", "p4", "p5"])
    );
    assert_eq!(find(&server, "Patient", &[("name:contains", "öll")]), set(&["p4"]));
    assert_eq!(
        find(&server, "Patient", &[("name:contains", "üll")]),
        set(&["p1", "p2", "p5"])
    );
    assert_eq!(
        find(&server, "Patient", &[("name:contains", "ari")]),
        set(&["p1", "p5"])
    );
    assert_eq!(find(&server, "Patient", &[("name:contains", "%")]), set(&[]));
    assert_eq!(find(&server, "Patient", &[("name:contains", "_")]), set(&[]));
}

#[test]
fn family_and_given() {
    let server = TestServer::example();
    patients(&server);
    assert_eq!(find(&server, "Patient", &[("family", "smi")]), set(&["p3"]));
    assert_eq!(find(&server, "Patient", &[("family", "MÜLLER")]), set(&["p1", "p5"]));
    assert_eq!(
        find(&server, "Patient", &[("family", "anna")]),
        set(&[]),
        "family is not given"
    );
    assert_eq!(find(&server, "Patient", &[("given", "anna")]), set(&["p1", "p3"]));
    assert_eq!(find(&server, "Patient", &[("given", "mar")]), set(&["p1", "p5"]));
    assert_eq!(
        find(&server, "Patient", &[("given", "smith")]),
        set(&[]),
        "given is not family"
    );
    assert_eq!(find(&server, "Patient", &[("family:exact", "Smith")]), set(&["p3"]));
    assert_eq!(find(&server, "Patient", &[("given:exact", "Anna")]), set(&["p1", "p3"]));
}

#[test]
fn or_by_comma_and_by_repetition() {
    let server = TestServer::example();
    patients(&server);
    assert_eq!(
        find(&server, "Patient", &[("gender", "male,female")]),
        set(&["p1", "p2", "p3"])
    );
    assert_eq!(
        find(&server, "Patient", &[("given", "anna,bob")]),
        set(&["p1", "p2", "p3"])
    );
    assert_eq!(
        find(&server, "Patient", &[("given", "anna"), ("given", "maria")]),
        set(&["p1"])
    );
    assert_eq!(
        find(&server, "Patient", &[("given", "anna"), ("given", "bob")]),
        set(&[])
    );
    // AND across parameters.
    assert_eq!(
        find(&server, "Patient", &[("gender", "female"), ("family", "smi")]),
        set(&["p3"])
    );
    assert_eq!(
        find(&server, "Patient", &[("gender", "male"), ("family", "smi")]),
        set(&[])
    );
    // OR inside AND.
    assert_eq!(
        find(&server, "Patient", &[("gender", "female,male"), ("name", "mul,smi")]),
        set(&["p1", "p2", "p3"])
    );
}

#[test]
fn gender_is_a_token() {
    let server = TestServer::example();
    patients(&server);
    assert_eq!(find(&server, "Patient", &[("gender", "female")]), set(&["p1", "p3"]));
    assert_eq!(find(&server, "Patient", &[("gender", "male")]), set(&["p2"]));
    assert_eq!(find(&server, "Patient", &[("gender", "unknown")]), set(&["p5"]));
    assert_eq!(
        find(&server, "Patient", &[("gender", "fem")]),
        set(&[]),
        "a token is not a prefix"
    );
}

#[test]
fn birthdate_matches_by_precision_and_prefix() {
    let server = TestServer::example();
    patients(&server);
    // p1 1980-05-06, p2 1975-12-31, p3 1990, p4 2001-02-03, p5 1980-12-31
    let cases: &[(&str, &[&str])] = &[
        ("1980", &["p1", "p5"]),
        ("1980-05", &["p1"]),
        ("1980-05-06", &["p1"]),
        ("eq1980-05-06", &["p1"]),
        ("1980-05-07", &[]),
        ("1990", &["p3"]),
        // The search day does not contain the whole year 1990.
        ("1990-06-01", &[]),
        ("ge1980-05-06", &["p1", "p3", "p4", "p5"]),
        ("gt1980-05-06", &["p3", "p4", "p5"]),
        ("le1980-05-06", &["p1", "p2"]),
        ("lt1980-05-06", &["p2"]),
        ("ge1980-05-07", &["p3", "p4", "p5"]),
        ("le1980-05-05", &["p2"]),
        // A year starting before and ending after the search day overlaps both sides.
        ("lt1990-06-01", &["p1", "p2", "p3", "p5"]),
        ("gt1990-06-01", &["p3", "p4"]),
        ("ge2001", &["p4"]),
        ("lt1975", &[]),
        ("ne1980", &["p2", "p3", "p4"]),
    ];
    for (value, expected) in cases {
        assert_eq!(
            find(&server, "Patient", &[("birthdate", value)]),
            set(expected),
            "birthdate={value}"
        );
    }
    assert_eq!(
        find(&server, "Patient", &[("birthdate", "ge1980"), ("birthdate", "lt1981")]),
        set(&["p1", "p5"])
    );
    assert_eq!(
        find(&server, "Patient", &[("birthdate", "1975,1990")]),
        set(&["p2", "p3"])
    );
}

#[test]
fn identifier_by_system_and_value() {
    let server = TestServer::example();
    patients(&server);
    assert_eq!(
        find(&server, "Patient", &[("identifier", "urn:sys:a|A1")]),
        set(&["p1"])
    );
    assert_eq!(
        find(&server, "Patient", &[("identifier", "urn:sys:b|A1")]),
        set(&["p2"])
    );
    assert_eq!(find(&server, "Patient", &[("identifier", "urn:sys:c|A1")]), set(&[]));
    assert_eq!(
        find(&server, "Patient", &[("identifier", "A1")]),
        set(&["p1", "p2", "p3"])
    );
    assert_eq!(find(&server, "Patient", &[("identifier", "|A1")]), set(&["p3"]));
    assert_eq!(
        find(&server, "Patient", &[("identifier", "urn:sys:a|")]),
        set(&["p1", "p4"])
    );
    assert_eq!(find(&server, "Patient", &[("identifier", "A9")]), set(&["p1"]));
    assert_eq!(
        find(&server, "Patient", &[("identifier", "a1")]),
        set(&[]),
        "codes are case-sensitive"
    );
    assert_eq!(
        find(&server, "Patient", &[("identifier", "urn:sys:a|B2,urn:sys:b|A1")]),
        set(&["p2", "p4"])
    );
}

// ---------------------------------------------------------------------------------------------
// Clinical resources
// ---------------------------------------------------------------------------------------------

fn clinical(server: &TestServer) {
    patients(server);
    for resource in [
        json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-03-01T10:00:00Z"}),
        json!({"resourceType": "Observation", "id": "o2", "status": "preliminary",
            "code": {"coding": [{"system": "http://loinc.org", "code": "29463-7", "display": "Body weight"}]},
            "subject": {"reference": "Patient/p1"}, "effectiveDateTime": "2024-03-05T08:30:00+02:00"}),
        json!({"resourceType": "Observation", "id": "o3", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"},
                                {"system": "http://snomed.info/sct", "code": "364075005"}]},
            "subject": {"reference": "Patient/p2"},
            "effectivePeriod": {"start": "2023-12-31T23:00:00Z", "end": "2024-01-01T01:00:00Z"}}),
        json!({"resourceType": "Observation", "id": "o4", "status": "final",
            "code": {"coding": [{"system": "http://example.org/local", "code": "8867-4"}]},
            "subject": {"reference": "Group/p1"}, "effectiveDateTime": "2024-03-01"}),
        json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2023-01-17T10:39:25-05:00", "end": "2023-01-17T11:42:22-05:00"}}),
        json!({"resourceType": "Encounter", "id": "e2", "status": "in-progress",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "IMP"},
            "subject": {"reference": "Patient/p2"}, "period": {"start": "2024-06-01T00:00:00Z"}}),
        json!({"resourceType": "Encounter", "id": "e3", "status": "finished",
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
            "subject": {"reference": "Patient/p1"},
            "period": {"start": "2024-02-01T09:00:00Z", "end": "2024-02-03T12:00:00Z"}}),
        json!({"resourceType": "Condition", "id": "c1",
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes"}]},
            "subject": {"reference": "Patient/p1"}, "encounter": {"reference": "Encounter/e1"}}),
        json!({"resourceType": "Condition", "id": "c2",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertension"}]},
            "subject": {"reference": "Patient/p2"}}),
        json!({"resourceType": "Condition", "id": "c3",
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "44054006"}]},
            "subject": {"reference": "Patient/p3"}}),
    ] {
        put(server, &resource);
    }
}

#[test]
fn observation_by_patient_and_subject() {
    let server = TestServer::example();
    clinical(&server);
    let absolute = server.url("/Patient/p1");
    for (name, value, expected) in [
        ("patient", "Patient/p1", &["o1", "o2"][..]),
        ("patient", "p1", &["o1", "o2"]),
        ("patient", absolute.as_str(), &["o1", "o2"]),
        ("patient", "Patient/p2", &["o3"]),
        ("patient", "Patient/p3", &[]),
        ("patient", "Patient/p1,Patient/p2", &["o1", "o2", "o3"]),
        ("subject", "Patient/p1", &["o1", "o2"]),
        ("subject", "Group/p1", &["o4"]),
        ("subject", absolute.as_str(), &["o1", "o2"]),
        ("subject", "Patient/p2", &["o3"]),
        ("subject:Patient", "p1", &["o1", "o2"]),
    ] {
        assert_eq!(
            find(&server, "Observation", &[(name, value)]),
            set(expected),
            "Observation?{name}={value}"
        );
    }
    // An untyped id on subject finds every target with that id.
    assert_eq!(
        find(&server, "Observation", &[("subject", "p1")]),
        set(&["o1", "o2", "o4"])
    );
}

#[test]
fn observation_by_code_date_and_status() {
    let server = TestServer::example();
    clinical(&server);
    let cases: &[(&str, &str, &[&str])] = &[
        ("code", "http://loinc.org|8867-4", &["o1", "o3"]),
        ("code", "8867-4", &["o1", "o3", "o4"]),
        ("code", "http://snomed.info/sct|364075005", &["o3"]),
        ("code", "http://loinc.org|", &["o1", "o2", "o3"]),
        ("code", "|8867-4", &[]),
        (
            "code",
            "http://loinc.org|29463-7,http://example.org/local|8867-4",
            &["o2", "o4"],
        ),
        ("code", "8867", &[]),
        ("status", "final", &["o1", "o3", "o4"]),
        ("status", "preliminary", &["o2"]),
        ("status", "final,preliminary", &["o1", "o2", "o3", "o4"]),
        ("status", "amended", &[]),
        ("date", "2024-03-01", &["o1", "o4"]),
        ("date", "2024-03", &["o1", "o2", "o4"]),
        // 08:30+02:00 is 06:30Z on 2024-03-05
        ("date", "2024-03-05", &["o2"]),
        ("date", "ge2024-03-02", &["o2"]),
        ("date", "lt2024-03-01", &["o3"]),
        ("date", "le2024-03-01", &["o1", "o3", "o4"]),
        ("date", "gt2024-03-01", &["o2"]),
        // A period overlapping New Year lies within neither day nor year alone.
        ("date", "2024", &["o1", "o2", "o4"]),
        ("date", "2023", &[]),
        ("date", "ge2024-01-01", &["o1", "o2", "o3", "o4"]),
        ("date", "lt2024-01-01", &["o3"]),
        ("date", "2024-03-01T10:00:00Z", &["o1"]),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            find(&server, "Observation", &[(name, value)]),
            set(expected),
            "Observation?{name}={value}"
        );
    }
    assert_eq!(
        find(
            &server,
            "Observation",
            &[("patient", "Patient/p1"), ("code", "http://loinc.org|8867-4")]
        ),
        set(&["o1"])
    );
    assert_eq!(
        find(
            &server,
            "Observation",
            &[("subject", "Patient/p1"), ("status", "final"), ("date", "2024-03")]
        ),
        set(&["o1"])
    );
}

#[test]
fn encounter_by_patient_subject_date_and_status() {
    let server = TestServer::example();
    clinical(&server);
    let cases: &[(&str, &str, &[&str])] = &[
        ("patient", "Patient/p1", &["e1", "e3"]),
        ("patient", "p2", &["e2"]),
        ("subject", "Patient/p1", &["e1", "e3"]),
        ("subject", "Patient/p3", &[]),
        ("status", "finished", &["e1", "e3"]),
        ("status", "in-progress", &["e2"]),
        // 10:39-05:00 to 11:42-05:00 is within 2023-01-17 UTC.
        ("date", "2023-01-17", &["e1"]),
        ("date", "2023", &["e1"]),
        ("date", "2024-02", &["e3"]),
        ("date", "2024-02-02", &[]),
        ("date", "ge2024-02-02", &["e2", "e3"]),
        ("date", "le2024-02-02", &["e1", "e3"]),
        ("date", "lt2023-01-18", &["e1"]),
        // An encounter still going on overlaps every date after its start.
        ("date", "ge2030-01-01", &["e2"]),
        ("date", "gt2024-02-03", &["e2"]),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            find(&server, "Encounter", &[(name, value)]),
            set(expected),
            "Encounter?{name}={value}"
        );
    }
    assert_eq!(
        find(&server, "Encounter", &[("patient", "Patient/p1"), ("date", "2023")]),
        set(&["e1"])
    );
}

#[test]
fn condition_by_patient_subject_and_code() {
    let server = TestServer::example();
    clinical(&server);
    let cases: &[(&str, &str, &[&str])] = &[
        ("patient", "Patient/p1", &["c1"]),
        ("patient", "p2", &["c2"]),
        ("subject", "Patient/p3", &["c3"]),
        ("subject", "Patient/p4", &[]),
        ("code", "http://snomed.info/sct|44054006", &["c1"]),
        ("code", "44054006", &["c1", "c3"]),
        ("code", "http://hl7.org/fhir/sid/icd-10-cm|44054006", &["c3"]),
        ("code", "http://snomed.info/sct|", &["c1", "c2"]),
        ("code", "38341003,44054006", &["c1", "c2", "c3"]),
    ];
    for (name, value, expected) in cases {
        assert_eq!(
            find(&server, "Condition", &[(name, value)]),
            set(expected),
            "Condition?{name}={value}"
        );
    }
    assert_eq!(
        find(&server, "Condition", &[("patient", "Patient/p1"), ("code", "44054006")]),
        set(&["c1"])
    );
}

#[test]
fn search_index_follows_updates_and_deletes() {
    let server = TestServer::example();
    clinical(&server);
    let mut observation = server.get("/Observation/o1").json();
    observation["status"] = json!("amended");
    observation["subject"] = json!({"reference": "Patient/p3"});
    put(&server, &observation);
    assert_eq!(find(&server, "Observation", &[("status", "amended")]), set(&["o1"]));
    assert_eq!(find(&server, "Observation", &[("status", "final")]), set(&["o3", "o4"]));
    assert_eq!(find(&server, "Observation", &[("patient", "Patient/p1")]), set(&["o2"]));
    assert_eq!(find(&server, "Observation", &[("patient", "Patient/p3")]), set(&["o1"]));
    let reply = send("DELETE", &server.url("/Observation/o2"), &[], None);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(find(&server, "Observation", &[("patient", "Patient/p1")]), set(&[]));
    assert_eq!(find(&server, "Observation", &[("code", "29463-7")]), set(&[]));
}

// ---------------------------------------------------------------------------------------------
// POST _search, unknown parameters, the self link
// ---------------------------------------------------------------------------------------------

#[test]
fn post_search_with_a_form_body_matches_get() {
    let server = TestServer::example();
    clinical(&server);
    for (resource_type, pairs) in [
        ("Patient", vec![("name", "müll"), ("gender", "female,male")]),
        ("Patient", vec![("identifier", "urn:sys:a|A1")]),
        ("Patient", vec![("birthdate", "ge1980"), ("birthdate", "lt1990")]),
        ("Observation", vec![("code", "http://loinc.org|8867-4")]),
        ("Encounter", vec![("patient", "Patient/p1"), ("date", "2024")]),
    ] {
        let encoded = query(&pairs);
        let get = searchset(&server.get(&format!("/{resource_type}?{encoded}")), &encoded);
        let reply = send(
            "POST",
            &server.url(&format!("/{resource_type}/_search")),
            &[("Content-Type", "application/x-www-form-urlencoded")],
            Some(encoded.as_bytes()),
        );
        let post = searchset(&reply, &format!("POST {resource_type}/_search {encoded}"));
        assert!(!entry_ids(&get).is_empty(), "{encoded} finds something");
        assert_eq!(entry_ids(&post), entry_ids(&get), "{encoded}");
        assert_eq!(post["total"], get["total"], "{encoded}");
        let self_of = |bundle: &Value| -> BTreeSet<(String, String)> {
            url_pairs(link(bundle, "self").unwrap()).into_iter().collect()
        };
        assert_eq!(self_of(&post), self_of(&get), "{encoded}");
    }
    // Parameters in the URL and in the body are combined.
    let reply = send(
        "POST",
        &server.url("/Patient/_search?gender=female"),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some(b"given=maria"),
    );
    assert_eq!(entry_ids(&searchset(&reply, "query and body")), vec!["p1".to_owned()]);
}

#[test]
fn unknown_parameters_are_ignored_unless_strict() {
    let server = TestServer::example();
    patients(&server);
    let lenient = searchset(&server.get("/Patient?family=smi&foo=bar"), "lenient");
    assert_eq!(entry_ids(&lenient), vec!["p3".to_owned()]);
    assert_eq!(lenient["total"], 1);
    let self_pairs = url_pairs(link(&lenient, "self").unwrap());
    assert!(
        !self_pairs.iter().any(|(name, _)| name == "foo"),
        "an ignored parameter is not in the self link: {self_pairs:?}"
    );
    assert!(self_pairs.contains(&("family".into(), "smi".into())));
    // Only unknown parameters: every patient.
    let only_unknown = searchset(&server.get("/Patient?foo=bar"), "only unknown");
    assert_eq!(only_unknown["total"], 5);

    let strict = send(
        "GET",
        &server.url("/Patient?family=smi&foo=bar"),
        &[("Prefer", "handling=strict")],
        None,
    );
    assert_eq!(strict.status, 400, "{}", strict.body);
    assert_eq!(strict.json()["resourceType"], "OperationOutcome");
    // A parameter of another type is unknown on this one.
    let strict = send(
        "GET",
        &server.url("/Patient?code=123"),
        &[("Prefer", "handling=strict")],
        None,
    );
    assert_eq!(strict.status, 400, "{}", strict.body);
    // Strict with only known parameters is fine.
    let strict = send(
        "GET",
        &server.url("/Patient?family=smi"),
        &[("Prefer", "handling=strict")],
        None,
    );
    assert_eq!(
        entry_ids(&searchset(&strict, "strict and known")),
        vec!["p3".to_owned()]
    );
    // Lenient handling said explicitly ignores them.
    let lenient = send(
        "GET",
        &server.url("/Patient?family=smi&foo=bar"),
        &[("Prefer", "handling=lenient")],
        None,
    );
    assert_eq!(
        entry_ids(&searchset(&lenient, "handling=lenient")),
        vec!["p3".to_owned()]
    );
}

#[test]
fn self_link_shows_only_the_parameters_used() {
    let server = TestServer::example();
    patients(&server);
    let bundle = searchset(
        &server.get(&format!(
            "/Patient?{}",
            query(&[
                ("family", "mü"),
                ("bogus", "1"),
                ("gender", "female"),
                ("_count", "7"),
                ("empty", "")
            ])
        )),
        "self link",
    );
    let self_link = link(&bundle, "self").unwrap();
    assert!(self_link.starts_with(&server.url("/Patient?")), "{self_link}");
    let pairs: BTreeSet<(String, String)> = url_pairs(self_link).into_iter().collect();
    let expected: BTreeSet<(String, String)> = [("family", "mü"), ("gender", "female"), ("_count", "7")]
        .iter()
        .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
        .collect();
    assert_eq!(pairs, expected, "{self_link}");
    assert_eq!(entry_ids(&bundle), vec!["p1".to_owned()]);
}

#[test]
fn invalid_search_values_are_400() {
    let server = TestServer::example();
    patients(&server);
    for bad in [
        "birthdate=notadate",
        "_lastUpdated=yesterday",
        "_count=many",
        "name:sounds=x",
    ] {
        let reply = server.get(&format!("/Patient?{bad}"));
        assert_eq!(reply.status, 400, "{bad}: {}", reply.body);
        assert_eq!(reply.json()["resourceType"], "OperationOutcome", "{bad}");
    }
}

#[test]
fn sorted_search_keeps_its_order_across_pages() {
    let server = TestServer::example();
    let mut all = BTreeSet::new();
    for index in 0..8 {
        let body = create(
            &server,
            &json!({"resourceType": "Patient", "name": [{"family": format!("Sorted{index}")}]}),
        );
        all.insert(body["id"].as_str().unwrap().to_owned());
    }
    for sort in ["-_lastUpdated", "_lastUpdated"] {
        let first = searchset(&server.get(&format!("/Patient?_sort={}&_count=3", enc(sort))), sort);
        let self_link = link(&first, "self").unwrap().to_owned();
        let mut next_links = Vec::new();
        let mut seen: Vec<(String, String)> = Vec::new();
        let mut page = first;
        for _ in 0..10 {
            for entry in page["entry"].as_array().into_iter().flatten() {
                seen.push((
                    entry["resource"]["id"].as_str().unwrap().to_owned(),
                    entry["resource"]["meta"]["lastUpdated"].as_str().unwrap().to_owned(),
                ));
            }
            let Some(next) = link(&page, "next").map(str::to_owned) else {
                break;
            };
            page = searchset(&get_url(&next), &next);
            next_links.push(next);
        }
        let ids: Vec<&String> = seen.iter().map(|(id, _)| id).collect();
        let unique: BTreeSet<String> = ids.iter().map(|id| (*id).clone()).collect();
        assert_eq!(
            ids.len(),
            unique.len(),
            "_sort={sort}: no repeats across pages: {ids:?}"
        );
        assert_eq!(unique, all, "_sort={sort}: every match seen");
        let ordered = if sort.starts_with('-') {
            seen.windows(2).all(|pair| pair[0].1 >= pair[1].1)
        } else {
            seen.windows(2).all(|pair| pair[0].1 <= pair[1].1)
        };
        assert!(ordered, "_sort={sort}: the order holds across pages: {seen:?}");
        assert_eq!(next_links.len(), 2, "8 matches in pages of 3");
        for url in std::iter::once(&self_link).chain(&next_links) {
            assert!(
                url_pairs(url).contains(&("_sort".into(), sort.into())),
                "the paging links keep _sort={sort}: {url}"
            );
        }
    }
}

#[test]
fn count_zero_returns_no_entries_and_no_endless_next_link() {
    let server = TestServer::example();
    patients(&server);
    let bundle = searchset(&server.get("/Patient?_count=0"), "_count=0");
    assert!(bundle.get("entry").is_none(), "{bundle}");
    if let Some(total) = bundle.get("total") {
        assert_eq!(total, 5);
    }
    if let Some(next) = link(&bundle, "next") {
        assert_ne!(
            Some(next),
            link(&bundle, "self"),
            "a next link equal to the self link makes clients page forever"
        );
    }
}

#[test]
fn unsupported_token_modifiers_are_not_silently_ignored() {
    // R4 search.html: a server rejects a search with a modifier it does not support;
    // ignoring the modifier returns the opposite of what `:not` asks for.
    let server = TestServer::example();
    patients(&server);
    let reply = server.get("/Patient?gender:not=male");
    if reply.status != 400 {
        let ids: BTreeSet<String> = entry_ids(&searchset(&reply, "gender:not=male")).into_iter().collect();
        assert_eq!(ids, set(&["p1", "p3", "p4", "p5"]), "gender:not=male");
    }
    let reply = server.get(&format!(
        "/Patient?{}",
        query(&[("identifier:of-type", "urn:sys:a|A1")])
    ));
    if reply.status != 400 {
        let ids: BTreeSet<String> = entry_ids(&searchset(&reply, "identifier:of-type"))
            .into_iter()
            .collect();
        assert!(
            ids.is_empty(),
            "identifier:of-type needs type|system|value, none matches: {ids:?}"
        );
    }
}
