//! Resources as parameters and outputs: the generic [`Resource`], [`Bundle`], and the
//! helpers behind [`crate::resource_type!`].

use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::{Map, Value, json};

use super::{FhirParam, ParamKind, ParamValue, ToParamValue, TypeInfo};
use crate::definition::ParamDefinition;
use crate::outcome::{OperationError, OperationOutcome};
use crate::output::{IntoOperationOutput, OperationOutput, return_resource};

/// The `resourceType` of a JSON resource. The members are compared in order rather than the
/// name hashed for a lookup: the spec's JSON format puts resourceType first, where the first
/// comparison finds it, and any other place is still found.
pub fn resource_type_of(resource: &Value) -> Option<&str> {
    resource
        .as_object()?
        .iter()
        .find(|(name, _)| *name == "resourceType")
        .and_then(|(_, value)| value.as_str())
}

/// Takes the resource out of a `resource` occurrence, checking its type when `expected` names
/// one (`Resource` and `DomainResource` admit any).
pub fn take_resource(value: ParamValue, expected: &str) -> Result<Value, String> {
    let ParamValue::Resource(resource) = value else {
        return Err(format!(
            "expected a resource of type {expected}, got {}",
            value.describe()
        ));
    };
    match resource_type_of(&resource) {
        Some(given) if given == expected || matches!(expected, "Resource" | "DomainResource") => Ok(resource),
        Some(given) => Err(format!("expected a resource of type {expected}, got {given}")),
        None => Err("the resource has no resourceType".into()),
    }
}

/// Reads a resource occurrence into a serde type (used by [`crate::resource_type!`]).
pub fn deserialize_resource<T: DeserializeOwned>(value: ParamValue, expected: &str) -> Result<T, String> {
    let resource = take_resource(value, expected)?;
    serde_json::from_value(resource).map_err(|error| format!("invalid {expected}: {error}"))
}

/// Writes a serde resource as a `resource` occurrence.
pub fn serialize_resource<T: Serialize>(resource: &T) -> ParamValue {
    ParamValue::Resource(serde_json::to_value(resource).unwrap_or(Value::Null))
}

/// Any resource, as JSON: the generic resource parameter and output (HAPI's `IBaseResource`).
#[derive(Debug, Clone, PartialEq)]
pub struct Resource(pub Value);

impl Resource {
    /// Wraps JSON that must be an object with a `resourceType`.
    pub fn new(json: Value) -> Result<Resource, String> {
        match resource_type_of(&json) {
            Some(_) => Ok(Resource(json)),
            None => Err("a resource is a JSON object with a resourceType".into()),
        }
    }

    /// The `resourceType`.
    pub fn resource_type(&self) -> &str {
        resource_type_of(&self.0).unwrap_or_default()
    }

    /// The logical id, if it has one.
    pub fn id(&self) -> Option<&str> {
        self.0.get("id").and_then(Value::as_str)
    }

    /// The JSON.
    pub fn json(&self) -> &Value {
        &self.0
    }

    /// The JSON, mutable.
    pub fn json_mut(&mut self) -> &mut Value {
        &mut self.0
    }

    /// The JSON, owned.
    pub fn into_json(self) -> Value {
        self.0
    }
}

impl FhirParam for Resource {
    fn type_info() -> TypeInfo {
        TypeInfo::fhir(ParamKind::Resource, "Resource")
    }
    fn from_param(value: ParamValue) -> Result<Resource, String> {
        take_resource(value, "Resource").map(Resource)
    }
}

impl ToParamValue for Resource {
    fn to_param_value(self) -> ParamValue {
        ParamValue::Resource(self.0)
    }
}

impl IntoOperationOutput for Resource {
    fn out_params() -> Vec<ParamDefinition> {
        return_resource("Resource")
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(OperationOutput::Resource(self.0))
    }
}

impl IntoOperationOutput for OperationOutcome {
    fn out_params() -> Vec<ParamDefinition> {
        return_resource("OperationOutcome")
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(OperationOutput::Resource(self.to_json()))
    }
}

/// A `Bundle` resource under construction (a `searchset`, a `collection`, ...).
#[derive(Debug, Clone, PartialEq)]
pub struct Bundle {
    /// `Bundle.type`.
    pub bundle_type: String,
    /// `Bundle.total` (searchsets).
    pub total: Option<u64>,
    /// `Bundle.link`: relation and URL.
    pub links: Vec<(String, String)>,
    /// `Bundle.entry`, as JSON.
    pub entries: Vec<Value>,
}

