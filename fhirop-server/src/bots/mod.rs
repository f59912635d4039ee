//! Bots: JavaScript handlers run in QuickJS, invoked directly (`$execute`) or as the
//! implementation of an OperationDefinition that carries Medplum's
//! `operationDefinition-implementation` extension (Medplum's custom operations).

pub mod audit;
mod bridge;
pub mod event;
mod heap;
pub mod host;
mod json;
pub mod operation;
pub mod output;
pub mod pool;
pub mod provider;
pub mod sandbox;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock, RwLock};
use std::time::{Duration, Instant, SystemTime};

use actix_web::http::StatusCode;
use fhirop::capability::format_instant;
use fhirop::definition::OperationDefinition;
use fhirop::operation::Operation;
use fhirop::outcome::{IssueType, OperationError};
use fhirop::registry::OperationRegistry;
use fhirop::store::{ReadResult, SearchQuery, StoreHandle, Write};
use serde_json::Value;

use audit::{AuditWriter, ExecutionRecord};
use event::BotEvent;
use host::HostSpec;
use pool::BotPool;
use sandbox::BotError;

use crate::access::Access;

/// The extension that links an OperationDefinition to the Bot implementing it.
pub const IMPLEMENTATION_EXTENSION: &str =
    "https://medplum.com/fhir/StructureDefinition/operationDefinition-implementation";

/// One deployed version of a Bot, ready to run: its bytecode, and what every execution reads
/// of the resource, worked out once per version rather than looked up in its JSON per call.
/// Kept until a write to the Bot (through any route) makes the store forget it.
#[derive(Debug)]
struct Compiled {
    /// The Bot's version the bytecode was compiled from.
    version: u64,
    bytecode: Arc<Vec<u8>>,
    /// What the Bot's own membership and policy let its `medplum` calls do.
    access: Access,
    /// `Bot/{id}`.
    reference: String,
    /// The event's `bot` member (reference and name), as JSON text.
    event_bot: String,
    /// The event's `secrets` member (the Bot's `secret` settings by name), as JSON text.
    event_secrets: String,
    /// Medplum's `runAsUser`: the Bot acts as its caller instead of as itself.
    run_as_user: bool,
    /// The Bot's own time limit, when it sets one.
    timeout: Option<Duration>,
    audit_trigger: AuditTrigger,
}

impl Compiled {
    fn new(id: &str, bot: &Value, bytecode: Arc<Vec<u8>>, access: Access) -> Compiled {
        let reference = format!("Bot/{id}");
        let event_bot = serde_json::json!({
            "reference": reference,
            "display": bot.get("name").cloned().unwrap_or(Value::Null),
        });
        Compiled {
            version: version_of(bot),
            bytecode,
            access,
            event_bot: fhirop::format::json_text(&event_bot),
            event_secrets: fhirop::format::json_text(&secrets_of(bot)),
            reference,
            run_as_user: bot.get("runAsUser").and_then(Value::as_bool).unwrap_or(false),
            timeout: bot.get("timeout").and_then(Value::as_u64).map(Duration::from_secs),
            audit_trigger: AuditTrigger::of(bot),
        }
    }
}

/// Which executions are recorded as AuditEvents, by the Bot's `auditEventTrigger` as Medplum
/// reads it: `always` (the default), `never`, `on-error`, or `on-output` (an error or console
/// output). A Bot on a hot path can spare the store a write per call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AuditTrigger {
    Always,
    Never,
    OnError,
    OnOutput,
}

impl AuditTrigger {
    fn of(bot: &Value) -> AuditTrigger {
        match bot.get("auditEventTrigger").and_then(Value::as_str) {
            Some("never") => AuditTrigger::Never,
            Some("on-error") => AuditTrigger::OnError,
            Some("on-output") => AuditTrigger::OnOutput,
            _ => AuditTrigger::Always,
        }
    }

    fn audits(self, succeeded: bool, log: &[String]) -> bool {
        match self {
            AuditTrigger::Always => true,
            AuditTrigger::Never => false,
            AuditTrigger::OnError => !succeeded,
            AuditTrigger::OnOutput => !succeeded || !log.is_empty(),
        }
    }
}

fn version_of(bot: &Value) -> u64 {
    bot.pointer("/meta/versionId")
        .and_then(Value::as_str)
        .and_then(|version| version.parse().ok())
        .unwrap_or(0)
}

