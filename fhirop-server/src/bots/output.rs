//! A Bot's value shaped by the OperationDefinition's OUT parameters (Medplum's rules, with
//! resources written as `resource`, not `valuePatient`), and returned OperationOutcomes
//! mapped to the status their issue code implies.

use actix_web::http::StatusCode;
use fhirop::definition::{Max, OperationDefinition, ParamDefinition};
use fhirop::outcome::{Issue, IssueType, OperationError, OperationOutcome, Severity};
use fhirop::output::OperationOutput;
use fhirop::types::{ParamKind, lexical, value_member};
use serde_json::{Map, Value, json};

/// The status an error issue code implies.
fn status_for(code: &str) -> StatusCode {
    match code {
        "not-found" => StatusCode::NOT_FOUND,
        "forbidden" => StatusCode::FORBIDDEN,
        "conflict" | "duplicate" => StatusCode::CONFLICT,
        "login" | "unknown" => StatusCode::UNAUTHORIZED,
        "deleted" => StatusCode::GONE,
        "timeout" => StatusCode::GATEWAY_TIMEOUT,
        "throttled" => StatusCode::TOO_MANY_REQUESTS,
        "exception" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    }
}

/// An OperationOutcome the Bot returned with an error issue: the error to answer with.
fn returned_error(value: &Value) -> Option<OperationError> {
    if value.get("resourceType").and_then(Value::as_str) != Some("OperationOutcome") {
        return None;
    }
    let issues = value.get("issue")?.as_array()?;
    let first_error = issues
        .iter()
        .find(|issue| matches!(issue.get("severity").and_then(Value::as_str), Some("error" | "fatal")))?;
    let code = first_error.get("code").and_then(Value::as_str).unwrap_or("processing");
    let issues = issues
        .iter()
        .map(|issue| {
            let text = |key: &str| issue.get(key).and_then(Value::as_str).map(str::to_owned);
            Issue {
                severity: match issue.get("severity").and_then(Value::as_str) {
                    Some("fatal") => Severity::Fatal,
                    Some("warning") => Severity::Warning,
                    Some("information") => Severity::Information,
                    _ => Severity::Error,
                },
                code: issue
                    .get("code")
                    .and_then(Value::as_str)
                    .and_then(IssueType::from_code)
                    .unwrap_or(IssueType::Processing),
                details: issue
                    .pointer("/details/text")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                diagnostics: text("diagnostics"),
                expression: issue
                    .get("expression")
                    .and_then(Value::as_array)
                    .map(|items| items.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                    .unwrap_or_default(),
            }
        })
        .collect();
    Some(OperationError {
        status: status_for(code),
        outcome: OperationOutcome { issues },
        headers: Vec::new(),
    })
}

fn mismatch(message: String) -> OperationError {
    OperationError::new(
        StatusCode::INTERNAL_SERVER_ERROR,
        IssueType::Exception,
        format!("the Bot's value does not match the OperationDefinition: {message}"),
    )
}

/// What a resource's JSON text says it is, read without building the rest: the parser checks
/// the whole text and skips every other member.
#[derive(serde::Deserialize)]
struct ResourceHead<'a> {
    #[serde(rename = "resourceType", borrow, default)]
    resource_type: Option<std::borrow::Cow<'a, str>>,
}

/// Shapes a Bot's value, the JSON text its handler's value serialized to, into the response.
///
/// A single `return` resource of the expected type (W3's Patient) is answered with the Bot's
/// text as it is: building it into a tree only to check its `resourceType` and serialize it
/// again cost more than the rest of the response. Everything else is shaped from the value.
pub fn bot_output(definition: &OperationDefinition, json: String) -> Result<OperationOutput, OperationError> {
    if let [single] = definition.outputs().collect::<Vec<_>>().as_slice()
        && single.name == "return"
        && single.kind == ParamKind::Resource
        && let Ok(head) = serde_json::from_str::<ResourceHead<'_>>(&json)
        && let Some(given) = head.resource_type.as_deref()
        // An OperationOutcome may be the Bot's error, which the value path maps.
        && given != "OperationOutcome"
        && resource_fits(single, given)
    {
        return Ok(OperationOutput::json(json.into_bytes()));
    }
    let value = serde_json::from_str(&json)
        .map_err(|error| OperationError::internal(format!("the Bot's value is not JSON: {error}")))?;
    shape(definition, value)
}

/// Whether a `given` resource type is what the resource parameter `expected` declares.
fn resource_fits(expected: &ParamDefinition, given: &str) -> bool {
    let expected = expected.fhir_type.as_deref().unwrap_or("Resource");
    given == expected || matches!(expected, "Resource" | "DomainResource")
}

