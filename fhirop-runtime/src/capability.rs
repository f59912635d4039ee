//! The CapabilityStatement served at `[base]/metadata`, built from the registry.

use std::collections::BTreeMap;
use std::time::{SystemTime, UNIX_EPOCH};

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

/// Writes a time as a FHIR `instant` in UTC with milliseconds.
pub fn format_instant(time: SystemTime) -> String {
    let since_epoch = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    let seconds = since_epoch.as_secs();
    let (days, second_of_day) = (seconds / 86_400, seconds % 86_400);
    let (year, month, day) = civil_from_days(days as i64);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        second_of_day / 3600,
        second_of_day % 3600 / 60,
        second_of_day % 60,
        since_epoch.subsec_millis()
    )
}

/// Days since 1970-01-01 to (year, month, day), Howard Hinnant's `civil_from_days`.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let day_of_era = z.rem_euclid(146_097);
    let year_of_era = (day_of_era - day_of_era / 1460 + day_of_era / 36_524 - day_of_era / 146_096) / 365;
    let day_of_year = day_of_era - (365 * year_of_era + year_of_era / 4 - year_of_era / 100);
    let month_index = (5 * day_of_year + 2) / 153;
    let day = (day_of_year - (153 * month_index + 2) / 5 + 1) as u32;
    let month = if month_index < 10 {
        month_index + 3
    } else {
        month_index - 9
    } as u32;
    let year = year_of_era + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// Builds the CapabilityStatement for the operations in `snapshot`.
pub fn capability_statement(snapshot: &Snapshot, info: &ServerInfo, base_url: &str) -> Value {
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
    for operation in snapshot.operations() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instants_are_utc() {
        let time = UNIX_EPOCH + std::time::Duration::from_millis(1_709_251_199_123);
        assert_eq!(format_instant(time), "2024-02-29T23:59:59.123Z");
        assert_eq!(format_instant(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
    }
}