/// The Bot service: compiles, caches and runs Bots, and keeps the operations they implement
/// registered.
#[derive(Debug)]
pub struct Bots {
    pool: BotPool,
    store: StoreHandle,
    audit: AuditWriter,
    registry: OnceLock<Arc<OperationRegistry>>,
    /// By tenant, then by Bot id: found by the borrowed names, without building a key.
    compiled: RwLock<HashMap<String, HashMap<String, Arc<Compiled>>>>,
    strict_levels: bool,
    /// The server's input limits, for the operations Bots call in process.
    limits: fhirop::format::InputLimits,
}

/// What a Bot returned.
#[derive(Debug, Clone)]
pub struct BotResult {
    /// The handler's value as JSON text, as the sandbox serialized it (`null` for `undefined`).
    pub json: String,
}

fn bot_error(error: &BotError) -> OperationError {
    match error {
        BotError::Syntax { .. } | BotError::Thrown { .. } | BotError::NoHandler => {
            OperationError::new(StatusCode::BAD_REQUEST, IssueType::Processing, error.to_string())
        }
        BotError::Timeout(_) => OperationError::new(StatusCode::GATEWAY_TIMEOUT, IssueType::Timeout, error.to_string()),
        BotError::OutOfMemory => OperationError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::TooCostly,
            error.to_string(),
        ),
        BotError::Engine(_) => OperationError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            IssueType::Exception,
            error.to_string(),
        ),
    }
}

