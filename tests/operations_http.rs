//! Operations written with the macros, over HTTP: levels, binding, validation before the
//! handler, the GET rule, the generated OperationDefinitions and the CapabilityStatement.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::{FHIR_JSON, Reply, TestServer, parameters, send};
use fhirop::prelude::*;
use serde_json::{Value, json};

// ---------------------------------------------------------------------------------------------
// Test operations
// ---------------------------------------------------------------------------------------------

/// Tells the caller where it was invoked.
#[operation(
    name = "$where",
    idempotent = true,
    resource = "Patient",
    resource = "Group",
    system = true,
    type_level = true,
    instance = true
)]
async fn where_called(#[id_param] id: Option<IdParam>, ctx: OperationContext) -> Parameters {
    Parameters::new()
        .add("level", ctx.level().name())
        .add("resourceType", ctx.resource_type())
        .add("id", id.as_ref().map(|id| id.id.clone()))
        .add("idResourceType", id.as_ref().map(|id| id.resource_type.clone()))
        .add("versionId", id.as_ref().and_then(|id| id.version_id.clone()))
        .add("contextVersionId", ctx.version_id())
        .add("reference", id.map(|id| id.to_reference()))
}

/// Answers on one Patient only.
#[operation(name = "$version-of", idempotent = true, resource = "Patient")]
async fn version_of(#[id_param] id: IdParam, ctx: OperationContext) -> Parameters {
    Parameters::new()
        .add("id", id.id.clone())
        .add("versionId", id.version_id.clone())
        .add("contextId", ctx.id())
        .add("contextVersionId", ctx.version_id())
}

/// Answers at the Patient type only.
#[operation(name = "$type-only", idempotent = true, resource = "Patient")]
async fn type_only() -> String {
    "type".into()
}

/// Answers at the system level only.
#[operation(name = "$system-only", idempotent = true)]
async fn system_only() -> String {
    "system".into()
}

/// Echoes every primitive it is given.
#[operation(name = "$primitives", idempotent = true, system = true)]
#[allow(clippy::too_many_arguments)]
async fn primitives(
    #[op_param] string: Option<String>,
    #[op_param] boolean: Option<bool>,
    #[op_param] integer: Option<i32>,
    #[op_param(name = "unsignedInt")] unsigned: Option<u32>,
    #[op_param] decimal: Option<Decimal>,
    #[op_param] date: Option<Date>,
    #[op_param(name = "dateTime")] date_time: Option<DateTime>,
    #[op_param] instant: Option<Instant>,
    #[op_param] time: Option<Time>,
    #[op_param] code: Option<Code>,
    #[op_param] uri: Option<Uri>,
    #[op_param] id: Option<Id>,
    #[op_param] oid: Option<Oid>,
    #[op_param] uuid: Option<Uuid>,
    #[op_param(name = "base64Binary")] base64: Option<Base64Binary>,
    #[op_param(name = "positiveInt")] positive: Option<PositiveInt>,
) -> Parameters {
    Parameters::new()
        .add("string", string)
        .add("boolean", boolean)
        .add("integer", integer)
        .add("unsignedInt", unsigned)
        .add("decimal", decimal)
        .add("date", date)
        .add("dateTime", date_time)
        .add("instant", instant)
        .add("time", time)
        .add("code", code)
        .add("uri", uri)
        .add("id", id)
        .add("oid", oid)
        .add("uuid", uuid)
        .add("base64Binary", base64)
        .add("positiveInt", positive)
}

/// A user complex type: an Address, kept as serde.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Address {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    line: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    city: Option<String>,
}

fhirop::complex_type!(Address, "Address");

/// A Patient, kept as JSON.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct PatientResource(Value);

fhirop::resource_type!(PatientResource, "Patient");

/// Echoes complex values, and a few fields read from them.
#[operation(name = "$complex", system = true)]
async fn complex(
    #[op_param] coding: Option<Coding>,
    #[op_param] concept: Option<CodeableConcept>,
    #[op_param] identifier: Option<Identifier>,
    #[op_param] reference: Option<Reference>,
    #[op_param] quantity: Option<Quantity>,
    #[op_param] period: Option<Period>,
    #[op_param] address: Option<Address>,
) -> Parameters {
    let coding_code = coding.as_ref().and_then(|coding| coding.code.clone());
    let quantity_value = quantity.as_ref().and_then(|quantity| quantity.value.clone());
    let city = address.as_ref().and_then(|address| address.city.clone());
    Parameters::new()
        .add("coding", coding)
        .add("concept", concept)
        .add("identifier", identifier)
        .add("reference", reference)
        .add("quantity", quantity)
        .add("period", period)
        .add("address", address)
        .add("codingCode", coding_code)
        .add("quantityValue", quantity_value)
        .add("city", city)
}

/// Takes any resource and a Patient.
#[operation(name = "$resources", system = true)]
async fn resources(#[op_param] any: Option<Resource>, #[op_param] patient: Option<PatientResource>) -> Parameters {
    Parameters::new()
        .add("anyType", any.as_ref().map(|any| any.resource_type().to_owned()))
        .add("any", any)
        .add("patient", patient)
}

/// Marks the posted Patient as active.
#[operation(name = "$stamp", resource = "Patient")]
async fn stamp(
    /// The Patient to stamp.
    #[op_param(name = "resource")]
    patient: PatientResource,
) -> PatientResource {
    let mut patient = patient;
    if let Value::Object(members) = &mut patient.0 {
        members.insert("active".into(), Value::Bool(true));
    }
    patient
}

fn token_text(token: &TokenParam) -> String {
    format!(
        "system={} code={}",
        token.system.as_deref().unwrap_or("-"),
        token.code.as_deref().unwrap_or("-")
    )
}

fn or_text(list: &OrList<TokenParam>) -> String {
    list.values().iter().map(token_text).collect::<Vec<_>>().join(" OR ")
}

