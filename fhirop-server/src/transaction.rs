//! Batch and transaction Bundles (R4 http.html#transaction): a transaction is planned whole —
//! ids chosen, `urn:uuid:` full URLs and conditional references (`Type?query`) resolved,
//! conditional creates (`ifNoneExist`) matched — and then written in one store transaction.

use std::collections::HashMap;

use actix_web::http::StatusCode;
use fhirop::outcome::{IssueType, OperationError};
use fhirop::store::{ReadResult, StoreHandle, StoredResource, Write, WriteResult};
use fhirop::types::lexical::is_id;
use serde_json::{Value, json};

use crate::access::Access;
use crate::rest::{check_resource, owned_query_pairs, search_query};

/// What one entry will do.
enum Plan {
    /// Write (create, update or delete).
    Write(Write),
    /// `ifNoneExist` matched this resource: nothing is written.
    Existing { resource_type: String, id: String },
    /// A read, done after the writes.
    Read { url: String },
}

/// `Type?query` with its parameters decoded and sorted, so that two spellings of one search
/// (percent-encoded or not, in another order) are one key.
fn conditional_key(conditional: &str) -> String {
    let (resource_type, query) = conditional.split_once('?').unwrap_or((conditional, ""));
    let mut pairs: Vec<(String, String)> = owned_query_pairs(query.as_bytes());
    pairs.sort();
    let query: Vec<String> = pairs
        .into_iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect();
    format!("{resource_type}?{}", query.join("&"))
}

fn precondition_failed(message: String) -> OperationError {
    OperationError::new(StatusCode::PRECONDITION_FAILED, IssueType::Duplicate, message)
}

/// Finds the ids matching `Type?query` (at most two, enough to tell one from many).
async fn search_ids(
    store: &StoreHandle,
    tenant: &str,
    conditional: &str,
) -> Result<(String, Vec<String>), OperationError> {
    let (resource_type, query) = conditional
        .split_once('?')
        .ok_or_else(|| OperationError::invalid(format!("'{conditional}' is not a conditional URL (Type?query)")))?;
    let pairs = owned_query_pairs(query.as_bytes());
    let mut search = search_query(resource_type, pairs, true)?;
    if search.params.is_empty() {
        return Err(OperationError::invalid(format!(
            "'{conditional}' has no search criteria"
        )));
    }
    search.count = 2;
    search.want_total = false;
    let result = store.search(tenant, &search).await?;
    Ok((
        resource_type.to_owned(),
        result.resources.into_iter().map(|stored| stored.id).collect(),
    ))
}

fn entry_request(entry: &Value, index: usize) -> Result<(&str, &str), OperationError> {
    let request = entry
        .get("request")
        .ok_or_else(|| OperationError::invalid(format!("Bundle.entry[{index}] has no request")))?;
    let method = request.get("method").and_then(Value::as_str).unwrap_or_default();
    let url = request.get("url").and_then(Value::as_str).unwrap_or_default();
    if method.is_empty() || url.is_empty() {
        return Err(OperationError::invalid(format!(
            "Bundle.entry[{index}].request needs a method and a url"
        )));
    }
    Ok((method, url.trim_start_matches('/')))
}

/// Plans a transaction: every id and reference settled before anything is written.
struct Planner<'a> {
    access: &'a Access,
    store: &'a StoreHandle,
    tenant: &'a str,
    /// `fullUrl` (and `urn:uuid:`) → `Type/id`.
    aliases: HashMap<String, String>,
    /// `Type?query` of planned conditional creates → `Type/id`, so references in the same
    /// Bundle resolve to resources it creates (Synthea's practitioners, for instance).
    pending_conditionals: HashMap<String, String>,
}