/// Shapes a Bot's value into the response.
fn shape(definition: &OperationDefinition, value: Value) -> Result<OperationOutput, OperationError> {
    if let Some(error) = returned_error(&value) {
        return Err(error);
    }
    let outputs: Vec<&ParamDefinition> = definition.outputs().collect();
    match outputs.as_slice() {
        [] => Ok(OperationOutput::Resource(json!({"resourceType": "Parameters"}))),
        [single] if single.name == "return" && single.kind == ParamKind::Resource => {
            let expected = single.fhir_type.as_deref().unwrap_or("Resource");
            match value.get("resourceType").and_then(Value::as_str) {
                Some(given) if resource_fits(single, given) => Ok(OperationOutput::Resource(value)),
                Some(given) => Err(mismatch(format!(
                    "'return' is a {expected}, but the Bot returned a {given}"
                ))),
                None => Err(mismatch(format!(
                    "'return' is a {expected}, but the Bot returned {}",
                    kind_of(&value)
                ))),
            }
        }
        [single] if (single.name == "return" && !value.is_object()) || is_single_return(&outputs, &value) => {
            let mut object = Map::new();
            object.insert("return".into(), value);
            parameters(&outputs, &Value::Object(object))
        }
        _ => parameters(&outputs, &value),
    }
}

/// A single `return` parameter whose value the Bot gave directly (not in an object keyed
/// by `return`).
fn is_single_return(outputs: &[&ParamDefinition], value: &Value) -> bool {
    matches!(outputs, [single] if single.name == "return" && value.get("return").is_none()
        && matches!(single.kind, ParamKind::Complex | ParamKind::Primitive | ParamKind::Search))
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "nothing",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A `Parameters` from an object keyed by OUT parameter name.
fn parameters(outputs: &[&ParamDefinition], value: &Value) -> Result<OperationOutput, OperationError> {
    let entries = entries(outputs, value, "")?;
    let mut parameters = Map::new();
    parameters.insert("resourceType".into(), "Parameters".into());
    if !entries.is_empty() {
        parameters.insert("parameter".into(), Value::Array(entries));
    }
    Ok(OperationOutput::Resource(Value::Object(parameters)))
}

fn entries(definitions: &[&ParamDefinition], value: &Value, prefix: &str) -> Result<Vec<Value>, OperationError> {
    let Value::Object(object) = value else {
        return Err(mismatch(format!(
            "expected an object keyed by {}, got {}",
            definitions
                .iter()
                .map(|definition| definition.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
            kind_of(value)
        )));
    };
    if let Some(unknown) = object
        .keys()
        .find(|key| !definitions.iter().any(|definition| &definition.name == *key))
    {
        return Err(mismatch(format!("'{prefix}{unknown}' is not an out parameter")));
    }
    let mut entries = Vec::new();
    for definition in definitions {
        let name = format!("{prefix}{}", definition.name);
        let values: Vec<&Value> = match object.get(&definition.name) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(items)) if definition.max != Max::Count(1) => items.iter().collect(),
            Some(single) => vec![single],
        };
        if values.len() < definition.min as usize {
            return Err(mismatch(format!(
                "'{name}' is required ({}..{})",
                definition.min,
                definition.max.to_fhir()
            )));
        }
        if definition.max.is_exceeded_by(values.len()) {
            return Err(mismatch(format!(
                "'{name}' has {} values; at most {}",
                values.len(),
                definition.max.to_fhir()
            )));
        }
        for value in values {
            entries.push(entry(definition, value, &name)?);
        }
    }
    Ok(entries)
}

