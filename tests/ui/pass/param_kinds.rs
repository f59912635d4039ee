//! Every kind of IN parameter: Rust and FHIR primitives, complex types, resources, search
//! types, `OrList`, `Vec`, `Option`, multi-part parameters, and user serde types.

use fhirop::prelude::*;

/// A multi-part parameter.
#[derive(Parameters)]
struct Range {
    /// Where it starts.
    low: Decimal,
    /// Where it ends, if anywhere.
    #[param(name = "high-value")]
    high: Option<Decimal>,
    /// Repeated.
    labels: Vec<String>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct Address {
    city: Option<String>,
}
fhirop::complex_type!(Address, "Address");

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
struct Patient(serde_json::Value);
fhirop::resource_type!(Patient, "Patient");

/// Rust and FHIR primitives, required, optional and repeated.
#[operation(name = "$primitives", idempotent = true)]
async fn primitives(
    #[op_param] text: String,
    #[op_param] flag: bool,
    #[op_param] small: i32,
    #[op_param] big: i64,
    #[op_param] count: u32,
    #[op_param] huge: u64,
    #[op_param] ratio: f64,
    #[op_param] date: Date,
    #[op_param] at: Option<DateTime>,
    #[op_param] instant: Option<Instant>,
    #[op_param] amount: Option<Decimal>,
    #[op_param] codes: Vec<Code>,
    #[op_param] uri: Option<Uri>,
    #[op_param] url: Option<Url>,
    #[op_param] canonical: Option<Canonical>,
    #[op_param] id: Option<Id>,
    #[op_param] oid: Option<Oid>,
    #[op_param] uuid: Option<Uuid>,
    #[op_param] data: Option<Base64Binary>,
    #[op_param] note: Option<Markdown>,
    #[op_param] page: Option<PositiveInt>,
    #[op_param] time: Option<Time>,
    #[op_param] r#type: Option<String>,
) {
    let _ = (text, flag, small, big, count, huge, ratio);
    let _ = (date, at, instant, amount, codes);
    let _ = (uri, url, canonical, id, oid, uuid, data, note, page, time, r#type);
}

/// Search types, OR lists and AND repetitions: all allowed on GET, even when required.
#[operation(name = "$find", idempotent = true, resource = "Observation")]
async fn find(
    #[op_param] code: TokenParam,
    #[op_param] subject: Option<ReferenceParam>,
    #[op_param] name: Option<StringParam>,
    #[op_param] date: Vec<DateParam>,
    #[op_param] value: Option<NumberParam>,
    #[op_param] quantity: Option<QuantityParam>,
    #[op_param] url: Option<UriParam>,
    #[op_param] category: OrList<TokenParam>,
    #[op_param(name = "status")] statuses: Vec<OrList<TokenParam>>,
) -> Bundle {
    let _ = (code, subject, name, date, value, quantity, url, category, statuses);
    Bundle::searchset()
}

/// Complex types, resources and multi-part parameters, required on a POST-only operation,
/// with `min` / `max` overrides and documentation.
#[operation(name = "$complex", resource = "Patient")]
async fn complex(
    /// A coding.
    #[op_param]
    coding: Coding,
    #[op_param] concept: Option<CodeableConcept>,
    #[op_param] identifiers: Vec<Identifier>,
    #[op_param] reference: Option<Reference>,
    #[op_param] quantity: Option<Quantity>,
    #[op_param] period: Option<Period>,
    #[op_param] address: Address,
    #[op_param(name = "resource")] resource: Resource,
    #[op_param] patient: Patient,
    #[op_param] bundle: Option<Bundle>,
    #[op_param] range: Range,
    #[op_param(min = 1, max = "3")] ranges: Vec<Range>,
    #[op_param(max = "*")] notes: Vec<String>,
    context: OperationContext,
) -> Result<Resource, OperationError> {
    let _ = (coding, concept, identifiers, reference, quantity, period);
    let _ = (address, patient, bundle);
    let _ = (range.low, range.high, range.labels, ranges, notes, context.base_url());
    Ok(resource)
}

/// An idempotent operation may take a complex or resource parameter when it is optional
/// (or repeated): GET simply cannot send it.
#[operation(name = "$optional-resource", idempotent = true, resource = "Patient")]
async fn optional_resource(
    #[op_param] resource: Option<Resource>,
    #[op_param] coding: Option<Coding>,
    #[op_param] ranges: Vec<Range>,
    #[op_param] patients: Vec<Patient>,
) -> Option<Resource> {
    let _ = (coding, ranges, patients);
    resource
}

fn main() {
    let _ = operations![primitives, find, complex, optional_resource];
}
