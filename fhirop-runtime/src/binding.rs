//! Binding a request's input to an operation's IN parameters, checked against the
//! OperationDefinition before any handler runs: names, cardinality, kinds and lexical forms.
//! Every problem of a request is reported at once, each issue naming its parameter.

use actix_web::http::StatusCode;
use serde_json::{Map, Value};

use crate::definition::{OperationDefinition, ParamDefinition, ParamUse};
use crate::outcome::{Issue, IssueType, OperationError};
use crate::types::complex;
use crate::types::resource::take_resource;
use crate::types::{BoundParams, ParamKind, ParamValue, lexical, search, value_member};

/// Query parameters every operation accepts (http.html, "general parameters").
pub const GLOBAL_QUERY_PARAMETERS: [&str; 4] = ["_format", "_pretty", "_summary", "_elements"];

/// The default upper bound on `Parameters.parameter` entries in one request: beyond it the
/// request is refused as too costly rather than bound.
pub const MAX_PARAMETER_ENTRIES: usize = 1_000;

/// Collects a request's parameters for one operation.
#[derive(Debug)]
pub struct Binder<'d> {
    inputs: Inputs<'d>,
    params: BoundParams,
    issues: Vec<Issue>,
    /// Parameters given with a bad value: reported once, not again as missing.
    rejected: Vec<String>,
    max_parameters: usize,
}

impl<'d> Binder<'d> {
    /// A binder for `definition`'s IN parameters.
    pub fn new(definition: &'d OperationDefinition) -> Binder<'d> {
        Binder {
            inputs: Inputs {
                parameters: &definition.parameters,
                top_level: true,
            },
            // Sized once: growing the list from empty reallocates on the way.
            params: BoundParams::with_capacity(definition.parameters.len()),
            issues: Vec::new(),
            rejected: Vec::new(),
            max_parameters: MAX_PARAMETER_ENTRIES,
        }
    }

    /// Refuses a Parameters with more than `max` entries (default [`MAX_PARAMETER_ENTRIES`]).
    pub fn max_parameters(mut self, max: usize) -> Binder<'d> {
        self.max_parameters = max;
        self
    }

