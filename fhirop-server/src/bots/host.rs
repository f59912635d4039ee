//! The host side of a Bot's `medplum` object: Medplum's client calls answered in process by
//! this server's store, with no HTTP round trip and no token.

use std::cell::RefCell;
use std::future::Future;
use std::sync::OnceLock;

use fhirop::outcome::OperationError;
use fhirop::store::{ReadResult, StoreHandle, Write};
use serde_json::Value;

use super::sandbox::Host;
use crate::access::Access;
use crate::rest::{check_resource, owned_query_pairs, search_query, searchset};
use crate::transaction::process_bundle;

/// The runtime that runs store calls from threads outside the HTTP workers (Bot workers, the
/// AuditEvent writer). It keeps running, because a database connection goes back to its pool
/// on a task of the runtime that used it: a runtime that only runs while a caller blocks on
/// it would strand connections.
/// Built once, inside `get_or_init`, so servers starting together never build a second one
/// (which would then be dropped inside async code).
static STORE_RUNTIME: OnceLock<Result<tokio::runtime::Runtime, String>> = OnceLock::new();

fn store_runtime() -> Result<&'static tokio::runtime::Runtime, String> {
    STORE_RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name("fhirop-store")
                .enable_all()
                .build()
                .map_err(|error| error.to_string())
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// Starts the store runtime; the server calls it at start-up, before any Bot runs.
pub fn start_store_runtime() -> std::io::Result<()> {
    store_runtime().map(drop).map_err(std::io::Error::other)
}

/// Runs a store call to completion on the store runtime.
pub fn block_on_store<T>(future: impl Future<Output = Result<T, OperationError>>) -> Result<T, OperationError> {
    match store_runtime() {
        Ok(runtime) => runtime.block_on(future),
        Err(error) => Err(OperationError::internal(format!(
            "the store runtime could not start: {error}"
        ))),
    }
}

/// Everything a worker needs to answer a Bot's calls (sent with the job).
#[derive(Debug, Clone)]
pub struct HostSpec {
    /// The store.
    pub store: StoreHandle,
    /// Whose data the Bot sees.
    pub tenant: String,
    /// The server's base URL (for Bundle links).
    pub base_url: String,
    /// What the Bot's calls may do: its own membership's access, or its caller's with
    /// `runAsUser`.
    pub access: Access,
    /// Who the calls are made as (`Bot/{id}`).
    pub caller: String,
    /// The operations, for `medplum.get`/`post` on `$operation` URLs.
    pub registry: Option<std::sync::Arc<fhirop::registry::OperationRegistry>>,
    /// The server's input limits, which apply to in-process operation calls too.
    pub limits: fhirop::format::InputLimits,
}

/// The [`Host`] of one execution.
#[derive(Debug)]
pub struct StoreHost {
    spec: HostSpec,
    log: RefCell<Vec<String>>,
}

impl StoreHost {
    /// A host for one execution.
    pub fn new(spec: HostSpec) -> StoreHost {
        StoreHost {
            spec,
            log: RefCell::default(),
        }
    }

    /// The console lines captured so far.
    pub fn take_log(&self) -> Vec<String> {
        std::mem::take(&mut *self.log.borrow_mut())
    }

