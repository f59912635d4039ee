//! How Rust types become operation parameters: the traits the macros call, and their
//! implementations for Rust and FHIR primitives, complex types, resources and search types.
//!
//! Three concerns, three traits, kept apart (axum's extractors, poem's `Type` /
//! `ParseFromJSON` / `ToJSON`):
//! - [`FhirParam`]: how one value is described in an OperationDefinition and read from one
//!   `Parameters.parameter` entry or one query-string value;
//! - [`OperationArg`]: cardinality, by blanket impls (`T` = 1..1, `Option<T>` = 0..1,
//!   `Vec<T>` = 0..*);
//! - [`ToParamValue`] / [`ToParamValues`]: how a value is written into an output `Parameters`.

pub mod complex;
pub mod lexical;
pub mod primitives;
pub mod resource;
pub mod search;
pub mod time;

use std::borrow::Cow;

use serde_json::Value;

use crate::definition::{Max, ParamDefinition};

/// The shape of a parameter's value, which decides where it may come from (GET admits only
/// primitive and search-typed values) and which `Parameters` member carries it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// A FHIR primitive (`value[x]` with a primitive type; a plain query value).
    Primitive,
    /// A FHIR search-parameter type (`searchType`), carried as a string.
    Search,
    /// A FHIR complex datatype (`value[x]` with an object).
    Complex,
    /// A resource (`resource`).
    Resource,
    /// A multi-part parameter (`part`).
    Tuple,
}

impl ParamKind {
    /// Whether a value of this kind may be given in a query string (FHIR's GET rule).
    pub fn is_simple(self) -> bool {
        matches!(self, ParamKind::Primitive | ParamKind::Search)
    }
}

/// How a Rust type appears in an OperationDefinition.
#[derive(Debug, Clone)]
pub struct TypeInfo {
    /// Primitive, complex, resource, search or tuple.
    pub kind: ParamKind,
    /// `OperationDefinition.parameter.type` (`string` for search types, none for tuples).
    pub fhir_type: Option<&'static str>,
    /// `OperationDefinition.parameter.searchType`.
    pub search_type: Option<&'static str>,
    /// The parts of a tuple.
    pub parts: Vec<ParamDefinition>,
}

impl TypeInfo {
    /// A primitive, complex or resource type.
    pub fn fhir(kind: ParamKind, fhir_type: &'static str) -> TypeInfo {
        TypeInfo {
            kind,
            fhir_type: Some(fhir_type),
            search_type: None,
            parts: Vec::new(),
        }
    }

    /// A search-parameter type: FHIR says its `type` is `string`.
    pub fn search(search_type: &'static str) -> TypeInfo {
        TypeInfo {
            kind: ParamKind::Search,
            fhir_type: Some("string"),
            search_type: Some(search_type),
            parts: Vec::new(),
        }
    }

    /// A multi-part parameter.
    pub fn tuple(parts: Vec<ParamDefinition>) -> TypeInfo {
        TypeInfo {
            kind: ParamKind::Tuple,
            fhir_type: None,
            search_type: None,
            parts,
        }
    }
}

/// One occurrence of a parameter, as the request gave it.
#[derive(Debug, Clone, PartialEq)]
pub enum ParamValue {
    /// A query-string value (or a search-typed value sent as `valueString`), with the
    /// `:modifier` of its name if it had one.
    Text {
        /// The decoded value.
        text: String,
        /// `exact` for `name:exact=...`.
        modifier: Option<String>,
    },
    /// A `value[x]` member of a `Parameters.parameter`.
    Value {
        /// The FHIR type named by the member (`date` for `valueDate`, `Coding` for `valueCoding`):
        /// borrowed when it is a type's fixed name, as every output value's is.
        fhir_type: Cow<'static, str>,
        /// The JSON value.
        value: Value,
    },
    /// A `resource` member (or a bare resource body).
    Resource(Value),
    /// The `part` members of a multi-part parameter.
    Parts(BoundParams),
}