    /// Adds query-string parameters. A complex or resource parameter in the query of a GET is
    /// refused with 405, as FHIR's GET rule says (use POST); in the query of a POST it is a
    /// 400, since it belongs in the body.
    pub fn add_query<K: AsRef<str>, V: AsRef<str>>(
        &mut self,
        pairs: impl IntoIterator<Item = (K, V)>,
        is_get: bool,
    ) -> Result<(), OperationError> {
        for (key, text) in pairs {
            let (key, text) = (key.as_ref(), text.as_ref());
            if key.starts_with('_') && GLOBAL_QUERY_PARAMETERS.contains(&key) {
                continue;
            }
            // A byte search: `split_once(':')` runs a char searcher on every key.
            let (name, modifier) = match key.bytes().position(|byte| byte == b':') {
                Some(colon) => (&key[..colon], Some(&key[colon + 1..])),
                None => (key, None),
            };
            let Some(definition) = self.inputs.find(name) else {
                self.issues.push(unknown_parameter(name, self.inputs));
                continue;
            };
            if !definition.kind.is_simple() && !is_get {
                self.issues.push(
                    Issue::error(
                        IssueType::Value,
                        format!(
                            "parameter '{name}' is of type {}, which cannot be given in the URL: put it in the Parameters body",
                            definition.fhir_type.as_deref().unwrap_or("tuple")
                        ),
                    )
                    .at(name),
                );
                self.rejected.push(name.to_owned());
                continue;
            }
            if let Some(modifier) = modifier
                && definition.kind != ParamKind::Search
            {
                self.issues.push(
                    Issue::error(
                        IssueType::Value,
                        format!("parameter '{name}' is not a search parameter, so it takes no modifier (:{modifier})"),
                    )
                    .at(name),
                );
                self.rejected.push(name.to_owned());
                continue;
            }
            if !definition.kind.is_simple() {
                return Err(OperationError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    IssueType::NotSupported,
                    format!(
                        "parameter '{name}' is of type {}, which cannot be given in the URL: send it in a Parameters body with POST",
                        definition.fhir_type.as_deref().unwrap_or("tuple")
                    ),
                )
                .with_header("Allow", "POST"));
            }
            // search.html: a parameter with an empty value is ignored.
            if text.is_empty() {
                continue;
            }
            let checked = match definition.kind {
                ParamKind::Search => search::check(definition.search_type.as_deref().unwrap_or_default(), text),
                _ => lexical::check(definition.fhir_type.as_deref().unwrap_or_default(), text),
            };
            match checked {
                Ok(()) => self.params.push(
                    name,
                    ParamValue::Text {
                        text: text.to_owned(),
                        modifier: modifier.map(Into::into),
                    },
                ),
                Err(message) => {
                    self.issues.push(Issue::error(IssueType::Value, message).at(name));
                    self.rejected.push(name.to_owned());
                }
            }
        }
        Ok(())
    }

    /// Adds the entries of a `Parameters` resource.
    pub fn add_parameters(&mut self, mut parameters: Value) -> Result<(), OperationError> {
        // Found by comparing names, as `resource_type_of` finds resourceType: a Parameters has
        // few members, and hashing the name cost more.
        let parameter = match &mut parameters {
            Value::Object(members) => members
                .iter_mut()
                .find(|(name, _)| *name == "parameter")
                .map(|(_, value)| value.take()),
            _ => None,
        };
        let entries = match parameter {
            None => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                self.issues.push(Issue::error(
                    IssueType::Structure,
                    "Parameters.parameter must be an array",
                ));
                return Ok(());
            }
        };
        if entries.len() > self.max_parameters {
            return Err(OperationError::new(
                StatusCode::BAD_REQUEST,
                IssueType::TooCostly,
                format!(
                    "the Parameters has {} entries; at most {} are accepted",
                    entries.len(),
                    self.max_parameters
                ),
            ));
        }
        bind_entries(
            self.inputs,
            entries,
            "",
            &mut self.params,
            &mut self.issues,
            &mut self.rejected,
        );
        Ok(())
    }

    /// Binds a bare resource body to the operation's only resource parameter. Returns the
    /// resource back when the operation does not have exactly one.
    pub fn add_bare_resource(&mut self, resource: Value) -> Result<(), Value> {
        let mut resource_inputs = self.inputs.iter().filter(|input| input.kind == ParamKind::Resource);
        match (resource_inputs.next(), resource_inputs.next()) {
            (Some(input), None) => {
                let expected = input.fhir_type.as_deref().unwrap_or("Resource");
                match take_resource(ParamValue::Resource(resource), expected) {
                    Ok(resource) => self.params.push(&input.name, ParamValue::Resource(resource)),
                    Err(message) => {
                        self.issues
                            .push(Issue::error(IssueType::Value, message).at(&input.name));
                        self.rejected.push(input.name.clone());
                    }
                }
                Ok(())
            }
            _ => Err(resource),
        }
    }

    /// Checks cardinality and returns the bound parameters, or every issue found.
    pub fn finish(mut self) -> Result<BoundParams, OperationError> {
        check_counts(self.inputs, &self.params, "", &mut self.issues, &self.rejected);
        if self.issues.is_empty() {
            Ok(self.params)
        } else {
            Err(OperationError::from_issues(StatusCode::BAD_REQUEST, self.issues))
        }
    }
}

/// The parameters a request may give: the IN parameters of a definition, or the parts of a
/// tuple. A view rather than a collected list, so that binding allocates nothing for it.
#[derive(Debug, Clone, Copy)]
struct Inputs<'d> {
    parameters: &'d [ParamDefinition],
    /// The definition's own parameters, where OUT parameters are skipped; a tuple's parts are
    /// all its input.
    top_level: bool,
}

