//! The fhirop example server: the reference user of the framework. Every native operation
//! here is written with the macros; [`start`] is the one place the application is put
//! together, so tests and `main` start the same server.

#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used))]
pub mod access;
pub mod allocator;
pub mod auth;
pub mod bots;
pub mod config;
pub mod everything;
pub mod limits;
pub mod operations;
pub mod projects;
pub mod rest;
pub mod store;
pub mod tokens;
pub mod transaction;

use std::net::TcpListener;
use std::sync::Arc;

use actix_web::{App, HttpServer, dev::Server};
use fhirop::capability::ServerInfo;
use fhirop::prelude::*;
use fhirop::server::FhirServer;
use fhirop::store::{ResourceStore, StoreHandle};

use bots::Bots;
use bots::pool::BotPool;
use bots::provider::BotProvider;
use bots::sandbox::SandboxLimits;
use serde_json::{Value, json};

pub use config::Config;

/// The resource types this server defines beyond R4's (Medplum's shapes).
pub const SERVER_RESOURCE_TYPES: [&str; 5] = [
    "AccessPolicy",
    "Bot",
    "ClientApplication",
    "Project",
    "ProjectMembership",
];

/// Whether `name` is an R4 resource type or one of [`SERVER_RESOURCE_TYPES`].
pub fn is_known_resource_type(name: &str) -> bool {
    fhirop::resource_types::is_r4_resource_type(name) || SERVER_RESOURCE_TYPES.contains(&name)
}

/// The FHIR endpoints with every native operation registered.
pub fn build(
    config: &Config,
    store: &StoreHandle,
    bots: &Arc<Bots>,
) -> Result<FhirServer, fhirop::registry::RegistryError> {
    let capability_store = store.clone();
    let mut builder = FhirServer::builder();
    for resource_type in SERVER_RESOURCE_TYPES {
        builder = builder.resource_type(resource_type);
    }
    builder
        .base_path(&config.base_path)
        .body_limit(config.body_limit)
        .input_limits(fhirop::format::InputLimits {
            max_parameters: config.max_parameters,
            max_json_depth: config.max_json_depth,
        })
        .server_info(ServerInfo {
            software_name: "fhirop-server".into(),
            description: "The fhirop example server".into(),
            resource_capabilities: Some(Arc::new(move || rest_capabilities(&capability_store))),
            ..ServerInfo::default()
        })
        .operations(operations![
            operations::healthcheck,
            operations::hello,
            operations::add_identifier,
            everything::everything
        ])
        .provider(BotProvider { bots: bots.clone() })
        .authorizer(Arc::new(authorize_operation))
        .build()
}

/// System operations every project member may invoke; the others need a project
/// administrator.
pub const OPEN_SYSTEM_OPERATIONS: [&str; 1] = ["healthcheck"];

/// Who may invoke an operation: at the type or instance level, read access to the type
/// (write access when it affects state); at the system level, a project administrator unless
/// the operation is open; and for a Bot-backed operation, read access to Bots (Medplum's
/// rule: you may run what you may read).
pub fn authorize_operation(
    request: &actix_web::HttpRequest,
    definition: &fhirop::definition::OperationDefinition,
    target: &fhirop::context::Target,
) -> Result<(), OperationError> {
    let access = access::Access::of(request);
    let bot_backed = definition
        .extensions
        .iter()
        .any(|extension| extension.get("url").and_then(Value::as_str) == Some(bots::IMPLEMENTATION_EXTENSION));
    if bot_backed {
        access.require_read("Bot")?;
    }
    match &target.resource_type {
        Some(resource_type) => {
            access.require_read(resource_type)?;
            if definition.affects_state {
                access.require_write(resource_type)?;
            }
            Ok(())
        }
        None if access.admin || bot_backed || OPEN_SYSTEM_OPERATIONS.contains(&definition.code.as_str()) => Ok(()),
        None => Err(OperationError::forbidden(format!(
            "system operation ${} needs a project administrator",
            definition.code
        ))),
    }
}

/// The REST interactions every resource type supports.
const INTERACTIONS: [&str; 7] = [
    "read",
    "vread",
    "update",
    "delete",
    "history-instance",
    "create",
    "search-type",
];

/// What `/metadata` says of the REST interactions: every type, with the search parameters
/// the store indexes for it.
fn rest_capabilities(store: &StoreHandle) -> Vec<Value> {
    fhirop::resource_types::R4_RESOURCE_TYPES
        .iter()
        .chain(SERVER_RESOURCE_TYPES.iter())
        .map(|resource_type| {
            let search_params: Vec<Value> = store
                .search_params(resource_type)
                .into_iter()
                .map(|(name, kind)| json!({"name": name, "type": kind}))
                .collect();
            let interactions: Vec<Value> = INTERACTIONS.iter().map(|code| json!({"code": code})).collect();
            json!({
                "type": resource_type,
                "interaction": interactions,
                "versioning": "versioned",
                "readHistory": true,
                "updateCreate": true,
                "conditionalCreate": true,
                "searchParam": search_params,
            })
        })
        .collect()
}

