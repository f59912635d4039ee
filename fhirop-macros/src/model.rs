//! The operation model: the attribute arguments and the function signature, read once,
//! checked, and handed to `expand` (which never looks at attributes again).

use darling::FromMeta;
use darling::ast::NestedMeta;
use darling::error::Accumulator;
use proc_macro2::Span;
use syn::spanned::Spanned;
use syn::{FnArg, Ident, Pat, ReturnType, Signature, Type};

use crate::attr::{ID_PARAM, OP_PARAM, OpParamArgs, OperationArgs};
use crate::docs::{doc_text, is_doc};

/// `max` as the user wrote it.
#[derive(Debug, Clone, Copy)]
pub(crate) enum MaxSpec {
    Count(u32),
    Unbounded,
}

/// What one function argument is.
#[derive(Debug)]
pub(crate) enum ArgModel {
    /// `#[op_param]`: an IN parameter.
    Param {
        /// The parameter name.
        name: String,
        /// The Rust type (`Option<Date>`).
        ty: Type,
        /// `min` override.
        min: Option<u32>,
        /// `max` override.
        max: Option<MaxSpec>,
        /// From the argument's `///` comment.
        documentation: String,
    },
    /// `#[id_param]`: the resource id of an instance call.
    Id {
        /// `IdParam` or `Option<IdParam>`.
        ty: Type,
    },
    /// Anything else: taken from the call by type (`OperationContext`, `HttpRequest`, `RawBody`).
    Context {
        /// The Rust type.
        ty: Type,
    },
}

/// How the function is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Receiver {
    /// A free function, or an associated function without `self`.
    None,
    /// `&self` inside a `#[provider]` impl.
    Ref,
}

/// One operation, validated.
#[derive(Debug)]
pub(crate) struct OperationModel {
    /// The code without `$`.
    pub(crate) code: String,
    /// `idempotent = true`
    pub(crate) idempotent: bool,
    /// Resource types.
    pub(crate) resources: Vec<String>,
    /// Declared (or inferred) levels.
    pub(crate) system: bool,
    pub(crate) type_level: bool,
    pub(crate) instance: bool,
    /// `manual_request`
    pub(crate) manual_request: bool,
    /// `manual_response`
    pub(crate) manual_response: bool,
    /// Explicit definition id.
    pub(crate) id: Option<String>,
    /// `title`
    pub(crate) title: Option<String>,
    /// `canonical`
    pub(crate) canonical: Option<String>,
    /// The fn's doc comment.
    pub(crate) description: String,
    /// The fn's name.
    pub(crate) fn_ident: Ident,
    /// `&self` or not.
    pub(crate) receiver: Receiver,
    /// The arguments, in order (without the receiver).
    pub(crate) args: Vec<ArgModel>,
    /// The return type (`()` when none is written).
    pub(crate) output: Type,
}

/// Parses `#[operation(...)]`'s arguments.
pub(crate) fn parse_operation_args(tokens: proc_macro2::TokenStream) -> darling::Result<OperationArgs> {
    let items = NestedMeta::parse_meta_list(tokens)?;
    OperationArgs::from_list(&items)
}

fn is_marker(attr: &syn::Attribute) -> bool {
    attr.path().is_ident(OP_PARAM) || attr.path().is_ident(ID_PARAM)
}

