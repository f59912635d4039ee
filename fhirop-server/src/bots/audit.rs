//! One AuditEvent per Bot execution (as Medplum writes), stored off the request path: a
//! background thread writes them in batches, one store transaction per batch.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use fhirop::store::{StoreHandle, Write};

use super::host::block_on_store;
use serde::Serialize;

/// How many AuditEvents one store transaction writes at most.
const BATCH: usize = 256;

/// How long the writer gathers a batch after its first record. A batch costs a handful of
/// statements whatever its size, so under load this turns a write per execution into a write
/// per window; an idle server stores an event this much later.
const GATHER: Duration = Duration::from_millis(20);

/// What one execution did.
#[derive(Debug, Clone)]
pub struct ExecutionRecord {
    /// The tenant.
    pub tenant: String,
    /// `Bot/{id}`
    pub bot: String,
    /// Who invoked it, when known.
    pub requester: Option<String>,
    /// When it started and ended (FHIR instants).
    pub start: String,
    /// When it ended.
    pub end: String,
    /// Whether it succeeded.
    pub succeeded: bool,
    /// The error, when it failed.
    pub error: Option<String>,
    /// The captured console lines.
    pub log: Vec<String>,
    /// How long it took, in milliseconds.
    pub duration_ms: u128,
}

impl ExecutionRecord {
    /// The AuditEvent as the JSON text [`Write::CreateJson`] takes (no `meta`; the store adds
    /// it). Written from borrowed fields: a `Value` tree for it cost more than storing it.
    pub fn to_audit_json(&self, id: &str) -> String {
        let mut description = self.log.join("\n");
        if let Some(error) = &self.error {
            if !description.is_empty() {
                description.push('\n');
            }
            description.push_str(error);
        }
        let bot = Reference { reference: &self.bot };
        let duration = self.duration_ms.to_string();
        let event = AuditEventJson {
            resource_type: "AuditEvent",
            id,
            event_type: Coding {
                system: "https://medplum.com/CodeSystem/medplum",
                code: "execute",
                display: "Bot execution",
            },
            period: Period {
                start: &self.start,
                end: &self.end,
            },
            recorded: &self.end,
            // 0 success, 4 minor failure (the Bot's error), as Medplum records them.
            outcome: if self.succeeded { "0" } else { "4" },
            // A quiet success has no description: FHIR strings are never empty.
            outcome_desc: Some(description.as_str()).filter(|description| !description.is_empty()),
            agent: [Agent {
                who: Reference {
                    reference: self.requester.as_deref().unwrap_or(&self.bot),
                },
                requestor: true,
            }],
            source: Source { observer: bot },
            entity: [Entity {
                what: bot,
                detail: [Detail {
                    detail_type: "durationMs",
                    value_string: &duration,
                }],
            }],
        };
        // Every member is a string, a boolean or a struct of them: serialization cannot fail.
        serde_json::to_string(&event).unwrap_or_default()
    }
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct AuditEventJson<'a> {
    resource_type: &'static str,
    id: &'a str,
    #[serde(rename = "type")]
    event_type: Coding,
    period: Period<'a>,
    recorded: &'a str,
    outcome: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    outcome_desc: Option<&'a str>,
    agent: [Agent<'a>; 1],
    source: Source<'a>,
    entity: [Entity<'a>; 1],
}

#[derive(Serialize)]
struct Coding {
    system: &'static str,
    code: &'static str,
    display: &'static str,
}

#[derive(Serialize)]
struct Period<'a> {
    start: &'a str,
    end: &'a str,
}

#[derive(Serialize, Clone, Copy)]
struct Reference<'a> {
    reference: &'a str,
}

#[derive(Serialize)]
struct Agent<'a> {
    who: Reference<'a>,
    requestor: bool,
}

#[derive(Serialize)]
struct Source<'a> {
    observer: Reference<'a>,
}

#[derive(Serialize)]
struct Entity<'a> {
    what: Reference<'a>,
    detail: [Detail<'a>; 1],
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Detail<'a> {
    #[serde(rename = "type")]
    detail_type: &'static str,
    value_string: &'a str,
}

