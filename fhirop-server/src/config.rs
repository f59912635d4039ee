//! The server's configuration: one struct, every flag also readable from the environment.
//! Defaults live here only; tests build a `Config` directly.

use std::net::SocketAddr;

use clap::Parser;

/// The fhirop example server.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "fhirop-server",
    version,
    about = "A FHIR R4 server whose operations are written with fhirop"
)]
pub struct Config {
    /// The address to listen on (port 0 picks a free port).
    #[arg(long, env = "FHIROP_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,

    /// The path the FHIR API is served under.
    #[arg(long, env = "FHIROP_BASE_PATH", default_value = "/fhir/R4")]
    pub base_path: String,

    /// The largest request body accepted, in bytes (larger → 413).
    #[arg(long, env = "FHIROP_BODY_LIMIT", default_value_t = fhirop::server::DEFAULT_BODY_LIMIT)]
    pub body_limit: usize,

    /// Where the database lives (`<data-dir>/fhirop.db`).
    #[arg(long, env = "FHIROP_DATA_DIR", default_value = "./data")]
    pub data_dir: std::path::PathBuf,

    /// Keep everything in memory and lose it at exit (tests, benchmarks, demos).
    #[arg(long, env = "FHIROP_MEMORY")]
    pub memory: bool,

    /// The admin token (default: generated on first start into `<data-dir>/admin-token`).
    #[arg(long, env = "FHIROP_ADMIN_TOKEN", hide_env_values = true)]
    pub admin_token: Option<String>,

    /// Requests per second per client (a burst of one second's worth); beyond → 429 with
    /// Retry-After. 0 turns the limit off.
    #[arg(long, env = "FHIROP_RATE_LIMIT", default_value_t = 1000)]
    pub rate_limit: u32,

    /// The most `Parameters.parameter` entries a request may carry (beyond → 400 too-costly).
    #[arg(long, env = "FHIROP_MAX_PARAMETERS", default_value_t = fhirop::binding::MAX_PARAMETER_ENTRIES)]
    pub max_parameters: usize,

    /// The deepest JSON nesting a request body may have (beyond → 400 structure).
    #[arg(long, env = "FHIROP_MAX_JSON_DEPTH", default_value_t = fhirop::format::MAX_JSON_DEPTH)]
    pub max_json_depth: usize,

    /// How long an access token from /oauth2/token lives, in seconds.
    #[arg(long, env = "FHIROP_TOKEN_TTL", default_value_t = 3600)]
    pub token_ttl: u64,

    /// Threads that run Bots (default: one per CPU core).
    #[arg(long, env = "FHIROP_BOT_WORKERS")]
    pub bot_workers: Option<usize>,

    /// Bot executions that may wait for a worker; beyond that → 503 with Retry-After.
    #[arg(long, env = "FHIROP_BOT_QUEUE", default_value_t = 256)]
    pub bot_queue: usize,

    /// A Bot's time limit in seconds when the Bot sets no `timeout`.
    #[arg(long, env = "FHIROP_BOT_TIMEOUT", default_value_t = 10)]
    pub bot_timeout: u64,

    /// A Bot's QuickJS heap limit in MiB.
    #[arg(long, env = "FHIROP_BOT_MEMORY", default_value_t = 64)]
    pub bot_memory_mib: usize,

    /// Answer Bot operations only at the levels their OperationDefinition declares (Medplum
    /// answers at every level).
    #[arg(long, env = "FHIROP_STRICT_OPERATION_LEVELS")]
    pub strict_operation_levels: bool,

    /// HTTP worker threads (default: one per CPU core).
    #[arg(long, env = "FHIROP_WORKERS")]
    pub workers: Option<usize>,
}

/// The admin token of [`Config::for_tests`].
pub const TEST_ADMIN_TOKEN: &str = "test-admin-token";

impl Config {
    /// A configuration for tests: a free loopback port and the defaults otherwise.
    pub fn for_tests() -> Config {
        Config {
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            base_path: "/fhir/R4".into(),
            body_limit: fhirop::server::DEFAULT_BODY_LIMIT,
            data_dir: std::path::PathBuf::from("./data"),
            memory: true,
            admin_token: Some(TEST_ADMIN_TOKEN.to_owned()),
            rate_limit: 1000,
            token_ttl: 3600,
            max_parameters: fhirop::binding::MAX_PARAMETER_ENTRIES,
            max_json_depth: fhirop::format::MAX_JSON_DEPTH,
            bot_workers: Some(2),
            bot_queue: 256,
            bot_timeout: 10,
            bot_memory_mib: 64,
            strict_operation_levels: false,
            workers: Some(2),
        }
    }
}