impl<'d> Inputs<'d> {
    fn iter(self) -> impl Iterator<Item = &'d ParamDefinition> {
        self.parameters
            .iter()
            .filter(move |parameter| !self.top_level || parameter.use_ == ParamUse::In)
    }

    fn find(self, name: &str) -> Option<&'d ParamDefinition> {
        self.iter().find(|input| input.name == name)
    }
}

fn unknown_parameter(name: &str, inputs: Inputs<'_>) -> Issue {
    let known: Vec<&str> = inputs.iter().map(|input| input.name.as_str()).collect();
    let accepted = if known.is_empty() {
        "it takes no parameters".to_owned()
    } else {
        format!("it takes {}", known.join(", "))
    };
    Issue::error(
        IssueType::NotSupported,
        format!("unknown parameter '{name}' for this operation; {accepted}"),
    )
    .at(name)
}

fn bind_entries(
    inputs: Inputs<'_>,
    entries: Vec<Value>,
    prefix: &str,
    params: &mut BoundParams,
    issues: &mut Vec<Issue>,
    rejected: &mut Vec<String>,
) {
    for (index, entry) in entries.into_iter().enumerate() {
        let Value::Object(entry) = entry else {
            issues.push(Issue::error(
                IssueType::Structure,
                format!("{prefix}parameter[{index}] is not a JSON object"),
            ));
            continue;
        };
        let mut entry = EntryMembers(entry);
        let Some(Value::String(name)) = entry.take("name") else {
            issues.push(Issue::error(
                IssueType::Required,
                format!("{prefix}parameter[{index}] has no name"),
            ));
            continue;
        };
        // A top-level parameter is its own expression: no copy for the common case.
        let expression = if prefix.is_empty() {
            std::borrow::Cow::Borrowed(name.as_str())
        } else {
            std::borrow::Cow::Owned(format!("{prefix}{name}"))
        };
        let Some(definition) = inputs.find(&name) else {
            issues.push(unknown_parameter(&expression, inputs));
            continue;
        };
        match entry_value(definition, &mut entry, &expression, issues, rejected) {
            Ok(value) => params.push(&name, value),
            Err(message) => {
                issues.push(Issue::error(IssueType::Value, message).at(expression.as_ref()));
                rejected.push(expression.into_owned());
            }
        }
    }
}

/// Takes the one value member of a `Parameters.parameter` entry and checks it against the
/// parameter's definition.
fn entry_value(
    definition: &ParamDefinition,
    entry: &mut EntryMembers,
    expression: &str,
    issues: &mut Vec<Issue>,
    rejected: &mut Vec<String>,
) -> Result<ParamValue, String> {
    let declared = definition.fhir_type.as_deref().unwrap_or_default();
    match definition.kind {
        ParamKind::Tuple => {
            let Some(Value::Array(part)) = entry.take("part") else {
                return Err(format!("expected part[], got {}", entry.names()));
            };
            let parts = Inputs {
                parameters: &definition.parts,
                top_level: false,
            };
            let mut bound = BoundParams::new();
            let prefix = format!("{expression}.");
            bind_entries(parts, part, &prefix, &mut bound, issues, rejected);
            check_counts(parts, &bound, &prefix, issues, rejected);
            Ok(ParamValue::Parts(bound))
        }
        ParamKind::Resource => match entry.take("resource") {
            Some(resource) => take_resource(ParamValue::Resource(resource), declared).map(ParamValue::Resource),
            None => Err(format!("expected a resource of type {declared}, got {}", entry.names())),
        },
        ParamKind::Search => {
            let (_, value) = entry.take_value_member()?;
            let text = match value {
                Value::String(text) => text,
                other => return Err(format!("expected a search value as valueString, got {other}")),
            };
            search::check(definition.search_type.as_deref().unwrap_or_default(), &text)?;
            Ok(ParamValue::Text { text, modifier: None })
        }
        ParamKind::Primitive | ParamKind::Complex => {
            let (member, value) = entry.take_value_member()?;
            let expected_member = value_member(declared);
            if member != expected_member {
                return Err(format!("expected {expected_member}, got {member}"));
            }
            if definition.kind == ParamKind::Primitive {
                check_primitive_json(declared, &value)?;
            } else if !value.is_object() {
                return Err(format!("{member} must be a JSON object"));
            } else {
                complex::check(declared, &value)?;
            }
            Ok(ParamValue::Value {
                fhir_type: declared.to_owned().into(),
                value,
            })
        }
    }
}

