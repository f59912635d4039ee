//! The FHIR complex datatypes operations take most often, as serde structs.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::primitives::{Code, DateTime, Decimal, Uri};
use super::{ParamValue, value_member};

/// Reads a `value[x]` occurrence of the complex type `fhir_type` into a serde type.
pub fn deserialize_value<T: DeserializeOwned>(value: ParamValue, fhir_type: &str) -> Result<T, String> {
    match value {
        ParamValue::Value {
            fhir_type: given,
            value,
        } if given == fhir_type => {
            serde_json::from_value(value).map_err(|error| format!("invalid {fhir_type}: {error}"))
        }
        other => Err(format!(
            "expected {}, got {}",
            value_member(fhir_type),
            other.describe()
        )),
    }
}

/// Writes a serde type as a `value[x]` occurrence of the complex type `fhir_type`.
pub fn serialize_value<T: Serialize>(value: &T, fhir_type: &'static str) -> ParamValue {
    ParamValue::Value {
        fhir_type: fhir_type.into(),
        value: serde_json::to_value(value).unwrap_or(Value::Null),
    }
}

/// Checks the content of a complex value whose type fhirop models (the types of this
/// module); other types pass. The binder calls it so that every problem of a request is
/// found before any handler runs, for native and dynamic operations alike.
pub fn check(fhir_type: &str, value: &Value) -> Result<(), String> {
    fn parse<T: DeserializeOwned>(fhir_type: &str, value: &Value) -> Result<(), String> {
        T::deserialize(value)
            .map(drop)
            .map_err(|error| format!("invalid {fhir_type}: {error}"))
    }
    match fhir_type {
        "Coding" => parse::<Coding>(fhir_type, value),
        "CodeableConcept" => parse::<CodeableConcept>(fhir_type, value),
        "Identifier" => parse::<Identifier>(fhir_type, value),
        "Reference" => parse::<Reference>(fhir_type, value),
        "Quantity" => parse::<Quantity>(fhir_type, value),
        "Period" => parse::<Period>(fhir_type, value),
        _ => Ok(()),
    }
}

/// FHIR `Coding`: a code defined by a terminology system.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Coding {
    /// Unique id for inter-element referencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Additional content defined by implementations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Value>,
    /// Identity of the terminology system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Uri>,
    /// Version of the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Symbol in syntax defined by the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
    /// Representation defined by the system.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
    /// If this coding was chosen directly by the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_selected: Option<bool>,
}

/// FHIR `CodeableConcept`: a concept given by codings and/or text.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CodeableConcept {
    /// Unique id for inter-element referencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Additional content defined by implementations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Value>,
    /// Codes defined by terminology systems.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub coding: Vec<Coding>,
    /// Plain text representation of the concept.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// FHIR `Identifier`: a business identifier.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Identifier {
    /// Unique id for inter-element referencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Additional content defined by implementations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Value>,
    /// usual | official | temp | secondary | old.
    #[serde(default, rename = "use", skip_serializing_if = "Option::is_none")]
    pub use_: Option<Code>,
    /// Description of identifier.
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<CodeableConcept>,
    /// The namespace for the identifier value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Uri>,
    /// The value that is unique.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    /// Time period when id is/was valid for use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub period: Option<Period>,
    /// Organization that issued id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub assigner: Option<Box<Reference>>,
}

/// FHIR `Reference`: a reference from one resource to another.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Reference {
    /// Unique id for inter-element referencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Additional content defined by implementations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Value>,
    /// Literal reference, relative, internal or absolute URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
    /// Type the reference refers to (e.g. "Patient").
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub type_: Option<Uri>,
    /// Logical reference, when literal reference is not known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identifier: Option<Identifier>,
    /// Text alternative for the resource.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub display: Option<String>,
}

/// FHIR `Quantity`: a measured amount.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Quantity {
    /// Unique id for inter-element referencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Additional content defined by implementations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Value>,
    /// Numerical value, with its written precision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<Decimal>,
    /// `<` | `<=` | `>=` | `>`: how to understand the value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comparator: Option<Code>,
    /// Unit representation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unit: Option<String>,
    /// System that defines coded unit form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<Uri>,
    /// Coded form of the unit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub code: Option<Code>,
}

/// FHIR `Period`: a time range defined by start and end.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Period {
    /// Unique id for inter-element referencing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// Additional content defined by implementations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension: Vec<Value>,
    /// Starting time with inclusive boundary.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub start: Option<DateTime>,
    /// End time with inclusive boundary, if not ongoing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<DateTime>,
}

crate::complex_type!(Coding, "Coding");
crate::complex_type!(CodeableConcept, "CodeableConcept");
crate::complex_type!(Identifier, "Identifier");
crate::complex_type!(Reference, "Reference");
crate::complex_type!(Quantity, "Quantity");
crate::complex_type!(Period, "Period");

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::FhirParam;
    use serde_json::json;

    #[test]
    fn coding_reads_from_value_coding() {
        let coding = Coding::from_param(ParamValue::Value {
            fhir_type: "Coding".into(),
            value: json!({"system": "http://loinc.org", "code": "1234-5"}),
        })
        .unwrap();
        assert_eq!(coding.code.as_deref(), Some("1234-5"));
    }

    #[test]
    fn wrong_member_and_bad_content_are_rejected() {
        let wrong_member = Coding::from_param(ParamValue::Value {
            fhir_type: "string".into(),
            value: json!("x"),
        });
        assert_eq!(wrong_member, Err("expected valueCoding, got a valueString".into()));
        let bad_date = Period::from_param(ParamValue::Value {
            fhir_type: "Period".into(),
            value: json!({"start": "2024-13"}),
        });
        assert!(bad_date.unwrap_err().contains("not a valid FHIR dateTime"));
    }

    #[test]
    fn quantity_keeps_decimal_precision() {
        let quantity = Quantity::from_param(ParamValue::Value {
            fhir_type: "Quantity".into(),
            value: serde_json::from_str(r#"{"value": 5.40, "unit": "mg"}"#).unwrap(),
        })
        .unwrap();
        assert_eq!(
            serde_json::to_string(&quantity).unwrap(),
            r#"{"value":5.40,"unit":"mg"}"#
        );
    }
}