/// Queues AuditEvents for the background writer.
#[derive(Debug, Clone)]
pub struct AuditWriter {
    records: Sender<ExecutionRecord>,
}

impl AuditWriter {
    /// Starts the writer thread.
    pub fn start(store: StoreHandle) -> std::io::Result<AuditWriter> {
        let (records, receiver) = crossbeam_channel::unbounded();
        thread::Builder::new()
            .name("fhirop-audit".into())
            .spawn(move || write_batches(store, receiver))?;
        Ok(AuditWriter { records })
    }

    /// Queues one record.
    pub fn record(&self, record: ExecutionRecord) {
        if self.records.send(record).is_err() {
            tracing::error!("the AuditEvent writer has stopped; an execution went unrecorded");
        }
    }
}

fn write_batches(store: StoreHandle, receiver: Receiver<ExecutionRecord>) {
    while let Ok(first) = receiver.recv() {
        let deadline = Instant::now() + GATHER;
        let mut batch = vec![first];
        while batch.len() < BATCH {
            match receiver.recv_deadline(deadline) {
                Ok(record) => batch.push(record),
                Err(_) => break,
            }
        }
        let mut by_tenant: std::collections::HashMap<String, Vec<Write>> = std::collections::HashMap::new();
        for record in &batch {
            let id = crate::store::new_id();
            by_tenant
                .entry(record.tenant.clone())
                .or_default()
                .push(Write::CreateJson {
                    resource_type: "AuditEvent".into(),
                    json: record.to_audit_json(&id),
                    id,
                });
        }
        for (tenant, writes) in by_tenant {
            if let Err(error) = block_on_store(async { Ok(store.transaction(&tenant, writes).await?) }) {
                tracing::error!("AuditEvents could not be stored: {error}");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn record(succeeded: bool, log: &[&str], error: Option<&str>) -> ExecutionRecord {
        ExecutionRecord {
            tenant: "t".into(),
            bot: "Bot/b1".into(),
            requester: Some("Patient/p1".into()),
            start: "2026-12-02T10:00:00.000Z".into(),
            end: "2026-12-02T10:00:00.004Z".into(),
            succeeded,
            error: error.map(str::to_owned),
            log: log.iter().map(|line| (*line).to_owned()).collect(),
            duration_ms: 4,
        }
    }

    #[test]
    fn the_audit_event_text_begins_with_type_and_id_and_omits_an_empty_description() {
        let text = record(true, &[], None).to_audit_json("a1");
        assert!(text.starts_with(r#"{"resourceType":"AuditEvent","id":"a1","#), "{text}");
        assert_eq!(
            serde_json::from_str::<Value>(&text).unwrap(),
            json!({
                "resourceType": "AuditEvent",
                "id": "a1",
                "type": {"system": "https://medplum.com/CodeSystem/medplum", "code": "execute", "display": "Bot execution"},
                "period": {"start": "2026-12-02T10:00:00.000Z", "end": "2026-12-02T10:00:00.004Z"},
                "recorded": "2026-12-02T10:00:00.004Z",
                "outcome": "0",
                "agent": [{"who": {"reference": "Patient/p1"}, "requestor": true}],
                "source": {"observer": {"reference": "Bot/b1"}},
                "entity": [{"what": {"reference": "Bot/b1"}, "detail": [{"type": "durationMs", "valueString": "4"}]}],
            })
        );
    }

    #[test]
    fn a_failed_execution_records_its_console_and_error_escaped() {
        let mut failed = record(false, &["line \"one\"", "two"], Some("Error: boom"));
        failed.requester = None;
        let event: Value = serde_json::from_str(&failed.to_audit_json("a2")).unwrap();
        assert_eq!(event["outcome"], "4");
        assert_eq!(event["outcomeDesc"], "line \"one\"\ntwo\nError: boom");
        assert_eq!(event["agent"][0]["who"]["reference"], "Bot/b1");
    }
}