/// Reads every search type.
#[operation(name = "$find", idempotent = true, resource = "Patient")]
#[allow(clippy::too_many_arguments)]
async fn find(
    #[op_param] token: Option<TokenParam>,
    #[op_param] name: Option<StringParam>,
    #[op_param] date: Vec<DateParam>,
    #[op_param] subject: Option<ReferenceParam>,
    #[op_param] number: Option<NumberParam>,
    #[op_param] quantity: Option<QuantityParam>,
    #[op_param] uri: Option<UriParam>,
    #[op_param(name = "anyOf")] any_of: Option<OrList<TokenParam>>,
    #[op_param(name = "allOf")] all_of: Vec<TokenParam>,
    #[op_param] groups: Vec<OrList<TokenParam>>,
) -> Parameters {
    Parameters::new()
        .add("token", token.as_ref().map(token_text))
        .add(
            "name",
            name.map(|name| format!("value={} exact={}", name.value, name.is_exact())),
        )
        .add(
            "date",
            date.iter()
                .map(|date| format!("{} {}", date.prefix.code(), date.value))
                .collect::<Vec<_>>(),
        )
        .add(
            "subject",
            subject.map(|subject| {
                format!(
                    "type={} id={}",
                    subject.resource_type.as_deref().unwrap_or("-"),
                    subject.id.as_deref().unwrap_or("-")
                )
            }),
        )
        .add(
            "number",
            number.map(|number| format!("{} {}", number.prefix.code(), number.value.as_str())),
        )
        .add(
            "quantity",
            quantity.map(|quantity| {
                format!(
                    "{} {} system={} code={}",
                    quantity.prefix.code(),
                    quantity.value.as_str(),
                    quantity.system.as_deref().unwrap_or("-"),
                    quantity.code.as_deref().unwrap_or("-")
                )
            }),
        )
        .add(
            "uri",
            uri.map(|uri| format!("{} modifier={}", uri.value, uri.modifier.as_deref().unwrap_or("-"))),
        )
        .add("anyOf", any_of.as_ref().map(or_text))
        .add("allOf", all_of.iter().map(token_text).collect::<Vec<_>>())
        .add("groups", groups.iter().map(or_text).collect::<Vec<_>>())
}

/// One key/value pair.
#[derive(Debug, Clone, Parameters)]
struct Pair {
    /// The key.
    key: Code,
    /// The value.
    value: Option<i32>,
}

/// Adds up pairs.
#[operation(name = "$pairs", system = true)]
async fn pairs(#[op_param(name = "pair")] pairs: Vec<Pair>) -> Parameters {
    let total: i32 = pairs.iter().filter_map(|pair| pair.value).sum();
    let keys: Vec<String> = pairs.iter().map(|pair| pair.key.to_string()).collect();
    Parameters::new()
        .add("count", pairs.len() as u32)
        .add("total", total)
        .add("keys", keys.join(","))
        .add("pair", pairs)
}

/// What `$summary-of` returns.
#[derive(Debug, Parameters)]
struct SummaryOut {
    /// How many matched.
    total: u32,
    /// The matching codes.
    code: Vec<Code>,
}

/// Summarises a patient's record.
#[operation(name = "$summary-of", idempotent = true, resource = "Patient")]
async fn summary_of(
    #[id_param] id: Option<IdParam>,
    /// The earliest date to include.
    #[op_param]
    start: Option<Date>,
    /// Codes to include; commas mean OR.
    #[op_param]
    code: Vec<OrList<TokenParam>>,
    /// Key/value filters.
    #[op_param(name = "pair", max = "3")]
    pairs: Vec<Pair>,
    /// How many to return.
    #[op_param(min = 1)]
    limit: Option<PositiveInt>,
) -> SummaryOut {
    let _ = (id, start, pairs, limit);
    SummaryOut {
        total: code.len() as u32,
        code: Vec::new(),
    }
}

/// Every operation of this file but the recording ones.
fn server() -> TestServer {
    TestServer::start(
        FhirServer::builder()
            .base_path("/fhir/R4")
            .operations(operations![
                where_called,
                version_of,
                type_only,
                system_only,
                primitives,
                complex,
                resources,
                stamp,
                find,
                pairs,
                summary_of
            ])
            .build()
            .unwrap(),
    )
}

/// Operations that count their runs, to show that validation happens before the handler.
struct Recorder {
    runs: Arc<AtomicUsize>,
}

#[provider]
impl Recorder {
    /// Runs only with valid input.
    #[operation(name = "$strict", idempotent = true, resource = "Patient")]
    async fn strict(
        &self,
        #[op_param] start: Date,
        #[op_param] flag: Option<bool>,
        #[op_param] count: Option<u32>,
        #[op_param(max = "2")] tag: Vec<Code>,
        #[op_param] coding: Option<Coding>,
    ) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        let _ = (flag, count, tag, coding);
        format!("ran with {start}")
    }

    /// Changes something, so POST only.
    #[operation(name = "$mutate", resource = "Patient")]
    async fn mutate(&self, #[op_param] note: Option<String>) -> String {
        self.runs.fetch_add(1, Ordering::SeqCst);
        format!("mutated: {}", note.unwrap_or_default())
    }
}

fn recording_server() -> (TestServer, Arc<AtomicUsize>) {
    let runs = Arc::new(AtomicUsize::new(0));
    let server = TestServer::start(
        FhirServer::builder()
            .base_path("/fhir/R4")
            .provider(Recorder { runs: runs.clone() })
            .build()
            .unwrap(),
    );
    (server, runs)
}

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

/// Percent-encodes a query value.
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

/// Parses JSON text keeping the written precision of numbers (`1.50` is not `1.5`).
fn exact(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

fn assert_ok(reply: &Reply, expected: &Value) {
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(&reply.json(), expected);
}

fn assert_outcome(reply: &Reply, status: u16, codes: &[&str], expressions: &[&str]) {
    assert_eq!(reply.status, status, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON), "{}", reply.body);
    assert_eq!(reply.issue_codes(), codes, "{}", reply.body);
    assert_eq!(reply.issue_expressions(), expressions, "{}", reply.body);
}

fn diagnostics(reply: &Reply) -> Vec<String> {
    reply.json()["issue"]
        .as_array()
        .expect("issues")
        .iter()
        .map(|issue| issue["diagnostics"].as_str().unwrap_or_default().to_owned())
        .collect()
}

// ---------------------------------------------------------------------------------------------
// 1. Levels
// ---------------------------------------------------------------------------------------------

#[test]
fn system_level_call() {
    let server = server();
    assert_ok(
        &server.get("/$where"),
        &parameters(json!([{"name": "level", "valueString": "system"}])),
    );
}

#[test]
fn type_level_call_for_each_declared_resource_type() {
    let server = server();
    for resource_type in ["Patient", "Group"] {
        assert_ok(
            &server.get(&format!("/{resource_type}/$where")),
            &parameters(json!([
                {"name": "level", "valueString": "type"},
                {"name": "resourceType", "valueString": resource_type},
            ])),
        );
    }
}