/// The members of one `Parameters.parameter` entry. A member is taken by comparing names and
/// leaving `null` in its place: removing it from the parsed map would hash its name and
/// shift the map's index, and moving the members out into a list of their own would copy
/// each. Errors list the members after `name` has been taken, and only then.
struct EntryMembers(Map<String, Value>);

impl EntryMembers {
    fn take(&mut self, key: &str) -> Option<Value> {
        self.0
            .iter_mut()
            .find(|(name, _)| *name == key)
            .map(|(_, value)| value.take())
    }

    fn take_value_member(&mut self) -> Result<(String, Value), String> {
        match self.0.iter_mut().find(|(name, _)| name.starts_with("value")) {
            Some((name, value)) => Ok((name.clone(), value.take())),
            None => Err(format!("expected a value[x], got {}", self.names())),
        }
    }

    /// The member names but `name`, for error messages.
    fn names(&self) -> String {
        let names: Vec<&str> = self
            .0
            .keys()
            .map(String::as_str)
            .filter(|name| *name != "name")
            .collect();
        if names.is_empty() {
            "no value".into()
        } else {
            names.join(", ")
        }
    }
}

/// FHIR JSON writes booleans and numbers bare and every other primitive as a string.
fn check_primitive_json(fhir_type: &str, value: &Value) -> Result<(), String> {
    let text = match (fhir_type, value) {
        ("boolean", Value::Bool(flag)) => flag.to_string(),
        ("integer" | "unsignedInt" | "positiveInt" | "decimal", Value::Number(number)) => number.to_string(),
        ("boolean" | "integer" | "unsignedInt" | "positiveInt" | "decimal", other) => {
            return Err(format!(
                "a FHIR {fhir_type} is a bare JSON {}, got {other}",
                json_kind(fhir_type)
            ));
        }
        (_, Value::String(text)) => text.clone(),
        (_, other) => return Err(format!("a FHIR {fhir_type} is a JSON string, got {other}")),
    };
    lexical::check(fhir_type, &text)
}

fn json_kind(fhir_type: &str) -> &'static str {
    if fhir_type == "boolean" { "boolean" } else { "number" }
}

