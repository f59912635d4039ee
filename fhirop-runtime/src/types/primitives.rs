//! FHIR primitive types, each holding its value as written and checked by its lexical rule,
//! and the Rust primitives that map onto FHIR ones.

use std::fmt;

use serde_json::{Number, Value};

use super::lexical;
use super::{FhirParam, GetSafe, ParamKind, ParamValue, ToParamValue, TypeInfo};

/// Reads the text of a primitive occurrence and checks it against `fhir_type`'s rule.
pub(crate) fn primitive_text(value: ParamValue, fhir_type: &str) -> Result<String, String> {
    let text = match value {
        // The common case moves the text out rather than copying it.
        ParamValue::Text { text, .. }
        | ParamValue::Value {
            value: Value::String(text),
            ..
        } => text,
        other => other
            .primitive_text()
            .ok_or_else(|| format!("expected a {fhir_type} value, got {}", other.describe()))?
            .into_owned(),
    };
    lexical::check(fhir_type, &text)?;
    Ok(text)
}

/// Builds the JSON of a primitive of `fhir_type` from checked text: FHIR JSON writes booleans
/// and numbers bare and everything else as a string.
pub fn primitive_json(fhir_type: &str, text: &str) -> Value {
    match fhir_type {
        "boolean" => Value::Bool(text == "true"),
        "integer" | "unsignedInt" | "positiveInt" | "decimal" => {
            let bare = text.strip_prefix('+').unwrap_or(text);
            serde_json::from_str::<Number>(bare).map_or_else(|_| Value::String(text.into()), Value::Number)
        }
        _ => Value::String(text.into()),
    }
}

