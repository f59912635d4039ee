//! The resource store operations use (IBM's `FHIRResourceHelpers`, HAPI's DAOs). The
//! runtime defines it; a server implements it (the example server with SQLite) and hands it
//! to handlers through their [`OperationContext`](crate::context::OperationContext).
//!
//! Every call names its tenant: rows of one tenant are invisible to every other.

use std::sync::Arc;

use actix_web::http::StatusCode;
use futures_util::future::BoxFuture;
use serde_json::Value;

use crate::outcome::{IssueType, OperationError};

/// One version of a resource as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredResource {
    /// `resourceType`
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// Version id (1, 2, ...).
    pub version_id: u64,
    /// `meta.lastUpdated` of this version.
    pub last_updated: String,
    /// The resource with `id` and `meta` set; `None` for a deletion.
    pub resource: Option<Value>,
}

impl StoredResource {
    /// Whether this version is a deletion.
    pub fn is_deleted(&self) -> bool {
        self.resource.is_none()
    }

    /// `W/"{version}"`
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version_id)
    }
}

/// The result of a read.
#[derive(Debug, Clone, PartialEq)]
pub enum ReadResult {
    /// The current version.
    Found(StoredResource),
    /// The resource was deleted (R4: 410 Gone); the deletion's version.
    Deleted(StoredResource),
    /// No such resource.
    NotFound,
}

/// A search: resource type, parameters as the client wrote them, and paging.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchQuery {
    /// The resource type searched.
    pub resource_type: String,
    /// `(name[:modifier], value)` pairs, in order; repetition means AND.
    pub params: Vec<(String, String)>,
    /// Page size.
    pub count: usize,
    /// Matches to skip.
    pub offset: usize,
    /// Newest first (`_sort=-_lastUpdated`) or oldest first (`_sort=_lastUpdated`); `None`
    /// keeps the store's order.
    pub sort_last_updated: Option<SortOrder>,
    /// Count every match (`_total=accurate`, `_summary=count`).
    pub want_total: bool,
    /// Return no resources (`_summary=count`).
    pub count_only: bool,
    /// Refuse unknown parameters (`Prefer: handling=strict`).
    pub strict: bool,
}

/// A sort direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SortOrder {
    /// Oldest first.
    Ascending,
    /// Newest first.
    Descending,
}

/// What a search found.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SearchResult {
    /// The page of matches.
    pub resources: Vec<StoredResource>,
    /// Every match, when asked for.
    pub total: Option<u64>,
    /// Whether more matches follow this page.
    pub has_more: bool,
    /// The parameters the store used (for the Bundle's `self` link).
    pub used_params: Vec<(String, String)>,
}

/// One write in a transaction.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Create with a server-assigned id (already chosen by the caller, so references to it
    /// can be rewritten before the write).
    Create {
        /// The resource, with its new `id` set.
        resource: Value,
    },
    /// Create from JSON text the caller wrote itself: for writers that never hold the
    /// resource as a tree (the AuditEvent of every Bot execution), which would otherwise build
    /// one only for the store to serialize it. `json` is a compact JSON object whose first
    /// members are `resourceType` and `id`, with these values, and that has no `meta` (the
    /// store adds it). The result carries no stored resource: the caller has the text.
    CreateJson {
        /// `resourceType`
        resource_type: String,
        /// The new id.
        id: String,
        /// The resource.
        json: String,
    },
    /// Create or update with the given id.
    Update {
        /// The resource, with its `id`.
        resource: Value,
        /// `If-Match`: the version the client expects to replace.
        if_match: Option<u64>,
    },
    /// Delete.
    Delete {
        /// The type.
        resource_type: String,
        /// The id.
        id: String,
    },
}

/// The outcome of one write.
#[derive(Debug, Clone, PartialEq)]
pub struct WriteResult {
    /// The stored version (for a delete: the deletion, or `None` when there was nothing;
    /// `None` for a [`Write::CreateJson`]).
    pub stored: Option<StoredResource>,
    /// Whether the write created the resource.
    pub created: bool,
}