impl Bundle {
    /// An empty bundle of `bundle_type`.
    pub fn new(bundle_type: &str) -> Bundle {
        Bundle {
            bundle_type: bundle_type.into(),
            total: None,
            links: Vec::new(),
            entries: Vec::new(),
        }
    }

    /// An empty `searchset`.
    pub fn searchset() -> Bundle {
        Bundle::new("searchset")
    }

    /// Adds a link.
    pub fn link(mut self, relation: &str, url: &str) -> Bundle {
        self.links.push((relation.into(), url.into()));
        self
    }

    /// Adds a search match with its full URL.
    pub fn push_match(&mut self, full_url: Option<String>, resource: Value) {
        self.push_entry(full_url, resource, "match");
    }

    /// Adds an entry with a search mode (`match`, `include`).
    pub fn push_entry(&mut self, full_url: Option<String>, resource: Value, search_mode: &str) {
        let mut entry = Map::new();
        if let Some(full_url) = full_url {
            entry.insert("fullUrl".into(), full_url.into());
        }
        entry.insert("resource".into(), resource);
        if self.bundle_type == "searchset" {
            entry.insert("search".into(), json!({ "mode": search_mode }));
        }
        self.entries.push(Value::Object(entry));
    }

    /// The resource as FHIR JSON.
    pub fn to_json(&self) -> Value {
        self.clone().into_json()
    }

    /// The resource as FHIR JSON; the entries move into it (a Bundle can hold a patient's
    /// whole record).
    pub fn into_json(self) -> Value {
        let mut bundle = Map::new();
        bundle.insert("resourceType".into(), "Bundle".into());
        bundle.insert("type".into(), self.bundle_type.as_str().into());
        if let Some(total) = self.total {
            bundle.insert("total".into(), total.into());
        }
        if !self.links.is_empty() {
            let links = self
                .links
                .iter()
                .map(|(relation, url)| json!({"relation": relation, "url": url}))
                .collect();
            bundle.insert("link".into(), Value::Array(links));
        }
        if !self.entries.is_empty() {
            bundle.insert("entry".into(), self.entries.into());
        }
        Value::Object(bundle)
    }

    /// Reads a Bundle's JSON.
    pub fn from_json(json: Value) -> Result<Bundle, String> {
        if resource_type_of(&json) != Some("Bundle") {
            return Err("expected a Bundle".into());
        }
        let bundle_type = json
            .get("type")
            .and_then(Value::as_str)
            .ok_or("a Bundle needs a type")?
            .to_owned();
        let links = json
            .get("link")
            .and_then(Value::as_array)
            .map(|links| {
                links
                    .iter()
                    .filter_map(|link| {
                        Some((
                            link.get("relation")?.as_str()?.to_owned(),
                            link.get("url")?.as_str()?.to_owned(),
                        ))
                    })
                    .collect()
            })
            .unwrap_or_default();
        Ok(Bundle {
            bundle_type,
            total: json.get("total").and_then(Value::as_u64),
            links,
            entries: json.get("entry").and_then(Value::as_array).cloned().unwrap_or_default(),
        })
    }
}

impl FhirParam for Bundle {
    fn type_info() -> TypeInfo {
        TypeInfo::fhir(ParamKind::Resource, "Bundle")
    }
    fn from_param(value: ParamValue) -> Result<Bundle, String> {
        Bundle::from_json(take_resource(value, "Bundle")?)
    }
}

impl ToParamValue for Bundle {
    fn to_param_value(self) -> ParamValue {
        ParamValue::Resource(self.into_json())
    }
}

impl IntoOperationOutput for Bundle {
    fn out_params() -> Vec<ParamDefinition> {
        return_resource("Bundle")
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(OperationOutput::Resource(self.into_json()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resource_type_is_checked() {
        let patient = json!({"resourceType": "Patient"});
        assert!(take_resource(ParamValue::Resource(patient.clone()), "Patient").is_ok());
        assert!(take_resource(ParamValue::Resource(patient.clone()), "Resource").is_ok());
        assert_eq!(
            take_resource(ParamValue::Resource(patient), "Observation"),
            Err("expected a resource of type Observation, got Patient".into())
        );
    }

    #[test]
    fn bundle_round_trips() {
        let mut bundle = Bundle::searchset().link("self", "http://x/Patient");
        bundle.total = Some(1);
        bundle.push_match(
            Some("http://x/Patient/1".into()),
            json!({"resourceType": "Patient", "id": "1"}),
        );
        let json = bundle.to_json();
        assert_eq!(json["entry"][0]["search"]["mode"], "match");
        assert_eq!(Bundle::from_json(json), Ok(bundle));
    }
}