#[test]
fn instance_level_call() {
    let server = server();
    assert_ok(
        &server.get("/Group/123/$where"),
        &parameters(json!([
            {"name": "level", "valueString": "instance"},
            {"name": "resourceType", "valueString": "Group"},
            {"name": "id", "valueString": "123"},
            {"name": "idResourceType", "valueString": "Group"},
            {"name": "reference", "valueString": "Group/123"},
        ])),
    );
}

#[test]
fn instance_call_at_a_version_passes_the_version_to_id_param_and_context() {
    let server = server();
    assert_ok(
        &server.get("/Patient/123/_history/2/$where"),
        &parameters(json!([
            {"name": "level", "valueString": "instance"},
            {"name": "resourceType", "valueString": "Patient"},
            {"name": "id", "valueString": "123"},
            {"name": "idResourceType", "valueString": "Patient"},
            {"name": "versionId", "valueString": "2"},
            {"name": "contextVersionId", "valueString": "2"},
            {"name": "reference", "valueString": "Patient/123/_history/2"},
        ])),
    );
    // The required IdParam of an instance-only operation, and POST at a version.
    let expected = parameters(json!([
        {"name": "id", "valueString": "abc"},
        {"name": "versionId", "valueString": "7"},
        {"name": "contextId", "valueString": "abc"},
        {"name": "contextVersionId", "valueString": "7"},
    ]));
    assert_ok(&server.get("/Patient/abc/_history/7/$version-of"), &expected);
    assert_ok(&server.post("/Patient/abc/_history/7/$version-of", ""), &expected);
    // Without a version, none is reported.
    assert_ok(
        &server.get("/Patient/abc/$version-of"),
        &parameters(json!([
            {"name": "id", "valueString": "abc"},
            {"name": "contextId", "valueString": "abc"},
        ])),
    );
}

#[test]
fn undeclared_level_or_type_is_404_naming_the_supported_levels() {
    let server = server();
    let cases = [
        (
            "/Observation/$where",
            "operation $where is not supported at the type level of Observation; it is supported at: system ([base]/$where), type (Patient, Group), instance (Patient, Group)",
        ),
        (
            "/Observation/1/_history/1/$where",
            "operation $where is not supported at the instance level of Observation; it is supported at: system ([base]/$where), type (Patient, Group), instance (Patient, Group)",
        ),
        (
            "/Patient/$version-of",
            "operation $version-of is not supported at the type level of Patient; it is supported at: instance (Patient)",
        ),
        (
            "/$version-of",
            "operation $version-of is not supported at the system level; it is supported at: instance (Patient)",
        ),
        (
            "/Patient/1/$type-only",
            "operation $type-only is not supported at the instance level of Patient; it is supported at: type (Patient)",
        ),
        (
            "/Patient/$system-only",
            "operation $system-only is not supported at the type level of Patient; it is supported at: system ([base]/$system-only)",
        ),
    ];
    for (path, message) in cases {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(
            reply.json(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error", "code": "not-supported", "diagnostics": message
            }]}),
            "{path}"
        );
        // POST is refused the same way.
        assert_eq!(server.post(path, "").status, 404, "{path}");
    }
}

#[test]
fn unknown_operation_is_404_not_supported() {
    let server = server();
    for (path, code) in [
        ("/$nope", "nope"),
        ("/Patient/$nope", "nope"),
        ("/Patient/1/$nope", "nope"),
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}");
        assert_eq!(
            reply.json(),
            json!({"resourceType": "OperationOutcome", "issue": [{
                "severity": "error",
                "code": "not-supported",
                "diagnostics": format!("operation ${code} is not known to this server"),
            }]})
        );
    }
}

#[test]
fn unknown_resource_type_in_the_url_is_404() {
    let server = server();
    for path in [
        "/Foo/$where",
        "/Foo/1/$where",
        "/patient/$where",
        "/Foo/1/_history/2/$where",
    ] {
        let reply = server.get(path);
        assert_eq!(reply.status, 404, "{path}: {}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.issue_codes(), ["not-supported"], "{path}");
    }
}

// ---------------------------------------------------------------------------------------------
// 2. Binding
// ---------------------------------------------------------------------------------------------

/// The primitives body `$primitives` echoes as it was sent.
const PRIMITIVES: &str = r#"{"resourceType": "Parameters", "parameter": [
    {"name": "string", "valueString": "hello world"},
    {"name": "boolean", "valueBoolean": true},
    {"name": "integer", "valueInteger": -5},
    {"name": "unsignedInt", "valueUnsignedInt": 0},
    {"name": "decimal", "valueDecimal": 1.50},
    {"name": "date", "valueDate": "2024-05"},
    {"name": "dateTime", "valueDateTime": "2024"},
    {"name": "instant", "valueInstant": "2024-05-06T07:08:09.123+02:00"},
    {"name": "time", "valueTime": "23:59:59"},
    {"name": "code", "valueCode": "two words"},
    {"name": "uri", "valueUri": "http://example.com/a"},
    {"name": "id", "valueId": "Patient-1.2"},
    {"name": "oid", "valueOid": "urn:oid:1.2.840.10008"},
    {"name": "uuid", "valueUuid": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"},
    {"name": "base64Binary", "valueBase64Binary": "aGVsbG8="},
    {"name": "positiveInt", "valuePositiveInt": 3}
]}"#;