/// Defines a FHIR primitive held as its text.
macro_rules! text_primitive {
    ($(#[$doc:meta])* $name:ident, $fhir_type:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(String);

        impl $name {
            /// The FHIR type name.
            pub const FHIR_TYPE: &'static str = $fhir_type;

            /// Checks `text` against the type's lexical rule.
            pub fn parse(text: impl Into<String>) -> Result<$name, String> {
                let text = text.into();
                lexical::check($fhir_type, &text)?;
                Ok($name(text))
            }

            /// The value as written.
            pub fn as_str(&self) -> &str {
                &self.0
            }

            /// The value as written, owned.
            pub fn into_string(self) -> String {
                self.0
            }
        }

        impl std::ops::Deref for $name {
            type Target = str;
            fn deref(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl std::str::FromStr for $name {
            type Err = String;
            fn from_str(text: &str) -> Result<$name, String> {
                $name::parse(text)
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                primitive_json($fhir_type, &self.0).serialize(serializer)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<$name, D::Error> {
                let value = Value::deserialize(deserializer)?;
                let text = match &value {
                    Value::String(text) => text.clone(),
                    Value::Number(number) => number.to_string(),
                    Value::Bool(flag) => flag.to_string(),
                    other => return Err(serde::de::Error::custom(format!("expected a {}, got {other}", $fhir_type))),
                };
                $name::parse(text).map_err(serde::de::Error::custom)
            }
        }

        impl FhirParam for $name {
            fn type_info() -> TypeInfo {
                TypeInfo::fhir(ParamKind::Primitive, $fhir_type)
            }
            fn from_param(value: ParamValue) -> Result<$name, String> {
                primitive_text(value, $fhir_type).map($name)
            }
        }

        impl ToParamValue for $name {
            fn to_param_value(self) -> ParamValue {
                ParamValue::Value { fhir_type: $fhir_type.into(), value: primitive_json($fhir_type, &self.0) }
            }
        }

        impl GetSafe for $name {}
    };
}

text_primitive!(
    /// FHIR `decimal`, kept as written so that its precision survives (`1.50` stays `1.50`).
    Decimal,
    "decimal"
);
text_primitive!(
    /// FHIR `date`: `YYYY`, `YYYY-MM` or `YYYY-MM-DD`; the precision is kept.
    Date,
    "date"
);
text_primitive!(
    /// FHIR `dateTime`: a date of any precision, or a full date and time with a zone.
    DateTime,
    "dateTime"
);
text_primitive!(
    /// FHIR `instant`: a full date and time with a zone.
    Instant,
    "instant"
);
text_primitive!(
    /// FHIR `time`: `hh:mm:ss` with optional fractions.
    Time,
    "time"
);
text_primitive!(
    /// FHIR `code`: a token without leading, trailing or repeated whitespace.
    Code,
    "code"
);
text_primitive!(
    /// FHIR `uri`.
    Uri,
    "uri"
);
text_primitive!(
    /// FHIR `url`.
    Url,
    "url"
);
text_primitive!(
    /// FHIR `canonical`: a URI that refers to a resource by its canonical URL.
    Canonical,
    "canonical"
);
text_primitive!(
    /// FHIR `id`: 1 to 64 characters of `A-Z a-z 0-9 - .`.
    Id,
    "id"
);
text_primitive!(
    /// FHIR `oid`: `urn:oid:` and dotted digits.
    Oid,
    "oid"
);
text_primitive!(
    /// FHIR `uuid`: `urn:uuid:` and a lower-case UUID.
    Uuid,
    "uuid"
);
text_primitive!(
    /// FHIR `base64Binary`.
    Base64Binary,
    "base64Binary"
);
text_primitive!(
    /// FHIR `markdown`.
    Markdown,
    "markdown"
);

impl Decimal {
    /// The value as a float (precision beyond f64 is lost here, not in the stored text).
    pub fn to_f64(&self) -> f64 {
        self.0.parse().unwrap_or(f64::NAN)
    }
}

/// The precision of a date or date-time value, which defines the range it stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum DatePrecision {
    /// `YYYY`
    Year,
    /// `YYYY-MM`
    Month,
    /// `YYYY-MM-DD`
    Day,
    /// A full date-time.
    Time,
}

fn precision_of(text: &str) -> DatePrecision {
    match text.len() {
        4 => DatePrecision::Year,
        7 => DatePrecision::Month,
        10 => DatePrecision::Day,
        _ => DatePrecision::Time,
    }
}

impl Date {
    /// The precision the value was written with.
    pub fn precision(&self) -> DatePrecision {
        precision_of(&self.0)
    }
}

impl DateTime {
    /// The precision the value was written with.
    pub fn precision(&self) -> DatePrecision {
        precision_of(&self.0)
    }
}

/// FHIR `positiveInt`: a whole number from 1 to 2147483647.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
pub struct PositiveInt(u32);

impl PositiveInt {
    /// The number, if it is positive and fits FHIR's 32-bit integer.
    pub fn new(value: u32) -> Option<PositiveInt> {
        (1..=i32::MAX as u32).contains(&value).then_some(PositiveInt(value))
    }

    /// The number.
    pub fn get(self) -> u32 {
        self.0
    }
}

impl FhirParam for PositiveInt {
    fn type_info() -> TypeInfo {
        TypeInfo::fhir(ParamKind::Primitive, "positiveInt")
    }
    fn from_param(value: ParamValue) -> Result<PositiveInt, String> {
        let text = primitive_text(value, "positiveInt")?;
        text.trim_start_matches('+')
            .parse()
            .ok()
            .and_then(PositiveInt::new)
            .ok_or_else(|| format!("'{text}' is not a positiveInt"))
    }
}

impl ToParamValue for PositiveInt {
    fn to_param_value(self) -> ParamValue {
        ParamValue::Value {
            fhir_type: "positiveInt".into(),
            value: self.0.into(),
        }
    }
}

impl GetSafe for PositiveInt {}

/// Rust primitives that stand for a FHIR primitive.
macro_rules! rust_primitive {
    ($rust_type:ty, $fhir_type:literal) => {
        impl FhirParam for $rust_type {
            fn type_info() -> TypeInfo {
                TypeInfo::fhir(ParamKind::Primitive, $fhir_type)
            }
            fn from_param(value: ParamValue) -> Result<$rust_type, String> {
                let text = primitive_text(value, $fhir_type)?;
                text.parse()
                    .map_err(|_| format!("'{text}' does not fit a {}", stringify!($rust_type)))
            }
        }

        impl ToParamValue for $rust_type {
            fn to_param_value(self) -> ParamValue {
                ParamValue::Value {
                    fhir_type: $fhir_type.into(),
                    value: serde_json::json!(self),
                }
            }
        }

        impl GetSafe for $rust_type {}
    };
}

rust_primitive!(bool, "boolean");
rust_primitive!(i32, "integer");
rust_primitive!(i64, "integer");
rust_primitive!(u32, "unsignedInt");
rust_primitive!(u64, "unsignedInt");
rust_primitive!(f64, "decimal");

impl FhirParam for String {
    fn type_info() -> TypeInfo {
        TypeInfo::fhir(ParamKind::Primitive, "string")
    }
    fn from_param(value: ParamValue) -> Result<String, String> {
        primitive_text(value, "string")
    }
}

impl ToParamValue for String {
    fn to_param_value(self) -> ParamValue {
        ParamValue::Value {
            fhir_type: "string".into(),
            value: Value::String(self),
        }
    }
}

impl ToParamValue for &str {
    fn to_param_value(self) -> ParamValue {
        self.to_owned().to_param_value()
    }
}

impl GetSafe for String {}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn from_json<T: FhirParam>(fhir_type: &str, value: Value) -> Result<T, String> {
        T::from_param(ParamValue::Value {
            fhir_type: fhir_type.to_owned().into(),
            value,
        })
    }

    fn from_query<T: FhirParam>(text: &str) -> Result<T, String> {
        T::from_param(ParamValue::Text {
            text: text.into(),
            modifier: None,
        })
    }

    #[test]
    fn decimal_keeps_its_precision() {
        let decimal: Decimal = from_json("decimal", serde_json::from_str("1.50").unwrap()).unwrap();
        assert_eq!(decimal.as_str(), "1.50");
        assert_eq!(serde_json::to_string(&decimal).unwrap(), "1.50");
        let from_query: Decimal = from_query("-0.010").unwrap();
        match from_query.to_param_value() {
            ParamValue::Value { value, .. } => assert_eq!(value.to_string(), "-0.010"),
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn dates_keep_their_precision() {
        let date: Date = from_query("2024-05").unwrap();
        assert_eq!(date.precision(), DatePrecision::Month);
        assert!(from_query::<Date>("2024-5").is_err());
        let instant: DateTime = from_json("dateTime", json!("2024-05-06T07:08:09Z")).unwrap();
        assert_eq!(instant.precision(), DatePrecision::Time);
    }

    #[test]
    fn rust_primitives_follow_fhir_rules() {
        assert_eq!(from_query::<u32>("42"), Ok(42));
        assert!(from_query::<u32>("-1").is_err());
        assert!(from_query::<i32>("1.5").is_err());
        assert_eq!(from_json::<bool>("boolean", json!(true)), Ok(true));
        assert!(from_query::<bool>("yes").is_err());
        assert_eq!(from_query::<PositiveInt>("+3").map(PositiveInt::get), Ok(3));
        assert!(from_query::<PositiveInt>("0").is_err());
        assert!(from_json::<String>("string", json!({"a": 1})).is_err());
    }
}