/// The `Bot/{id}` an OperationDefinition names in its implementation extension.
pub fn implementing_bot(definition: &Value) -> Option<Result<String, OperationError>> {
    let extension = definition
        .get("extension")?
        .as_array()?
        .iter()
        .find(|extension| extension.get("url").and_then(Value::as_str) == Some(IMPLEMENTATION_EXTENSION))?;
    let reference = extension
        .get("valueReference")
        .and_then(|reference| reference.get("reference"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    Some(match reference.strip_prefix("Bot/") {
        Some(id) if fhirop::types::lexical::is_id(id) => Ok(id.to_owned()),
        _ => Err(OperationError::invalid(format!(
            "the implementation extension must reference Bot/{{id}}, not '{reference}'"
        ))),
    })
}

impl Bots {
    /// The service, with its worker pool and AuditEvent writer running.
    pub fn start(
        store: StoreHandle,
        pool: BotPool,
        strict_levels: bool,
        limits: fhirop::format::InputLimits,
    ) -> std::io::Result<Bots> {
        Ok(Bots {
            pool,
            audit: AuditWriter::start(store.clone())?,
            store,
            registry: OnceLock::new(),
            compiled: RwLock::default(),
            strict_levels,
            limits,
        })
    }

    /// Connects the registry Bot operations are registered in (once the server is built).
    pub fn attach(&self, registry: Arc<OperationRegistry>) {
        let _ = self.registry.set(registry);
    }

    fn registry(&self) -> Result<&Arc<OperationRegistry>, OperationError> {
        self.registry
            .get()
            .ok_or_else(|| OperationError::internal("the Bot service is not attached to a registry"))
    }

    async fn read_bot(&self, tenant: &str, id: &str) -> Result<Value, OperationError> {
        match self.store.read(tenant, "Bot", id).await? {
            ReadResult::Found(stored) => stored
                .resource
                .ok_or_else(|| OperationError::not_found(format!("Bot/{id} is not known"))),
            _ => Err(OperationError::not_found(format!("Bot/{id} is not known"))),
        }
    }

    /// Compiles `source`; a syntax error is a 400 naming the engine's message and line.
    async fn compile(&self, source: String) -> Result<Arc<Vec<u8>>, OperationError> {
        match self.pool.compile(source).await? {
            Ok(bytecode) => Ok(Arc::new(bytecode)),
            Err(error) => Err(bot_error(&error)),
        }
    }

    /// Deploys code to `Bot/{id}`: compiled first, so a syntax error leaves the deployed code
    /// live; then stored and swapped in for the next execution.
    pub async fn deploy(&self, tenant: &str, id: &str, source: String) -> Result<(), OperationError> {
        let mut bot = self.read_bot(tenant, id).await?;
        let bytecode = self.compile(source.clone()).await?;
        bot["code"] = Value::String(source);
        let write = Write::Update {
            resource: bot,
            if_match: None,
        };
        let mut results = self.store.transaction(tenant, vec![write]).await?;
        if let Some(bot) = results
            .pop()
            .and_then(|result| result.stored)
            .and_then(|stored| stored.resource)
        {
            let access = self.bot_access(tenant, id).await?;
            self.remember(tenant, id, Compiled::new(id, &bot, bytecode, access));
        }
        Ok(())
    }

    /// Caches a compiled version unless a newer one is cached already (an execution that read
    /// the Bot before a redeploy must not put the old code back).
    fn remember(&self, tenant: &str, id: &str, compiled: Compiled) -> Arc<Compiled> {
        let compiled = Arc::new(compiled);
        if let Ok(mut cache) = self.compiled.write() {
            let bots = cache.entry(tenant.to_owned()).or_default();
            if bots.get(id).is_none_or(|cached| cached.version < compiled.version) {
                bots.insert(id.to_owned(), compiled.clone());
            }
        }
        compiled
    }

    /// What `Bot/{id}`'s membership and its AccessPolicy grant. A Bot without a membership
    /// (created through REST rather than the admin API) acts with the project's full access,
    /// and never beyond its project.
    async fn bot_access(&self, tenant: &str, id: &str) -> Result<Access, OperationError> {
        let user = format!("Bot/{id}");
        let Some(membership) = crate::projects::membership_of(&self.store, tenant, &user).await? else {
            return Ok(Access::administrator());
        };
        let membership = membership.resource.unwrap_or_default();
        let policy = match membership
            .pointer("/accessPolicy/reference")
            .and_then(Value::as_str)
            .and_then(|reference| reference.strip_prefix("AccessPolicy/"))
        {
            Some(policy) => match self.store.read(tenant, "AccessPolicy", policy).await? {
                ReadResult::Found(stored) => stored.resource,
                _ => Some(serde_json::json!({"resourceType": "AccessPolicy", "resource": []})),
            },
            None => None,
        };
        Ok(Access::from_membership(&membership, policy.as_ref()))
    }

    /// Drops every cached Bot of `tenant` (its memberships or policies changed).
    pub fn forget_tenant(&self, tenant: &str) {
        if let Ok(mut compiled) = self.compiled.write() {
            compiled.remove(tenant);
        }
    }

    /// Drops the cached version of `Bot/{id}` (the store saw it written).
    pub fn forget(&self, tenant: &str, id: &str) {
        if let Ok(mut compiled) = self.compiled.write()
            && let Some(bots) = compiled.get_mut(tenant)
        {
            bots.remove(id);
        }
    }

    /// The current version of `Bot/{id}`, compiled: from the cache, or read and compiled
    /// (after a restart, or after a write made the cache forget it).
    async fn current(&self, tenant: &str, id: &str) -> Result<Arc<Compiled>, OperationError> {
        let cached = self
            .compiled
            .read()
            .ok()
            .and_then(|compiled| compiled.get(tenant)?.get(id).cloned());
        if let Some(cached) = cached {
            return Ok(cached);
        }
        let bot = self.read_bot(tenant, id).await?;
        let source = bot
            .get("code")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                OperationError::invalid(format!(
                    "Bot/{id} has no deployed code: POST its code to Bot/{id}/$deploy"
                ))
            })?
            .to_owned();
        let bytecode = self.compile(source).await?;
        let access = self.bot_access(tenant, id).await?;
        Ok(self.remember(tenant, id, Compiled::new(id, &bot, bytecode, access)))
    }

    /// Runs `Bot/{id}` with `event` (its `bot` and `secrets` filled in here) and records an
    /// AuditEvent.
    pub async fn execute(
        &self,
        tenant: &str,
        id: &str,
        mut event: BotEvent,
        base_url: &str,
        requester: Option<String>,
        caller_access: Access,
    ) -> Result<BotResult, OperationError> {
        let bot = self.current(tenant, id).await?;
        let access = if bot.run_as_user {
            caller_access
        } else {
            bot.access.clone()
        };
        event.set_json("bot", bot.event_bot.clone());
        event.set_json("secrets", bot.event_secrets.clone());
        let timeout = bot.timeout.unwrap_or(self.pool.limits().timeout);
        let host = HostSpec {
            store: self.store.clone(),
            tenant: tenant.to_owned(),
            base_url: base_url.to_owned(),
            access,
            caller: bot.reference.clone(),
            registry: self.registry.get().cloned(),
            limits: self.limits,
        };
        let started = (SystemTime::now(), Instant::now());
        let execution = self
            .pool
            .run(bot.bytecode.clone(), event.to_json(), host, timeout)
            .await?;
        let (succeeded, error, value) = match execution.value {
            Ok(value) => (true, None, Some(value)),
            Err(error) => (false, Some(error), None),
        };
        let log = execution.log;
        if bot.audit_trigger.audits(succeeded, &log) {
            self.audit.record(ExecutionRecord {
                tenant: tenant.to_owned(),
                bot: bot.reference.clone(),
                requester,
                start: format_instant(started.0),
                end: format_instant(SystemTime::now()),
                succeeded,
                error: error.as_ref().map(ToString::to_string),
                log,
                duration_ms: started.1.elapsed().as_millis(),
            });
        }
        if let Some(error) = error {
            return Err(bot_error(&error));
        }
        Ok(BotResult {
            json: value.unwrap_or_else(|| "null".to_owned()),
        })
    }

    /// Checks an OperationDefinition before it is stored: when it names a Bot, the Bot must
    /// exist and the code must not clash with another operation at the same level and type.
    /// Returns the definition to register.
    pub async fn check_definition(
        &self,
        tenant: &str,
        json: &Value,
    ) -> Result<Option<(OperationDefinition, String)>, OperationError> {
        let Some(bot) = implementing_bot(json) else {
            return Ok(None);
        };
        let bot = bot?;
        self.read_bot(tenant, &bot).await.map_err(|_| {
            OperationError::invalid(format!(
                "the implementation extension references Bot/{bot}, which does not exist"
            ))
        })?;
        let definition = OperationDefinition::from_json(json).map_err(OperationError::invalid)?;
        let id = json.get("id").and_then(Value::as_str);
        if let Some(existing) = self.registry()?.find_clash(tenant, &definition, id) {
            return Err(OperationError::new(
                StatusCode::BAD_REQUEST,
                IssueType::Duplicate,
                format!(
                    "operation ${} is already implemented by {} at the same level and resource type",
                    definition.code, existing.definition.id
                ),
            ));
        }
        Ok(Some((definition, bot)))
    }

    /// Registers (or replaces) the operation a stored definition describes.
    /// The operation is `tenant`'s alone: other projects neither see nor invoke it.
    pub fn register(
        self: &Arc<Self>,
        tenant: &str,
        definition: OperationDefinition,
        bot: String,
    ) -> Result<(), OperationError> {
        let id = definition.id.clone();
        let mut operation = Operation::new(definition, operation::handler(self.clone(), bot));
        operation.lenient_levels = !self.strict_levels;
        operation.tenant = Some(tenant.to_owned());
        self.registry()?
            .replace(Some(&id), operation)
            .map_err(|error| OperationError::invalid(error.to_string()))
    }

    /// Removes the operation of a deleted definition.
    pub fn unregister(&self, id: &str) -> Result<(), OperationError> {
        self.registry()?.remove(id);
        Ok(())
    }

    /// Registers every stored Bot-backed OperationDefinition of every project (at start-up).
    pub async fn load_all_definitions(self: &Arc<Self>) -> Result<usize, OperationError> {
        let mut loaded = 0;
        for tenant in self.store.tenants_with("OperationDefinition").await? {
            loaded += self.load_definitions(&tenant).await?;
        }
        Ok(loaded)
    }

    /// Registers every stored Bot-backed OperationDefinition of `tenant`.
    pub async fn load_definitions(self: &Arc<Self>, tenant: &str) -> Result<usize, OperationError> {
        let mut query = SearchQuery {
            resource_type: "OperationDefinition".into(),
            count: 500,
            ..SearchQuery::default()
        };
        let mut loaded = 0;
        loop {
            let result = self.store.search(tenant, &query).await?;
            for stored in &result.resources {
                let Some(json) = &stored.resource else { continue };
                let Some(Ok(bot)) = implementing_bot(json) else {
                    continue;
                };
                match OperationDefinition::from_json(json) {
                    Ok(definition) => match self.register(tenant, definition, bot) {
                        Ok(()) => loaded += 1,
                        Err(error) => tracing::warn!("OperationDefinition/{} not registered: {error}", stored.id),
                    },
                    Err(error) => tracing::warn!("OperationDefinition/{} not registered: {error}", stored.id),
                }
            }
            if !result.has_more {
                return Ok(loaded);
            }
            query.offset += query.count;
        }
    }
}

/// Medplum's `event.secrets`: the Bot's `secret` settings (name and `value[x]`) keyed by name.
fn secrets_of(bot: &Value) -> Value {
    let mut secrets = serde_json::Map::new();
    for secret in bot.get("secret").and_then(Value::as_array).into_iter().flatten() {
        if let Some(name) = secret.get("name").and_then(Value::as_str) {
            secrets.insert(name.to_owned(), secret.clone());
        }
    }
    Value::Object(secrets)
}