#[test]
fn parameters_body_binds_every_primitive_type() {
    let server = server();
    let reply = server.post("/$primitives", PRIMITIVES);
    assert_ok(&reply, &exact(PRIMITIVES));
    assert!(reply.body.contains(r#""valueDecimal":1.50"#), "{}", reply.body);
}

#[test]
fn query_string_binds_every_primitive_type_on_get() {
    let server = server();
    let query = [
        ("string", "hello world"),
        ("boolean", "true"),
        ("integer", "-5"),
        ("unsignedInt", "0"),
        ("decimal", "1.50"),
        ("date", "2024-05"),
        ("dateTime", "2024"),
        ("instant", "2024-05-06T07:08:09.123+02:00"),
        ("time", "23:59:59"),
        ("code", "two words"),
        ("uri", "http://example.com/a"),
        ("id", "Patient-1.2"),
        ("oid", "urn:oid:1.2.840.10008"),
        ("uuid", "urn:uuid:c757873d-ec9a-4326-a141-556f43239520"),
        ("base64Binary", "aGVsbG8="),
        ("positiveInt", "3"),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={}", enc(value)))
    .collect::<Vec<_>>()
    .join("&");
    let reply = server.get(&format!("/$primitives?{query}"));
    assert_ok(&reply, &exact(PRIMITIVES));
    assert!(reply.body.contains(r#""valueDecimal":1.50"#), "{}", reply.body);
}

#[test]
fn primitive_query_parameters_bind_on_post_too() {
    let server = server();
    // With an empty body ...
    assert_ok(
        &server.post("/$primitives?integer=7&decimal=0.010", ""),
        &exact(
            r#"{"resourceType": "Parameters", "parameter": [
                {"name": "integer", "valueInteger": 7},
                {"name": "decimal", "valueDecimal": 0.010}
            ]}"#,
        ),
    );
    // ... and next to a Parameters body.
    assert_ok(
        &server.post_json(
            "/$primitives?integer=7",
            &parameters(json!([{"name": "string", "valueString": "from the body"}])),
        ),
        &parameters(json!([
            {"name": "string", "valueString": "from the body"},
            {"name": "integer", "valueInteger": 7},
        ])),
    );
}

#[test]
fn empty_post_body_is_fine_when_nothing_is_required() {
    let server = server();
    assert_ok(&server.post("/$primitives", ""), &json!({"resourceType": "Parameters"}));
    let reply = send("POST", &server.url("/$primitives"), &[], None);
    assert_ok(&reply, &json!({"resourceType": "Parameters"}));
}

#[test]
fn complex_types_bind_from_value_x() {
    let server = server();
    let body = r#"{"resourceType": "Parameters", "parameter": [
        {"name": "coding", "valueCoding": {"system": "http://loinc.org", "code": "1234-5", "display": "A test"}},
        {"name": "concept", "valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "22298006"}], "text": "Heart attack"}},
        {"name": "identifier", "valueIdentifier": {"use": "official", "system": "urn:oid:1.2.3", "value": "12345"}},
        {"name": "reference", "valueReference": {"reference": "Patient/123", "display": "Someone"}},
        {"name": "quantity", "valueQuantity": {"value": 5.40, "unit": "mg", "system": "http://unitsofmeasure.org", "code": "mg"}},
        {"name": "period", "valuePeriod": {"start": "2024-01", "end": "2024-05-06T07:08:09Z"}},
        {"name": "address", "valueAddress": {"line": ["1 Main St"], "city": "Springfield"}}
    ]}"#;
    let mut expected = exact(body);
    let entries = expected["parameter"].as_array_mut().unwrap();
    entries.push(json!({"name": "codingCode", "valueCode": "1234-5"}));
    entries.push(exact(r#"{"name": "quantityValue", "valueDecimal": 5.40}"#));
    entries.push(json!({"name": "city", "valueString": "Springfield"}));
    let reply = server.post("/$complex", body);
    assert_ok(&reply, &expected);
    assert!(reply.body.contains(r#""value":5.40"#), "{}", reply.body);
}

#[test]
fn complex_value_with_bad_content_is_400_value() {
    let server = server();
    let reply = server.post_json(
        "/$complex",
        &parameters(json!([{"name": "period", "valuePeriod": {"start": "2024-13"}}])),
    );
    assert_outcome(&reply, 400, &["value"], &["period"]);
    let reply = server.post_json(
        "/$complex",
        &parameters(json!([{"name": "coding", "valueString": "not a coding"}])),
    );
    assert_outcome(&reply, 400, &["value"], &["coding"]);
    let reply = server.post_json(
        "/$complex",
        &parameters(json!([{"name": "coding", "valueCoding": {"code": "x", "unknownMember": 1}}])),
    );
    assert_outcome(&reply, 400, &["value"], &["coding"]);
}

#[test]
fn bad_complex_content_is_reported_with_every_other_problem() {
    // "Every problem of a request is reported at once": the content of a complex value is part
    // of the request's problems, next to a wrong value member and to a second bad complex value.
    let server = server();
    let reply = server.post_json(
        "/$complex",
        &parameters(json!([
            {"name": "period", "valuePeriod": {"start": "2024-13"}},
            {"name": "coding", "valueString": "not a coding"},
        ])),
    );
    assert_outcome(&reply, 400, &["value", "value"], &["period", "coding"]);
    let reply = server.post_json(
        "/$complex",
        &parameters(json!([
            {"name": "coding", "valueCoding": {"code": " padded "}},
            {"name": "period", "valuePeriod": {"start": "2024-13"}},
        ])),
    );
    assert_outcome(&reply, 400, &["value", "value"], &["coding", "period"]);
}

#[test]
fn resource_parameters_bind_generic_and_typed_resources() {
    let server = server();
    let observation = json!({"resourceType": "Observation", "status": "final"});
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]});
    assert_ok(
        &server.post_json(
            "/$resources",
            &parameters(json!([
                {"name": "any", "resource": observation},
                {"name": "patient", "resource": patient},
            ])),
        ),
        &parameters(json!([
            {"name": "anyType", "valueString": "Observation"},
            {"name": "any", "resource": observation},
            {"name": "patient", "resource": patient},
        ])),
    );
    // A typed resource parameter refuses another type.
    let reply = server.post_json(
        "/$resources",
        &parameters(json!([{"name": "patient", "resource": observation}])),
    );
    assert_outcome(&reply, 400, &["value"], &["patient"]);
    assert_eq!(
        diagnostics(&reply),
        ["expected a resource of type Patient, got Observation"]
    );
}

#[test]
fn bare_resource_body_binds_the_only_resource_parameter() {
    let server = server();
    let patient = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}]});
    let stamped = json!({"resourceType": "Patient", "id": "p1", "name": [{"family": "Doe"}], "active": true});
    assert_ok(&server.post_json("/Patient/$stamp", &patient), &stamped);
    // The same resource in a Parameters body.
    assert_ok(
        &server.post_json(
            "/Patient/$stamp",
            &parameters(json!([{"name": "resource", "resource": patient}])),
        ),
        &stamped,
    );
    // A bare resource of the wrong type names the parameter.
    let reply = server.post_json("/Patient/$stamp", &json!({"resourceType": "Observation"}));
    assert_outcome(&reply, 400, &["value"], &["resource"]);
    // An operation without exactly one resource parameter refuses a bare resource.
    let reply = server.post_json("/$primitives", &patient);
    assert_outcome(&reply, 400, &["invalid"], &[]);
    let reply = server.post_json("/$resources", &patient);
    assert_outcome(&reply, 400, &["invalid"], &[]);
}

