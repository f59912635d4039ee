//! What a handler returns and how it becomes a response body (operations.html: a single
//! `return` resource is the body; anything else is a `Parameters`).

use actix_web::HttpResponse;
use serde_json::Value;

use crate::definition::{Max, ParamDefinition, ParamUse};
use crate::outcome::OperationError;
use crate::types::{BoundParams, FhirParam, ParamKind, ToParamValue, ToParamValues, TypeInfo};

/// The result of an operation, before it is written to the wire.
#[derive(Debug)]
#[non_exhaustive]
pub enum OperationOutput {
    /// A resource that is the body (a single `return` resource, or a `Parameters`).
    Resource(Value),
    /// A resource that is the body, already serialized as compact JSON: a typed resource goes
    /// to bytes directly, instead of through a `Value` that is built only to be serialized.
    Json(bytes::Bytes),
    /// A response the handler built itself (`manual_response`).
    Http(HttpResponse),
}

impl OperationOutput {
    /// Serialized JSON as the body (see [`crate::format::body_bytes`]).
    pub fn json(text: Vec<u8>) -> OperationOutput {
        OperationOutput::Json(crate::format::body_bytes(text))
    }

    /// The body as a JSON value (`Json` parsed, `Resource` as it is); `None` for `Http`.
    pub fn into_json(self) -> Option<Result<Value, OperationError>> {
        match self {
            OperationOutput::Resource(value) => Some(Ok(value)),
            OperationOutput::Json(bytes) => Some(
                serde_json::from_slice(&bytes)
                    .map_err(|error| OperationError::internal(format!("the output is not JSON: {error}"))),
            ),
            OperationOutput::Http(_) => None,
        }
    }
}

/// A handler's return type.
///
/// Implemented for resources (the body is the resource), FHIR and Rust primitives and complex
/// types (wrapped as the `return` parameter of a `Parameters`), [`Parameters`], structs with
/// `#[derive(Parameters)]` (one OUT parameter per field), `Option<T>` / `Vec<T>` (a `return`
/// that may be absent or repeat), `()` (an empty `Parameters`), actix's `HttpResponse`
/// (`manual_response`), and `Result<T, E>` where `E: Into<OperationError>`.
#[diagnostic::on_unimplemented(
    message = "`{Self}` cannot be returned from an operation",
    note = "return a resource, a FHIR value, `Parameters`, a struct with #[derive(Parameters)], or an actix HttpResponse with manual_response"
)]
pub trait IntoOperationOutput {
    /// The OUT parameters this type produces, for the OperationDefinition.
    fn out_params() -> Vec<ParamDefinition>;

    /// Converts the value into the response body.
    fn into_output(self) -> Result<OperationOutput, OperationError>;
}

/// The OUT parameter `return` of a resource type, 1..1.
pub fn return_resource(fhir_type: &str) -> Vec<ParamDefinition> {
    vec![
        ParamDefinition::from_type(
            "return",
            ParamUse::Out,
            1,
            Max::Count(1),
            TypeInfo {
                kind: ParamKind::Resource,
                fhir_type: None,
                search_type: None,
                parts: Vec::new(),
            },
        )
        .with_type(fhir_type),
    ]
}

impl ParamDefinition {
    fn with_type(mut self, fhir_type: &str) -> ParamDefinition {
        self.fhir_type = Some(fhir_type.into());
        self
    }
}

/// Serializes a typed resource as the body.
pub fn resource_output<T: serde::Serialize>(resource: &T) -> Result<OperationOutput, OperationError> {
    serde_json::to_vec(resource)
        .map(OperationOutput::json)
        .map_err(|error| OperationError::internal(format!("the resource could not be serialized: {error}")))
}

/// Wraps values as the `return` parameter of a `Parameters`: a `Vec`, or an array for a single
/// value, which costs no allocation.
pub fn return_parameters<V>(values: V) -> OperationOutput
where
    V: AsRef<[crate::types::ParamValue]> + IntoIterator<Item = crate::types::ParamValue>,
{
    match crate::types::parameters_json(std::iter::once(("return", values.as_ref()))) {
        Ok(bytes) => OperationOutput::json(bytes),
        // Kept on the general path, which falls back to the value form.
        Err(_) => {
            let mut parameters = BoundParams::new();
            for value in values {
                parameters.push("return", value);
            }
            parameters_output(parameters)
        }
    }
}

/// `parameters` as the body: serialized straight to bytes.
pub fn parameters_output(parameters: BoundParams) -> OperationOutput {
    match parameters.to_parameters_json() {
        Ok(bytes) => OperationOutput::json(bytes),
        // Values built in this process always serialize; keep the value form if one did not.
        Err(_) => OperationOutput::Resource(parameters.into_parameters_resource()),
    }
}

impl<T: IntoOperationOutput, E: Into<OperationError>> IntoOperationOutput for Result<T, E> {
    fn out_params() -> Vec<ParamDefinition> {
        T::out_params()
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        self.map_err(Into::into)?.into_output()
    }
}

impl IntoOperationOutput for HttpResponse {
    fn out_params() -> Vec<ParamDefinition> {
        Vec::new()
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(OperationOutput::Http(self))
    }
}

