//! Code generation from validated models. Generated code calls into the runtime through
//! `::fhirop::__private` only, and holds no FHIR rules of its own.

use darling::error::Accumulator;
use proc_macro2::TokenStream;
use quote::{format_ident, quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{ImplItem, ItemFn, ItemImpl};

use crate::attr::OPERATION;
use crate::docs::doc_text;
use crate::model::{ArgModel, MaxSpec, OperationModel, Receiver, parse_operation_args};

/// The one path generated code uses to reach the runtime.
fn private() -> TokenStream {
    quote!(::fhirop::__private)
}

/// `#[operation]` on a free function: the function, unchanged but for its argument markers,
/// and a braced struct of the same name (it lives in the type namespace only, so the function
/// stays callable) that registers it: `operations![everything]`.
pub(crate) fn operation(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut function: ItemFn = match syn::parse2(item.clone()) {
        Ok(function) => function,
        Err(_) => {
            let error =
                darling::Error::custom("#[operation] goes on an `async fn`, or on methods of a #[provider] impl")
                    .with_span(&item)
                    .write_errors();
            return quote!(#item #error);
        }
    };
    let mut errors = darling::Error::accumulator();
    let description = doc_text(&function.attrs);
    let model = errors
        .handle(parse_operation_args(args))
        .and_then(|args| OperationModel::from_signature(args, &mut function.sig, description, false, &mut errors));
    let ident = &function.sig.ident;
    let p = private();
    // A method (it takes `self`) belongs to an impl block, where a registration struct cannot
    // go: report the one mistake and emit nothing else.
    if function.sig.receiver().is_some() {
        let error = errors.finish().err().map(darling::Error::write_errors);
        return quote!(#function #error);
    }
    let registration = registration_struct(&function);
    let body = match (errors.finish(), model) {
        (Ok(()), Some(model)) => {
            let operation = operation_expr(&model, &quote!(#ident));
            let checks = get_safe_checks(&model);
            quote! {
                #checks
                #p::vec![#operation]
            }
        }
        (Err(error), _) => {
            let error = error.write_errors();
            return quote! {
                #function
                #registration
                impl #p::IntoOperations for #ident {
                    fn into_operations(self) -> #p::Vec<#p::Operation> { #p::Vec::new() }
                }
                #error
            };
        }
        (Ok(()), None) => unreachable_model(),
    };
    debug_print(quote! {
        #function
        #registration
        impl #p::IntoOperations for #ident {
            fn into_operations(self) -> #p::Vec<#p::Operation> {
                #body
            }
        }
    })
}

fn unreachable_model() -> TokenStream {
    // A model is only missing when an error was recorded; keep the expansion well-formed.
    quote!(::core::compile_error!("fhirop: internal error, no operation model and no error");)
}

fn registration_struct(function: &ItemFn) -> TokenStream {
    let vis = &function.vis;
    let ident = &function.sig.ident;
    let doc = format!("Registers the operation `{ident}` with a server: `.operations(operations![{ident}])`.");
    quote! {
        #[doc = #doc]
        #[allow(non_camel_case_types)]
        #vis struct #ident {}
    }
}

/// `#[provider]` on an impl block: the impl with our attributes removed, and
/// `IntoOperations` for its type, which shares one `Arc` of the provider among its operations.
pub(crate) fn provider(args: TokenStream, item: TokenStream) -> TokenStream {
    let mut errors = darling::Error::accumulator();
    if !args.is_empty() {
        errors.push(darling::Error::custom("#[provider] takes no arguments").with_span(&args));
    }
    let mut item_impl: ItemImpl = match syn::parse2(item.clone()) {
        Ok(item_impl) => item_impl,
        Err(_) => {
            let error = darling::Error::custom("#[provider] goes on an `impl` block whose methods carry #[operation]")
                .with_span(&item)
                .write_errors();
            return quote!(#item #error);
        }
    };
    if !item_impl.generics.params.is_empty() {
        errors.push(
            darling::Error::custom("a #[provider] impl cannot be generic: the server must know its operations' types")
                .with_span(&item_impl.generics),
        );
    }
    if let Some((path, _)) = &item_impl.trait_ {
        errors.push(darling::Error::custom("#[provider] goes on an inherent impl, not a trait impl").with_span(path));
    }
    let models = provider_models(&mut item_impl, &mut errors);
    let self_ty = &item_impl.self_ty;
    let p = private();
    let body = match errors.finish() {
        Ok(()) => {
            let checks = models.iter().map(get_safe_checks);
            let operations = models.iter().map(|model| {
                let ident = &model.fn_ident;
                let call = match model.receiver {
                    Receiver::Ref => quote!(__fhirop_this.#ident),
                    Receiver::None => quote!(Self::#ident),
                };
                let operation = operation_expr(model, &call);
                quote! {{
                    #[allow(unused_variables)]
                    let __fhirop_this = __fhirop_this.clone();
                    #operation
                }}
            });
            quote! {
                #[allow(unused_variables)]
                let __fhirop_this = #p::Arc::new(self);
                #(#checks)*
                #p::vec![#(#operations),*]
            }
        }
        Err(error) => {
            let error = error.write_errors();
            quote! {
                #error
                #p::Vec::new()
            }
        }
    };
    debug_print(quote! {
        #item_impl
        impl #p::IntoOperations for #self_ty {
            fn into_operations(self) -> #p::Vec<#p::Operation> {
                #body
            }
        }
    })
}

fn provider_models(item_impl: &mut ItemImpl, errors: &mut Accumulator) -> Vec<OperationModel> {
    let mut models = Vec::new();
    let mut marked = 0;
    for impl_item in item_impl.items.iter_mut() {
        let ImplItem::Fn(method) = impl_item else {
            continue;
        };
        let Some(position) = method.attrs.iter().position(|attr| attr.path().is_ident(OPERATION)) else {
            continue;
        };
        let attr = method.attrs.remove(position);
        marked += 1;
        let tokens = match &attr.meta {
            syn::Meta::List(list) => list.tokens.clone(),
            other => {
                errors.push(darling::Error::custom("write #[operation(name = \"$code\", ...)]").with_span(other));
                continue;
            }
        };
        let description = doc_text(&method.attrs);
        let model = errors
            .handle(parse_operation_args(tokens))
            .and_then(|args| OperationModel::from_signature(args, &mut method.sig, description, true, errors));
        models.extend(model);
    }
    if marked == 0 {
        errors.push(
            darling::Error::custom("this #[provider] impl has no #[operation] method").with_span(&item_impl.self_ty),
        );
    }
    models
}

/// The definition builder chain.
fn definition_expr(model: &OperationModel) -> TokenStream {
    let p = private();
    let code = &model.code;
    let resources = &model.resources;
    let (system, type_level, instance, idempotent) = (model.system, model.type_level, model.instance, model.idempotent);
    let description = &model.description;
    let id = model.id.as_ref().map(|id| quote!(.id(#id)));
    let title = model.title.as_ref().map(|title| quote!(.title(#title)));
    let canonical = model.canonical.as_ref().map(|url| quote!(.url(#url)));
    let parameters = model.args.iter().filter_map(|arg| match arg {
        ArgModel::Param {
            name,
            ty,
            min,
            max,
            documentation,
        } => {
            let min = min.map(|min| quote!(.min(#min)));
            let max = max.map(|max| match max {
                MaxSpec::Count(count) => quote!(.max(#p::Max::Count(#count))),
                MaxSpec::Unbounded => quote!(.max(#p::Max::Unbounded)),
            });
            Some(quote_spanned! {ty.span()=>
                .parameter(#p::ParamDefinition::input::<#ty>(#name).documentation(#documentation) #min #max)
            })
        }
        _ => None,
    });
    let output = &model.output;
    let outputs = (!model.manual_response)
        .then(|| quote_spanned!(output.span()=> .outputs(<#output as #p::IntoOperationOutput>::out_params())));
    quote! {
        #p::OperationDefinition::builder(#code)
            #(.resource(#resources))*
            .system(#system)
            .type_level(#type_level)
            .instance(#instance)
            .idempotent(#idempotent)
            .description(#description)
            #id #title #canonical
            #(#parameters)*
            #outputs
            .build()
    }
}

/// `Operation::new(definition, handler)` for one model; `call` names the function to run.
fn operation_expr(model: &OperationModel, call: &TokenStream) -> TokenStream {
    let p = private();
    let definition = definition_expr(model);
    let bindings = model.args.iter().enumerate().map(|(index, arg)| {
        let var = format_ident!("__fhirop_arg{}", index);
        match arg {
            ArgModel::Param { name, ty, .. } => quote_spanned! {ty.span()=>
                let #var = #p::extract::<#ty>(&mut __fhirop_params, #name, &mut __fhirop_issues);
            },
            ArgModel::Id { ty } => quote_spanned! {ty.span()=>
                let #var = <#ty as #p::FromIdParam>::from_context(&__fhirop_context)?;
            },
            ArgModel::Context { ty } => quote_spanned! {ty.span()=>
                let #var = <#ty as #p::FromCall>::from_call(&__fhirop_context, &mut __fhirop_body);
            },
        }
    });
    let vars = (0..model.args.len()).map(|index| format_ident!("__fhirop_arg{}", index));
    // Every conversion runs before any error is returned, so one response lists them all.
    let param_vars: Vec<_> = model
        .args
        .iter()
        .enumerate()
        .filter(|(_, arg)| matches!(arg, ArgModel::Param { .. }))
        .map(|(index, _)| format_ident!("__fhirop_arg{}", index))
        .collect();
    let unwrap_params = (!param_vars.is_empty()).then(|| {
        quote! {
            let (#(::core::option::Option::Some(#param_vars),)*) = (#(#param_vars,)*) else {
                return ::core::result::Result::Err(#p::binding_failed(__fhirop_issues));
            };
        }
    });
    let output = &model.output;
    let finish = if model.manual_response {
        quote!(#p::manual_response(__fhirop_result, &__fhirop_context))
    } else {
        quote_spanned!(output.span()=> <#output as #p::IntoOperationOutput>::into_output(__fhirop_result))
    };
    let manual_request = model.manual_request;
    let capture = (model.receiver == Receiver::Ref).then(|| quote!(let __fhirop_this = __fhirop_this.clone();));
    quote! {
        #p::Operation::new(
            #definition,
            #p::handler_fn(move |__fhirop_call: #p::OperationCall| {
                #capture
                async move {
                    #[allow(unused_mut, unused_variables)]
                    let #p::OperationCall {
                        context: __fhirop_context,
                        params: mut __fhirop_params,
                        body: mut __fhirop_body,
                    } = __fhirop_call;
                    #[allow(unused_mut, unused_variables)]
                    let mut __fhirop_issues: #p::Vec<#p::Issue> = #p::Vec::new();
                    #(#bindings)*
                    #unwrap_params
                    let __fhirop_result = #call(#(#vars),*).await;
                    #finish
                }
            }),
        )
        .manual_request(#manual_request)
        .source(::core::file!(), ::core::line!())
    }
}

/// For an idempotent operation, a bound on every parameter type that fails to compile, at
/// the user's type, when the parameter is required and complex (GET could not carry it).
fn get_safe_checks(model: &OperationModel) -> TokenStream {
    if !model.idempotent {
        return TokenStream::new();
    }
    let p = private();
    let checks = model.args.iter().filter_map(|arg| match arg {
        ArgModel::Param { ty, .. } => Some(quote_spanned!(ty.span()=> #p::assert_get_safe::<#ty>();)),
        _ => None,
    });
    quote!(#(#checks)*)
}

/// Prints the expansion when `FHIROP_MACROS_DEBUG` is set.
pub(crate) fn debug_print(tokens: TokenStream) -> TokenStream {
    if std::env::var_os("FHIROP_MACROS_DEBUG").is_some() {
        eprintln!("{tokens}");
    }
    tokens
}