#[test]
fn search_types_bind_from_the_query() {
    let server = server();
    let query = [
        ("token", "http://loinc.org|1234-5"),
        ("name:exact", "Smith"),
        ("date", "ge2024-01"),
        ("date", "le2024-12-31"),
        ("subject", "Patient/123"),
        ("number", "gt1.50"),
        ("quantity", "le5.4|http://unitsofmeasure.org|mg"),
        ("uri:below", "http://example.com/fhir"),
    ]
    .iter()
    .map(|(name, value)| format!("{name}={}", enc(value)))
    .collect::<Vec<_>>()
    .join("&");
    assert_ok(
        &server.get(&format!("/Patient/$find?{query}")),
        &parameters(json!([
            {"name": "token", "valueString": "system=http://loinc.org code=1234-5"},
            {"name": "name", "valueString": "value=Smith exact=true"},
            {"name": "date", "valueString": "ge 2024-01"},
            {"name": "date", "valueString": "le 2024-12-31"},
            {"name": "subject", "valueString": "type=Patient id=123"},
            {"name": "number", "valueString": "gt 1.50"},
            {"name": "quantity", "valueString": "le 5.4 system=http://unitsofmeasure.org code=mg"},
            {"name": "uri", "valueString": "http://example.com/fhir modifier=below"},
        ])),
    );
    // Without a modifier the string is not exact; a token without a system has none; a
    // reference's type may come from its modifier.
    assert_ok(
        &server.get("/Patient/$find?name=Smi&token=abc&date=2024&subject:Group=g1&quantity=5.4%7C%7Cmg"),
        &parameters(json!([
            {"name": "token", "valueString": "system=- code=abc"},
            {"name": "name", "valueString": "value=Smi exact=false"},
            {"name": "date", "valueString": "eq 2024"},
            {"name": "subject", "valueString": "type=Group id=g1"},
            {"name": "quantity", "valueString": "eq 5.4 system=- code=mg"},
        ])),
    );
    // `|code` means "no system".
    assert_ok(
        &server.get("/Patient/$find?token=%7Cabc"),
        &parameters(json!([{"name": "token", "valueString": "system= code=abc"}])),
    );
}

#[test]
fn search_types_bind_from_value_string_in_a_parameters_body() {
    let server = server();
    assert_ok(
        &server.post_json(
            "/Patient/$find",
            &parameters(json!([
                {"name": "token", "valueString": "http://loinc.org|1234-5"},
                {"name": "date", "valueString": "sa2024-05-06T10:00"},
            ])),
        ),
        &parameters(json!([
            {"name": "token", "valueString": "system=http://loinc.org code=1234-5"},
            {"name": "date", "valueString": "sa 2024-05-06T10:00"},
        ])),
    );
}

#[test]
fn or_lists_and_repeated_and_values() {
    let server = server();
    let query = format!(
        "anyOf={}&allOf={}&allOf={}&groups={}&groups={}",
        enc("a|1,b|2"),
        enc("a|1"),
        enc("b|2"),
        enc("x,y"),
        enc("z\\,w")
    );
    assert_ok(
        &server.get(&format!("/Patient/$find?{query}")),
        &parameters(json!([
            {"name": "anyOf", "valueString": "system=a code=1 OR system=b code=2"},
            {"name": "allOf", "valueString": "system=a code=1"},
            {"name": "allOf", "valueString": "system=b code=2"},
            {"name": "groups", "valueString": "system=- code=x OR system=- code=y"},
            {"name": "groups", "valueString": "system=- code=z,w"},
        ])),
    );
    // Two occurrences of a 0..1 OR list are too many.
    let reply = server.get("/Patient/$find?anyOf=a&anyOf=b");
    assert_outcome(&reply, 400, &["invalid"], &["anyOf"]);
}

#[test]
fn bad_search_values_are_400_value() {
    let server = server();
    for (query, name) in [
        ("date=xx2024", "date"),
        ("date=2024-13", "date"),
        ("number=abc", "number"),
        ("subject=Patient%2Fbad%20id", "subject"),
        ("quantity=lots", "quantity"),
        ("uri=has%20space", "uri"),
        ("token=", "none"),
    ] {
        if name == "none" {
            // search.html: an empty value is ignored.
            assert_ok(
                &server.get(&format!("/Patient/$find?{query}")),
                &json!({"resourceType": "Parameters"}),
            );
            continue;
        }
        let reply = server.get(&format!("/Patient/$find?{query}"));
        assert_outcome(&reply, 400, &["value"], &[name]);
    }
}

#[test]
fn multi_part_parameters_bind_their_parts() {
    let server = server();
    let pairs_in = json!([
        {"name": "pair", "part": [{"name": "key", "valueCode": "a"}, {"name": "value", "valueInteger": 2}]},
        {"name": "pair", "part": [{"name": "key", "valueCode": "b"}]},
        {"name": "pair", "part": [{"name": "value", "valueInteger": 5}, {"name": "key", "valueCode": "c"}]},
    ]);
    assert_ok(
        &server.post_json("/$pairs", &parameters(pairs_in)),
        &parameters(json!([
            {"name": "count", "valueUnsignedInt": 3},
            {"name": "total", "valueInteger": 7},
            {"name": "keys", "valueString": "a,b,c"},
            {"name": "pair", "part": [{"name": "key", "valueCode": "a"}, {"name": "value", "valueInteger": 2}]},
            {"name": "pair", "part": [{"name": "key", "valueCode": "b"}]},
            {"name": "pair", "part": [{"name": "key", "valueCode": "c"}, {"name": "value", "valueInteger": 5}]},
        ])),
    );
}