impl Planner<'_> {
    async fn plan(&mut self, index: usize, entry: &Value) -> Result<Plan, OperationError> {
        let (method, url) = entry_request(entry, index)?;
        let target_type = url.split(['/', '?']).next().unwrap_or_default();
        match method {
            "GET" => self.access.require_read(target_type)?,
            _ => self.access.require_write(target_type)?,
        }
        let full_url = entry.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
        match method {
            "POST" => {
                let mut resource = entry
                    .get("resource")
                    .cloned()
                    .ok_or_else(|| OperationError::invalid(format!("Bundle.entry[{index}] has no resource")))?;
                check_resource(&resource, url)?;
                let if_none_exist = entry
                    .get("request")
                    .and_then(|request| request.get("ifNoneExist"))
                    .and_then(Value::as_str);
                if let Some(criteria) = if_none_exist {
                    let conditional = format!("{url}?{criteria}");
                    if let Some(existing) = self.pending_conditionals.get(&conditional_key(&conditional)).cloned() {
                        self.alias(full_url, &existing);
                        let (resource_type, id) = existing.split_once('/').unwrap_or_default();
                        return Ok(Plan::Existing {
                            resource_type: resource_type.to_owned(),
                            id: id.to_owned(),
                        });
                    }
                    let (resource_type, ids) = search_ids(self.store, self.tenant, &conditional).await?;
                    match ids.as_slice() {
                        [] => {}
                        [id] => {
                            self.alias(full_url, &format!("{resource_type}/{id}"));
                            return Ok(Plan::Existing {
                                resource_type,
                                id: id.clone(),
                            });
                        }
                        _ => {
                            return Err(precondition_failed(format!(
                                "ifNoneExist '{criteria}' matches several {url}"
                            )));
                        }
                    }
                    let id = crate::store::new_id();
                    self.pending_conditionals
                        .insert(conditional_key(&conditional), format!("{url}/{id}"));
                    resource["id"] = Value::String(id.clone());
                    self.alias(full_url, &format!("{url}/{id}"));
                    return Ok(Plan::Write(Write::Create { resource }));
                }
                let id = crate::store::new_id();
                resource["id"] = Value::String(id.clone());
                self.alias(full_url, &format!("{url}/{id}"));
                Ok(Plan::Write(Write::Create { resource }))
            }
            "PUT" => {
                let mut resource = entry
                    .get("resource")
                    .cloned()
                    .ok_or_else(|| OperationError::invalid(format!("Bundle.entry[{index}] has no resource")))?;
                let (resource_type, id) = if url.contains('?') {
                    let (resource_type, ids) = search_ids(self.store, self.tenant, url).await?;
                    match ids.as_slice() {
                        [] => (resource_type, crate::store::new_id()),
                        [id] => (resource_type, id.clone()),
                        _ => return Err(precondition_failed(format!("'{url}' matches several resources"))),
                    }
                } else {
                    let (resource_type, id) = url
                        .split_once('/')
                        .ok_or_else(|| OperationError::invalid(format!("PUT needs Type/id, got '{url}'")))?;
                    if !is_id(id) {
                        return Err(OperationError::invalid(format!("'{id}' is not a valid id")));
                    }
                    (resource_type.to_owned(), id.to_owned())
                };
                check_resource(&resource, &resource_type)?;
                resource["id"] = Value::String(id.clone());
                self.alias(full_url, &format!("{resource_type}/{id}"));
                let if_match = entry
                    .get("request")
                    .and_then(|request| request.get("ifMatch"))
                    .and_then(Value::as_str)
                    .and_then(|etag| etag.trim_start_matches("W/").trim_matches('"').parse().ok());
                Ok(Plan::Write(Write::Update { resource, if_match }))
            }
            "DELETE" => {
                let (resource_type, id) = url
                    .split_once('/')
                    .ok_or_else(|| OperationError::invalid(format!("DELETE needs Type/id, got '{url}'")))?;
                Ok(Plan::Write(Write::Delete {
                    resource_type: resource_type.to_owned(),
                    id: id.to_owned(),
                }))
            }
            "GET" => Ok(Plan::Read { url: url.to_owned() }),
            other => Err(OperationError::invalid(format!(
                "Bundle.entry[{index}] has method '{other}'"
            ))),
        }
    }

    fn alias(&mut self, full_url: Option<String>, target: &str) {
        if let Some(full_url) = full_url {
            self.aliases.insert(full_url, target.to_owned());
        }
    }

    /// Rewrites every `reference` in `value`: aliases to their new `Type/id`, conditional
    /// references to the one resource they match.
    async fn resolve_references(&self, value: &mut Value) -> Result<(), OperationError> {
        let mut pending = vec![value];
        while let Some(value) = pending.pop() {
            match value {
                Value::Object(members) => {
                    for (key, member) in members.iter_mut() {
                        match member {
                            Value::String(reference) if key == "reference" => {
                                if let Some(target) = self.aliases.get(reference.as_str()) {
                                    *reference = target.clone();
                                } else if reference.contains('?') && !reference.starts_with('#') {
                                    *reference = self.resolve_conditional(reference).await?;
                                }
                            }
                            other => pending.push(other),
                        }
                    }
                }
                Value::Array(items) => pending.extend(items.iter_mut()),
                _ => {}
            }
        }
        Ok(())
    }

    async fn resolve_conditional(&self, conditional: &str) -> Result<String, OperationError> {
        if let Some(target) = self.pending_conditionals.get(&conditional_key(conditional)) {
            return Ok(target.clone());
        }
        let (resource_type, ids) = search_ids(self.store, self.tenant, conditional).await?;
        match ids.as_slice() {
            [id] => Ok(format!("{resource_type}/{id}")),
            [] => Err(precondition_failed(format!(
                "the conditional reference '{conditional}' matches nothing"
            ))),
            _ => Err(precondition_failed(format!(
                "the conditional reference '{conditional}' matches several resources"
            ))),
        }
    }
}