fn check_counts(inputs: Inputs<'_>, params: &BoundParams, prefix: &str, issues: &mut Vec<Issue>, rejected: &[String]) {
    for input in inputs.iter() {
        let count = params.get(&input.name).len();
        let too_few = count < input.min as usize;
        if !too_few && !input.max.is_exceeded_by(count) {
            continue;
        }
        let expression = format!("{prefix}{}", input.name);
        if too_few && !rejected.contains(&expression) {
            let message = if count == 0 {
                format!("missing required parameter '{expression}'")
            } else {
                format!(
                    "parameter '{expression}' is given {count} times; at least {} are required",
                    input.min
                )
            };
            issues.push(Issue::error(IssueType::Required, message).at(expression));
        } else if input.max.is_exceeded_by(count) {
            issues.push(
                Issue::error(
                    IssueType::Invalid,
                    format!(
                        "parameter '{expression}' is given {count} times; at most {} allowed",
                        input.max.to_fhir()
                    ),
                )
                .at(expression),
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::definition::ParamDefinition;
    use crate::types::primitives::Date;
    use crate::types::resource::Resource;
    use crate::types::search::TokenParam;
    use serde_json::json;

    fn definition() -> OperationDefinition {
        OperationDefinition::builder("$test")
            .system(true)
            .parameter(ParamDefinition::input::<Date>("start"))
            .parameter(ParamDefinition::input::<Option<u32>>("count"))
            .parameter(ParamDefinition::input::<Vec<TokenParam>>("code"))
            .parameter(ParamDefinition::input::<Option<Resource>>("resource"))
            .build()
    }

    fn diagnostics(error: OperationError) -> Vec<String> {
        error
            .outcome
            .issues
            .into_iter()
            .filter_map(|issue| issue.diagnostics)
            .collect()
    }

    fn codes(error: OperationError) -> Vec<(String, Vec<String>)> {
        error
            .outcome
            .issues
            .into_iter()
            .map(|issue| (issue.code.code().to_owned(), issue.expression))
            .collect()
    }

    #[test]
    fn query_binding_checks_everything_at_once() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        binder
            .add_query(
                [("count", "x"), ("count", "2"), ("bogus", "1"), ("_pretty", "true")],
                true,
            )
            .unwrap();
        let error = binder.finish().unwrap_err();
        assert_eq!(error.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            codes(error),
            [
                ("value".to_owned(), vec!["count".to_owned()]),
                ("not-supported".to_owned(), vec!["bogus".to_owned()]),
                ("required".to_owned(), vec!["start".to_owned()]),
            ]
        );
    }

    #[test]
    fn complex_parameters_in_the_query_are_405() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        let error = binder.add_query([("resource", "x")], true).unwrap_err();
        assert_eq!(error.status, StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(error.headers, [("Allow", "POST".to_owned())]);
    }

    #[test]
    fn parameters_body_binds_and_counts() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        binder
            .add_parameters(json!({"resourceType": "Parameters", "parameter": [
                {"name": "start", "valueDate": "2024-01"},
                {"name": "count", "valueUnsignedInt": 1},
                {"name": "count", "valueUnsignedInt": 2},
                {"name": "code", "valueString": "a|b"},
                {"name": "code", "valueString": "c"},
            ]}))
            .unwrap();
        assert_eq!(
            codes(binder.finish().unwrap_err()),
            [("invalid".to_owned(), vec!["count".to_owned()])]
        );
    }

    #[test]
    fn wrong_value_member_is_a_value_issue() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        binder
            .add_parameters(json!({"resourceType": "Parameters", "parameter": [
                {"name": "start", "valueString": "2024-01"},
                {"name": "count", "valueUnsignedInt": "1"},
            ]}))
            .unwrap();
        assert_eq!(
            diagnostics(binder.finish().unwrap_err()),
            [
                "expected valueDate, got valueString",
                "a FHIR unsignedInt is a bare JSON number, got \"1\""
            ]
        );
    }

    #[test]
    fn an_entry_without_its_value_names_what_it_has_in_order() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        binder
            .add_parameters(json!({"resourceType": "Parameters", "parameter": [
                {"id": "a", "name": "start", "extension": [], "modifierExtension": []},
            ]}))
            .unwrap();
        assert_eq!(
            diagnostics(binder.finish().unwrap_err()),
            ["expected a value[x], got id, extension, modifierExtension"]
        );
    }

    #[test]
    fn a_bare_resource_needs_exactly_one_resource_parameter() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        assert!(binder.add_bare_resource(json!({"resourceType": "Patient"})).is_ok());
        let none = OperationDefinition::builder("$x").system(true).build();
        let mut binder = Binder::new(&none);
        assert!(binder.add_bare_resource(json!({"resourceType": "Patient"})).is_err());
    }

    #[test]
    fn too_many_entries_are_too_costly() {
        let definition = definition();
        let mut binder = Binder::new(&definition);
        let entries: Vec<Value> = (0..=MAX_PARAMETER_ENTRIES)
            .map(|_| json!({"name": "code", "valueString": "x"}))
            .collect();
        let error = binder
            .add_parameters(json!({"resourceType": "Parameters", "parameter": entries}))
            .unwrap_err();
        assert_eq!(error.outcome.issues[0].code, IssueType::TooCostly);
    }
}