#[test]
fn multi_part_problems_name_the_part() {
    let server = server();
    let reply = server.post_json(
        "/$pairs",
        &parameters(json!([
            {"name": "pair", "part": [{"name": "value", "valueInteger": 2}]},
            {"name": "pair", "part": [{"name": "key", "valueCode": "a"}, {"name": "bogus", "valueString": "x"}]},
            {"name": "pair", "part": [{"name": "key", "valueCode": "b"}, {"name": "value", "valueString": "2"}]},
            {"name": "pair", "valueString": "no parts"},
        ])),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    let mut issues: Vec<(String, String)> = reply
        .issue_codes()
        .into_iter()
        .zip(
            reply.json()["issue"]
                .as_array()
                .unwrap()
                .iter()
                .map(|issue| issue["expression"][0].to_string()),
        )
        .collect();
    issues.sort();
    assert_eq!(
        issues,
        [
            ("not-supported".to_owned(), "\"pair.bogus\"".to_owned()),
            ("required".to_owned(), "\"pair.key\"".to_owned()),
            ("value".to_owned(), "\"pair\"".to_owned()),
            ("value".to_owned(), "\"pair.value\"".to_owned()),
        ]
    );
}

#[test]
fn malformed_parameters_bodies_are_400() {
    let server = server();
    let reply = server.post_json("/$primitives", &json!({"resourceType": "Parameters", "parameter": {}}));
    assert_outcome(&reply, 400, &["structure"], &[]);
    let reply = server.post_json(
        "/$primitives",
        &parameters(json!([{"valueString": "no name"}, "not an object", {"name": "string"}])),
    );
    assert_outcome(&reply, 400, &["required", "structure", "value"], &["string"]);
    let reply = server.post_json("/$primitives", &json!({"parameter": []}));
    assert_outcome(&reply, 400, &["invalid"], &[]);
}

#[test]
fn too_many_parameter_entries_are_too_costly() {
    let server = server();
    let entries: Vec<Value> = (0..1001)
        .map(|_| json!({"name": "string", "valueString": "x"}))
        .collect();
    let reply = server.post_json("/$primitives", &parameters(Value::Array(entries)));
    assert_outcome(&reply, 400, &["too-costly"], &[]);
}

#[test]
fn invalid_ids_in_the_url_are_400() {
    let server = server();
    let long = "x".repeat(65);
    for path in [
        "/Patient/a_b/$where".to_owned(),
        format!("/Patient/{long}/$where"),
        "/Patient/1/_history/v_1/$where".to_owned(),
    ] {
        let reply = server.get(&path);
        assert_outcome(&reply, 400, &["invalid"], &[]);
    }
    // 64 characters are fine.
    let id = "x".repeat(64);
    assert_eq!(server.get(&format!("/Patient/{id}/$where")).status, 200);
}

// ---------------------------------------------------------------------------------------------
// 3. Validation before the handler
// ---------------------------------------------------------------------------------------------

#[test]
fn valid_call_runs_the_handler_once() {
    let (server, runs) = recording_server();
    assert_ok(
        &server.get("/Patient/$strict?start=2024-05&flag=false&count=3&tag=a&tag=b"),
        &parameters(json!([{"name": "return", "valueString": "ran with 2024-05"}])),
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn missing_required_parameter_is_400_required() {
    let (server, runs) = recording_server();
    let expected = json!({"resourceType": "OperationOutcome", "issue": [{
        "severity": "error",
        "code": "required",
        "diagnostics": "missing required parameter 'start'",
        "expression": ["start"],
    }]});
    for reply in [
        server.get("/Patient/$strict"),
        server.get("/Patient/$strict?start="),
        server.post("/Patient/$strict", ""),
        server.post_json("/Patient/$strict", &json!({"resourceType": "Parameters"})),
    ] {
        assert_eq!(reply.status, 400, "{}", reply.body);
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.json(), expected);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn wrong_lexical_form_is_400_value() {
    let (server, runs) = recording_server();
    for (path, name) in [
        ("/Patient/$strict?start=2024-13", "start"),
        ("/Patient/$strict?start=2024-02-30", "start"),
        ("/Patient/$strict?start=24", "start"),
        ("/Patient/$strict?start=2024&flag=yes", "flag"),
        ("/Patient/$strict?start=2024&count=-1", "count"),
        ("/Patient/$strict?start=2024&count=1.5", "count"),
        ("/Patient/$strict?start=2024&tag=%20lead", "tag"),
    ] {
        let reply = server.get(path);
        assert_outcome(&reply, 400, &["value"], &[name]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn bad_complex_content_is_refused_before_the_handler() {
    let (server, runs) = recording_server();
    let reply = server.post_json(
        "/Patient/$strict",
        &parameters(json!([
            {"name": "start", "valueDate": "2024"},
            {"name": "coding", "valueCoding": {"system": "has space", "code": "x"}},
        ])),
    );
    assert_outcome(&reply, 400, &["value"], &["coding"]);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn wrong_value_member_or_json_kind_is_400_value() {
    let (server, runs) = recording_server();
    let reply = server.post_json(
        "/Patient/$strict",
        &parameters(json!([{"name": "start", "valueString": "2024-01"}])),
    );
    assert_outcome(&reply, 400, &["value"], &["start"]);
    assert_eq!(diagnostics(&reply), ["expected valueDate, got valueString"]);
    let reply = server.post_json(
        "/Patient/$strict",
        &parameters(json!([
            {"name": "start", "valueDate": "2024-01"},
            {"name": "flag", "valueBoolean": "yes"},
            {"name": "count", "valueUnsignedInt": "1"},
        ])),
    );
    assert_outcome(&reply, 400, &["value", "value"], &["flag", "count"]);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn more_than_max_is_400_invalid() {
    let (server, runs) = recording_server();
    let reply = server.get("/Patient/$strict?start=2024&count=1&count=2");
    assert_outcome(&reply, 400, &["invalid"], &["count"]);
    assert_eq!(
        diagnostics(&reply),
        ["parameter 'count' is given 2 times; at most 1 allowed"]
    );
    // `max = "2"` overrides the Vec's `*`.
    let reply = server.get("/Patient/$strict?start=2024&tag=a&tag=b&tag=c");
    assert_outcome(&reply, 400, &["invalid"], &["tag"]);
    // A required parameter given twice in a body.
    let reply = server.post_json(
        "/Patient/$strict",
        &parameters(json!([
            {"name": "start", "valueDate": "2024"},
            {"name": "start", "valueDate": "2025"},
        ])),
    );
    assert_outcome(&reply, 400, &["invalid"], &["start"]);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn unknown_parameter_is_400_not_supported() {
    let (server, runs) = recording_server();
    let reply = server.get("/Patient/$strict?start=2024&bogus=1");
    assert_outcome(&reply, 400, &["not-supported"], &["bogus"]);
    let reply = server.post_json(
        "/Patient/$strict",
        &parameters(json!([
            {"name": "start", "valueDate": "2024"},
            {"name": "bogus", "valueString": "x"},
        ])),
    );
    assert_outcome(&reply, 400, &["not-supported"], &["bogus"]);
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn every_problem_of_a_request_is_reported_at_once() {
    let (server, runs) = recording_server();
    let reply = server.get("/Patient/$strict?start=2024-13&flag=yes&bogus=1&count=1&count=2");
    assert_outcome(
        &reply,
        400,
        &["value", "value", "not-supported", "invalid"],
        &["start", "flag", "bogus", "count"],
    );
    // Missing, wrong and unknown at once, in a body.
    let reply = server.post_json(
        "/Patient/$strict",
        &parameters(json!([
            {"name": "flag", "valueString": "true"},
            {"name": "other", "valueString": "x"},
        ])),
    );
    assert_outcome(
        &reply,
        400,
        &["value", "not-supported", "required"],
        &["flag", "other", "start"],
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn general_parameters_are_always_allowed() {
    let (server, runs) = recording_server();
    let reply = server.get("/Patient/$strict?start=2024&_format=json&_pretty=false&_summary=true&_elements=id");
    assert_ok(
        &reply,
        &parameters(json!([{"name": "return", "valueString": "ran with 2024"}])),
    );
    let reply = server.post_json(
        "/Patient/$strict?_summary=count&_elements=id,meta",
        &parameters(json!([{"name": "start", "valueDate": "2024"}])),
    );
    assert_ok(
        &reply,
        &parameters(json!([{"name": "return", "valueString": "ran with 2024"}])),
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
}

// ---------------------------------------------------------------------------------------------
// 4. The GET rule
// ---------------------------------------------------------------------------------------------

#[test]
fn get_on_an_operation_that_affects_state_is_405_allow_post() {
    let (server, runs) = recording_server();
    let reply = server.get("/Patient/$mutate?note=x");
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(
        reply.json(),
        json!({"resourceType": "OperationOutcome", "issue": [{
            "severity": "error",
            "code": "not-supported",
            "diagnostics": "operation $mutate affects state, so it must be invoked with POST",
        }]})
    );
    assert_eq!(runs.load(Ordering::SeqCst), 0);
    assert_ok(
        &server.post("/Patient/$mutate?note=x", ""),
        &parameters(json!([{"name": "return", "valueString": "mutated: x"}])),
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn get_naming_a_complex_parameter_in_the_query_is_405() {
    let (server, runs) = recording_server();
    let reply = server.get("/Patient/$strict?start=2024&coding=x");
    assert_outcome(&reply, 405, &["not-supported"], &[]);
    assert_eq!(reply.header("allow"), Some("POST"));
    // Multi-part and resource parameters cannot come in the URL either.
    let server = self::server();
    let reply = server.get("/Patient/$summary-of?limit=1&pair=x");
    assert_eq!(reply.status, 405, "{}", reply.body);
    assert_eq!(reply.header("allow"), Some("POST"));
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

#[test]
fn post_naming_a_complex_parameter_in_the_query_is_400_not_405() {
    // The request already uses POST: answering 405 with `Allow: POST` would contradict itself.
    let server = server();
    let reply = server.post("/$resources?any=x", "");
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.header("allow"), None);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_expressions(), ["any"]);
}

#[test]
fn post_works_for_idempotent_operations() {
    let (server, runs) = recording_server();
    assert_ok(
        &server.post_json(
            "/Patient/$strict",
            &parameters(json!([
                {"name": "start", "valueDate": "2024-05-06"},
                {"name": "coding", "valueCoding": {"code": "x"}},
            ])),
        ),
        &parameters(json!([{"name": "return", "valueString": "ran with 2024-05-06"}])),
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1);
}

#[test]
fn other_methods_on_an_operation_url_are_405_with_allow() {
    let (server, runs) = recording_server();
    for (method, path, allow) in [
        ("PUT", "/Patient/$strict?start=2024", "GET, POST"),
        ("DELETE", "/Patient/$strict?start=2024", "GET, POST"),
        ("PATCH", "/Patient/$strict?start=2024", "GET, POST"),
        ("PUT", "/Patient/$mutate", "POST"),
        ("DELETE", "/Patient/$mutate", "POST"),
    ] {
        let reply = send(method, &server.url(path), &[], None);
        assert_eq!(reply.status, 405, "{method} {path}: {}", reply.body);
        assert_eq!(reply.header("allow"), Some(allow), "{method} {path}");
        assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
        assert_eq!(reply.issue_codes(), ["not-supported"]);
    }
    assert_eq!(runs.load(Ordering::SeqCst), 0);
}

// ---------------------------------------------------------------------------------------------
// 6. OperationDefinitions
// ---------------------------------------------------------------------------------------------

#[test]
fn operation_definition_is_generated_from_the_function() {
    let server = server();
    let reply = server.get("/OperationDefinition/Patient-it-summary-of");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(
        reply.json(),
        json!({
            "resourceType": "OperationDefinition",
            "id": "Patient-it-summary-of",
            "url": server.url("/OperationDefinition/Patient-it-summary-of"),
            "name": "SummaryOf",
            "status": "active",
            "kind": "operation",
            "description": "Summarises a patient's record.",
            "affectsState": false,
            "code": "summary-of",
            "resource": ["Patient"],
            "system": false,
            "type": true,
            "instance": true,
            "parameter": [
                {"name": "start", "use": "in", "min": 0, "max": "1",
                 "documentation": "The earliest date to include.", "type": "date"},
                {"name": "code", "use": "in", "min": 0, "max": "*",
                 "documentation": "Codes to include; commas mean OR.", "type": "string", "searchType": "token"},
                {"name": "pair", "use": "in", "min": 0, "max": "3", "documentation": "Key/value filters.", "part": [
                    {"name": "key", "use": "in", "min": 1, "max": "1", "documentation": "The key.", "type": "code"},
                    {"name": "value", "use": "in", "min": 0, "max": "1", "documentation": "The value.", "type": "integer"},
                ]},
                {"name": "limit", "use": "in", "min": 1, "max": "1",
                 "documentation": "How many to return.", "type": "positiveInt"},
                {"name": "total", "use": "out", "min": 1, "max": "1",
                 "documentation": "How many matched.", "type": "unsignedInt"},
                {"name": "code", "use": "out", "min": 0, "max": "*",
                 "documentation": "The matching codes.", "type": "code"},
            ],
        })
    );
}

#[test]
fn operation_definition_of_a_resource_operation_and_a_multi_type_operation() {
    let server = server();
    let reply = server.get("/OperationDefinition/Patient-t-stamp");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({
            "resourceType": "OperationDefinition",
            "id": "Patient-t-stamp",
            "url": server.url("/OperationDefinition/Patient-t-stamp"),
            "name": "Stamp",
            "status": "active",
            "kind": "operation",
            "description": "Marks the posted Patient as active.",
            "affectsState": true,
            "code": "stamp",
            "resource": ["Patient"],
            "system": false,
            "type": true,
            "instance": false,
            "parameter": [
                {"name": "resource", "use": "in", "min": 1, "max": "1",
                 "documentation": "The Patient to stamp.", "type": "Patient"},
                {"name": "return", "use": "out", "min": 1, "max": "1", "type": "Patient"},
            ],
        })
    );
    let reply = server.get("/OperationDefinition/Patient-Group-sit-where");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(
        reply.json(),
        json!({
            "resourceType": "OperationDefinition",
            "id": "Patient-Group-sit-where",
            "url": server.url("/OperationDefinition/Patient-Group-sit-where"),
            "name": "Where",
            "status": "active",
            "kind": "operation",
            "description": "Tells the caller where it was invoked.",
            "affectsState": false,
            "code": "where",
            "resource": ["Patient", "Group"],
            "system": true,
            "type": true,
            "instance": true,
        })
    );
}

#[test]
fn operation_definitions_are_listed_as_a_searchset() {
    let server = server();
    let reply = server.get("/OperationDefinition");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    let bundle = reply.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert_eq!(bundle["total"], 11);
    assert_eq!(
        bundle["link"],
        json!([{"relation": "self", "url": server.url("/OperationDefinition")}])
    );
    let entries = bundle["entry"].as_array().unwrap();
    let ids: Vec<&str> = entries
        .iter()
        .map(|entry| entry["resource"]["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        ids,
        [
            "Patient-Group-sit-where",
            "Patient-i-version-of",
            "Patient-t-type-only",
            "s-system-only",
            "s-primitives",
            "s-complex",
            "s-resources",
            "Patient-t-stamp",
            "Patient-t-find",
            "s-pairs",
            "Patient-it-summary-of",
        ]
    );
    for entry in entries {
        let id = entry["resource"]["id"].as_str().unwrap();
        let url = server.url(&format!("/OperationDefinition/{id}"));
        assert_eq!(entry["fullUrl"], url.as_str());
        assert_eq!(entry["search"], json!({"mode": "match"}));
        let single = send("GET", &url, &[], None);
        assert_eq!(single.status, 200, "{url}");
        assert_eq!(single.json(), entry["resource"], "{id}");
    }
}

#[test]
fn unknown_operation_definition_is_404() {
    let server = server();
    let reply = server.get("/OperationDefinition/nothing-here");
    assert_eq!(reply.status, 404, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    assert_eq!(reply.issue_codes(), ["not-found"]);
}

// ---------------------------------------------------------------------------------------------
// 7. The CapabilityStatement
// ---------------------------------------------------------------------------------------------

#[test]
fn metadata_lists_type_instance_and_system_operations() {
    let server = TestServer::start(
        FhirServer::builder()
            .base_path("/fhir/R4")
            .operations(operations![where_called, version_of, system_only])
            .build()
            .unwrap(),
    );
    let reply = server.get("/metadata");
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert_eq!(reply.header("content-type"), Some(FHIR_JSON));
    let statement = reply.json();
    assert_eq!(statement["resourceType"], "CapabilityStatement");
    assert_eq!(statement["status"], "active");
    assert_eq!(statement["kind"], "instance");
    assert_eq!(statement["fhirVersion"], "4.0.1");
    assert_eq!(statement["format"], json!(["json", "application/fhir+json"]));
    assert_eq!(statement["implementation"]["url"], server.base_url.as_str());
    let definition = |id: &str| server.url(&format!("/OperationDefinition/{id}"));
    assert_eq!(
        statement["rest"],
        json!([{
            "mode": "server",
            "resource": [
                {"type": "Group", "operation": [
                    {"name": "where", "definition": definition("Patient-Group-sit-where")},
                ]},
                {"type": "Patient", "operation": [
                    {"name": "where", "definition": definition("Patient-Group-sit-where")},
                    {"name": "version-of", "definition": definition("Patient-i-version-of")},
                ]},
            ],
            "operation": [
                {"name": "where", "definition": definition("Patient-Group-sit-where")},
                {"name": "system-only", "definition": definition("s-system-only")},
            ],
        }])
    );
}

#[test]
fn every_operation_in_metadata_resolves_to_its_definition() {
    let server = server();
    let statement = server.get("/metadata").json();
    let rest = &statement["rest"][0];
    let mut listed = Vec::new();
    for resource in rest["resource"].as_array().unwrap() {
        listed.extend(resource["operation"].as_array().unwrap().iter().cloned());
    }
    listed.extend(rest["operation"].as_array().unwrap().iter().cloned());
    assert_eq!(listed.len(), 13, "{listed:?}");
    for operation in listed {
        let name = operation["name"].as_str().unwrap();
        assert!(!name.starts_with('$'), "{name}");
        let url = operation["definition"].as_str().unwrap();
        let reply = send("GET", url, &[], None);
        assert_eq!(reply.status, 200, "{url}");
        let definition = reply.json();
        assert_eq!(definition["resourceType"], "OperationDefinition");
        assert_eq!(definition["code"], name);
        assert_eq!(definition["url"], url);
    }
}

#[test]
fn metadata_and_definitions_follow_the_base_url_the_client_used() {
    let server = TestServer::start(
        FhirServer::builder()
            .base_path("/fhir/R4")
            .operations(operations![system_only])
            .build()
            .unwrap(),
    );
    let direct = server.get("/metadata").json();
    assert_eq!(direct["implementation"]["url"], server.base_url.as_str());
    let proxied = send(
        "GET",
        &server.url("/metadata"),
        &[("X-Forwarded-Host", "fhir.example.org"), ("X-Forwarded-Proto", "https")],
        None,
    )
    .json();
    assert_eq!(proxied["implementation"]["url"], "https://fhir.example.org/fhir/R4");
    assert_eq!(
        proxied["rest"][0]["operation"],
        json!([{"name": "system-only", "definition": "https://fhir.example.org/fhir/R4/OperationDefinition/s-system-only"}])
    );
    // The first base URL is still answered as before.
    assert_eq!(server.get("/metadata").json(), direct);
}