    /// Answers one call with its value's JSON text.
    async fn dispatch(&self, method: &str, args: Value) -> Result<String, OperationError> {
        let arg = |index: usize| args.get(index).cloned().unwrap_or(Value::Null);
        let text = |index: usize| -> Result<String, OperationError> {
            args.get(index)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| {
                    OperationError::invalid(format!("medplum call '{method}' needs a string argument {}", index + 1))
                })
        };
        let HostSpec {
            store,
            tenant,
            base_url,
            access,
            ..
        } = &self.spec;
        // The call's resource type: the first argument's text, or its resource's type.
        if method == "http" {
            return Box::pin(self.http(&text(0)?, &text(1)?, arg(2))).await;
        }
        let target = args.get(0).and_then(|first| {
            first
                .as_str()
                .map(str::to_owned)
                .or_else(|| first.get("resourceType").and_then(Value::as_str).map(str::to_owned))
        });
        if let Some(resource_type) = target.as_deref().filter(|_| method != "batch") {
            match method {
                "read" | "search" | "search-resources" => access.require_read(resource_type)?,
                _ => access.require_write(resource_type)?,
            }
        }
        let value = match method {
            // searchResources and searchOne keep only the resources, and hand the stored texts
            // on as they are: no Bundle, and no resource parsed and serialized on the way. This
            // worker waits for the page either way, so the store may read it on this thread.
            "search-resources" => {
                let resource_type = text(0)?;
                let pairs = owned_query_pairs(text(1)?.as_bytes());
                let query = search_query(&resource_type, pairs, false)?;
                if let Some(found) = store.search_resources_json_blocking(tenant, &query) {
                    return Ok(found?);
                }
                return Ok(store.search_resources_json(tenant, &query).await?);
            }
            "read" => read(store, tenant, &text(0)?, &text(1)?).await,
            "search" => {
                let resource_type = text(0)?;
                let pairs = owned_query_pairs(text(1)?.as_bytes());
                let query = search_query(&resource_type, pairs, false)?;
                let result = store.search(tenant, &query).await?;
                Ok(searchset(base_url, &query, result).into_json())
            }
            "create" => {
                let mut resource = arg(0);
                checked_type(&resource)?;
                resource["id"] = Value::String(crate::store::new_id());
                write_one(store, tenant, Write::Create { resource }).await
            }
            "update" => {
                let resource = arg(0);
                checked_type(&resource)?;
                if resource.get("id").and_then(Value::as_str).is_none() {
                    return Err(OperationError::invalid("updateResource needs a resource with an id"));
                }
                write_one(
                    store,
                    tenant,
                    Write::Update {
                        resource,
                        if_match: None,
                    },
                )
                .await
            }
            "upsert" => {
                let mut resource = arg(0);
                let resource_type = checked_type(&resource)?;
                let pairs = owned_query_pairs(text(1)?.as_bytes());
                let mut query = search_query(&resource_type, pairs, true)?;
                query.count = 2;
                let found = store.search(tenant, &query).await?.resources;
                match found.as_slice() {
                    [] => {
                        resource["id"] = Value::String(crate::store::new_id());
                        write_one(store, tenant, Write::Create { resource }).await
                    }
                    [existing] => {
                        resource["id"] = Value::String(existing.id.clone());
                        write_one(
                            store,
                            tenant,
                            Write::Update {
                                resource,
                                if_match: None,
                            },
                        )
                        .await
                    }
                    _ => Err(OperationError::new(
                        actix_web::http::StatusCode::PRECONDITION_FAILED,
                        fhirop::outcome::IssueType::Duplicate,
                        "upsertResource's query matches several resources",
                    )),
                }
            }
            "patch" => {
                let (resource_type, id) = (text(0)?, text(1)?);
                let mut resource = read(store, tenant, &resource_type, &id).await?;
                let patch: json_patch::Patch = serde_json::from_value(arg(2))
                    .map_err(|error| OperationError::invalid(format!("not a JSON Patch: {error}")))?;
                json_patch::patch(&mut resource, &patch)
                    .map_err(|error| OperationError::invalid(format!("the JSON Patch failed: {error}")))?;
                check_resource(&resource, &resource_type)?;
                resource["id"] = Value::String(id);
                write_one(
                    store,
                    tenant,
                    Write::Update {
                        resource,
                        if_match: None,
                    },
                )
                .await
            }
            "delete" => {
                let (resource_type, id) = (text(0)?, text(1)?);
                read(store, tenant, &resource_type, &id).await?;
                store
                    .transaction(tenant, vec![Write::Delete { resource_type, id }])
                    .await?;
                Ok(Value::Null)
            }
            "batch" => process_bundle(store, tenant, access, arg(0)).await,
            other => Err(OperationError::invalid(format!("medplum.{other} is not supported"))),
        }?;
        Ok(fhirop::format::json_text(&value))
    }
}

/// The type of a resource a Bot wants stored, once it passes the input rules REST applies.
fn checked_type(resource: &Value) -> Result<String, OperationError> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| OperationError::invalid("the resource has no resourceType"))?;
    check_resource(resource, &resource_type)?;
    Ok(resource_type)
}

async fn read(store: &StoreHandle, tenant: &str, resource_type: &str, id: &str) -> Result<Value, OperationError> {
    match store.read(tenant, resource_type, id).await? {
        ReadResult::Found(stored) => stored
            .resource
            .ok_or_else(|| OperationError::not_found(format!("{resource_type}/{id} is not known"))),
        ReadResult::Deleted(_) => Err(OperationError::new(
            actix_web::http::StatusCode::GONE,
            fhirop::outcome::IssueType::Deleted,
            format!("{resource_type}/{id} was deleted"),
        )),
        ReadResult::NotFound => Err(OperationError::not_found(format!("{resource_type}/{id} is not known"))),
    }
}

async fn write_one(store: &StoreHandle, tenant: &str, write: Write) -> Result<Value, OperationError> {
    let mut results = store.transaction(tenant, vec![write]).await?;
    results
        .pop()
        .and_then(|result| result.stored)
        .and_then(|stored| stored.resource)
        .ok_or_else(|| OperationError::internal("the store returned nothing for a write"))
}

