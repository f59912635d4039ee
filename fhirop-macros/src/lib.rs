//! The attribute macros of fhirop. Use them through the `fhirop` crate
//! (`use fhirop::prelude::*`), whose documentation describes every attribute; this crate
//! only parses, checks and generates calls into `fhirop`'s runtime.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
mod attr;
mod check;
mod derive;
mod docs;
mod expand;
mod model;

use proc_macro::TokenStream;

/// Turns an `async fn` into a FHIR operation. See the `fhirop` crate documentation.
#[proc_macro_attribute]
pub fn operation(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::operation(args.into(), item.into()).into()
}

/// Registers the `#[operation]` methods of an impl block with its type. See the `fhirop` crate
/// documentation.
#[proc_macro_attribute]
pub fn provider(args: TokenStream, item: TokenStream) -> TokenStream {
    expand::provider(args.into(), item.into()).into()
}

/// Marks an argument of an `#[operation]` function as an IN parameter. `#[operation]` reads
/// and removes it. On an argument of a function without `#[operation]`, rustc itself refuses
/// it ("expected non-macro attribute"); on an item, this macro says where it belongs.
#[proc_macro_attribute]
pub fn op_param(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("#[op_param]", item)
}

/// Marks the argument of an `#[operation]` function that receives the resource id of an
/// instance call. `#[operation]` reads and removes it; like `#[op_param]`, it is refused
/// anywhere else.
#[proc_macro_attribute]
pub fn id_param(_args: TokenStream, item: TokenStream) -> TokenStream {
    misplaced("#[id_param]", item)
}

fn misplaced(attribute: &str, item: TokenStream) -> TokenStream {
    let item = proc_macro2::TokenStream::from(item);
    let error = darling::Error::custom(format!(
        "{attribute} marks an argument of an #[operation] function; the function needs #[operation]"
    ))
    .with_span(&item)
    .write_errors();
    quote::quote!(#item #error).into()
}

/// Derives a set of named parameters from a struct: several OUT parameters when it is an
/// operation's return type, and the `part`s of a multi-part parameter when it is an argument
/// type. See the `fhirop` crate documentation.
#[proc_macro_derive(Parameters, attributes(param))]
pub fn derive_parameters(item: TokenStream) -> TokenStream {
    derive::parameters(item.into()).into()
}