impl ParamValue {
    /// The text of a primitive value, whether it came from the query or from `value[x]`.
    pub fn primitive_text(&self) -> Option<std::borrow::Cow<'_, str>> {
        match self {
            ParamValue::Text { text, .. } => Some(text.as_str().into()),
            ParamValue::Value {
                value: Value::String(text),
                ..
            } => Some(text.as_str().into()),
            ParamValue::Value {
                value: Value::Bool(flag),
                ..
            } => Some(flag.to_string().into()),
            ParamValue::Value {
                value: Value::Number(number),
                ..
            } => Some(number.to_string().into()),
            _ => None,
        }
    }

    /// A short description of what this value is, for error messages.
    pub fn describe(&self) -> String {
        match self {
            ParamValue::Text { .. } => "a query value".into(),
            ParamValue::Value { fhir_type, .. } => format!("a {}", value_member(fhir_type)),
            ParamValue::Resource(resource) => format!(
                "a {} resource",
                resource
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("resource")
            ),
            ParamValue::Parts(_) => "a multi-part value".into(),
        }
    }
}

/// The `value[x]` member that carries a value of `fhir_type` (`valueDate` for `date`).
pub fn value_member(fhir_type: &str) -> String {
    format!("value{}", value_suffix(fhir_type))
}

/// `CodeableConcept` for `CodeableConcept`, `Date` for `date`: what follows `value` in
/// [`value_member`].
pub fn value_suffix(fhir_type: &str) -> String {
    let mut chars = fhir_type.chars();
    match chars.next() {
        Some(first) => first.to_ascii_uppercase().to_string() + chars.as_str(),
        None => String::new(),
    }
}

/// The parameters of one call, grouped by name in the order they first appeared.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BoundParams {
    entries: Vec<(String, Vec<ParamValue>)>,
}

impl BoundParams {
    /// No parameters.
    pub fn new() -> BoundParams {
        BoundParams::default()
    }

    /// No parameters, with room for `names` of them before the list grows.
    pub fn with_capacity(names: usize) -> BoundParams {
        BoundParams {
            entries: Vec::with_capacity(names),
        }
    }

    /// Adds one occurrence of `name`.
    pub fn push(&mut self, name: &str, value: ParamValue) {
        match self.entries.iter_mut().find(|(existing, _)| existing == name) {
            Some((_, values)) => values.push(value),
            None => self.entries.push((name.to_owned(), vec![value])),
        }
    }

    /// Adds every occurrence of `name`.
    pub fn extend(&mut self, name: &str, values: Vec<ParamValue>) {
        for value in values {
            self.push(name, value);
        }
    }

    /// The occurrences of `name`.
    pub fn get(&self, name: &str) -> &[ParamValue] {
        self.entries
            .iter()
            .find(|(existing, _)| existing == name)
            .map_or(&[], |(_, values)| values.as_slice())
    }

    /// Removes and returns the occurrences of `name`.
    pub fn take(&mut self, name: &str) -> Vec<ParamValue> {
        match self.entries.iter().position(|(existing, _)| existing == name) {
            Some(index) => self.entries.remove(index).1,
            None => Vec::new(),
        }
    }

    /// Every name with its occurrences, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[ParamValue])> {
        self.entries
            .iter()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
    }

    /// Whether no parameter was given.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The `Parameters.parameter` entries for these values, which move into them.
    pub fn into_parameter_entries(self) -> Vec<Value> {
        let mut entries = Vec::new();
        for (name, values) in self.entries {
            for value in values {
                entries.push(parameter_entry(&name, value));
            }
        }
        entries
    }

    /// A `Parameters` resource holding these values, serialized as compact JSON.
    pub fn to_parameters_json(&self) -> Result<Vec<u8>, serde_json::Error> {
        parameters_json(self.groups())
    }

    fn groups(&self) -> impl Iterator<Item = (&str, &[ParamValue])> + Clone {
        self.entries
            .iter()
            .map(|(name, values)| (name.as_str(), values.as_slice()))
    }

    /// A `Parameters` resource holding these values.
    pub fn into_parameters_resource(self) -> Value {
        let mut parameters = serde_json::Map::new();
        parameters.insert("resourceType".into(), "Parameters".into());
        let entries = self.into_parameter_entries();
        if !entries.is_empty() {
            parameters.insert("parameter".into(), entries.into());
        }
        Value::Object(parameters)
    }
}

