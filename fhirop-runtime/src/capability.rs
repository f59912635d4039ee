//! The CapabilityStatement served at `[base]/metadata`, built from the registry.

use std::collections::BTreeMap;
use std::time::SystemTime;

use serde_json::{Map, Value, json};

use crate::definition::canonical_url;
use crate::registry::Snapshot;

/// What the server says about itself in its CapabilityStatement.
#[derive(Clone)]
pub struct ServerInfo {
    /// `software.name`.
    pub software_name: String,
    /// `software.version`.
    pub software_version: String,
    /// `implementation.description`.
    pub description: String,
    /// `date`: when the server started.
    pub started: String,
    /// Adds what the server supports beyond operations (REST interactions, search
    /// parameters) to `rest[0].resource[]`, keyed by resource type.
    pub resource_capabilities: Option<std::sync::Arc<dyn Fn() -> Vec<Value> + Send + Sync>>,
}

impl std::fmt::Debug for ServerInfo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerInfo")
            .field("software_name", &self.software_name)
            .field("software_version", &self.software_version)
            .finish_non_exhaustive()
    }
}

impl Default for ServerInfo {
    fn default() -> ServerInfo {
        ServerInfo {
            software_name: "fhirop".into(),
            software_version: env!("CARGO_PKG_VERSION").into(),
            description: "A FHIR R4 server built with fhirop".into(),
            started: format_instant(SystemTime::now()),
            resource_capabilities: None,
        }
    }
}

pub use crate::types::time::format_instant;

/// Builds the CapabilityStatement `tenant` sees: native operations and its own.
pub fn capability_statement(snapshot: &Snapshot, info: &ServerInfo, base_url: &str, tenant: &str) -> Value {
    let mut resources: BTreeMap<String, Map<String, Value>> = BTreeMap::new();
    if let Some(extra) = &info.resource_capabilities {
        for resource in extra() {
            if let Value::Object(resource) = resource
                && let Some(resource_type) = resource.get("type").and_then(Value::as_str)
            {
                resources.insert(resource_type.to_owned(), resource);
            }
        }
    }
    let mut system_operations = Vec::new();
    for operation in snapshot
        .operations()
        .iter()
        .filter(|operation| operation.visible_to(tenant))
    {
        let definition = &operation.definition;
        let entry = json!({
            "name": definition.code,
            "definition": definition.url.clone().unwrap_or_else(|| canonical_url(base_url, &definition.id)),
        });
        if definition.system {
            system_operations.push(entry.clone());
        }
        if definition.type_level || definition.instance {
            for resource_type in &definition.resource {
                let resource = resources.entry(resource_type.clone()).or_insert_with(|| {
                    let mut resource = Map::new();
                    resource.insert("type".into(), resource_type.as_str().into());
                    resource
                });
                let operations = resource.entry("operation").or_insert_with(|| Value::Array(Vec::new()));
                if let Value::Array(operations) = operations
                    && !operations.contains(&entry)
                {
                    operations.push(entry.clone());
                }
            }
        }
    }
    let mut rest = Map::new();
    rest.insert("mode".into(), "server".into());
    if !resources.is_empty() {
        rest.insert("resource".into(), resources.into_values().map(Value::Object).collect());
    }
    if !system_operations.is_empty() {
        rest.insert("operation".into(), system_operations.into());
    }
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": info.started,
        "publisher": info.software_name,
        "kind": "instance",
        "software": {"name": info.software_name, "version": info.software_version},
        "implementation": {"description": info.description, "url": base_url},
        "fhirVersion": "4.0.1",
        "format": ["json", "application/fhir+json"],
        "rest": [rest],
    })
}