impl OperationModel {
    /// Reads an operation from its arguments and signature, removing our argument attributes
    /// (and argument doc comments) from `sig` so that rustc accepts it. Errors go to `errors`;
    /// `None` when the operation cannot be modelled at all.
    pub(crate) fn from_signature(
        args: OperationArgs,
        sig: &mut Signature,
        description: String,
        in_provider: bool,
        errors: &mut Accumulator,
    ) -> Option<OperationModel> {
        if sig.asyncness.is_none() {
            errors.push(darling::Error::custom("an #[operation] function must be `async fn`").with_span(&sig.fn_token));
        }
        if let Some(param) = sig.generics.params.first() {
            errors.push(
                darling::Error::custom(
                    "an #[operation] function cannot be generic: the server must know its parameter types",
                )
                .with_span(param),
            );
        }
        let code = match &args.name {
            Some(name) => check_code(name, errors),
            None => {
                errors.push(
                    darling::Error::custom("#[operation] needs the operation's code: add `name = \"$code\"`")
                        .with_span(&sig.ident),
                );
                None
            }
        };
        let mut receiver = Receiver::None;
        let mut arg_models = Vec::new();
        let mut seen_names: Vec<String> = Vec::new();
        for input in sig.inputs.iter_mut() {
            match input {
                FnArg::Receiver(self_arg) => {
                    // Spans go on single tokens: joining spans needs a nightly compiler.
                    if !in_provider {
                        errors.push(
                            darling::Error::custom(
                                "an #[operation] taking `self` must be a method of an impl block marked #[provider], which registers it",
                            )
                            .with_span(&self_arg.self_token),
                        );
                    } else if !matches!(self_arg.kind, syn::ReceiverKind::Reference(_, _, None)) {
                        let span = match &self_arg.kind {
                            syn::ReceiverKind::Reference(_, _, Some(mutability)) => mutability.span,
                            _ => self_arg.self_token.span,
                        };
                        errors.push(
                            darling::Error::custom(
                                "an operation method takes `&self`: one provider serves every request at once",
                            )
                            .with_span(&span),
                        );
                    }
                    receiver = Receiver::Ref;
                }
                FnArg::Typed(typed) => {
                    let documentation = doc_text(&typed.attrs);
                    let markers: Vec<syn::Attribute> = typed.attrs.iter().filter(|a| is_marker(a)).cloned().collect();
                    typed.attrs.retain(|attr| !is_marker(attr) && !is_doc(attr));
                    if markers.len() > 1 {
                        errors.push(
                            darling::Error::custom("an argument takes one of #[op_param] or #[id_param], once")
                                .with_span(&markers[1]),
                        );
                    }
                    let ty = (*typed.ty).clone();
                    let model = match markers.first() {
                        Some(marker) if marker.path().is_ident(ID_PARAM) => {
                            if !matches!(marker.meta, syn::Meta::Path(_)) {
                                errors.push(darling::Error::custom("#[id_param] takes no arguments").with_span(marker));
                            }
                            ArgModel::Id { ty }
                        }
                        Some(marker) => {
                            let param_args = match &marker.meta {
                                syn::Meta::Path(_) => Ok(OpParamArgs::default()),
                                meta => OpParamArgs::from_meta(meta),
                            };
                            let Some(param_args) = errors.handle(param_args) else {
                                continue;
                            };
                            let name = match &param_args.name {
                                Some(name) => {
                                    check_param_name(name, errors);
                                    name.as_str().to_owned()
                                }
                                None => match &*typed.pat {
                                    Pat::Ident(ident) => ident.ident.to_string().trim_start_matches("r#").to_owned(),
                                    other => {
                                        errors.push(
                                            darling::Error::custom(
                                                "this argument needs a name: write #[op_param(name = \"...\")]",
                                            )
                                            .with_span(other),
                                        );
                                        continue;
                                    }
                                },
                            };
                            if seen_names.contains(&name) {
                                let span: Span =
                                    param_args.name.as_ref().map_or_else(|| typed.pat.span(), |n| n.span());
                                errors.push(
                                    darling::Error::custom(format!(
                                        "duplicate parameter name `{name}`: an earlier argument of this operation is already bound to it"
                                    ))
                                    .with_span(&span),
                                );
                            }
                            seen_names.push(name.clone());
                            let max = param_args.max.as_ref().and_then(|max| parse_max(max, errors));
                            ArgModel::Param {
                                name,
                                ty,
                                min: param_args.min,
                                max,
                                documentation,
                            }
                        }
                        None => ArgModel::Context { ty },
                    };
                    arg_models.push(model);
                }
            }
        }
        let output = match &sig.output {
            ReturnType::Default => syn::parse_quote!(()),
            ReturnType::Type(_, ty) => (**ty).clone(),
        };
        let resources: Vec<String> = args.resource.iter().map(|r| r.as_str().to_owned()).collect();
        for resource in &args.resource {
            if !resource.chars().next().is_some_and(|c| c.is_ascii_uppercase())
                || !resource.chars().all(|c| c.is_ascii_alphanumeric())
            {
                errors.push(
                    darling::Error::custom(format!(
                        "`{}` is not a resource type name (such as \"Patient\")",
                        resource.as_str()
                    ))
                    .with_span(&resource.span()),
                );
            }
        }
        let id_arg = arg_models.iter().find_map(|arg| match arg {
            ArgModel::Id { ty } => Some(ty.clone()),
            _ => None,
        });
        let (system, type_level, instance) = levels(&args, &resources, id_arg.as_ref());
        crate::check::levels(&args, &resources, system, type_level, instance, id_arg.as_ref(), errors);
        if *args.manual_request && arg_models.iter().any(|arg| matches!(arg, ArgModel::Param { .. })) {
            errors.push(
                darling::Error::custom(
                    "a manual_request operation receives the raw request: take `RawBody` and `HttpRequest` instead of #[op_param] arguments",
                )
                .with_span(&args.manual_request.span()),
            );
        }
        if let Some(id) = &args.id
            && !(1..=64).contains(&id.len())
        {
            errors
                .push(darling::Error::custom("an OperationDefinition id has 1 to 64 characters").with_span(&id.span()));
        }
        let code = code?;
        Some(OperationModel {
            code,
            idempotent: args.idempotent,
            resources,
            system,
            type_level,
            instance,
            manual_request: *args.manual_request,
            manual_response: args.manual_response,
            id: args.id.map(|id| id.into_inner()),
            title: args.title,
            canonical: args.canonical,
            description,
            fn_ident: sig.ident.clone(),
            receiver,
            args: arg_models,
            output,
        })
    }
}