fn write_response(result: &WriteResult) -> Value {
    match &result.stored {
        Some(stored) if !stored.is_deleted() => json!({"response": {
            "status": if result.created { "201 Created" } else { "200 OK" },
            "location": format!("{}/{}/_history/{}", stored.resource_type, stored.id, stored.version_id),
            "etag": stored.etag(),
            "lastModified": stored.last_updated,
        }}),
        _ => json!({"response": {"status": "204 No Content"}}),
    }
}

fn error_entry(error: &OperationError) -> Value {
    json!({"response": {
        "status": format!("{} {}", error.status.as_u16(), error.status.canonical_reason().unwrap_or_default()).trim_end(),
        "outcome": error.outcome.to_json(),
    }})
}

async fn read_entry(store: &StoreHandle, tenant: &str, url: &str) -> Result<Value, OperationError> {
    let (resource_type, id) = url
        .split_once('/')
        .ok_or_else(|| OperationError::invalid(format!("GET in a Bundle needs Type/id, got '{url}'")))?;
    match store.read(tenant, resource_type, id).await? {
        ReadResult::Found(StoredResource {
            resource: Some(resource),
            version_id,
            ..
        }) => {
            Ok(json!({"resource": resource, "response": {"status": "200 OK", "etag": format!("W/\"{version_id}\"")}}))
        }
        _ => Err(OperationError::not_found(format!("{url} is not known"))),
    }
}

/// Processes a batch or transaction Bundle and returns the response Bundle.
pub async fn process_bundle(
    store: &StoreHandle,
    tenant: &str,
    access: &Access,
    bundle: Value,
) -> Result<Value, OperationError> {
    if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
        return Err(OperationError::invalid(
            "POST to the base URL takes a batch or transaction Bundle",
        ));
    }
    let bundle_type = bundle
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let entries = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut planner = Planner {
        access,
        store,
        tenant,
        aliases: HashMap::new(),
        pending_conditionals: HashMap::new(),
    };
    let response_entries = match bundle_type.as_str() {
        "transaction" => {
            let mut plans = Vec::with_capacity(entries.len());
            for (index, entry) in entries.iter().enumerate() {
                plans.push(planner.plan(index, entry).await?);
            }
            let mut writes = Vec::new();
            for plan in &mut plans {
                if let Plan::Write(Write::Create { resource } | Write::Update { resource, .. }) = plan {
                    planner.resolve_references(resource).await?;
                }
            }
            for plan in &plans {
                if let Plan::Write(write) = plan {
                    writes.push(write.clone());
                }
            }
            let mut results = store.transaction(tenant, writes).await?.into_iter();
            let mut responses = Vec::with_capacity(plans.len());
            for plan in plans {
                responses.push(match plan {
                    Plan::Write(_) => results
                        .next()
                        .map(|result| write_response(&result))
                        .unwrap_or(Value::Null),
                    Plan::Existing { resource_type, id } => {
                        json!({"response": {"status": "200 OK", "location": format!("{resource_type}/{id}")}})
                    }
                    Plan::Read { url } => read_entry(store, tenant, &url)
                        .await
                        .unwrap_or_else(|error| error_entry(&error)),
                });
            }
            responses
        }
        "batch" => {
            let mut responses = Vec::with_capacity(entries.len());
            for (index, entry) in entries.iter().enumerate() {
                let outcome = async {
                    match planner.plan(index, entry).await? {
                        Plan::Write(mut write) => {
                            if let Write::Create { resource } | Write::Update { resource, .. } = &mut write {
                                planner.resolve_references(resource).await?;
                            }
                            let mut results = store.transaction(tenant, vec![write]).await?;
                            Ok(results
                                .pop()
                                .map(|result| write_response(&result))
                                .unwrap_or(Value::Null))
                        }
                        Plan::Existing { resource_type, id } => {
                            Ok(json!({"response": {"status": "200 OK", "location": format!("{resource_type}/{id}")}}))
                        }
                        Plan::Read { url } => read_entry(store, tenant, &url).await,
                    }
                }
                .await;
                responses.push(outcome.unwrap_or_else(|error: OperationError| error_entry(&error)));
            }
            responses
        }
        other => {
            return Err(OperationError::invalid(format!(
                "a Bundle posted to the base URL must be a batch or a transaction, not '{other}'"
            )));
        }
    };
    Ok(json!({
        "resourceType": "Bundle",
        "type": format!("{bundle_type}-response"),
        "entry": response_entries,
    }))
}
