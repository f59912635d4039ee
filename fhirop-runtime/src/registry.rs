//! The operation registry: (level, resource type, code) → handler.
//!
//! Reads are on every request's path, so the registry is an immutable snapshot behind an
//! `ArcSwap`: a lookup is one atomic load and a hash probe, with no lock; the operation route
//! keeps a snapshot per worker and checks it with the registry's generation, a plain load.
//! Changes (Bots registering at run time) build a new snapshot under a writer lock, which also
//! drops the cached CapabilityStatement.

use foldhash::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use arc_swap::ArcSwap;
use bytes::Bytes;

use crate::definition::{Level, OperationDefinition};
use crate::operation::{Operation, OperationHandler, SourceLocation};

/// A registered operation, as the request path sees it.
pub struct RegisteredOperation {
    /// The definition (routing, GET rule, binding, output, `/metadata`).
    pub definition: Arc<OperationDefinition>,
    /// What runs it.
    pub handler: Arc<dyn OperationHandler>,
    /// The handler takes the raw request and body.
    pub manual_request: bool,
    /// Where it was declared.
    pub source: Option<SourceLocation>,
    /// Answers at undeclared levels too (Medplum-compatible Bot operations).
    pub lenient_levels: bool,
    /// The one tenant that sees the operation; `None` for every tenant.
    pub tenant: Option<String>,
}

impl RegisteredOperation {
    /// Whether `tenant` sees this operation.
    pub fn visible_to(&self, tenant: &str) -> bool {
        self.tenant.as_deref().is_none_or(|owner| owner == tenant)
    }
}

impl std::fmt::Debug for RegisteredOperation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegisteredOperation")
            .field("id", &self.definition.id)
            .field("source", &self.source)
            .finish_non_exhaustive()
    }
}

impl RegisteredOperation {
    fn describe_source(&self) -> String {
        self.source
            .map_or_else(|| "a run-time registration".into(), |source| source.to_string())
    }
}

/// Why an operation could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegistryError {
    /// Another operation answers the same code at an overlapping level and type.
    Clash {
        /// The code.
        code: String,
        /// The operation being registered, and where it was declared.
        new: String,
        /// The operation already registered, and where it was declared.
        existing: String,
    },
    /// Another operation has the same definition id.
    DuplicateId(String),
}

impl std::fmt::Display for RegistryError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RegistryError::Clash { code, new, existing } => write!(
                f,
                "operation ${code} ({new}) clashes with ${code} ({existing}) at the same level and resource type"
            ),
            RegistryError::DuplicateId(id) => write!(f, "two operations have the definition id '{id}'"),
        }
    }
}

impl std::error::Error for RegistryError {}

/// A serialized CapabilityStatement, and its gzip encoding once a client asked for it.
#[derive(Debug)]
pub(crate) struct CachedStatement {
    /// `"{tenant} {base URL}"`: whom the statement was built for.
    pub(crate) key: String,
    pub(crate) identity: Bytes,
    pub(crate) gzip: OnceLock<Option<Bytes>>,
}

/// One immutable state of the registry.
#[derive(Default)]
pub struct Snapshot {
    operations: Vec<Arc<RegisteredOperation>>,
    by_code: HashMap<String, Vec<Arc<RegisteredOperation>>>,
    /// The serialized CapabilityStatement for one tenant and base URL, built on first request.
    pub(crate) capability_cache: OnceLock<CachedStatement>,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Snapshot")
            .field("operations", &self.operations.len())
            .finish()
    }
}