/// A `Parameters` resource holding `groups` (a name and its values, in order), serialized as
/// compact JSON straight from them: the same JSON as [`BoundParams::into_parameters_resource`],
/// without building a `Value` first.
///
/// Written by hand around serde_json's writer for names and values: the fixed members are
/// copied as they are, and serde's map and sequence state machine, which cost more than the
/// rest of a primitive result's response, is not run.
pub fn parameters_json<'a>(
    groups: impl Iterator<Item = (&'a str, &'a [ParamValue])> + Clone,
) -> Result<Vec<u8>, serde_json::Error> {
    // Text results are allocated at the size they are written at (unless something in them
    // is escaped), so the body made from them needs no shrinking: that was a realloc per
    // response. Anything else gets room for a small result, so it allocates once.
    let mut out = Vec::with_capacity(text_parameters_len(groups.clone()).unwrap_or(128));
    out.extend_from_slice(PARAMETERS_OPEN);
    if write_entries(&mut out, groups)? {
        out.push(b']');
    } else {
        // FHIR has no empty arrays: without a value there is no `parameter`.
        out.truncate(PARAMETERS_OPEN.len() - PARAMETER_LIST_OPEN.len());
    }
    out.push(b'}');
    Ok(out)
}

const PARAMETERS_OPEN: &[u8] = br#"{"resourceType":"Parameters","parameter":["#;
const PARAMETER_LIST_OPEN: &[u8] = br#","parameter":["#;
/// An entry of [`write_entries`]'s string arm, without its name and text (a test checks that
/// the two agree).
const TEXT_ENTRY: &[u8] = br#"{"name":"","valueString":""}"#;

/// The length of what [`parameters_json`] writes for `groups` when every value is a string
/// and nothing in them is escaped; `None` when a value is of another kind, or there is none.
fn text_parameters_len<'a>(groups: impl Iterator<Item = (&'a str, &'a [ParamValue])>) -> Option<usize> {
    let mut entries = 0;
    let mut len = PARAMETERS_OPEN.len() + "]}".len();
    for (name, values) in groups {
        for value in values {
            let (ParamValue::Text { text, .. }
            | ParamValue::Value {
                fhir_type: Cow::Borrowed("string"),
                value: Value::String(text),
            }) = value
            else {
                return None;
            };
            len += TEXT_ENTRY.len() + name.len() + text.len();
            entries += 1;
        }
    }
    // An empty `Parameters` is written by truncating the list it opened: not worth sizing.
    // Otherwise, the commas between entries.
    (entries > 0).then(|| len + entries - 1)
}

