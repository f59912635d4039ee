//! The runtime of fhirop: everything the `#[operation]` macros generate calls into, and the
//! actix-web routes that serve operations. Users depend on the `fhirop` facade crate, which
//! re-exports this one; see its documentation for the macros.
//!
//! The request's way through: [`server`] routes and negotiates ([`format`]), the
//! [`registry`] resolves the operation, [`binding`] binds and checks the input against the
//! [`definition`], the [`operation`]'s handler runs with its [`context`], and [`output`]
//! turns the result into the body. Every failure is an [`outcome::OperationError`].
#![warn(missing_docs)]
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod binding;
pub mod capability;
pub mod context;
pub mod definition;
pub mod format;
pub mod operation;
pub mod outcome;
pub mod output;
pub mod registry;
pub mod resource_types;
pub mod server;
pub mod store;
pub mod types;