/// The outcome of looking up a call, borrowed from the snapshot: the request path holds the
/// snapshot for the call, and takes no count of its own on the operation.
#[derive(Debug)]
pub enum Resolution<'s> {
    /// The operation to run.
    Found(&'s Arc<RegisteredOperation>),
    /// The code exists, but not at this level or for this type.
    WrongLevel(Vec<&'s Arc<RegisteredOperation>>),
    /// No operation has this code.
    Unknown,
}

impl Snapshot {
    /// Every operation, in registration order.
    pub fn operations(&self) -> &[Arc<RegisteredOperation>] {
        &self.operations
    }

    /// The operation whose definition has `id`.
    pub fn by_id(&self, id: &str) -> Option<&Arc<RegisteredOperation>> {
        self.operations.iter().find(|operation| operation.definition.id == id)
    }

    /// Finds the operation for a call from `tenant`.
    pub fn resolve(&self, tenant: &str, level: Level, resource_type: Option<&str>, code: &str) -> Resolution<'_> {
        let Some(all) = self.by_code.get(code) else {
            return Resolution::Unknown;
        };
        let candidates = || all.iter().filter(|operation| operation.visible_to(tenant));
        let declared = candidates().find(|operation| operation.definition.supports(level, resource_type));
        let lenient = || candidates().find(|operation| operation.lenient_levels);
        match declared.or_else(lenient) {
            Some(operation) => Resolution::Found(operation),
            None => {
                let candidates: Vec<&Arc<RegisteredOperation>> = candidates().collect();
                if candidates.is_empty() {
                    Resolution::Unknown
                } else {
                    Resolution::WrongLevel(candidates)
                }
            }
        }
    }

    fn with(operations: Vec<Arc<RegisteredOperation>>) -> Snapshot {
        let mut by_code: HashMap<String, Vec<Arc<RegisteredOperation>>> = HashMap::default();
        for operation in &operations {
            by_code
                .entry(operation.definition.code.clone())
                .or_default()
                .push(operation.clone());
        }
        Snapshot {
            operations,
            by_code,
            capability_cache: OnceLock::new(),
        }
    }
}

/// Whether two definitions would answer the same call.
fn overlaps(a: &OperationDefinition, b: &OperationDefinition) -> bool {
    if a.code != b.code {
        return false;
    }
    if a.system && b.system {
        return true;
    }
    let any = |resource: &[String]| resource.iter().any(|t| t == "Resource" || t == "DomainResource");
    let share_type = any(&a.resource) || any(&b.resource) || a.resource.iter().any(|t| b.resource.contains(t));
    share_type && ((a.type_level && b.type_level) || (a.instance && b.instance))
}

/// The operations a server answers, changeable at run time.
pub struct OperationRegistry {
    current: ArcSwap<Snapshot>,
    /// Counts the snapshots published: a reader that keeps a snapshot knows it is still the
    /// current one while this has not moved (one plain load, where `snapshot()` takes atomic
    /// counts).
    generation: AtomicU64,
    writer: Mutex<()>,
}

impl std::fmt::Debug for OperationRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperationRegistry")
            .field("current", &self.current.load())
            .finish()
    }
}

impl Default for OperationRegistry {
    fn default() -> Self {
        OperationRegistry::new()
    }
}

impl OperationRegistry {
    /// An empty registry.
    pub fn new() -> OperationRegistry {
        OperationRegistry {
            current: ArcSwap::from_pointee(Snapshot::default()),
            generation: AtomicU64::new(0),
            writer: Mutex::new(()),
        }
    }

    /// The current state (one atomic load).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Which snapshot is current: it changes after every change is published, so a snapshot
    /// taken after reading a generation is at least as new as that generation.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    fn publish(&self, snapshot: Snapshot) {
        self.current.store(Arc::new(snapshot));
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// Adds an operation; refuses one that clashes with a registered one.
    pub fn register(&self, operation: Operation) -> Result<(), RegistryError> {
        self.replace(None, operation)
    }

    /// Adds an operation in place of the one with definition id `replacing` (if any), in one
    /// step: a request sees either the old or the new operation, never neither.
    pub fn replace(&self, replacing: Option<&str>, operation: Operation) -> Result<(), RegistryError> {
        let _writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load();
        let mut operations: Vec<Arc<RegisteredOperation>> = current
            .operations
            .iter()
            .filter(|existing| Some(existing.definition.id.as_str()) != replacing)
            .cloned()
            .collect();
        let new = RegisteredOperation {
            definition: Arc::new(operation.definition),
            handler: operation.handler,
            manual_request: operation.manual_request,
            source: operation.source,
            lenient_levels: operation.lenient_levels,
            tenant: operation.tenant,
        };
        for existing in &operations {
            if existing.definition.id == new.definition.id {
                return Err(RegistryError::DuplicateId(new.definition.id.clone()));
            }
            // Operations of different tenants never meet, so they cannot clash.
            let share_a_tenant = match (&existing.tenant, &new.tenant) {
                (Some(a), Some(b)) => a == b,
                _ => true,
            };
            if share_a_tenant && overlaps(&existing.definition, &new.definition) {
                return Err(RegistryError::Clash {
                    code: new.definition.code.clone(),
                    new: format!("{} at {}", new.definition.id, new.describe_source()),
                    existing: format!("{} at {}", existing.definition.id, existing.describe_source()),
                });
            }
        }
        operations.push(Arc::new(new));
        self.publish(Snapshot::with(operations));
        Ok(())
    }