/// Opens the configured store: the SQLite file in the data directory, or memory.
pub async fn open_store(config: &Config) -> std::io::Result<Arc<store::ObservedStore>> {
    let store = if config.memory {
        store::SqliteStore::in_memory().await
    } else {
        std::fs::create_dir_all(&config.data_dir)?;
        store::SqliteStore::open(&config.data_dir.join("fhirop.db")).await
    }
    .map_err(std::io::Error::other)?;
    Ok(Arc::new(store::ObservedStore::new(
        Arc::new(store) as Arc<dyn ResourceStore>
    )))
}

/// A server bound to its socket and ready to run.
pub struct Running {
    /// The address it listens on (the real port when the configured one was 0).
    pub addr: std::net::SocketAddr,
    /// The base URL of the FHIR API.
    pub base_url: String,
    /// The actix server: await it to run, or use its handle to stop it.
    pub server: Server,
    /// The admin token and where it came from.
    pub admin_token: (String, auth::AdminTokenOrigin),
}

impl std::fmt::Debug for Running {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Running")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

/// Opens the store, binds the configured address and prepares the server. The socket
/// accepts connections as soon as this returns.
pub async fn start(config: &Config) -> std::io::Result<Running> {
    bots::host::start_store_runtime()?;
    let admin_token = auth::admin_token(config.admin_token.as_deref(), &config.data_dir)?;
    // In memory nothing survives a restart, tokens included.
    let signer = if config.memory {
        tokens::TokenSigner::ephemeral()
    } else {
        tokens::TokenSigner::open(&config.data_dir)?
    };
    let observed = open_store(config).await?;
    let store = StoreHandle(observed.clone());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let limits = SandboxLimits {
        memory: config.bot_memory_mib * 1024 * 1024,
        timeout: std::time::Duration::from_secs(config.bot_timeout),
        ..SandboxLimits::default()
    };
    let pool = BotPool::start(config.bot_workers.unwrap_or(cores), config.bot_queue, limits)?;
    let input_limits = fhirop::format::InputLimits {
        max_parameters: config.max_parameters,
        max_json_depth: config.max_json_depth,
    };
    let bots = Arc::new(Bots::start(
        store.clone(),
        pool,
        config.strict_operation_levels,
        input_limits,
    )?);
    let watcher = Arc::downgrade(&bots);
    observed.listen(Box::new(move |tenant, resource_type, id| {
        let Some(bots) = watcher.upgrade() else { return };
        match resource_type {
            "Bot" => bots.forget(tenant, id),
            // What a Bot may do comes from its membership and policy.
            "ProjectMembership" | "AccessPolicy" => bots.forget_tenant(tenant),
            _ => {}
        }
    }));
    let fhir = build(config, &store, &bots).map_err(std::io::Error::other)?;
    let authenticator = actix_web::web::Data::new(auth::Authenticator::new(
        admin_token.0.clone(),
        &config.base_path,
        limits::RateLimiter::new(config.rate_limit),
        signer.clone(),
        store.clone(),
    ));
    let projects = actix_web::web::Data::new(projects::Projects {
        store: store.clone(),
        signer,
        token_ttl: config.token_ttl,
    });
    bots.attach(fhir.registry().clone());
    let loaded = bots.load_all_definitions().await.map_err(std::io::Error::other)?;
    tracing::info!("{loaded} Bot operations registered");
    let listener = TcpListener::bind(config.addr)?;
    let addr = listener.local_addr()?;
    // The router tries services in turn, so the FHIR scope (every request but the admin API's)
    // goes first, unless the base path holds the admin API's paths: the scope's fallback
    // answers every path under it.
    let base_path = config.base_path.trim_end_matches('/');
    let fhir_first = !base_path.is_empty()
        && ![projects::ADMIN_PATH, projects::TOKEN_PATH]
            .iter()
            .any(|path| path.starts_with(base_path));
    let mut http = HttpServer::new(move || {
        let fhir = fhir.services_with(|scope| {
            rest::routes(
                scope.service(
                    actix_web::web::resource("/.well-known/smart-configuration")
                        .route(actix_web::web::get().to(projects::smart_configuration)),
                ),
            )
        });
        App::new()
            .wrap(auth::Authentication::new(authenticator.clone()))
            .app_data(store.clone())
            .app_data(bots.clone())
            .app_data(projects.clone())
            .configure(|services| {
                if fhir_first {
                    services.service(fhir);
                    projects::routes(services);
                } else {
                    projects::routes(services);
                    services.service(fhir);
                }
            })
    })
    .shutdown_timeout(5)
    .listen(listener)?;
    if let Some(workers) = config.workers {
        http = http.workers(workers);
    }
    Ok(Running {
        addr,
        base_url: format!("http://{addr}{}", config.base_path.trim_end_matches('/')),
        server: http.run(),
        admin_token,
    })
}