/// Writes one `parameter` (or `part`) entry per value of `groups`, separated by commas, and
/// tells whether there was one.
fn write_entries<'a>(
    out: &mut Vec<u8>,
    groups: impl Iterator<Item = (&'a str, &'a [ParamValue])>,
) -> Result<bool, serde_json::Error> {
    let mut written = false;
    for (name, values) in groups {
        for value in values {
            if written {
                out.push(b',');
            }
            written = true;
            out.extend_from_slice(br#"{"name":"#);
            serde_json::to_writer(&mut *out, name)?;
            match value {
                // A string, the commonest result, needs neither the key table nor a `Value`.
                ParamValue::Text { text, .. }
                | ParamValue::Value {
                    fhir_type: Cow::Borrowed("string"),
                    value: Value::String(text),
                } => {
                    out.extend_from_slice(br#","valueString":"#);
                    serde_json::to_writer(&mut *out, text)?;
                }
                ParamValue::Value { fhir_type, value } => {
                    out.push(b',');
                    write_value_key(out, fhir_type)?;
                    out.push(b':');
                    serde_json::to_writer(&mut *out, value)?;
                }
                ParamValue::Resource(resource) => {
                    out.extend_from_slice(br#","resource":"#);
                    serde_json::to_writer(&mut *out, resource)?;
                }
                ParamValue::Parts(parts) => {
                    out.extend_from_slice(br#","part":["#);
                    write_entries(out, parts.groups())?;
                    out.push(b']');
                }
            }
            out.push(b'}');
        }
    }
    Ok(written)
}

/// `"value[x]"` for a FHIR type (`"valueDateTime"` for `dateTime`). FHIR type names are
/// letters and digits, which need no escaping; any other name goes through serde_json.
fn write_value_key(out: &mut Vec<u8>, fhir_type: &str) -> Result<(), serde_json::Error> {
    if let Some(key) = primitive_value_key(fhir_type) {
        out.extend_from_slice(key.as_bytes());
        Ok(())
    } else if fhir_type.bytes().all(|byte| byte.is_ascii_alphanumeric()) {
        out.extend_from_slice(b"\"value");
        if let Some((first, rest)) = fhir_type.as_bytes().split_first() {
            out.push(first.to_ascii_uppercase());
            out.extend_from_slice(rest);
        }
        out.push(b'"');
        Ok(())
    } else {
        serde_json::to_writer(out, &value_member(fhir_type))
    }
}

/// The quoted `value[x]` key of each FHIR primitive type, which nearly every output value has:
/// one match on the name instead of building the key byte by byte (a tenth of the cost).
const PRIMITIVE_VALUE_KEYS: [(&str, &str); 19] = [
    ("string", r#""valueString""#),
    ("boolean", r#""valueBoolean""#),
    ("integer", r#""valueInteger""#),
    ("decimal", r#""valueDecimal""#),
    ("code", r#""valueCode""#),
    ("uri", r#""valueUri""#),
    ("url", r#""valueUrl""#),
    ("canonical", r#""valueCanonical""#),
    ("id", r#""valueId""#),
    ("date", r#""valueDate""#),
    ("dateTime", r#""valueDateTime""#),
    ("instant", r#""valueInstant""#),
    ("time", r#""valueTime""#),
    ("markdown", r#""valueMarkdown""#),
    ("oid", r#""valueOid""#),
    ("uuid", r#""valueUuid""#),
    ("positiveInt", r#""valuePositiveInt""#),
    ("unsignedInt", r#""valueUnsignedInt""#),
    ("base64Binary", r#""valueBase64Binary""#),
];

fn primitive_value_key(fhir_type: &str) -> Option<&'static str> {
    PRIMITIVE_VALUE_KEYS
        .iter()
        .find(|(name, _)| *name == fhir_type)
        .map(|(_, key)| *key)
}

/// One `Parameters.parameter` entry; the value moves into it (outputs can be whole resources).
fn parameter_entry(name: &str, value: ParamValue) -> Value {
    let mut entry = serde_json::Map::new();
    entry.insert("name".into(), name.into());
    match value {
        ParamValue::Text { text, .. } => {
            entry.insert("valueString".into(), text.into());
        }
        ParamValue::Value { fhir_type, value } => {
            entry.insert(value_member(&fhir_type), value);
        }
        ParamValue::Resource(resource) => {
            entry.insert("resource".into(), resource);
        }
        ParamValue::Parts(parts) => {
            entry.insert("part".into(), parts.into_parameter_entries().into());
        }
    }
    Value::Object(entry)
}

/// A type that can be one operation parameter value.
///
/// Implemented for Rust primitives (`String`, `bool`, `i32`, `i64`, `u32`, `f64`), the FHIR
/// primitives in [`primitives`], the complex types in [`complex`], resources in [`resource`],
/// the search types in [`search`], and by `#[derive(Parameters)]` for multi-part parameters.
/// Your own serde types join with [`crate::complex_type!`] and [`crate::resource_type!`].
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an operation parameter",
    label = "not a FHIR parameter type",
    note = "use a FHIR type from fhirop::types, or declare your serde type with `fhirop::complex_type!` / `fhirop::resource_type!`"
)]
pub trait FhirParam: Sized {
    /// How the type is described in an OperationDefinition.
    fn type_info() -> TypeInfo;

    /// Reads one occurrence. The runtime has already checked its kind and its lexical form
    /// against [`FhirParam::type_info`]; the error text says what was expected.
    fn from_param(value: ParamValue) -> Result<Self, String>;
}

/// An operation argument: a [`FhirParam`] with its cardinality.
///
/// `T` is 1..1, `Option<T>` is 0..1 and `Vec<T>` is 0..* (repetitions; HAPI's `List<T>`,
/// AND semantics for search types).
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be an operation parameter",
    label = "not a FHIR parameter type",
    note = "an #[op_param] argument is `T`, `Option<T>` or `Vec<T>` where `T` is a FHIR parameter type (fhirop::types)",
    note = "declare your own serde type with `fhirop::complex_type!(MyType, \"Address\")` or `fhirop::resource_type!(MyType, \"Patient\")`"
)]
pub trait OperationArg: Sized {
    /// `OperationDefinition.parameter.min`.
    const MIN: u32;
    /// `OperationDefinition.parameter.max`.
    const MAX: Max;

    /// How the value type is described.
    fn type_info() -> TypeInfo;

    /// Builds the argument from every occurrence of the parameter (cardinality already
    /// checked by the runtime).
    fn from_values(values: Vec<ParamValue>) -> Result<Self, String>;
}

impl<T: FhirParam> OperationArg for T {
    const MIN: u32 = 1;
    const MAX: Max = Max::Count(1);

    fn type_info() -> TypeInfo {
        T::type_info()
    }

    fn from_values(values: Vec<ParamValue>) -> Result<Self, String> {
        match values.into_iter().next() {
            Some(value) => T::from_param(value),
            None => Err("the parameter is required".into()),
        }
    }
}

impl<T: FhirParam> OperationArg for Option<T> {
    const MIN: u32 = 0;
    const MAX: Max = Max::Count(1);

    fn type_info() -> TypeInfo {
        T::type_info()
    }

    fn from_values(values: Vec<ParamValue>) -> Result<Self, String> {
        values.into_iter().next().map(T::from_param).transpose()
    }
}

impl<T: FhirParam> OperationArg for Vec<T> {
    const MIN: u32 = 0;
    const MAX: Max = Max::Unbounded;

    fn type_info() -> TypeInfo {
        T::type_info()
    }

    fn from_values(values: Vec<ParamValue>) -> Result<Self, String> {
        values.into_iter().map(T::from_param).collect()
    }
}

/// Marks argument types an idempotent (GET-able) operation may take: primitives, search
/// types, and anything optional. A *required* complex or resource parameter would make the
/// operation impossible to call with GET, which FHIR allows for every idempotent operation.
#[diagnostic::on_unimplemented(
    message = "`{Self}` is a required complex or resource parameter, so this idempotent operation could not be invoked with GET",
    label = "required, and not a primitive or search type",
    note = "FHIR allows GET for an operation that does not affect state only when every parameter is primitive or a search type",
    note = "make it optional (`Option<{Self}>`) or declare the operation with `idempotent = false`"
)]
pub trait GetSafe {}

impl<T: FhirParam> GetSafe for Option<T> {}
impl<T: FhirParam> GetSafe for Vec<T> {}

/// A value that can be written into an output `Parameters` entry.
pub trait ToParamValue {
    /// The value as a `Parameters.parameter` member.
    fn to_param_value(self) -> ParamValue;
}

/// One output parameter's occurrences: `T` gives one, `Option<T>` zero or one, `Vec<T>` any.
pub trait ToParamValues {
    /// Every occurrence.
    fn to_param_values(self) -> Vec<ParamValue>;
}

impl<T: ToParamValue> ToParamValues for T {
    fn to_param_values(self) -> Vec<ParamValue> {
        vec![self.to_param_value()]
    }
}

impl<T: ToParamValue> ToParamValues for Option<T> {
    fn to_param_values(self) -> Vec<ParamValue> {
        self.map(ToParamValue::to_param_value).into_iter().collect()
    }
}

impl<T: ToParamValue> ToParamValues for Vec<T> {
    fn to_param_values(self) -> Vec<ParamValue> {
        self.into_iter().map(ToParamValue::to_param_value).collect()
    }
}

/// Implements [`FhirParam`], [`ToParamValue`] and [`GetSafe`] for a serde type that holds a
/// FHIR complex datatype, so it can be an operation parameter.
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// struct Address { city: Option<String> }
/// fhirop_runtime::complex_type!(Address, "Address");
/// ```
#[macro_export]
macro_rules! complex_type {
    ($rust_type:ty, $fhir_type:literal) => {
        impl $crate::types::FhirParam for $rust_type {
            fn type_info() -> $crate::types::TypeInfo {
                $crate::types::TypeInfo::fhir($crate::types::ParamKind::Complex, $fhir_type)
            }
            fn from_param(value: $crate::types::ParamValue) -> ::std::result::Result<Self, ::std::string::String> {
                $crate::types::complex::deserialize_value(value, $fhir_type)
            }
        }
        impl $crate::types::ToParamValue for $rust_type {
            fn to_param_value(self) -> $crate::types::ParamValue {
                $crate::types::complex::serialize_value(&self, $fhir_type)
            }
        }
    };
}

/// Implements [`FhirParam`] and [`ToParamValue`] for a type that holds one FHIR resource
/// type, and makes it an operation output that is returned as the response body.
///
/// A serde type:
///
/// ```
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[serde(tag = "resourceType")]
/// struct Patient { id: Option<String> }
/// fhirop_runtime::resource_type!(Patient, "Patient");
/// ```
///
/// Or a newtype over the resource's JSON, which keeps everything the client sent and moves
/// it in and out without a serde round trip (`Patient(Value)` in the macro):
///
/// ```
/// struct Patient(serde_json::Value);
/// fhirop_runtime::resource_type!(Patient(Value), "Patient");
/// ```
#[macro_export]
macro_rules! resource_type {
    // The response body: `$json` is what serializes, given the value as `$resource`.
    (@output $rust_type:ty, $fhir_type:literal, $resource:ident => $json:expr) => {
        impl $crate::output::IntoOperationOutput for $rust_type {
            fn out_params() -> ::std::vec::Vec<$crate::definition::ParamDefinition> {
                $crate::output::return_resource($fhir_type)
            }
            fn into_output(
                self,
            ) -> ::std::result::Result<$crate::output::OperationOutput, $crate::outcome::OperationError> {
                let $resource = self;
                $crate::output::resource_output($json)
            }
        }
    };
    ($rust_type:ident(Value), $fhir_type:literal) => {
        impl $crate::types::FhirParam for $rust_type {
            fn type_info() -> $crate::types::TypeInfo {
                $crate::types::TypeInfo::fhir($crate::types::ParamKind::Resource, $fhir_type)
            }
            fn from_param(value: $crate::types::ParamValue) -> ::std::result::Result<Self, ::std::string::String> {
                $crate::types::resource::take_resource(value, $fhir_type).map($rust_type)
            }
        }
        impl $crate::types::ToParamValue for $rust_type {
            fn to_param_value(self) -> $crate::types::ParamValue {
                $crate::types::ParamValue::Resource(self.0)
            }
        }
        $crate::resource_type!(@output $rust_type, $fhir_type, resource => &resource.0);
    };
    ($rust_type:ty, $fhir_type:literal) => {
        impl $crate::types::FhirParam for $rust_type {
            fn type_info() -> $crate::types::TypeInfo {
                $crate::types::TypeInfo::fhir($crate::types::ParamKind::Resource, $fhir_type)
            }
            fn from_param(value: $crate::types::ParamValue) -> ::std::result::Result<Self, ::std::string::String> {
                $crate::types::resource::deserialize_resource(value, $fhir_type)
            }
        }
        impl $crate::types::ToParamValue for $rust_type {
            fn to_param_value(self) -> $crate::types::ParamValue {
                $crate::types::resource::serialize_resource(&self)
            }
        }
        $crate::resource_type!(@output $rust_type, $fhir_type, resource => &resource);
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[derive(Debug, PartialEq)]
    struct JsonPatient(Value);
    crate::resource_type!(JsonPatient(Value), "Patient");

    #[test]
    fn the_primitive_value_keys_are_the_members_value_member_names() {
        for (fhir_type, key) in PRIMITIVE_VALUE_KEYS {
            assert_eq!(key, serde_json::to_string(&value_member(fhir_type)).unwrap());
        }
    }

    #[test]
    fn a_json_newtype_resource_moves_in_and_out_as_sent() {
        use crate::output::{IntoOperationOutput, OperationOutput};
        let sent = json!({"resourceType": "Patient", "name": [{"family": "Smith"}], "_active": {"id": "x"}});
        assert_eq!(
            JsonPatient::from_param(ParamValue::Resource(sent.clone())),
            Ok(JsonPatient(sent.clone()))
        );
        assert_eq!(
            JsonPatient::from_param(ParamValue::Resource(json!({"resourceType": "Group"}))),
            Err("expected a resource of type Patient, got Group".to_owned())
        );
        let type_info = <JsonPatient as FhirParam>::type_info();
        assert_eq!(
            (type_info.kind, type_info.fhir_type),
            (ParamKind::Resource, Some("Patient"))
        );
        assert_eq!(
            JsonPatient(sent.clone()).to_param_value(),
            ParamValue::Resource(sent.clone())
        );
        match JsonPatient(sent.clone()).into_output() {
            Ok(OperationOutput::Json(bytes)) => assert_eq!(serde_json::from_slice::<Value>(&bytes).unwrap(), sent),
            other => panic!("expected the Patient as the body, got {other:?}"),
        }
    }

    #[test]
    fn parameters_serialize_straight_to_the_same_json_as_through_a_value() {
        let mut parts = BoundParams::new();
        parts.push(
            "code",
            ParamValue::Value {
                fhir_type: "code".into(),
                value: json!("x"),
            },
        );
        parts.push(
            "note",
            ParamValue::Text {
                text: "ünïcode \"quoted\"".into(),
                modifier: None,
            },
        );
        let mut params = BoundParams::new();
        params.push(
            "return",
            ParamValue::Resource(json!({"resourceType": "Patient", "id": "p1"})),
        );
        params.push(
            "when",
            ParamValue::Value {
                fhir_type: "dateTime".into(),
                value: json!("2026-11-23T10:00:00Z"),
            },
        );
        params.push("detail", ParamValue::Parts(parts));
        params.push(
            "return",
            ParamValue::Resource(json!({"resourceType": "Patient", "id": "p2"})),
        );
        let direct: Value = serde_json::from_slice(&params.to_parameters_json().unwrap()).unwrap();
        assert_eq!(direct, params.clone().into_parameters_resource());
        assert_eq!(
            direct,
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "return", "resource": {"resourceType": "Patient", "id": "p1"}},
                {"name": "return", "resource": {"resourceType": "Patient", "id": "p2"}},
                {"name": "when", "valueDateTime": "2026-11-23T10:00:00Z"},
                {"name": "detail", "part": [
                    {"name": "code", "valueCode": "x"},
                    {"name": "note", "valueString": "ünïcode \"quoted\""},
                ]},
            ]})
        );
        assert_eq!(
            BoundParams::new().to_parameters_json().unwrap(),
            br#"{"resourceType":"Parameters"}"#
        );
    }

    #[test]
    fn text_results_are_allocated_at_their_exact_size() {
        let mut params = BoundParams::new();
        params.push("return", "Hello, World".to_owned().to_param_value());
        params.push(
            "note",
            ParamValue::Text {
                text: "ünïcode".into(),
                modifier: None,
            },
        );
        params.push("return", "again".to_owned().to_param_value());
        let written = params.to_parameters_json().unwrap();
        assert_eq!(
            String::from_utf8(written.clone()).unwrap(),
            r#"{"resourceType":"Parameters","parameter":[{"name":"return","valueString":"Hello, World"},{"name":"return","valueString":"again"},{"name":"note","valueString":"ünïcode"}]}"#
        );
        assert_eq!(written.capacity(), written.len());
        // Escaped text writes more than was reserved, and is still written whole.
        let mut escaped = BoundParams::new();
        escaped.push("return", "a \"b\"".to_owned().to_param_value());
        assert_eq!(
            escaped.to_parameters_json().unwrap(),
            br#"{"resourceType":"Parameters","parameter":[{"name":"return","valueString":"a \"b\""}]}"#
        );
    }

    #[test]
    fn written_parameters_are_exact_compact_json_with_escaped_names_and_values() {
        let mut params = BoundParams::new();
        params.push(
            "return",
            ParamValue::Value {
                fhir_type: "string".into(),
                value: json!("Hello \"World\"\n"),
            },
        );
        assert_eq!(
            String::from_utf8(params.to_parameters_json().unwrap()).unwrap(),
            r#"{"resourceType":"Parameters","parameter":[{"name":"return","valueString":"Hello \"World\"\n"}]}"#
        );

        // Names and type names out of the ordinary, empty parts and a value with no values.
        let mut odd = BoundParams::new();
        odd.push(
            "quo\"te",
            ParamValue::Value {
                fhir_type: "odd\"type".into(),
                // As sent: a decimal keeps its trailing zero.
                value: serde_json::from_str("1.50").unwrap(),
            },
        );
        odd.push("empty", ParamValue::Parts(BoundParams::new()));
        odd.push(
            "e",
            ParamValue::Value {
                fhir_type: "".into(),
                value: json!(true),
            },
        );
        odd.extend("none", Vec::new());
        let written = odd.to_parameters_json().unwrap();
        let direct: Value = serde_json::from_slice(&written).unwrap();
        assert_eq!(direct, odd.into_parameters_resource());
        assert_eq!(
            String::from_utf8(written).unwrap(),
            r#"{"resourceType":"Parameters","parameter":[{"name":"quo\"te","valueOdd\"type":1.50},{"name":"empty","part":[]},{"name":"e","value":true}]}"#
        );
    }
}