    /// Removes the operation with definition id `id`; returns whether there was one.
    pub fn remove(&self, id: &str) -> bool {
        let _writer = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let current = self.current.load();
        let operations: Vec<_> = current
            .operations
            .iter()
            .filter(|existing| existing.definition.id != id)
            .cloned()
            .collect();
        let removed = operations.len() != current.operations.len();
        if removed {
            self.publish(Snapshot::with(operations));
        }
        removed
    }

    /// Whether `definition`, for `tenant`, would clash with a registered operation other than
    /// `ignoring`.
    pub fn find_clash(
        &self,
        tenant: &str,
        definition: &OperationDefinition,
        ignoring: Option<&str>,
    ) -> Option<Arc<RegisteredOperation>> {
        self.snapshot()
            .operations
            .iter()
            .filter(|existing| Some(existing.definition.id.as_str()) != ignoring && existing.visible_to(tenant))
            .find(|existing| overlaps(&existing.definition, definition))
            .cloned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::operation::handler_fn;
    use crate::output::OperationOutput;

    fn operation(definition: OperationDefinition) -> Operation {
        Operation::new(
            definition,
            handler_fn(|_| async { Ok(OperationOutput::Resource(serde_json::json!({}))) }),
        )
    }

    #[test]
    fn resolves_by_level_and_type() {
        let registry = OperationRegistry::new();
        let everything = OperationDefinition::builder("$everything")
            .resource("Patient")
            .instance(true)
            .build();
        registry.register(operation(everything)).unwrap();
        let snapshot = registry.snapshot();
        assert!(matches!(
            snapshot.resolve("t", Level::Instance, Some("Patient"), "everything"),
            Resolution::Found(_)
        ));
        assert!(matches!(
            snapshot.resolve("t", Level::Type, Some("Patient"), "everything"),
            Resolution::WrongLevel(_)
        ));
        assert!(matches!(
            snapshot.resolve("t", Level::System, None, "nothing"),
            Resolution::Unknown
        ));
    }

    #[test]
    fn clashes_name_both_sources() {
        let registry = OperationRegistry::new();
        let first = OperationDefinition::builder("$x")
            .resource("Patient")
            .type_level(true)
            .id("a")
            .build();
        let second = OperationDefinition::builder("$x")
            .resource("Patient")
            .type_level(true)
            .id("b")
            .build();
        registry.register(operation(first).source("a.rs", 1)).unwrap();
        let error = registry.register(operation(second).source("b.rs", 2)).unwrap_err();
        assert_eq!(
            error.to_string(),
            "operation $x (b at b.rs:2) clashes with $x (a at a.rs:1) at the same level and resource type"
        );
        let other_type = OperationDefinition::builder("$x")
            .resource("Observation")
            .type_level(true)
            .id("c")
            .build();
        assert!(registry.register(operation(other_type)).is_ok());
    }

    #[test]
    fn every_published_change_and_only_those_move_the_generation() {
        let registry = OperationRegistry::new();
        let definition = OperationDefinition::builder("$x").system(true).id("x").build();
        let start = registry.generation();
        registry.register(operation(definition.clone())).unwrap();
        assert_eq!(registry.generation(), start + 1);
        assert!(registry.register(operation(definition)).is_err());
        assert!(!registry.remove("nothing"));
        assert_eq!(registry.generation(), start + 1);
        assert!(registry.remove("x"));
        assert_eq!(registry.generation(), start + 2);
    }

    #[test]
    fn replace_and_remove_publish_new_snapshots() {
        let registry = OperationRegistry::new();
        let definition = OperationDefinition::builder("$x").system(true).id("x").build();
        registry.register(operation(definition.clone())).unwrap();
        let before = registry.snapshot();
        registry.replace(Some("x"), operation(definition)).unwrap();
        assert!(!Arc::ptr_eq(&before, &registry.snapshot()));
        assert!(registry.remove("x"));
        assert!(!registry.remove("x"));
        assert!(registry.snapshot().operations().is_empty());
    }
}
