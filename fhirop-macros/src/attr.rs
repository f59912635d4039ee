//! The attribute arguments, as darling reads them. Keys are named once here.

use darling::FromMeta;
use darling::util::SpannedValue;

/// `#[operation]`
pub(crate) const OPERATION: &str = "operation";
/// `#[op_param]`
pub(crate) const OP_PARAM: &str = "op_param";
/// `#[id_param]`
pub(crate) const ID_PARAM: &str = "id_param";
/// `#[param]` on a `#[derive(Parameters)]` field.
pub(crate) const PARAM: &str = "param";

/// `#[operation(name = "$code", ...)]`
#[derive(Debug, FromMeta)]
pub(crate) struct OperationArgs {
    /// The operation code, with `$` (`"$everything"`); required, checked by the model so the
    /// error can say what to write.
    #[darling(default)]
    pub(crate) name: Option<SpannedValue<String>>,
    /// HAPI's `idempotent`: `affectsState = false`, GET allowed.
    #[darling(default)]
    pub(crate) idempotent: bool,
    /// Resource types (repeatable: `resource = "Patient", resource = "Group"`).
    #[darling(default, multiple)]
    pub(crate) resource: Vec<SpannedValue<String>>,
    /// `[base]/$code`
    #[darling(default)]
    pub(crate) system: Option<SpannedValue<bool>>,
    /// `[base]/Type/$code`
    #[darling(default)]
    pub(crate) type_level: Option<SpannedValue<bool>>,
    /// `[base]/Type/id/$code`
    #[darling(default)]
    pub(crate) instance: Option<SpannedValue<bool>>,
    /// The handler receives the raw request and body: no binding.
    #[darling(default)]
    pub(crate) manual_request: SpannedValue<bool>,
    /// The handler returns any actix `Responder`.
    #[darling(default)]
    pub(crate) manual_response: bool,
    /// The OperationDefinition id (default: HAPI-style `Patient-it-everything`).
    #[darling(default)]
    pub(crate) id: Option<SpannedValue<String>>,
    /// `OperationDefinition.title`.
    #[darling(default)]
    pub(crate) title: Option<String>,
    /// `OperationDefinition.url`, when the operation implements a published definition.
    #[darling(default)]
    pub(crate) canonical: Option<String>,
}

/// `#[op_param(name = "start", min = 1, max = "*")]`
#[derive(Debug, Default, FromMeta)]
pub(crate) struct OpParamArgs {
    /// The parameter name (default: the argument's name).
    #[darling(default)]
    pub(crate) name: Option<SpannedValue<String>>,
    /// Overrides the minimum the Rust type implies.
    #[darling(default)]
    pub(crate) min: Option<u32>,
    /// Overrides the maximum the Rust type implies: a number or `"*"`.
    #[darling(default)]
    pub(crate) max: Option<SpannedValue<String>>,
}

/// `#[param(name = "...")]` on a field of a `#[derive(Parameters)]` struct.
#[derive(Debug, Default, FromMeta)]
pub(crate) struct FieldArgs {
    /// The parameter name (default: the field's name).
    #[darling(default)]
    pub(crate) name: Option<String>,
}