fn entry(definition: &ParamDefinition, value: &Value, name: &str) -> Result<Value, OperationError> {
    let fhir_type = definition.fhir_type.as_deref().unwrap_or("string");
    let mut entry = Map::new();
    entry.insert("name".into(), definition.name.clone().into());
    match definition.kind {
        ParamKind::Resource => {
            if value.get("resourceType").and_then(Value::as_str).is_none() {
                return Err(mismatch(format!(
                    "'{name}' is a {fhir_type} resource, got {}",
                    kind_of(value)
                )));
            }
            entry.insert("resource".into(), value.clone());
        }
        ParamKind::Tuple => {
            let parts: Vec<&ParamDefinition> = definition.parts.iter().collect();
            entry.insert(
                "part".into(),
                Value::Array(entries(&parts, value, &format!("{name}."))?),
            );
        }
        ParamKind::Complex => {
            if !value.is_object() {
                return Err(mismatch(format!("'{name}' is a {fhir_type}, got {}", kind_of(value))));
            }
            entry.insert(value_member(fhir_type), value.clone());
        }
        ParamKind::Primitive | ParamKind::Search => {
            let text = match value {
                Value::String(text) => text.clone(),
                Value::Number(number) => number.to_string(),
                Value::Bool(flag) => flag.to_string(),
                other => return Err(mismatch(format!("'{name}' is a {fhir_type}, got {}", kind_of(other)))),
            };
            lexical::check(fhir_type, &text).map_err(|message| mismatch(format!("'{name}': {message}")))?;
            entry.insert(
                value_member(fhir_type),
                fhirop::types::primitives::primitive_json(fhir_type, &text),
            );
        }
    }
    Ok(Value::Object(entry))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn definition(parameters: Value) -> OperationDefinition {
        OperationDefinition::from_json(&json!({
            "resourceType": "OperationDefinition", "code": "x", "system": true, "parameter": parameters
        }))
        .unwrap()
    }

    fn body(output: OperationOutput) -> Value {
        output.into_json().expect("a body").unwrap()
    }

    /// What the response is for a Bot whose value serializes to `value`.
    fn shaped(definition: &OperationDefinition, value: Value) -> Result<OperationOutput, OperationError> {
        bot_output(definition, value.to_string())
    }

    #[test]
    fn a_single_resource_return_is_the_body() {
        let definition = definition(json!([{"name": "return", "use": "out", "min": 1, "max": "1", "type": "Patient"}]));
        let patient = json!({"resourceType": "Patient"});
        assert_eq!(body(shaped(&definition, patient.clone()).unwrap()), patient);
        let error = shaped(&definition, json!({"resourceType": "Observation"})).unwrap_err();
        assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR);
    }

    #[test]
    fn a_fitting_resource_is_answered_with_the_bots_text_as_it_is() {
        let definition = definition(json!([{"name": "return", "use": "out", "min": 1, "max": "1", "type": "Patient"}]));
        let text = r#"{"name":[{"family":"Smith"}],"resourceType":"Patient","id":"a\u0062"}"#;
        match bot_output(&definition, text.to_owned()).unwrap() {
            OperationOutput::Json(bytes) => assert_eq!(bytes.as_ref(), text.as_bytes()),
            other => panic!("not the text: {other:?}"),
        }
        // The wrong type, no type, not an object, not JSON: errors, as from the value.
        for wrong in [
            r#"{"resourceType":"Observation"}"#,
            r#"{"name":"x"}"#,
            "[1]",
            r#"{"resourceType":"Patient""#,
        ] {
            let error = bot_output(&definition, wrong.to_owned()).unwrap_err();
            assert_eq!(error.status, StatusCode::INTERNAL_SERVER_ERROR, "{wrong}");
        }
        // A returned error outcome keeps its status, even where a resource is expected.
        let any = definition_of_any_resource();
        let outcome = r#"{"resourceType":"OperationOutcome","issue":[{"severity":"error","code":"forbidden"}]}"#;
        assert_eq!(
            bot_output(&any, outcome.to_owned()).unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        let information =
            r#"{"resourceType":"OperationOutcome","issue":[{"severity":"information","code":"informational"}]}"#;
        assert_eq!(
            body(bot_output(&any, information.to_owned()).unwrap()),
            serde_json::from_str::<Value>(information).unwrap()
        );
    }

    fn definition_of_any_resource() -> OperationDefinition {
        definition(json!([{"name": "return", "use": "out", "min": 1, "max": "1", "type": "Resource"}]))
    }

    #[test]
    fn several_outputs_become_parameters() {
        let definition = definition(json!([
            {"name": "count", "use": "out", "min": 1, "max": "1", "type": "integer"},
            {"name": "patient", "use": "out", "min": 0, "max": "*", "type": "Patient"},
            {"name": "pair", "use": "out", "min": 0, "max": "1", "part": [
                {"name": "a", "use": "out", "min": 1, "max": "1", "type": "string"}
            ]}
        ]));
        let value = json!({"count": 2, "patient": [{"resourceType": "Patient"}, {"resourceType": "Patient"}], "pair": {"a": "x"}});
        assert_eq!(
            body(shaped(&definition, value).unwrap()),
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "count", "valueInteger": 2},
                {"name": "patient", "resource": {"resourceType": "Patient"}},
                {"name": "patient", "resource": {"resourceType": "Patient"}},
                {"name": "pair", "part": [{"name": "a", "valueString": "x"}]},
            ]})
        );
        assert!(shaped(&definition, json!({"count": "two"})).is_err());
        assert!(shaped(&definition, json!({})).is_err());
    }

    #[test]
    fn returned_outcomes_carry_their_status() {
        let definition = definition(json!([]));
        let outcome =
            json!({"resourceType": "OperationOutcome", "issue": [{"severity": "error", "code": "not-found"}]});
        assert_eq!(shaped(&definition, outcome).unwrap_err().status, StatusCode::NOT_FOUND);
        assert_eq!(
            body(shaped(&definition, json!(null)).unwrap()),
            json!({"resourceType": "Parameters"})
        );
    }
}
