//! One AuditEvent per Bot execution (as Medplum writes), stored off the request path: a
//! background thread writes them in batches, one store transaction per batch.

use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use fhirop::store::{StoreHandle, Write};

use super::host::block_on_store;
use serde_json::{Value, json};

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
    fn to_audit_event(&self) -> Value {
        let mut description = self.log.join("\n");
        if let Some(error) = &self.error {
            if !description.is_empty() {
                description.push('\n');
            }
            description.push_str(error);
        }
        let mut event = json!({
            "resourceType": "AuditEvent",
            "id": crate::store::new_id(),
            "type": {"system": "https://medplum.com/CodeSystem/medplum", "code": "execute", "display": "Bot execution"},
            "period": {"start": self.start, "end": self.end},
            "recorded": self.end,
            // 0 success, 4 minor failure (the Bot's error), as Medplum records them.
            "outcome": if self.succeeded { "0" } else { "4" },
            "agent": [{
                "who": {"reference": self.requester.clone().unwrap_or_else(|| self.bot.clone())},
                "requestor": true,
            }],
            "source": {"observer": {"reference": self.bot}},
            "entity": [{
                "what": {"reference": self.bot},
                "detail": [{"type": "durationMs", "valueString": self.duration_ms.to_string()}],
            }],
        });
        // A quiet success has no description: FHIR strings are never empty.
        if !description.is_empty() {
            event["outcomeDesc"] = Value::String(description);
        }
        event
    }
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
            by_tenant.entry(record.tenant.clone()).or_default().push(Write::Create {
                resource: record.to_audit_event(),
            });
        }
        for (tenant, writes) in by_tenant {
            if let Err(error) = block_on_store(async { Ok(store.transaction(&tenant, writes).await?) }) {
                tracing::error!("AuditEvents could not be stored: {error}");
            }
        }
    }
}