/// The levels: as declared, or inferred HAPI's way (an `#[id_param]` makes an instance
/// operation, `Option<IdParam>` also a type one; a resource type without one makes a type
/// operation; no resource type makes a system operation).
fn levels(args: &OperationArgs, resources: &[String], id_arg: Option<&Type>) -> (bool, bool, bool) {
    let declared = |flag: &Option<darling::util::SpannedValue<bool>>| flag.as_ref().map(|flag| **flag);
    if args.system.is_some() || args.type_level.is_some() || args.instance.is_some() {
        return (
            declared(&args.system).unwrap_or(false),
            declared(&args.type_level).unwrap_or(false),
            declared(&args.instance).unwrap_or(false),
        );
    }
    match (resources.is_empty(), id_arg) {
        (true, _) => (true, false, false),
        (false, Some(ty)) if crate::check::is_option(ty) => (false, true, true),
        (false, Some(_)) => (false, false, true),
        (false, None) => (false, true, false),
    }
}

/// `$everything` → `everything`, pointing at the literal when the code is not one.
fn check_code(name: &darling::util::SpannedValue<String>, errors: &mut Accumulator) -> Option<String> {
    let code = name.strip_prefix('$').unwrap_or(name.as_str());
    let valid = !code.is_empty()
        && code
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if valid {
        Some(code.to_owned())
    } else {
        errors.push(
            darling::Error::custom(format!(
                "`{}` is not an operation code: write \"$\" and letters, digits, '-', '_' or '.', as in \"$everything\"",
                name.as_str()
            ))
            .with_span(&name.span()),
        );
        None
    }
}

fn check_param_name(name: &darling::util::SpannedValue<String>, errors: &mut Accumulator) {
    let valid = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.');
    if !valid {
        errors.push(
            darling::Error::custom(format!(
                "`{}` is not a parameter name: use letters, digits, '-', '_' or '.'",
                name.as_str()
            ))
            .with_span(&name.span()),
        );
    }
}