impl StoreHost {
    /// `medplum.get/post/put/delete` on this server's own URLs, answered in process: REST
    /// paths by the store calls above, `$operation` paths by the operation itself (its
    /// binding, validation and access rules included).
    /// The answer's JSON text, as [`StoreHost::dispatch`] gives it.
    async fn http(&self, method: &str, url: &str, body: Value) -> Result<String, OperationError> {
        let HostSpec { base_url, .. } = &self.spec;
        let relative = url.strip_prefix(base_url.as_str()).unwrap_or(url);
        if relative.contains("://") {
            return Err(OperationError::invalid(format!(
                "Bots call this server's own URLs only ({base_url}/...), not '{url}'"
            )));
        }
        let (path, query) = relative.split_once('?').unwrap_or((relative, ""));
        let segments: Vec<&str> = path.split('/').filter(|segment| !segment.is_empty()).collect();
        if segments.last().is_some_and(|segment| segment.starts_with('$')) {
            return Ok(fhirop::format::json_text(
                &self.operation(method, &segments, query, body).await?,
            ));
        }
        let (call, args) = match (method, segments.as_slice()) {
            ("GET", [resource_type]) => ("search", serde_json::json!([resource_type, query])),
            ("POST", [resource_type, "_search"]) => ("search", serde_json::json!([resource_type, query])),
            ("POST", [resource_type]) if body.get("resourceType").and_then(Value::as_str) == Some(*resource_type) => {
                ("create", serde_json::json!([body]))
            }
            ("GET", [resource_type, id]) => ("read", serde_json::json!([resource_type, id])),
            ("PUT", [resource_type, id])
                if body.get("resourceType").and_then(Value::as_str) == Some(*resource_type)
                    && body.get("id").and_then(Value::as_str) == Some(*id) =>
            {
                ("update", serde_json::json!([body]))
            }
            ("DELETE", [resource_type, id]) => ("delete", serde_json::json!([resource_type, id])),
            ("POST", []) => ("batch", serde_json::json!([body])),
            _ => {
                return Err(OperationError::not_found(format!(
                    "{method} {url} is not something a Bot can call on this server"
                )));
            }
        };
        Box::pin(self.dispatch(call, args)).await
    }

    async fn operation(
        &self,
        method: &str,
        segments: &[&str],
        query: &str,
        body: Value,
    ) -> Result<Value, OperationError> {
        use fhirop::context::{BaseUrl, Caller, Principal, Target};
        use fhirop::definition::Level;
        use fhirop::registry::Resolution;
        let HostSpec {
            store,
            tenant,
            base_url,
            access,
            caller,
            registry,
            limits,
        } = &self.spec;
        let registry = registry
            .as_ref()
            .ok_or_else(|| OperationError::internal("this Bot host has no operation registry"))?;
        let code = segments.last().unwrap_or(&"").trim_start_matches('$');
        let target = match segments {
            [_] => Target {
                level: Level::System,
                resource_type: None,
                id: None,
                version_id: None,
            },
            [resource_type, _] => Target {
                level: Level::Type,
                resource_type: Some((*resource_type).to_owned().into()),
                id: None,
                version_id: None,
            },
            [resource_type, id, _] => Target {
                level: Level::Instance,
                resource_type: Some((*resource_type).to_owned().into()),
                id: Some((*id).to_owned()),
                version_id: None,
            },
            _ => {
                return Err(OperationError::not_found(format!(
                    "'{}' is not an operation URL",
                    segments.join("/")
                )));
            }
        };
        let operation = match registry
            .snapshot()
            .resolve(tenant, target.level, target.resource_type.as_deref(), code)
        {
            Resolution::Found(operation) => operation.clone(),
            _ => {
                return Err(OperationError::not_found(format!(
                    "operation ${code} is not known here"
                )));
            }
        };
        let method = actix_web::http::Method::from_bytes(method.as_bytes())
            .map_err(|_| OperationError::invalid(format!("'{method}' is not an HTTP method")))?;
        let request = actix_web::test::TestRequest::default()
            .method(method)
            .uri(&format!("/{}?{query}", segments.join("/")))
            .insert_header(("content-type", "application/fhir+json"))
            .app_data(store.clone())
            .app_data(Principal {
                tenant: tenant.clone().into(),
                caller: Caller {
                    reference: caller.clone().into(),
                },
                grants: Some(std::sync::Arc::new(access.clone())),
            })
            .to_http_request();
        crate::authorize_operation(&request, &operation.definition, &target)?;
        let body = (!body.is_null()).then(|| actix_web::web::Bytes::from(fhirop::format::json_text(&body)));
        let output = fhirop::server::call_operation(
            &operation,
            &request,
            target,
            BaseUrl::new(Some(base_url.clone()), ""),
            body,
            *limits,
        )
        .await?;
        match output {
            fhirop::output::OperationOutput::Http(response) => {
                let bytes = actix_web::body::to_bytes(response.into_body())
                    .await
                    .map_err(|_| OperationError::internal("the operation's response could not be read"))?;
                Ok(serde_json::from_slice(&bytes)
                    .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned())))
            }
            body => body
                .into_json()
                .unwrap_or_else(|| Err(OperationError::internal("the operation produced no body"))),
        }
    }
}

impl Host for StoreHost {
    fn call(&self, method: &str, args: Value) -> Result<String, (String, Value)> {
        block_on_store(self.dispatch(method, args)).map_err(|error| {
            let message = error
                .outcome
                .issues
                .first()
                .and_then(|issue| issue.diagnostics.clone().or_else(|| issue.details.clone()))
                .unwrap_or_else(|| error.to_string());
            (message, error.outcome.to_json())
        })
    }

    fn log(&self, level: &str, text: String) {
        self.log.borrow_mut().push(format!("{level}: {text}"));
    }
}
