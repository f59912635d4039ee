//! Trains the dictionary the store compresses resource bodies with (`src/store/body.dict`).
//!
//! The samples are bodies exactly as the store keeps them: the Synthea fixtures
//! (`tests/fixtures/synthea-4p`) and AuditEvents of Bot executions, written through a store
//! and read back, so they carry the `meta` it stamps.
//!
//! A stored frame needs the dictionary it was made with for as long as the row lives: the
//! output is a new dictionary with a new id, to be added beside `body.dict`, never over it
//! once bodies have been written with it.
//!
//! `cargo run -p fhirop-server --example train_body_dictionary -- OUTPUT`

use std::path::Path;

use fhirop::store::{ReadResult, ResourceStore, Write};
use fhirop_server::bots::audit::ExecutionRecord;
use fhirop_server::store::SqliteStore;
use serde_json::Value;

/// Large enough for the member names and code systems of every resource type the samples
/// have, small enough to stay in a core's cache next to the frame being decoded.
const DICTIONARY_SIZE: usize = 32 * 1024;
const AUDIT_EVENTS: usize = 300;
const TENANT: &str = "default";

/// An AuditEvent of a Bot execution, varied the ways real ones vary.
fn execution(n: usize) -> ExecutionRecord {
    let instant = |millis: usize| {
        format!(
            "2026-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
            1 + n % 12,
            1 + n % 28,
            n % 24,
            (n * 7) % 60,
            (n * 13) % 60,
            millis % 1000
        )
    };
    let bot = format!("Bot/{}", uuid_like(n * 31 + 7));
    ExecutionRecord {
        tenant: TENANT.into(),
        requester: Some(match n % 3 {
            0 => "ClientApplication/admin".to_owned(),
            1 => format!("Practitioner/{}", uuid_like(n)),
            _ => bot.clone(),
        }),
        bot,
        start: instant(n * 37),
        end: instant(n * 37 + n % 9),
        succeeded: !n.is_multiple_of(10),
        error: n.is_multiple_of(10).then(|| "Error: the Bot threw".to_owned()),
        log: if n.is_multiple_of(4) {
            vec![format!("info: handled {n}")]
        } else {
            Vec::new()
        },
        duration_ms: (n % 9) as u128,
    }
}

/// A time-ordered (v7) UUID's shape, from a counter.
fn uuid_like(n: usize) -> String {
    let bits = (n as u128).wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835);
    let text = format!("{:032x}", bits ^ (0x019a_u128 << 112));
    format!(
        "{}-{}-7{}-{}-{}",
        &text[0..8],
        &text[8..12],
        &text[13..16],
        &text[16..20],
        &text[20..32]
    )
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let output = std::env::args().nth(1).ok_or("usage: train_body_dictionary OUTPUT")?;
    let fixtures = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/synthea-4p");
    let mut files: Vec<_> = std::fs::read_dir(&fixtures)?
        .filter_map(|entry| entry.ok().map(|entry| entry.path()))
        .filter(|path| path.extension().is_some_and(|extension| extension == "ndjson"))
        .collect();
    files.sort();

    let mut keys = Vec::new();
    let mut writes = Vec::new();
    for file in &files {
        for line in std::fs::read_to_string(file)?.lines() {
            let resource: Value = serde_json::from_str(line)?;
            let key = (resource["resourceType"].as_str(), resource["id"].as_str());
            let (Some(resource_type), Some(id)) = key else {
                return Err(format!("a line of {} has no resourceType or id", file.display()).into());
            };
            keys.push((resource_type.to_owned(), id.to_owned()));
            writes.push(Write::Update {
                resource,
                if_match: None,
            });
        }
    }
    for n in 0..AUDIT_EVENTS {
        let id = uuid_like(n);
        keys.push(("AuditEvent".to_owned(), id.clone()));
        writes.push(Write::CreateJson {
            resource_type: "AuditEvent".into(),
            json: execution(n).to_audit_json(&id),
            id,
        });
    }
    let store = SqliteStore::in_memory().await?;
    store.transaction(TENANT, writes).await?;

    let mut samples = Vec::new();
    let mut sizes = Vec::new();
    for (resource_type, id) in &keys {
        let ReadResult::Found(stored) = store.read(TENANT, resource_type, id).await? else {
            return Err(format!("{resource_type}/{id} was written but does not read back").into());
        };
        let text = stored
            .resource
            .as_ref()
            .map(fhirop::format::json_text)
            .unwrap_or_default();
        sizes.push(text.len());
        samples.extend_from_slice(text.as_bytes());
    }
    let dictionary = zstd::dict::from_continuous(&samples, &sizes, DICTIONARY_SIZE)?;
    std::fs::write(&output, &dictionary)?;
    println!(
        "{} samples ({} bytes) -> {output}: {} bytes, dictionary id {:?}",
        sizes.len(),
        samples.len(),
        dictionary.len(),
        zstd::zstd_safe::get_dict_id_from_dict(&dictionary)
    );
    Ok(())
}
