//! A free fn at each level, declared and inferred.

use fhirop::prelude::*;

/// System level, inferred (no resource type).
#[operation(name = "$ping", idempotent = true)]
async fn ping() -> String {
    "pong".to_owned()
}

/// System level, declared.
#[operation(name = "$status", system = true)]
async fn status() -> OperationOutcome {
    OperationOutcome::information("up")
}

/// Type level, inferred (a resource type and no id).
#[operation(name = "$count", idempotent = true, resource = "Patient")]
async fn count() -> i64 {
    0
}

/// Type level, declared with the bare word, for two resource types.
#[operation(name = "$summary", resource = "Patient", resource = "Group", type_level)]
async fn summary() {}

/// Instance level, inferred from `IdParam`.
#[operation(name = "$everything", idempotent = true, resource = "Patient")]
async fn everything(#[id_param] id: IdParam) -> Bundle {
    let mut bundle = Bundle::searchset();
    bundle.push_match(None, serde_json::json!({"resourceType": "Patient", "id": id.id}));
    bundle
}

/// Type and instance level, inferred from `Option<IdParam>`.
#[operation(name = "$describe", idempotent = true, resource = "Observation")]
async fn describe(#[id_param] id: Option<IdParam>) -> String {
    id.map_or_else(|| "all".to_owned(), |id| id.to_reference())
}

/// Every level, declared, with an optional id.
#[operation(
    name = "$touch",
    resource = "Patient",
    system = true,
    type_level = true,
    instance = true,
    id = "touch",
    title = "Touch",
    canonical = "https://example.com/OperationDefinition/touch"
)]
async fn touch(#[id_param] id: Option<IdParam>, context: OperationContext) -> Result<(), OperationError> {
    let _ = (id, context.level());
    Ok(())
}

/// Instance level only, declared, with a required id.
#[operation(name = "$lock", resource = "Patient", instance = true)]
async fn lock(#[id_param] id: IdParam) -> Result<String, OperationError> {
    Ok(id.to_reference())
}

fn main() {
    let _ = operations![ping, status, count, summary, everything, describe, touch, lock];
    // The functions stay callable.
    let _ = ping();
}