fn parse_max(max: &darling::util::SpannedValue<String>, errors: &mut Accumulator) -> Option<MaxSpec> {
    match max.as_str() {
        "*" => Some(MaxSpec::Unbounded),
        count => match count.parse() {
            Ok(count) => Some(MaxSpec::Count(count)),
            Err(_) => {
                errors.push(
                    darling::Error::custom(format!("max is a number or \"*\", not `{count}`")).with_span(&max.span()),
                );
                None
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use quote::quote;

    fn model(args: proc_macro2::TokenStream, function: proc_macro2::TokenStream) -> Result<OperationModel, String> {
        let mut function: syn::ItemFn = syn::parse2(function).unwrap();
        let mut errors = darling::Error::accumulator();
        let description = doc_text(&function.attrs);
        let model = errors
            .handle(parse_operation_args(args))
            .and_then(|args| OperationModel::from_signature(args, &mut function.sig, description, false, &mut errors));
        match (errors.finish(), model) {
            (Ok(()), Some(model)) => Ok(model),
            (Err(error), _) => Err(error.to_string()),
            (Ok(()), None) => Err("no model".into()),
        }
    }

    #[test]
    fn levels_are_inferred_as_hapi_does() {
        let levels = |model: OperationModel| (model.system, model.type_level, model.instance);
        let system = model(
            quote!(name = "$a"),
            quote!(
                async fn a() {}
            ),
        )
        .unwrap();
        assert_eq!(levels(system), (true, false, false));
        let type_level = model(
            quote!(name = "$a", resource = "Patient"),
            quote!(
                async fn a() {}
            ),
        )
        .unwrap();
        assert_eq!(levels(type_level), (false, true, false));
        let instance = model(
            quote!(name = "$a", resource = "Patient"),
            quote!(
                async fn a(#[id_param] id: IdParam) {}
            ),
        )
        .unwrap();
        assert_eq!(levels(instance), (false, false, true));
        let both = model(
            quote!(name = "$a", resource = "Patient"),
            quote!(
                async fn a(#[id_param] id: Option<IdParam>) {}
            ),
        )
        .unwrap();
        assert_eq!(levels(both), (false, true, true));
    }

    #[test]
    fn parameters_take_names_docs_and_overrides() {
        let model = model(
            quote!(name = "$a"),
            quote! {
                /// Does a.
                async fn a(
                    /// The start.
                    #[op_param] start: Date,
                    #[op_param(name = "_count", min = 1, max = "*")] count: Vec<u32>,
                    context: OperationContext,
                ) {}
            },
        )
        .unwrap();
        assert_eq!(model.description, "Does a.");
        assert_eq!(model.code, "a");
        let names: Vec<_> = model
            .args
            .iter()
            .map(|arg| match arg {
                ArgModel::Param {
                    name,
                    documentation,
                    min,
                    ..
                } => format!("{name}:{documentation}:{min:?}"),
                ArgModel::Id { .. } => "id".into(),
                ArgModel::Context { .. } => "context".into(),
            })
            .collect();
        assert_eq!(names, ["start:The start.:None", "_count::Some(1)", "context"]);
    }

    #[test]
    fn every_mistake_is_reported_at_once() {
        let error = model(
            quote!(name = "$bad code", instance = true),
            quote!(
                fn a(#[op_param] x: u32, #[op_param(name = "x")] y: u32) {}
            ),
        )
        .unwrap_err();
        for expected in [
            "must be `async fn`",
            "duplicate parameter name `x`",
            "is not an operation code",
            "needs the resource types",
        ] {
            assert!(error.contains(expected), "{expected} missing from: {error}");
        }
    }

    #[test]
    fn argument_markers_and_docs_are_stripped() {
        let mut function: syn::ItemFn = syn::parse2(quote!(
            async fn a(
                /// doc
                #[op_param]
                #[allow(unused)]
                x: u32,
            ) {
            }
        ))
        .unwrap();
        let mut errors = darling::Error::accumulator();
        let args = parse_operation_args(quote!(name = "$a")).unwrap();
        OperationModel::from_signature(args, &mut function.sig, String::new(), false, &mut errors).unwrap();
        errors.finish().unwrap();
        let FnArg::Typed(typed) = &function.sig.inputs[0] else {
            panic!("a typed argument")
        };
        assert_eq!(typed.attrs.len(), 1);
        assert!(typed.attrs[0].path().is_ident("allow"));
    }
}