/// Why a store call failed.
#[derive(Debug, Clone, PartialEq)]
pub enum StoreError {
    /// `If-Match` named a version that is no longer current (412).
    VersionConflict {
        /// The version the client expected.
        expected: u64,
        /// The current version.
        current: Option<u64>,
    },
    /// The request is wrong (400), e.g. an unknown search parameter in strict mode.
    Invalid(String),
    /// The database failed (500).
    Database(String),
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::VersionConflict { expected, current } => write!(
                f,
                "version {expected} is not the current version ({})",
                current.map_or_else(|| "none".to_owned(), |current| current.to_string())
            ),
            StoreError::Invalid(message) => f.write_str(message),
            StoreError::Database(message) => write!(f, "the database failed: {message}"),
        }
    }
}

impl std::error::Error for StoreError {}

impl From<StoreError> for OperationError {
    fn from(error: StoreError) -> OperationError {
        match &error {
            StoreError::VersionConflict { .. } => {
                OperationError::new(StatusCode::PRECONDITION_FAILED, IssueType::Conflict, error.to_string())
            }
            StoreError::Invalid(message) => OperationError::invalid(message.clone()),
            StoreError::Database(_) => {
                tracing::error!("{error}");
                OperationError::internal("the resource store failed; the server logged the details")
            }
        }
    }
}

/// A tenant's resources. Every method is async and never blocks the caller's thread, except
/// those named `_blocking`, for callers on threads of their own.
pub trait ResourceStore: Send + Sync + 'static {
    /// The current version of a resource.
    fn read<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ReadResult, StoreError>>;

    /// One version of a resource.
    fn vread<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
        version_id: u64,
    ) -> BoxFuture<'a, Result<ReadResult, StoreError>>;

    /// Every version of a resource, newest first.
    fn history<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>>;

    /// Finds resources.
    fn search<'a>(&'a self, tenant: &'a str, query: &'a SearchQuery)
    -> BoxFuture<'a, Result<SearchResult, StoreError>>;

    /// The resources of the page a search finds, as one JSON array of their texts: for callers
    /// that hand them on unread (a Bot's `searchResources`), which a store can answer without
    /// building and serializing every resource again.
    fn search_resources_json<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let result = self.search(tenant, query).await?;
            let resources = result
                .resources
                .into_iter()
                .filter_map(|stored| stored.resource)
                .collect();
            Ok(crate::format::json_text(&Value::Array(resources)))
        })
    }

    /// [`search_resources_json`](Self::search_resources_json) run on the calling thread, which
    /// it blocks until the page is read; `None` where the store has no such way. For callers
    /// that would otherwise block their thread waiting (a Bot worker): a store that runs its
    /// queries on a thread of its own can spare them the hand-off there and back.
    fn search_resources_json_blocking(
        &self,
        _tenant: &str,
        _query: &SearchQuery,
    ) -> Option<Result<String, StoreError>> {
        None
    }

    /// Every current resource that references `target_type/target_id` through one of the
    /// reference parameters `links` names for its type (`(type, params)`): a compartment in one
    /// call, as `$everything` needs it.
    fn referencing<'a>(
        &'a self,
        tenant: &'a str,
        target_type: &'a str,
        target_id: &'a str,
        links: &'a [(&'static str, &'static [&'static str])],
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>>;

    /// The tenants that have current resources of `resource_type` (start-up tasks that load
    /// every project's definitions).
    fn tenants_with<'a>(&'a self, resource_type: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>>;

    /// Applies writes atomically: all of them or none.
    fn transaction<'a>(
        &'a self,
        tenant: &'a str,
        writes: Vec<Write>,
    ) -> BoxFuture<'a, Result<Vec<WriteResult>, StoreError>>;

    /// Whether `name` is a search parameter the store supports for `resource_type`.
    fn supports_search_param(&self, resource_type: &str, name: &str) -> bool;

    /// The search parameters supported for `resource_type`: `(name, type)`.
    fn search_params(&self, resource_type: &str) -> Vec<(&'static str, &'static str)>;
}

/// The store, as shared application data (`App::app_data(web::Data::new(StoreHandle(..)))`).
#[derive(Clone)]
pub struct StoreHandle(pub Arc<dyn ResourceStore>);

impl std::fmt::Debug for StoreHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StoreHandle")
    }
}

impl std::ops::Deref for StoreHandle {
    type Target = dyn ResourceStore;
    fn deref(&self) -> &Self::Target {
        &*self.0
    }
}
