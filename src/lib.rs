//! # fhirop
//!
//! Write FHIR R4 extended operations (`$everything`, `$validate`, `$your-own`) as annotated
//! async Rust functions, and serve them with actix-web — the way HAPI FHIR's `@Operation`
//! does it in Java. The macros generate the OperationDefinition, the parameter binding
//! (Parameters body, bare resource, query string), the GET/POST rules, validation with
//! OperationOutcome errors, and the registration; the runtime routes system, type and
//! instance calls and serves `/metadata` and the OperationDefinitions.
//!
//! ```no_run
//! use fhirop::prelude::*;
//!
//! /// Says hello.
//! #[operation(name = "$hello", idempotent = true, resource = "Patient")]
//! async fn hello(
//!     /// Who to greet.
//!     #[op_param(name = "name")] name: Option<String>,
//! ) -> Result<String, OperationError> {
//!     Ok(format!("Hello, {}", name.as_deref().unwrap_or("World")))
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let fhir = FhirServer::builder()
//!         .base_path("/fhir/R4")
//!         .operations(operations![hello])
//!         .build()
//!         .expect("operations do not clash");
//!     actix_web::HttpServer::new(move || actix_web::App::new().service(fhir.scope()))
//!         .bind("127.0.0.1:8080")?
//!         .run()
//!         .await
//! }
//! ```
//!
//! `GET /fhir/R4/Patient/$hello?name=World` answers
//! `{"resourceType":"Parameters","parameter":[{"name":"return","valueString":"Hello, World"}]}`.
//!
//! ## `#[operation(...)]`
//!
//! On an `async fn`, free or a method of a [`provider`] impl. Its `///` comment becomes the
//! OperationDefinition's `description`.
//!
//! | key | meaning |
//! |---|---|
//! | `name = "$code"` | the operation code (required) |
//! | `idempotent = true` | `affectsState = false`: GET is allowed as well as POST (default `false`: POST only, GET → 405) |
//! | `resource = "Patient"` | a resource type the operation serves; repeat the key for several |
//! | `system`, `type_level`, `instance` | the levels (`= true`, or the bare word). Without them the levels are inferred as HAPI does: no `resource` → system; `#[id_param] IdParam` → instance; `#[id_param] Option<IdParam>` → type and instance; otherwise type |
//! | `manual_request` | the handler takes the raw request (`HttpRequest`, [`RawBody`](prelude::RawBody)) and nothing is bound |
//! | `manual_response` | the handler returns any actix `Responder` (non-FHIR content types included) |
//! | `id = "..."` | the OperationDefinition id (default HAPI-style: `Patient-it-everything`) |
//! | `title = "..."` | `OperationDefinition.title` |
//! | `canonical = "..."` | `OperationDefinition.url`, when the operation implements a published definition |
//!
//! Every instance-level operation also answers at `[base]/Type/id/_history/vid/$code`; the
//! version reaches the handler in [`IdParam`](prelude::IdParam) and the context.
//!
//! ## Arguments
//!
//! - `#[op_param(name = "start")]` — an IN parameter (`name` defaults to the argument's
//!   name; `min = N` and `max = "N"` / `max = "*"` override what the type implies). The type
//!   gives the cardinality — `T` is 1..1, `Option<T>` 0..1, `Vec<T>` 0..* — and the FHIR type:
//!   Rust primitives (`String`, `bool`, `i32`, `i64`, `u32`, `u64`, `f64`), FHIR primitives
//!   ([`types::primitives`]: `Date`, `DateTime`, `Instant`, `Decimal`, `Code`, `Uri`, ...),
//!   complex types ([`types::complex`]: `Coding`, `CodeableConcept`, `Identifier`,
//!   `Reference`, `Quantity`, `Period`, and your serde types via [`complex_type!`]),
//!   resources ([`Resource`](prelude::Resource), [`Bundle`](prelude::Bundle), and your serde
//!   types via [`resource_type!`]), search types ([`types::search`]: `TokenParam`,
//!   `StringParam`, `DateParam`, `ReferenceParam`, `NumberParam`, `QuantityParam`,
//!   `UriParam`; `OrList<T>` for comma-separated OR values, `Vec<T>` for repeated AND values),
//!   and multi-part parameters (a struct with `#[derive(Parameters)]`). Its `///` comment
//!   becomes the parameter's `documentation`.
//! - `#[id_param]` — the resource id of an instance call: `IdParam`, or `Option<IdParam>`
//!   when the operation also runs at other levels.
//! - any other argument is taken from the call by type: [`OperationContext`](prelude::OperationContext)
//!   (method, URL, headers, target, base URL, response status and headers), actix's
//!   `HttpRequest`, or [`RawBody`](prelude::RawBody).
//!
//! An idempotent operation with a *required* complex or resource parameter does not compile:
//! GET could not carry it.
//!
//! ## Return types
//!
//! A resource type (`Resource`, `Bundle`, `OperationOutcome`, your [`resource_type!`]) is the
//! response body; a FHIR or Rust value is wrapped as the `return` parameter of a
//! `Parameters`; [`Parameters`](prelude::Parameters) is returned as built; a struct with
//! `#[derive(Parameters)]` gives one OUT parameter per field; `()` gives an empty
//! `Parameters`; `Result<T, E>` with `E: Into<OperationError>` maps errors to an
//! OperationOutcome with the status the error carries.
//!
//! ## `#[provider]`
//!
//! On an impl block whose methods carry `#[operation]` (taking `&self`): the provider is
//! registered with `FhirServer::builder().provider(MyProvider::new(..))` and shared by every
//! request (HAPI's resource and plain providers).
//!
//! ## `#[derive(Parameters)]`
//!
//! On a struct with named fields, each a parameter (`#[param(name = "...")]` renames one).
//!
//! ## Debugging
//!
//! Set `FHIROP_MACROS_DEBUG=1` while building to print every expansion.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
#![warn(missing_docs)]

