//! The fhirop example server: the reference user of the framework. Every native operation
//! here is written with the macros; [`build`] is the one place the application is put
//! together, so tests and `main` start the same server.

pub mod config;
pub mod operations;

use std::net::TcpListener;

use actix_web::{App, HttpServer, dev::Server};
use fhirop::prelude::*;
use fhirop::server::FhirServer;

pub use config::Config;

/// The FHIR endpoints with every native operation registered.
pub fn build(config: &Config) -> Result<FhirServer, fhirop::registry::RegistryError> {
    FhirServer::builder()
        .base_path(&config.base_path)
        .body_limit(config.body_limit)
        .operations(operations![
            operations::healthcheck,
            operations::hello,
            operations::add_identifier
        ])
        .build()
}

/// A server bound to its socket and ready to run.
pub struct Running {
    /// The address it listens on (the real port when the configured one was 0).
    pub addr: std::net::SocketAddr,
    /// The base URL of the FHIR API.
    pub base_url: String,
    /// The actix server: await it to run, or use its handle to stop it.
    pub server: Server,
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Binds the configured address and prepares the server. The socket accepts connections
/// as soon as this returns.
pub fn start(config: &Config) -> std::io::Result<Running> {
    let fhir = build(config).map_err(std::io::Error::other)?;
    let listener = TcpListener::bind(config.addr)?;
    let addr = listener.local_addr()?;
    let mut http = HttpServer::new(move || App::new().service(fhir.scope()))
        .shutdown_timeout(5)
        .listen(listener)?;
    if let Some(workers) = config.workers {
        http = http.workers(workers);
    }
    Ok(Running {
        addr,
        base_url: format!("http://{addr}{}", config.base_path.trim_end_matches('/')),
        server: http.run(),
    })
}
