//! `#[derive(Parameters)]`: a struct whose fields are named parameters.

use darling::FromMeta;
use proc_macro2::TokenStream;
use quote::{quote, quote_spanned};
use syn::spanned::Spanned;
use syn::{Data, DeriveInput, Fields};

use crate::attr::{FieldArgs, PARAM};
use crate::docs::doc_text;
use crate::expand::debug_print;

/// One field, read.
struct FieldModel {
    ident: syn::Ident,
    name: String,
    ty: syn::Type,
    documentation: String,
}

pub(crate) fn parameters(item: TokenStream) -> TokenStream {
    let input: DeriveInput = match syn::parse2(item) {
        Ok(input) => input,
        Err(error) => return error.to_compile_error(),
    };
    let mut errors = darling::Error::accumulator();
    let fields = match &input.data {
        Data::Struct(data) => match &data.fields {
            Fields::Named(named) => named.named.iter().collect::<Vec<_>>(),
            other => {
                errors.push(
                    darling::Error::custom("#[derive(Parameters)] needs named fields: each field is one parameter")
                        .with_span(other),
                );
                Vec::new()
            }
        },
        _ => {
            errors.push(darling::Error::custom("#[derive(Parameters)] goes on a struct").with_span(&input.ident));
            Vec::new()
        }
    };
    if !input.generics.params.is_empty() {
        errors
            .push(darling::Error::custom("#[derive(Parameters)] does not support generics").with_span(&input.generics));
    }
    let mut models = Vec::new();
    for field in fields {
        let Some(ident) = field.ident.clone() else {
            continue;
        };
        let mut args = FieldArgs::default();
        for attr in field.attrs.iter().filter(|attr| attr.path().is_ident(PARAM)) {
            if let Some(parsed) = errors.handle(FieldArgs::from_meta(&attr.meta)) {
                args = parsed;
            }
        }
        let name = args
            .name
            .unwrap_or_else(|| ident.to_string().trim_start_matches("r#").to_owned());
        if models.iter().any(|model: &FieldModel| model.name == name) {
            errors.push(darling::Error::custom(format!("duplicate parameter name `{name}`")).with_span(field));
        }
        models.push(FieldModel {
            ident,
            name,
            ty: field.ty.clone(),
            documentation: doc_text(&field.attrs),
        });
    }
    if let Err(error) = errors.finish() {
        return error.write_errors();
    }
    let p = quote!(::fhirop::__private);
    let ident = &input.ident;
    let definitions = |constructor: TokenStream| {
        let definitions = models.iter().map(|field| {
            let (ty, name, documentation) = (&field.ty, &field.name, &field.documentation);
            quote_spanned!(ty.span()=> #p::ParamDefinition::#constructor::<#ty>(#name).documentation(#documentation))
        });
        quote!(#p::vec![#(#definitions),*])
    };
    let in_definitions = definitions(quote!(input));
    let out_definitions = definitions(quote!(output));
    let reads = models.iter().map(|field| {
        let (field_ident, ty, name) = (&field.ident, &field.ty, &field.name);
        quote_spanned!(ty.span()=> #field_ident: #p::extract_part::<#ty>(&mut __fhirop_parts, #name)?,)
    });
    let writes = models.iter().map(|field| {
        let (field_ident, ty, name) = (&field.ident, &field.ty, &field.name);
        quote_spanned!(ty.span()=> __fhirop_values.extend(#name, <#ty as #p::ToParamValues>::to_param_values(self.#field_ident));)
    });
    let writes_again = writes.clone();
    debug_print(quote! {
        impl #p::FhirParam for #ident {
            fn type_info() -> #p::TypeInfo {
                #p::TypeInfo::tuple(#in_definitions)
            }
            fn from_param(value: #p::ParamValue) -> #p::Result<Self, #p::String> {
                let mut __fhirop_parts = match value {
                    #p::ParamValue::Parts(parts) => parts,
                    other => return #p::Err(#p::format!("expected part[], got {}", other.describe())),
                };
                #p::Ok(#ident { #(#reads)* })
            }
        }
        impl #p::ToParamValue for #ident {
            fn to_param_value(self) -> #p::ParamValue {
                let mut __fhirop_values = #p::BoundParams::new();
                #(#writes)*
                #p::ParamValue::Parts(__fhirop_values)
            }
        }
        impl #p::IntoOperationOutput for #ident {
            fn out_params() -> #p::Vec<#p::ParamDefinition> {
                #out_definitions
            }
            fn into_output(self) -> #p::Result<#p::OperationOutput, #p::OperationError> {
                let mut __fhirop_values = #p::BoundParams::new();
                #(#writes_again)*
                #p::Ok(#p::parameters_output(__fhirop_values))
            }
        }
    })
}