/// The actix-web version fhirop is built on, for embedding it in your own app.
pub use actix_web;
pub use fhirop_macros::{Parameters, id_param, op_param, operation, provider};
pub use fhirop_runtime::{
    binding, capability, context, definition, format, operation, outcome, output, registry, resource_types, server,
    store, types,
};
pub use fhirop_runtime::{complex_type, resource_type};

/// Everything a user of the macros needs: `use fhirop::prelude::*;`.
pub mod prelude {
    pub use crate::operations;
    pub use fhirop_macros::{Parameters, id_param, op_param, operation, provider};
    pub use fhirop_runtime::context::{IdParam, OperationContext, RawBody};
    pub use fhirop_runtime::definition::{Level, OperationDefinition};
    pub use fhirop_runtime::operation::IntoOperations;
    pub use fhirop_runtime::outcome::{Issue, IssueType, OperationError, OperationOutcome};
    pub use fhirop_runtime::output::Parameters;
    pub use fhirop_runtime::server::FhirServer;
    pub use fhirop_runtime::types::complex::{CodeableConcept, Coding, Identifier, Period, Quantity, Reference};
    pub use fhirop_runtime::types::primitives::{
        Base64Binary, Canonical, Code, Date, DateTime, Decimal, Id, Instant, Markdown, Oid, PositiveInt, Time, Uri,
        Url, Uuid,
    };
    pub use fhirop_runtime::types::resource::{Bundle, Resource};
    pub use fhirop_runtime::types::search::{
        DateParam, NumberParam, OrList, Prefix, QuantityParam, ReferenceParam, StringParam, TokenParam, UriParam,
    };
}

/// Collects `#[operation]` functions for registration:
/// `FhirServer::builder().operations(operations![hello, everything])`.
#[macro_export]
macro_rules! operations {
    ($($($segment:ident)::+),* $(,)?) => {{
        let mut operations: ::std::vec::Vec<$crate::operation::Operation> = ::std::vec::Vec::new();
        $(operations.extend($crate::operation::IntoOperations::into_operations($($segment)::+ {}));)*
        operations
    }};
}

/// What generated code calls. Not a public API: it changes without notice.
#[doc(hidden)]
pub mod __private {
    pub use fhirop_runtime::context::{FromCall, FromIdParam};
    pub use fhirop_runtime::definition::{Max, OperationDefinition, ParamDefinition};
    pub use fhirop_runtime::operation::{IntoOperations, Operation, OperationCall, handler_fn};
    pub use fhirop_runtime::outcome::{Issue, IssueType, OperationError};
    pub use fhirop_runtime::output::{IntoOperationOutput, OperationOutput, parameters_output};
    pub use fhirop_runtime::types::{
        BoundParams, FhirParam, GetSafe, OperationArg, ParamValue, ToParamValue, ToParamValues, TypeInfo,
    };
    pub use std::result::Result::{self, Err, Ok};
    pub use std::string::String;
    pub use std::sync::Arc;
    pub use std::vec::Vec;
    pub use std::{format, vec};

    /// Takes an argument's occurrences out of the bound parameters and converts them; a
    /// failure becomes an issue naming the parameter.
    pub fn extract<T: OperationArg>(params: &mut BoundParams, name: &str, issues: &mut Vec<Issue>) -> Option<T> {
        match T::from_values(params.take(name)) {
            Ok(value) => Some(value),
            Err(message) => {
                issues.push(Issue::error(IssueType::Value, message).at(name));
                None
            }
        }
    }

    /// The 400 for arguments that did not convert.
    #[cold]
    pub fn binding_failed(issues: Vec<Issue>) -> OperationError {
        OperationError::from_issues(fhirop_runtime::server::StatusCode::BAD_REQUEST, issues)
    }

    /// Takes a part of a multi-part parameter.
    pub fn extract_part<T: OperationArg>(parts: &mut BoundParams, name: &str) -> Result<T, String> {
        T::from_values(parts.take(name)).map_err(|message| format!("part '{name}': {message}"))
    }

    /// Compiles only for types an idempotent operation may take.
    pub fn assert_get_safe<T: GetSafe>() {}

    /// Turns a `manual_response` handler's result into the response.
    pub fn manual_response<R: actix_web::Responder>(
        result: R,
        context: &fhirop_runtime::context::OperationContext,
    ) -> Result<OperationOutput, OperationError> {
        Ok(OperationOutput::Http(
            result.respond_to(context.request()).map_into_boxed_body(),
        ))
    }
}
