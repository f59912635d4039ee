//! Rules that span several attributes, each with the reason for it.

use darling::error::Accumulator;
use syn::Type;

use crate::attr::OperationArgs;

/// Whether `ty` is written `Option<..>` (the macro sees tokens, not types).
pub(crate) fn is_option(ty: &Type) -> bool {
    match ty {
        Type::Path(path) => path
            .path
            .segments
            .last()
            .is_some_and(|segment| segment.ident == "Option"),
        _ => false,
    }
}

/// Level rules: a type or instance operation must say which resource types it serves (its
/// URLs contain one), every operation needs a level (or it could never be called), and an
/// `#[id_param]` needs the instance level (only instance URLs carry an id), optional when
/// other levels exist too.
pub(crate) fn levels(
    args: &OperationArgs,
    resources: &[String],
    system: bool,
    type_level: bool,
    instance: bool,
    id_arg: Option<&Type>,
    errors: &mut Accumulator,
) {
    if resources.is_empty() {
        for flag in [&args.type_level, &args.instance].into_iter().flatten() {
            if **flag {
                errors.push(
                    darling::Error::custom(
                        "a type or instance operation needs the resource types it serves: add `resource = \"Patient\"`",
                    )
                    .with_span(&flag.span()),
                );
            }
        }
    }
    if !system && !type_level && !instance {
        let error = darling::Error::custom(
            "this operation declares no level: set `system`, `type_level` or `instance` to true",
        );
        errors.push(match &args.name {
            Some(name) => error.with_span(&name.span()),
            None => error,
        });
    }
    if let Some(ty) = id_arg {
        if !instance {
            errors.push(
                darling::Error::custom("#[id_param] receives the id of an instance call: declare `instance = true`")
                    .with_span(ty),
            );
        } else if (system || type_level) && !is_option(ty) {
            errors.push(
                darling::Error::custom(
                    "this operation also runs at the type or system level, where the URL has no id: use `Option<IdParam>`",
                )
                .with_span(ty),
            );
        }
    }
}