impl IntoOperationOutput for () {
    fn out_params() -> Vec<ParamDefinition> {
        Vec::new()
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(OperationOutput::Resource(BoundParams::new().into_parameters_resource()))
    }
}

impl<T: FhirParam + ToParamValue> IntoOperationOutput for Option<T> {
    fn out_params() -> Vec<ParamDefinition> {
        vec![ParamDefinition::output::<Option<T>>("return")]
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(return_parameters(self.to_param_values()))
    }
}

impl<T: FhirParam + ToParamValue> IntoOperationOutput for Vec<T> {
    fn out_params() -> Vec<ParamDefinition> {
        vec![ParamDefinition::output::<Vec<T>>("return")]
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(return_parameters(self.to_param_values()))
    }
}

/// Implements [`IntoOperationOutput`] for value types: the value is the `return` parameter.
macro_rules! return_value_output {
    ($($value_type:ty),* $(,)?) => {$(
        impl IntoOperationOutput for $value_type {
            fn out_params() -> Vec<ParamDefinition> {
                vec![ParamDefinition::output::<$value_type>("return")]
            }
            fn into_output(self) -> Result<OperationOutput, OperationError> {
                Ok(return_parameters([self.to_param_value()]))
            }
        }
    )*};
}

use crate::types::complex::{CodeableConcept, Coding, Identifier, Period, Quantity, Reference};
use crate::types::primitives::{
    Base64Binary, Canonical, Code, Date, DateTime, Decimal, Id, Instant, Markdown, Oid, PositiveInt, Time, Uri, Url,
    Uuid,
};

return_value_output!(
    String,
    bool,
    i32,
    i64,
    u32,
    u64,
    f64,
    Decimal,
    Date,
    DateTime,
    Instant,
    Time,
    Code,
    Uri,
    Url,
    Canonical,
    Id,
    Oid,
    Uuid,
    Base64Binary,
    Markdown,
    PositiveInt,
    Coding,
    CodeableConcept,
    Identifier,
    Reference,
    Quantity,
    Period,
);

/// An output `Parameters` resource, built by name (HAPI's returned `Parameters`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Parameters {
    values: BoundParams,
}

impl Parameters {
    /// No parameters.
    pub fn new() -> Parameters {
        Parameters::default()
    }

    /// Adds a parameter: one value, an `Option` (absent when `None`) or a `Vec` (repeated).
    pub fn add(mut self, name: &str, value: impl ToParamValues) -> Parameters {
        self.values.extend(name, value.to_param_values());
        self
    }

    /// The values added so far.
    pub fn values(&self) -> &BoundParams {
        &self.values
    }

    /// The resource as FHIR JSON.
    pub fn to_json(&self) -> Value {
        self.values.clone().into_parameters_resource()
    }
}

impl From<BoundParams> for Parameters {
    fn from(values: BoundParams) -> Parameters {
        Parameters { values }
    }
}

impl IntoOperationOutput for Parameters {
    fn out_params() -> Vec<ParamDefinition> {
        Vec::new()
    }
    fn into_output(self) -> Result<OperationOutput, OperationError> {
        Ok(parameters_output(self.values))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn body(output: OperationOutput) -> Value {
        output.into_json().expect("expected a body").unwrap()
    }

    #[test]
    fn primitives_are_wrapped_as_return() {
        assert_eq!(
            body(String::from("Hello, World").into_output().unwrap()),
            json!({"resourceType": "Parameters", "parameter": [{"name": "return", "valueString": "Hello, World"}]})
        );
        let out = <Vec<u32> as IntoOperationOutput>::out_params();
        assert_eq!(
            out[0].to_json(),
            json!({"name": "return", "use": "out", "min": 0, "max": "*", "type": "unsignedInt"})
        );
    }

    #[test]
    fn repeated_and_absent_returns_are_written_as_fhir_wants() {
        assert_eq!(
            body(vec![1u32, 2].into_output().unwrap()),
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "return", "valueUnsignedInt": 1},
                {"name": "return", "valueUnsignedInt": 2},
            ]})
        );
        // No value, no empty `parameter` array (FHIR forbids empty arrays).
        let absent = None::<String>.into_output().unwrap();
        assert!(
            matches!(&absent, OperationOutput::Json(bytes) if bytes.as_ref() == br#"{"resourceType":"Parameters"}"#)
        );
    }

    #[test]
    fn errors_pass_through_results() {
        let failed: Result<String, OperationError> = Err(OperationError::not_found("gone"));
        assert_eq!(
            failed.into_output().unwrap_err().status,
            actix_web::http::StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn parameters_builder_repeats_and_skips() {
        let parameters = Parameters::new()
            .add("a", vec![1u32, 2])
            .add("b", None::<String>)
            .add("c", Code::parse("x").unwrap());
        assert_eq!(
            parameters.to_json(),
            json!({"resourceType": "Parameters", "parameter": [
                {"name": "a", "valueUnsignedInt": 1},
                {"name": "a", "valueUnsignedInt": 2},
                {"name": "c", "valueCode": "x"},
            ]})
        );
    }
}
