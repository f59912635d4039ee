//! The SQLite resource store: one file in the data directory (WAL, fsync on every commit),
//! or a throw-away in-memory database. sqlx keeps it async, and the same queries would run on
//! PostgreSQL behind the same trait. A search for a caller whose thread may block (a Bot
//! worker) runs the same statements on that thread instead ([`Reads`], `direct.rs`).

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use fhirop::capability::format_instant;
use fhirop::store::{
    ReadResult, ResourceStore, SearchQuery, SearchResult, SortOrder, StoreError, StoredResource, Write, WriteResult,
};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
// Dynamic SQL here is assembled only from fixed table names and conditions with `?`
// placeholders (search::compile); every value is bound.
use sqlx::{AssertSqlSafe, Connection as _, Row, SqliteConnection};

use super::body;
use super::connections::{Connections, Lease};
use super::direct::{Database, DirectReaders, direct_error};
use super::search::{
    CompiledSearch, IndexForm, IndexValue, SqlValue, WALK_ORDER, compile, index_table, index_values,
    index_values_of_json, params_of,
};

/// The current versions, kept in page order: in a b-tree keyed by tenant, type, time and id
/// (`WITHOUT ROWID`), where a search page is a run of neighbouring rows, read without a
/// lookup per resource and without a sort (ties of a millisecond, which a transaction's
/// resources all share, by id). A rowid table needed two indexes beside it, one by id and one
/// in page order, and a lookup from the second into the table for every resource a page
/// walked. Measured: an AuditEvent (one per Bot call) holds 330 bytes of the in-memory
/// store instead of 450, and SQLite walks a page of a name search over 1,000 patients in 52 µs
/// instead of 71. The price is a second lookup for a read by id (`resource_current_id`, then
/// the table), which `$everything` pays per resource, and dearer inserts in the middle of
/// the b-tree. [`SqliteStore::key_current_versions`] moves a database written before.
const RESOURCE_CURRENT: &str = "CREATE TABLE IF NOT EXISTS resource_current (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, last_updated_ms INTEGER NOT NULL, deleted INTEGER NOT NULL, body TEXT,
        PRIMARY KEY (tenant, resource_type, last_updated_ms, id)) WITHOUT ROWID";

/// The schema. Every row carries its tenant, so tenants share the tables and never the rows.
///
/// A resource's current version lives in `resource_current` only; `resource_version` holds
/// the versions it superseded, moved there when it is updated or deleted, so a create writes
/// its body once. (Databases written before kept the current version in both tables; reads
/// take the union, which reads either layout the same.) `body` holds a zstd frame, a BLOB
/// (`body.rs`), or in rows written before compression the JSON text itself.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS resource_version (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body TEXT,
        PRIMARY KEY (tenant, resource_type, id, version))",
    RESOURCE_CURRENT,
    // A resource by its id: the index holds the key's time too, so a read is two lookups.
    "CREATE UNIQUE INDEX IF NOT EXISTS resource_current_id ON resource_current (tenant, resource_type, id)",
    // Each index table has two covering indexes: by value (`search_*_covering`), which lists
    // the resources a condition selects, and by owner (`search_*_probe`), which answers
    // whether one resource matches with a single lookup and finds its rows to replace them.
    "CREATE TABLE IF NOT EXISTS search_token (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        system TEXT, code TEXT NOT NULL)",
    // The value indexes carry every column a search condition reads, and the id it selects,
    // so SQLite answers the `id IN (...)` lists from the index alone: half the time of a
    // name search over 1,000 patients, which otherwise visits every matching row.
    "DROP INDEX IF EXISTS search_token_value",
    "CREATE INDEX IF NOT EXISTS search_token_covering ON search_token (tenant, resource_type, param, code, system, id)",
    "DROP INDEX IF EXISTS search_token_owner",
    "CREATE INDEX IF NOT EXISTS search_token_probe ON search_token (tenant, resource_type, id, param, code, system)",
    "CREATE TABLE IF NOT EXISTS search_string (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        normalized TEXT NOT NULL, exact TEXT NOT NULL)",
    "DROP INDEX IF EXISTS search_string_value",
    "CREATE INDEX IF NOT EXISTS search_string_covering ON search_string (tenant, resource_type, param, normalized, exact, id)",
    "DROP INDEX IF EXISTS search_string_owner",
    "CREATE INDEX IF NOT EXISTS search_string_probe ON search_string (tenant, resource_type, id, param, normalized, exact)",
    "CREATE TABLE IF NOT EXISTS search_date (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        low INTEGER NOT NULL, high INTEGER NOT NULL)",
    "DROP INDEX IF EXISTS search_date_value",
    "CREATE INDEX IF NOT EXISTS search_date_covering ON search_date (tenant, resource_type, param, low, high, id)",
    "DROP INDEX IF EXISTS search_date_owner",
    "CREATE INDEX IF NOT EXISTS search_date_probe ON search_date (tenant, resource_type, id, param, low, high)",
    "CREATE TABLE IF NOT EXISTS search_reference (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        target_type TEXT NOT NULL, target_id TEXT NOT NULL)",
    // What references a target ($everything's compartment): covering too, or SQLite prefers the
    // covering index below and scans every reference in the tenant.
    "DROP INDEX IF EXISTS search_reference_value",
    "CREATE INDEX IF NOT EXISTS search_reference_target ON search_reference (tenant, target_id, target_type, param, resource_type, id)",
    "DROP INDEX IF EXISTS search_reference_param",
    "CREATE INDEX IF NOT EXISTS search_reference_covering ON search_reference (tenant, resource_type, param, target_id, target_type, id)",
    "DROP INDEX IF EXISTS search_reference_owner",
    "CREATE INDEX IF NOT EXISTS search_reference_probe ON search_reference (tenant, resource_type, id, param, target_type, target_id)",
];

/// What a query of stored resources selects from `resource_current r`, with the order key.
const STORED_COLUMNS: &str = "r.resource_type, r.id, r.version, r.last_updated, r.last_updated_ms, r.body";

/// The order of a search page (ties by id).
#[derive(Debug, Clone, Copy)]
enum PageOrder {
    Oldest,
    Newest,
    /// Oldest first, over an [`IndexForm::Probe`] filter's walk.
    Walked,
}

/// How [`SqliteStore::fetch_stored`] reads a stored body: parsed into a `Value`, or kept as
/// its JSON text (`String`) for callers that hand it on unread. Bodies were checked to be
/// JSON objects when they were written.
trait StoredBody: Sized {
    fn from_stored(stored: &[u8]) -> Result<Self, StoreError>;
}

impl StoredBody for Value {
    fn from_stored(stored: &[u8]) -> Result<Value, StoreError> {
        body::read_text(stored, |text| {
            serde_json::from_str(text)
                .map_err(|error| StoreError::Database(format!("a stored resource is not JSON: {error}")))
        })
    }
}

impl StoredBody for String {
    fn from_stored(stored: &[u8]) -> Result<String, StoreError> {
        body::decode_text(stored)
    }
}

/// A stored resource as [`SqliteStore::fetch_stored`] reads it, its body as `B`.
struct FetchedRow<B> {
    resource_type: String,
    id: String,
    version_id: u64,
    last_updated: String,
    last_updated_ms: i64,
    /// What the query tagged the row with (the reference's parameter, for `referencing`).
    tag: Option<String>,
    body: Option<B>,
}

impl FetchedRow<Value> {
    fn into_stored(self) -> StoredResource {
        StoredResource {
            resource_type: self.resource_type,
            id: self.id,
            version_id: self.version_id,
            last_updated: self.last_updated,
            resource: self.body,
        }
    }
}

/// A search's page, read with bodies as `B`.
struct FoundPage<B> {
    rows: Vec<FetchedRow<B>>,
    total: Option<u64>,
    has_more: bool,
    used_params: Vec<(String, String)>,
}

/// From this many index rows on, a condition's id list costs more to build than probing
/// resources in page order usually does.
const LONG_ID_LIST: usize = 256;
/// How many resources a probed page may walk per row it returns before the id list takes over:
/// probing wins while at least one resource in this many matches.
const PROBE_WINDOW_PER_ROW: usize = 8;
/// Deeper pages always use the id list: the window would grow past what probing saves.
const MAX_PROBED_PAGE_END: usize = 1000;

fn database_error(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// Sets (`Some`) or reads (`None`) how large the memdb database of `connection` may grow, and
/// returns the limit in force. memdb refuses to grow past 1 GiB unless told otherwise; the
/// `:memory:` database the in-memory store used before had no bound but the machine's memory,
/// and [`SqliteStore::in_memory`] keeps it so. sqlx has no option for it: this is SQLite's
/// `SQLITE_FCNTL_SIZE_LIMIT`.
#[allow(unsafe_code)]
async fn memdb_size_limit(connection: &mut SqliteConnection, limit: Option<i64>) -> Result<i64, StoreError> {
    let mut handle = connection.lock_handle().await.map_err(database_error)?;
    // A negative limit leaves the limit as it is and reports it.
    let mut limit = limit.unwrap_or(-1);
    // SAFETY: the handle is an open connection, held locked for this call; "main" is a
    // nul-terminated schema name; for SQLITE_FCNTL_SIZE_LIMIT SQLite reads and writes the i64
    // the pointer designates, which lives across the call.
    let code = unsafe {
        libsqlite3_sys::sqlite3_file_control(
            handle.as_raw_handle().as_ptr(),
            c"main".as_ptr(),
            libsqlite3_sys::SQLITE_FCNTL_SIZE_LIMIT,
            (&raw mut limit).cast(),
        )
    };
    if code == libsqlite3_sys::SQLITE_OK {
        Ok(limit)
    } else {
        Err(StoreError::Database(format!(
            "SQLite refused to set or report the in-memory database's size limit (code {code})"
        )))
    }
}

/// Which way answered a search page without a total.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PagePlan {
    /// The probed walk in page order found the page.
    Walk,
    /// The id list did: the condition's index rows were few, or the walk's window held too
    /// few matches.
    IdList,
}

/// The [`PagePlan`] that answered each recent search filter, kept for [`PLAN_LIFETIME`].
///
/// Only a choice of plan: both give the same page, so an entry the data has outgrown costs
/// time for a moment, never a wrong answer, and writes need not invalidate anything.
#[derive(Debug, Default)]
struct PagePlans {
    plans: std::sync::Mutex<std::collections::HashMap<String, (PagePlan, Instant)>>,
}

/// How long a remembered plan is used before the index rows are counted again.
const PLAN_LIFETIME: Duration = Duration::from_secs(1);
/// Remembered filters at most; past that the memory starts afresh.
const MAX_PAGE_PLANS: usize = 1024;

impl PagePlans {
    /// The filter with its values (tenant and resource type included) identifies the plan.
    fn key(filter: &str, values: &[SqlValue]) -> String {
        format!("{filter}\u{0}{values:?}")
    }

    fn get(&self, key: &str) -> Option<PagePlan> {
        let plans = self.plans.lock().ok()?;
        plans
            .get(key)
            .filter(|(_, since)| since.elapsed() < PLAN_LIFETIME)
            .map(|(plan, _)| *plan)
    }

    fn remember(&self, key: String, plan: PagePlan) {
        if let Ok(mut plans) = self.plans.lock() {
            if plans.len() >= MAX_PAGE_PLANS && !plans.contains_key(&key) {
                plans.clear();
            }
            plans.insert(key, (plan, Instant::now()));
        }
    }
}

/// Begins a transaction that writes, holding SQLite's write lock from its first statement.
///
/// A deferred `BEGIN` takes the lock only at the first write, after the transaction has read:
/// if another connection (another process on the same file) writes meanwhile, SQLite cannot
/// let the upgrade wait, since the read snapshot would be stale or the two would deadlock, and
/// fails the write at once with "database is locked". `BEGIN IMMEDIATE` waits for the lock up
/// to the busy timeout instead, before anything is read.
async fn begin_writing(connection: &mut SqliteConnection) -> Result<sqlx::Transaction<'_, sqlx::Sqlite>, StoreError> {
    connection.begin_with("BEGIN IMMEDIATE").await.map_err(database_error)
}

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    connections: Connections,
    /// Reads for callers that may block their thread ([`ResourceStore::search_resources_json_blocking`]).
    direct: DirectReaders,
    /// One writer at a time: SQLite allows one anyway, and waiting here is cheaper than
    /// retrying a busy transaction.
    writer: tokio::sync::Mutex<()>,
    page_plans: PagePlans,
}

impl SqliteStore {
    /// A connection for one query or transaction.
    async fn lease(&self) -> Result<Lease<'_>, StoreError> {
        self.connections.acquire().await.map_err(database_error)
    }

    /// Whether the first index condition has at least [`LONG_ID_LIST`] index rows.
    async fn has_long_id_list(
        reads: &mut impl Reads,
        tenant: &str,
        resource_type: &str,
        compiled: &CompiledSearch,
    ) -> Result<bool, StoreError> {
        match compiled.has_index_rows(tenant, resource_type, LONG_ID_LIST) {
            Some((exists, values)) => Ok(reads.integer(format!("SELECT {exists}"), &values).await? > 0),
            None => Ok(false),
        }
    }

    /// A search's page and one resource more (which says whether there is a next page).
    ///
    /// With many matches, walking the resources in page order and probing each one finds a
    /// page long before SQLite would have collected every matching id; with few, the id list
    /// is the cheap way. So when the matches (the total, or else the first index condition's
    /// rows) are many, a probed walk over a bounded window of resources comes first, and the
    /// id list answers when that window holds too few matches. Without a total, which of the
    /// two answered is remembered for the same filter a while ([`PagePlans`]), so the index
    /// rows are not counted again for every page.
    async fn page<B: StoredBody>(
        &self,
        reads: &mut impl Reads,
        tenant: &str,
        query: &SearchQuery,
        compiled: &CompiledSearch,
        total: Option<u64>,
    ) -> Result<Vec<FetchedRow<B>>, StoreError> {
        let resource_type = query.resource_type.as_str();
        let wanted = query.offset + query.count + 1;
        let ascending = query.sort_last_updated != Some(SortOrder::Descending);
        if ascending && wanted <= MAX_PROBED_PAGE_END && compiled.selects_through_index() {
            let window = IndexForm::Probe {
                window: PROBE_WINDOW_PER_ROW * wanted,
            };
            let (filter, values) = compiled.filter(tenant, resource_type, window);
            // Without a total, the plan that answered this filter last (None: not known).
            let key = total.is_none().then(|| PagePlans::key(&filter, &values));
            let known = key.as_deref().and_then(|key| self.page_plans.get(key));
            let walk = match (total, known) {
                (Some(total), _) => total >= LONG_ID_LIST as u64,
                (None, Some(plan)) => plan == PagePlan::Walk,
                (None, None) => SqliteStore::has_long_id_list(reads, tenant, resource_type, compiled).await?,
            };
            let mut page = None;
            if walk {
                let walked = SqliteStore::fetch_page(reads, &filter, &values, PageOrder::Walked, query).await?;
                if walked.len() > query.count {
                    page = Some(walked);
                }
            }
            let answered = if page.is_some() {
                PagePlan::Walk
            } else {
                PagePlan::IdList
            };
            // A plan is counted afresh once it is PLAN_LIFETIME old, unless it just changed.
            if let Some(key) = key
                && known != Some(answered)
            {
                self.page_plans.remember(key, answered);
            }
            if let Some(page) = page {
                return Ok(page);
            }
        }
        let (filter, values) = compiled.filter(tenant, resource_type, IndexForm::IdList);
        let order = match query.sort_last_updated {
            Some(SortOrder::Descending) => PageOrder::Newest,
            _ => PageOrder::Oldest,
        };
        SqliteStore::fetch_page(reads, &filter, &values, order, query).await
    }

    /// The resources of `filter` (`FROM ... r WHERE ...`) in `order`, from the
    /// query's offset, one more than its count.
    async fn fetch_page<B: StoredBody>(
        reads: &mut impl Reads,
        filter: &str,
        values: &[SqlValue],
        order: PageOrder,
        query: &SearchQuery,
    ) -> Result<Vec<FetchedRow<B>>, StoreError> {
        let order_by = match order {
            PageOrder::Oldest => "r.last_updated_ms ASC, r.id",
            PageOrder::Newest => "r.last_updated_ms DESC, r.id",
            PageOrder::Walked => WALK_ORDER,
        };
        // LIMIT and OFFSET are written as numbers, not bound: SQLite's planner reads a bound
        // LIMIT, which marks the statement to be prepared again on every bind (5% of a
        // search's CPU). Both are integers this code computed, never request text.
        let select = format!(
            "SELECT {STORED_COLUMNS}, NULL AS tag {filter} ORDER BY {order_by} LIMIT {} OFFSET {}",
            query.count + 1,
            query.offset
        );
        let mut rows = SqliteStore::fetch_stored(reads, select, values).await?;
        rows.sort_by(|a, b| {
            let by_time = a.last_updated_ms.cmp(&b.last_updated_ms);
            match order {
                PageOrder::Oldest | PageOrder::Walked => by_time,
                PageOrder::Newest => by_time.reverse(),
            }
            .then_with(|| a.id.cmp(&b.id))
        });
        Ok(rows)
    }

    /// The rows of `select` (which selects [`STORED_COLUMNS`] and a text `tag`), in no
    /// particular order.
    ///
    /// The rows come back as one text built by SQLite: sqlx hands every row from its
    /// connection thread to the async side on its own, a thread switch per row on a busy core
    /// (a quarter of `$everything`'s CPU over 500 resources), where one text is one handoff.
    /// Each row is a JSON array of its columns ending with the body's length in bytes, then the
    /// body as stored (a frame, `body.rs`), so a body is sliced out rather than scanned for its
    /// end; one read as text is never parsed at all. The text holds the frames' bytes as they
    /// are, so it is read as bytes. SQLite's `group_concat` keeps no order, so callers sort.
    async fn fetch_stored<B: StoredBody>(
        reads: &mut impl Reads,
        select: String,
        values: &[SqlValue],
    ) -> Result<Vec<FetchedRow<B>>, StoreError> {
        let sql = format!(
            "SELECT COALESCE(group_concat(json_array(resource_type, id, version, last_updated, last_updated_ms, tag, \
             octet_length(body)) || COALESCE(body, ''), ''), '') FROM ({select})"
        );
        reads.bytes(sql, values, SqliteStore::parse_rows).await
    }

    /// The rows of [`SqliteStore::fetch_stored`]'s text.
    fn parse_rows<B: StoredBody>(text: &[u8]) -> Result<Vec<FetchedRow<B>>, StoreError> {
        let unreadable = |what: &str| StoreError::Database(format!("a page of stored resources is unreadable: {what}"));
        type Columns = (String, String, u64, String, i64, Option<String>, Option<usize>);
        let mut rows = Vec::new();
        let mut rest = text;
        while !rest.is_empty() {
            let mut columns = serde_json::Deserializer::from_slice(rest).into_iter::<Columns>();
            let (resource_type, id, version_id, last_updated, last_updated_ms, tag, length) = columns
                .next()
                .ok_or_else(|| unreadable("a row ends early"))?
                .map_err(|error| unreadable(&error.to_string()))?;
            rest = &rest[columns.byte_offset()..];
            let body = match length {
                Some(length) => {
                    let stored = rest.get(..length).ok_or_else(|| unreadable("a body is cut short"))?;
                    rest = &rest[length..];
                    Some(B::from_stored(stored)?)
                }
                None => None,
            };
            rows.push(FetchedRow {
                resource_type,
                id,
                version_id,
                last_updated,
                last_updated_ms,
                tag,
                body,
            });
        }
        Ok(rows)
    }

    /// A search: its page (bodies read as `B`), the total when asked for, and whether more follow.
    async fn find<B: StoredBody>(
        &self,
        reads: &mut impl Reads,
        tenant: &str,
        query: &SearchQuery,
    ) -> Result<FoundPage<B>, StoreError> {
        let compiled = compile(&query.resource_type, &query.params, query.strict).map_err(StoreError::Invalid)?;
        let resource_type = query.resource_type.as_str();
        let total = if query.want_total || query.count_only {
            let (sql, values) = compiled.index_only_count(tenant, resource_type).unwrap_or_else(|| {
                let (filter, values) = compiled.filter(tenant, resource_type, IndexForm::IdList);
                (format!("SELECT COUNT(*) AS total {filter}"), values)
            });
            Some(reads.integer(sql, &values).await? as u64)
        } else {
            None
        };
        if query.count_only {
            return Ok(FoundPage {
                rows: Vec::new(),
                total,
                has_more: false,
                used_params: compiled.used,
            });
        }
        let mut rows = self.page(reads, tenant, query, &compiled, total).await?;
        let has_more = rows.len() > query.count;
        rows.truncate(query.count);
        Ok(FoundPage {
            rows,
            total,
            has_more,
            used_params: compiled.used,
        })
    }

    /// Opens (or creates) the database file `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is fsynced at every commit, so a 2xx survives kill -9 and power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        // Readers run beside the one writer (WAL).
        let connections = Connections::open(&options, 4).await.map_err(database_error)?;
        SqliteStore::with_connections(connections, Database::File(path.to_owned())).await
    }

    /// A throw-away in-memory database (`--memory`).
    ///
    /// It lives in SQLite's memdb VFS, not in `:memory:`. A `:memory:` database keeps every page
    /// in its page cache, and a commit that follows a page split scans that whole cache
    /// (`pcache1TruncateUnsafe`: a third of the SQLite thread's time under the benchmark's W3),
    /// so commits got slower as the database grew. memdb keeps the pages in one buffer behind
    /// an ordinary, bounded page cache.
    ///
    /// The name starts with `/`, which makes it one database for every connection of this
    /// process that opens the name (the direct readers do), kept while one is open. Each store
    /// has a name of its own.
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let name = format!("/fhirop-{}", uuid::Uuid::new_v4());
        let options = SqliteConnectOptions::new()
            .filename(&name)
            .vfs("memdb")
            .create_if_missing(true)
            // Nothing outlives the process: the rollback journal stays in memory, and nothing
            // is synced.
            .journal_mode(SqliteJournalMode::Memory)
            .synchronous(SqliteSynchronous::Off);
        // One sqlx connection: memdb has no WAL, so a second writer would only wait.
        let connections = Connections::open(&options, 1).await.map_err(database_error)?;
        {
            let mut connection = connections.acquire().await.map_err(database_error)?;
            memdb_size_limit(&mut connection, Some(i64::MAX)).await?;
        }
        SqliteStore::with_connections(connections, Database::Memory(name)).await
    }

    async fn with_connections(connections: Connections, database: Database) -> Result<SqliteStore, StoreError> {
        {
            let mut connection = connections.acquire().await.map_err(database_error)?;
            SqliteStore::key_current_versions(&mut connection).await?;
            for statement in SCHEMA {
                sqlx::query(*statement)
                    .execute(&mut *connection)
                    .await
                    .map_err(database_error)?;
            }
        }
        Ok(SqliteStore {
            connections,
            direct: DirectReaders::new(database),
            writer: tokio::sync::Mutex::new(()),
            page_plans: PagePlans::default(),
        })
    }

    /// Moves `resource_current` of a database written before it was kept in page order
    /// ([`RESOURCE_CURRENT`]) into that layout, in one transaction. Its old indexes go with
    /// the old table; the schema then builds the new one.
    async fn key_current_versions(connection: &mut SqliteConnection) -> Result<(), StoreError> {
        let layout: Option<String> =
            sqlx::query_scalar("SELECT sql FROM sqlite_schema WHERE type = 'table' AND name = 'resource_current'")
                .fetch_optional(&mut *connection)
                .await
                .map_err(database_error)?;
        if layout.is_none_or(|sql| sql.contains("WITHOUT ROWID")) {
            return Ok(());
        }
        let mut transaction = begin_writing(connection).await?;
        let keyed = RESOURCE_CURRENT.replacen("resource_current", "resource_current_keyed", 1);
        for statement in [
            keyed.as_str(),
            "INSERT INTO resource_current_keyed (tenant, resource_type, id, version, last_updated, last_updated_ms, deleted, body) \
             SELECT tenant, resource_type, id, version, last_updated, last_updated_ms, deleted, body FROM resource_current",
            "DROP TABLE resource_current",
            "ALTER TABLE resource_current_keyed RENAME TO resource_current",
        ] {
            sqlx::query(AssertSqlSafe(statement))
                .execute(&mut *transaction)
                .await
                .map_err(database_error)?;
        }
        transaction.commit().await.map_err(database_error)
    }
}

fn row_to_stored(row: &sqlx::sqlite::SqliteRow) -> Result<StoredResource, StoreError> {
    let stored: Option<Vec<u8>> = row.try_get("body").map_err(database_error)?;
    let resource = stored.map(|stored| Value::from_stored(&stored)).transpose()?;
    Ok(StoredResource {
        resource_type: row.try_get("resource_type").map_err(database_error)?,
        id: row.try_get("id").map_err(database_error)?,
        version_id: row.try_get::<i64, _>("version").map_err(database_error)? as u64,
        last_updated: row.try_get("last_updated").map_err(database_error)?,
        resource,
    })
}

/// Where a search's statements run: each selects one value in one row.
trait Reads {
    /// The integer `sql` selects.
    async fn integer(&mut self, sql: String, values: &[SqlValue]) -> Result<i64, StoreError>;

    /// What `read` makes of the text or bytes `sql` selects (NULL reads as empty).
    async fn bytes<T>(
        &mut self,
        sql: String,
        values: &[SqlValue],
        read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError>;
}

/// Through sqlx, on a connection leased for each statement: never blocks the caller.
struct Leased<'s>(&'s SqliteStore);

impl Leased<'_> {
    async fn row(&self, sql: String, values: &[SqlValue]) -> Result<sqlx::sqlite::SqliteRow, StoreError> {
        bind_all(sqlx::query(AssertSqlSafe(sql)), values)
            .fetch_one(&mut *self.0.lease().await?)
            .await
            .map_err(database_error)
    }
}

impl Reads for Leased<'_> {
    async fn integer(&mut self, sql: String, values: &[SqlValue]) -> Result<i64, StoreError> {
        self.row(sql, values).await?.try_get(0).map_err(database_error)
    }

    async fn bytes<T>(
        &mut self,
        sql: String,
        values: &[SqlValue],
        read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let row = self.row(sql, values).await?;
        read(row.try_get::<&[u8], _>(0).map_err(database_error)?)
    }
}

/// On the calling thread, through one of the store's direct connections: blocks the caller
/// for the statement, and its futures never wait.
struct OnThisThread<'c>(&'c rusqlite::Connection);

impl OnThisThread<'_> {
    fn row<T>(
        &self,
        sql: &str,
        values: &[SqlValue],
        read: impl FnOnce(&rusqlite::Row<'_>) -> rusqlite::Result<T>,
    ) -> Result<T, StoreError> {
        self.0
            .prepare_cached(sql)
            .and_then(|mut statement| statement.query_row(rusqlite::params_from_iter(values), read))
            .map_err(direct_error)
    }
}

impl Reads for OnThisThread<'_> {
    async fn integer(&mut self, sql: String, values: &[SqlValue]) -> Result<i64, StoreError> {
        self.row(&sql, values, |row| row.get(0))
    }

    async fn bytes<T>(
        &mut self,
        sql: String,
        values: &[SqlValue],
        read: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.row(&sql, values, |row| {
            Ok(read(row.get_ref(0)?.as_bytes_or_null()?.unwrap_or_default()))
        })?
    }
}

/// The bodies of `rows` (JSON texts) as one JSON array.
fn json_array_of(rows: &[FetchedRow<String>]) -> String {
    let mut text = String::from("[");
    for body in rows.iter().filter_map(|row| row.body.as_deref()) {
        if text.len() > 1 {
            text.push(',');
        }
        text.push_str(body);
    }
    text.push(']');
    text
}

fn read_result(stored: Option<StoredResource>) -> ReadResult {
    match stored {
        Some(stored) if stored.is_deleted() => ReadResult::Deleted(stored),
        Some(stored) => ReadResult::Found(stored),
        None => ReadResult::NotFound,
    }
}

type SqliteQuery<'q> = sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>;

fn bind_value<'q>(query: SqliteQuery<'q>, value: &'q SqlValue) -> SqliteQuery<'q> {
    match value {
        SqlValue::Text(text) => query.bind(text.as_str()),
        SqlValue::Integer(number) => query.bind(*number),
        SqlValue::Null => query.bind(None::<String>),
    }
}

fn bind_all<'q>(query: SqliteQuery<'q>, values: &'q [SqlValue]) -> SqliteQuery<'q> {
    values.iter().fold(query, bind_value)
}

/// The current time as `meta.lastUpdated` and as epoch milliseconds.
fn now() -> (String, i64) {
    let time = SystemTime::now();
    let millis = time
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as i64);
    (format_instant(time), millis)
}

/// Sets `id`, `meta.versionId`, `meta.lastUpdated` and `meta.project`, keeping the rest of
/// `meta`.
fn stamp(resource: &mut Value, tenant: &str, id: &str, version: u64, last_updated: &str) {
    let Value::Object(members) = resource else { return };
    let mut meta = match members.shift_remove("meta") {
        Some(Value::Object(meta)) => meta,
        _ => Map::new(),
    };
    meta.insert("versionId".into(), version.to_string().into());
    meta.insert("lastUpdated".into(), last_updated.into());
    // Medplum's meta.project: the project (tenant) the resource belongs to.
    meta.insert("project".into(), tenant.into());
    // FHIR's member order: resourceType, id, meta, then the rest. Only members out of place
    // move: rebuilding the map hashed every member's key again (a quarter of a small create).
    let at =
        |members: &Map<String, Value>, index: usize, key: &str| members.keys().nth(index).is_some_and(|k| k == key);
    let mut next = 0;
    if members.contains_key("resourceType") {
        if !at(members, 0, "resourceType")
            && let Some(resource_type) = members.shift_remove("resourceType")
        {
            members.shift_insert(0, "resourceType".into(), resource_type);
        }
        next = 1;
    }
    if at(members, next, "id") {
        members.insert("id".into(), id.into());
    } else {
        members.shift_remove("id");
        members.shift_insert(next, "id".into(), id.into());
    }
    members.shift_insert(next + 1, "meta".into(), Value::Object(meta));
}

async fn current_version(
    connection: &mut SqliteConnection,
    tenant: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<(u64, bool)>, StoreError> {
    let row =
        sqlx::query("SELECT version, deleted FROM resource_current WHERE tenant = ? AND resource_type = ? AND id = ?")
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&mut *connection)
            .await
            .map_err(database_error)?;
    row.map(|row| {
        Ok((
            row.try_get::<i64, _>("version").map_err(database_error)? as u64,
            row.try_get::<i64, _>("deleted").map_err(database_error)? != 0,
        ))
    })
    .transpose()
}

/// Whether versions start their resources' lives or follow ones that may have index rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Lineage {
    /// No row exists for these ids: current rows are inserted (a clash is an error) and there
    /// are no index rows to clear.
    First,
    /// Rows exist: they are replaced and their index rows are cleared first.
    Following,
}

/// One version to write: its key, its body as stored (`None` for a deletion) and its index rows.
struct VersionRow {
    resource_type: String,
    id: String,
    version: u64,
    body: Option<Vec<u8>>,
    index: Vec<(&'static str, IndexValue)>,
}

impl VersionRow {
    fn new(resource_type: String, id: String, version: u64, resource: Option<&Value>) -> VersionRow {
        VersionRow {
            index: resource
                .map(|resource| index_values(&resource_type, resource))
                .unwrap_or_default(),
            body: resource.map(|resource| body::encode(fhirop::format::json_text(resource))),
            resource_type,
            id,
            version,
        }
    }
}

/// Binds a current row: tenant, type, id, version, lastUpdated, its epoch milliseconds (which
/// search pages order by), deleted and body.
fn bind_version<'q>(
    query: SqliteQuery<'q>,
    tenant: &'q str,
    version: &'q VersionRow,
    last_updated: &'q str,
    last_updated_ms: i64,
) -> SqliteQuery<'q> {
    query
        .bind(tenant)
        .bind(&version.resource_type)
        .bind(&version.id)
        .bind(version.version as i64)
        .bind(last_updated)
        .bind(last_updated_ms)
        .bind(i64::from(version.body.is_none()))
        .bind(version.body.as_deref())
}

/// Rows one multi-row INSERT carries at most (at eight bound values each, far below SQLite's
/// limit on variables).
const ROWS_PER_STATEMENT: usize = 100;

/// `(?, ?, ...), (?, ?, ...)`: `rows` tuples of `columns` placeholders.
fn placeholders(rows: usize, columns: usize) -> String {
    let tuple = format!("({})", vec!["?"; columns].join(", "));
    vec![tuple; rows].join(", ")
}

/// Writes versions and their index rows. Every statement is a round trip to the connection's
/// thread, so rows go in multi-row INSERTs (per table, across all the versions) rather than
/// one statement per row: a batch of creates costs a handful of statements.
async fn write_versions(
    connection: &mut SqliteConnection,
    tenant: &str,
    versions: &[VersionRow],
    (last_updated, last_updated_ms): &(String, i64),
    lineage: Lineage,
) -> Result<(), StoreError> {
    if lineage == Lineage::Following {
        for version in versions {
            // The version being replaced joins the history (a database of the old layout has
            // it there already).
            sqlx::query(
                "INSERT OR IGNORE INTO resource_version (tenant, resource_type, id, version, last_updated, deleted, body) \
                 SELECT tenant, resource_type, id, version, last_updated, deleted, body FROM resource_current \
                 WHERE tenant = ? AND resource_type = ? AND id = ?",
            )
            .bind(tenant)
            .bind(&version.resource_type)
            .bind(&version.id)
            .execute(&mut *connection)
            .await
            .map_err(database_error)?;
            for table in index_tables() {
                sqlx::query(AssertSqlSafe(format!(
                    "DELETE FROM {table} WHERE tenant = ? AND resource_type = ? AND id = ?"
                )))
                .bind(tenant)
                .bind(&version.resource_type)
                .bind(&version.id)
                .execute(&mut *connection)
                .await
                .map_err(database_error)?;
            }
        }
    }
    let verb = match lineage {
        Lineage::First => "INSERT",
        Lineage::Following => "INSERT OR REPLACE",
    };
    for chunk in versions.chunks(ROWS_PER_STATEMENT) {
        let sql = format!(
            "{verb} INTO resource_current (tenant, resource_type, id, version, last_updated, last_updated_ms, deleted, body) VALUES {}",
            placeholders(chunk.len(), 8)
        );
        let query = chunk.iter().fold(sqlx::query(AssertSqlSafe(sql)), |query, version| {
            bind_version(query, tenant, version, last_updated, *last_updated_ms)
        });
        if let Err(error) = query.execute(&mut *connection).await {
            return Err(match error.as_database_error() {
                Some(database) if database.is_unique_violation() => existing_one(connection, tenant, chunk).await,
                _ => database_error(error),
            });
        }
    }
    // Rows per table, in the order of `index_tables()`, with the value columns of each.
    let mut rows_by_table: [Vec<(&VersionRow, &'static str, &IndexValue)>; 4] = Default::default();
    for version in versions {
        for (param, value) in &version.index {
            let table = match value {
                IndexValue::Token { .. } => 0,
                IndexValue::String { .. } => 1,
                IndexValue::Date { .. } => 2,
                IndexValue::Reference { .. } => 3,
            };
            rows_by_table[table].push((version, param, value));
        }
    }
    let value_columns = [
        "system, code",
        "normalized, exact",
        "low, high",
        "target_type, target_id",
    ];
    for ((table, columns), rows) in index_tables().into_iter().zip(value_columns).zip(&rows_by_table) {
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            let sql = format!(
                "INSERT INTO {table} (tenant, resource_type, id, param, {columns}) VALUES {}",
                placeholders(chunk.len(), 6)
            );
            let mut query = sqlx::query(AssertSqlSafe(sql));
            for (version, param, value) in chunk {
                query = query
                    .bind(tenant)
                    .bind(&version.resource_type)
                    .bind(&version.id)
                    .bind(*param);
                query = match value {
                    IndexValue::Token { system, code } => query.bind(system.as_deref()).bind(code),
                    IndexValue::String { normalized, exact } => query.bind(normalized).bind(exact),
                    IndexValue::Date { low, high } => query.bind(low).bind(high),
                    IndexValue::Reference { target_type, target_id } => query.bind(target_type).bind(target_id),
                };
            }
            query.execute(&mut *connection).await.map_err(database_error)?;
        }
    }
    Ok(())
}

/// The error for a batch of creates that clashed with an existing id, naming the first such id.
async fn existing_one(connection: &mut SqliteConnection, tenant: &str, versions: &[VersionRow]) -> StoreError {
    for version in versions {
        match current_version(connection, tenant, &version.resource_type, &version.id).await {
            Ok(Some(_)) => {
                return StoreError::Invalid(format!("{}/{} already exists", version.resource_type, version.id));
            }
            Ok(None) => {}
            Err(error) => return error,
        }
    }
    StoreError::Invalid("a created resource's id already exists".into())
}

fn resource_key(resource: &Value) -> Result<(String, String), StoreError> {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .ok_or_else(|| StoreError::Invalid("a resource needs a resourceType".into()))?;
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .ok_or_else(|| StoreError::Invalid("a resource to store needs an id".into()))?;
    Ok((resource_type.to_owned(), id.to_owned()))
}

/// A create, from a tree or from the caller's JSON text.
enum Creation {
    Tree(Value),
    Json {
        resource_type: String,
        id: String,
        json: String,
    },
}

/// Stores consecutive creates together (they read nothing, so nothing between them can
/// depend on another's effect) and appends their results.
async fn create_all(
    connection: &mut SqliteConnection,
    tenant: &str,
    creations: &mut Vec<Creation>,
    time: &(String, i64),
    results: &mut Vec<WriteResult>,
) -> Result<(), StoreError> {
    if creations.is_empty() {
        return Ok(());
    }
    let mut versions = Vec::with_capacity(creations.len());
    for creation in creations.iter_mut() {
        versions.push(match creation {
            Creation::Tree(resource) => {
                let (resource_type, id) = resource_key(resource)?;
                stamp(resource, tenant, &id, 1, &time.0);
                VersionRow::new(resource_type, id, 1, Some(resource))
            }
            Creation::Json {
                resource_type,
                id,
                json,
            } => {
                let index = index_values_of_json(resource_type, json)
                    .map_err(|error| StoreError::Invalid(format!("a resource to store is not JSON: {error}")))?;
                let body = stamp_json(json, resource_type, id, tenant, 1, &time.0)?;
                VersionRow {
                    resource_type: std::mem::take(resource_type),
                    id: std::mem::take(id),
                    version: 1,
                    body: Some(body::encode(body)),
                    index,
                }
            }
        });
    }
    write_versions(connection, tenant, &versions, time, Lineage::First).await?;
    for (version, creation) in versions.into_iter().zip(creations.drain(..)) {
        results.push(WriteResult {
            stored: match creation {
                Creation::Tree(resource) => Some(StoredResource {
                    resource_type: version.resource_type,
                    id: version.id,
                    version_id: 1,
                    last_updated: time.0.clone(),
                    resource: Some(resource),
                }),
                Creation::Json { .. } => None,
            },
            created: true,
        });
    }
    Ok(())
}

/// `json` (see [`Write::CreateJson`], checked to be JSON by [`index_values_of_json`]) with
/// the `meta` [`stamp`] gives a tree, in the same place: after `resourceType` and `id`.
fn stamp_json(
    json: &str,
    resource_type: &str,
    id: &str,
    tenant: &str,
    version: u64,
    last_updated: &str,
) -> Result<String, StoreError> {
    let quoted = |text: &str| serde_json::to_string(text).unwrap_or_default();
    let head = format!(r#"{{"resourceType":{},"id":{}"#, quoted(resource_type), quoted(id));
    let rest = json
        .strip_prefix(&head)
        .filter(|rest| rest.starts_with([',', '}']))
        .ok_or_else(|| {
            StoreError::Invalid(format!(
                "a resource given as JSON must begin with its resourceType {resource_type} and id {id}"
            ))
        })?;
    Ok(format!(
        r#"{head},"meta":{{"versionId":"{version}","lastUpdated":{},"project":{}}}{rest}"#,
        quoted(last_updated),
        quoted(tenant)
    ))
}

/// A write as a transaction takes it: consecutive creates are stored together, any other
/// write on its own.
enum Step {
    Create(Creation),
    Change(Change),
}

/// A write that reads the current version first.
enum Change {
    Update { resource: Value, if_match: Option<u64> },
    Delete { resource_type: String, id: String },
}

impl From<Write> for Step {
    fn from(write: Write) -> Step {
        match write {
            Write::Create { resource } => Step::Create(Creation::Tree(resource)),
            Write::CreateJson {
                resource_type,
                id,
                json,
            } => Step::Create(Creation::Json {
                resource_type,
                id,
                json,
            }),
            Write::Update { resource, if_match } => Step::Change(Change::Update { resource, if_match }),
            Write::Delete { resource_type, id } => Step::Change(Change::Delete { resource_type, id }),
        }
    }
}

/// Applies an update or a deletion.
async fn apply(
    connection: &mut SqliteConnection,
    tenant: &str,
    change: Change,
    time: &(String, i64),
) -> Result<WriteResult, StoreError> {
    match change {
        Change::Update { mut resource, if_match } => {
            let (resource_type, id) = resource_key(&resource)?;
            let current = current_version(connection, tenant, &resource_type, &id).await?;
            if let Some(expected) = if_match
                && current.map(|(version, _)| version) != Some(expected)
            {
                return Err(StoreError::VersionConflict {
                    expected,
                    current: current.map(|(version, _)| version),
                });
            }
            let version = current.map_or(1, |(version, _)| version + 1);
            let created = current.is_none_or(|(_, deleted)| deleted);
            let lineage = if current.is_some() {
                Lineage::Following
            } else {
                Lineage::First
            };
            stamp(&mut resource, tenant, &id, version, &time.0);
            let row = VersionRow::new(resource_type, id, version, Some(&resource));
            write_versions(connection, tenant, std::slice::from_ref(&row), time, lineage).await?;
            Ok(WriteResult {
                stored: Some(StoredResource {
                    resource_type: row.resource_type,
                    id: row.id,
                    version_id: version,
                    last_updated: time.0.clone(),
                    resource: Some(resource),
                }),
                created,
            })
        }
        Change::Delete { resource_type, id } => {
            let current = current_version(connection, tenant, &resource_type, &id).await?;
            let Some((version, false)) = current else {
                return Ok(WriteResult {
                    stored: None,
                    created: false,
                });
            };
            let row = VersionRow::new(resource_type, id, version + 1, None);
            write_versions(connection, tenant, std::slice::from_ref(&row), time, Lineage::Following).await?;
            Ok(WriteResult {
                stored: Some(StoredResource {
                    resource_type: row.resource_type,
                    id: row.id,
                    version_id: version + 1,
                    last_updated: time.0.clone(),
                    resource: None,
                }),
                created: false,
            })
        }
    }
}

impl ResourceStore for SqliteStore {
    fn read<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ReadResult, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT resource_type, id, version, last_updated, body FROM resource_current WHERE tenant = ? AND resource_type = ? AND id = ?",
            )
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .fetch_optional(&mut *self.lease().await?)
            .await
            .map_err(database_error)?;
            Ok(read_result(row.as_ref().map(row_to_stored).transpose()?))
        })
    }

    fn vread<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
        version_id: u64,
    ) -> BoxFuture<'a, Result<ReadResult, StoreError>> {
        Box::pin(async move {
            let row = sqlx::query(
                "SELECT resource_type, id, version, last_updated, body FROM resource_version WHERE tenant = ? AND resource_type = ? AND id = ? AND version = ? \
                 UNION SELECT resource_type, id, version, last_updated, body FROM resource_current WHERE tenant = ? AND resource_type = ? AND id = ? AND version = ?",
            )
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .bind(version_id as i64)
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .bind(version_id as i64)
            .fetch_optional(&mut *self.lease().await?)
            .await
            .map_err(database_error)?;
            Ok(read_result(row.as_ref().map(row_to_stored).transpose()?))
        })
    }

    fn history<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT resource_type, id, version, last_updated, body FROM resource_version WHERE tenant = ? AND resource_type = ? AND id = ? \
                 UNION SELECT resource_type, id, version, last_updated, body FROM resource_current WHERE tenant = ? AND resource_type = ? AND id = ? \
                 ORDER BY version DESC",
            )
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .fetch_all(&mut *self.lease().await?)
            .await
            .map_err(database_error)?;
            rows.iter().map(row_to_stored).collect()
        })
    }

    fn search<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, StoreError>> {
        Box::pin(async move {
            let found = self.find::<Value>(&mut Leased(self), tenant, query).await?;
            Ok(SearchResult {
                resources: found.rows.into_iter().map(FetchedRow::into_stored).collect(),
                total: found.total,
                has_more: found.has_more,
                used_params: found.used_params,
            })
        })
    }

    fn search_resources_json<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        Box::pin(async move {
            let found = self.find::<String>(&mut Leased(self), tenant, query).await?;
            Ok(json_array_of(&found.rows))
        })
    }

    fn search_resources_json_blocking(&self, tenant: &str, query: &SearchQuery) -> Option<Result<String, StoreError>> {
        Some(self.direct.with(|connection| {
            let mut reads = OnThisThread(connection);
            // Nothing in a direct read waits: its future is ready at the first poll.
            let found = futures_util::FutureExt::now_or_never(self.find::<String>(&mut reads, tenant, query))
                .unwrap_or_else(|| {
                    Err(StoreError::Database(
                        "a direct read waited, which it never does".to_owned(),
                    ))
                })?;
            Ok(json_array_of(&found.rows))
        }))
    }

    fn referencing<'a>(
        &'a self,
        tenant: &'a str,
        target_type: &'a str,
        target_id: &'a str,
        links: &'a [(&'static str, &'static [&'static str])],
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>> {
        Box::pin(async move {
            // CROSS JOIN keeps the reference index as the outer loop: SQLite would otherwise
            // walk every current resource in the ORDER BY's index order and probe each one,
            // which grows with the whole store (Bots' AuditEvents included).
            let select = format!(
                "SELECT {STORED_COLUMNS}, i.param AS tag FROM search_reference i \
                 CROSS JOIN resource_current r ON r.tenant = i.tenant AND r.resource_type = i.resource_type AND r.id = i.id \
                 WHERE i.tenant = ? AND i.target_id = ? AND i.target_type = ? AND r.deleted = 0"
            );
            let values = [
                SqlValue::Text(tenant.to_owned()),
                SqlValue::Text(target_id.to_owned()),
                SqlValue::Text(target_type.to_owned()),
            ];
            let mut rows = SqliteStore::fetch_stored::<Value>(&mut Leased(self), select, &values).await?;
            rows.sort_by(|a, b| {
                (&a.resource_type, a.last_updated_ms, &a.id).cmp(&(&b.resource_type, b.last_updated_ms, &b.id))
            });
            let mut found: Vec<StoredResource> = Vec::new();
            for row in rows {
                let linked = links.iter().any(|(linked_type, params)| {
                    *linked_type == row.resource_type && row.tag.as_deref().is_some_and(|param| params.contains(&param))
                });
                // A resource referencing the target through several parameters comes once;
                // sorted, its rows are neighbours.
                let repeated = found
                    .last()
                    .is_some_and(|last| last.resource_type == row.resource_type && last.id == row.id);
                if linked && !repeated {
                    found.push(row.into_stored());
                }
            }
            Ok(found)
        })
    }

    fn tenants_with<'a>(&'a self, resource_type: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        Box::pin(async move {
            let rows =
                sqlx::query("SELECT DISTINCT tenant FROM resource_current WHERE resource_type = ? AND deleted = 0")
                    .bind(resource_type)
                    .fetch_all(&mut *self.lease().await?)
                    .await
                    .map_err(database_error)?;
            rows.iter()
                .map(|row| row.try_get::<String, _>("tenant").map_err(database_error))
                .collect()
        })
    }

    fn transaction<'a>(
        &'a self,
        tenant: &'a str,
        writes: Vec<Write>,
    ) -> BoxFuture<'a, Result<Vec<WriteResult>, StoreError>> {
        Box::pin(async move {
            let _writer = self.writer.lock().await;
            let mut connection = self.lease().await?;
            let mut transaction = begin_writing(&mut connection).await?;
            let time = now();
            let mut results = Vec::with_capacity(writes.len());
            let mut creates = Vec::new();
            for write in writes {
                match Step::from(write) {
                    Step::Create(creation) => creates.push(creation),
                    Step::Change(change) => {
                        create_all(&mut transaction, tenant, &mut creates, &time, &mut results).await?;
                        results.push(apply(&mut transaction, tenant, change, &time).await?);
                    }
                }
            }
            create_all(&mut transaction, tenant, &mut creates, &time, &mut results).await?;
            transaction.commit().await.map_err(database_error)?;
            Ok(results)
        })
    }

    fn supports_search_param(&self, resource_type: &str, name: &str) -> bool {
        matches!(name, "_id" | "_lastUpdated") || params_of(resource_type).any(|param| param.name == name)
    }

    fn search_params(&self, resource_type: &str) -> Vec<(&'static str, &'static str)> {
        let mut params = vec![("_id", "token"), ("_lastUpdated", "date")];
        params.extend(params_of(resource_type).map(|param| (param.name, param.kind.name())));
        params
    }
}

/// The index tables, for tests that inspect them.
pub fn index_tables() -> [&'static str; 4] {
    use super::search::SearchParamType::*;
    [
        index_table(Token),
        index_table(String),
        index_table(Date),
        index_table(Reference),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn patient(id: &str, family: &str) -> Value {
        json!({"resourceType": "Patient", "id": id, "name": [{"family": family}]})
    }

    #[test]
    fn stamping_puts_type_id_and_meta_first_and_keeps_the_rest_in_order() {
        let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        let cases = [
            json!({"resourceType": "Patient", "name": [], "gender": "male"}),
            json!({"resourceType": "Patient", "id": "old", "meta": {"tag": [{"code": "t"}]}, "gender": "male"}),
            json!({"gender": "male", "meta": {"source": "s"}, "id": "old", "resourceType": "Patient", "name": []}),
            json!({"name": [], "resourceType": "Patient"}),
            json!({"name": []}),
        ];
        let expected = [
            vec!["resourceType", "id", "meta", "name", "gender"],
            vec!["resourceType", "id", "meta", "gender"],
            vec!["resourceType", "id", "meta", "gender", "name"],
            vec!["resourceType", "id", "meta", "name"],
            vec!["id", "meta", "name"],
        ];
        for (mut resource, expected) in cases.into_iter().zip(expected) {
            let kept_meta = resource.get("meta").cloned();
            stamp(&mut resource, "tenant-a", "new-id", 3, "2026-12-02T10:00:00.000Z");
            assert_eq!(keys(&resource), expected, "{resource}");
            assert_eq!(resource["id"], "new-id");
            assert_eq!(resource["meta"]["versionId"], "3");
            assert_eq!(resource["meta"]["lastUpdated"], "2026-12-02T10:00:00.000Z");
            assert_eq!(resource["meta"]["project"], "tenant-a");
            for (name, value) in kept_meta.as_ref().and_then(Value::as_object).into_iter().flatten() {
                assert_eq!(&resource["meta"][name], value, "meta.{name} is kept");
            }
        }
    }

    fn search(family: &str) -> SearchQuery {
        SearchQuery {
            resource_type: "Patient".into(),
            params: vec![("family".into(), family.into())],
            count: 1000,
            offset: 0,
            sort_last_updated: None,
            want_total: true,
            count_only: false,
            strict: true,
        }
    }

    /// `count` resources from `offset` of a Patient search: their ids, the total and whether
    /// there is more.
    async fn page_of(
        store: &SqliteStore,
        params: &[(&str, &str)],
        (offset, count): (usize, usize),
        want_total: bool,
    ) -> (Vec<String>, Option<u64>, bool) {
        let query = SearchQuery {
            resource_type: "Patient".into(),
            params: params
                .iter()
                .map(|(name, value)| ((*name).into(), (*value).into()))
                .collect(),
            count,
            offset,
            sort_last_updated: None,
            want_total,
            count_only: false,
            strict: true,
        };
        let result = store.search("t", &query).await.unwrap();
        let ids = result.resources.into_iter().map(|stored| stored.id).collect();
        (ids, result.total, result.has_more)
    }

    /// Patients `p0000`.. in one transaction (one millisecond, so page order is id order),
    /// with the family `family_of(index)`; every third is female, the others male.
    async fn patients(store: &SqliteStore, count: usize, family_of: impl Fn(usize) -> &'static str) {
        let writes = (0..count)
            .map(|index| {
                let mut resource = patient(&format!("p{index:04}"), family_of(index));
                resource["gender"] = json!(if index % 3 == 0 { "female" } else { "male" });
                Write::Create { resource }
            })
            .collect();
        store.transaction("t", writes).await.unwrap();
    }

    #[tokio::test]
    async fn two_stores_on_one_file_update_one_resource_at_once_without_failing() {
        // Two servers on one data directory (a restart while the old one still finishes its
        // writes): each update reads the current version, then writes. A transaction that
        // began deferred would read a snapshot the other store's commit makes stale, and SQLite
        // fails its write at once (SQLITE_BUSY_SNAPSHOT) instead of waiting.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fhirop.db");
        let (first, second) = (
            SqliteStore::open(&path).await.unwrap(),
            SqliteStore::open(&path).await.unwrap(),
        );
        patients(&first, 1, |_| "Start").await;
        async fn updates(store: &SqliteStore, family: &'static str) -> Vec<Result<(), StoreError>> {
            let mut results = Vec::new();
            for _ in 0..40 {
                let write = Write::Update {
                    resource: patient("p0000", family),
                    if_match: None,
                };
                results.push(store.transaction("t", vec![write]).await.map(|_| ()));
            }
            results
        }
        let (from_first, from_second) = tokio::join!(updates(&first, "First"), updates(&second, "Second"));
        let failures: Vec<String> = from_first
            .into_iter()
            .chain(from_second)
            .filter_map(|result| result.err().map(|error| error.to_string()))
            .collect();
        assert_eq!(failures, Vec::<String>::new());
        let read = second.read("t", "Patient", "p0000").await.unwrap();
        assert!(
            matches!(read, ReadResult::Found(stored) if stored.version_id == 81),
            "81 versions"
        );
    }

    #[tokio::test]
    async fn every_in_memory_store_is_a_database_of_its_own_without_memdbs_size_limit() {
        let (first, second) = (
            SqliteStore::in_memory().await.unwrap(),
            SqliteStore::in_memory().await.unwrap(),
        );
        patients(&first, 3, |_| "Kept").await;
        let kept = |store| page_of(store, &[("family", "kept")], (0, 10), true);
        assert_eq!(kept(&first).await, (expected(0..3), Some(3), false));
        assert_eq!(kept(&second).await, (Vec::new(), Some(0), false));
        // The connections reading on the calling thread open their own store's database.
        let read_here = |store: &SqliteStore| {
            let text = store
                .search_resources_json_blocking("t", &search("kept"))
                .unwrap()
                .unwrap();
            serde_json::from_str::<Vec<Value>>(&text).unwrap().len()
        };
        assert_eq!((read_here(&first), read_here(&second)), (3, 0));
        for store in [&first, &second] {
            let mut connection = store.lease().await.unwrap();
            // memdb's own limit is 1 GiB.
            assert_eq!(memdb_size_limit(&mut connection, None).await.unwrap(), i64::MAX);
        }
    }

    fn expected(indexes: impl Iterator<Item = usize>) -> Vec<String> {
        indexes.map(|index| format!("p{index:04}")).collect()
    }

    #[tokio::test]
    async fn the_long_list_condition_holds_from_exactly_that_many_index_rows() {
        let store = SqliteStore::in_memory().await.unwrap();
        patients(&store, 10, |_| "Same").await;
        let compiled = compile("Patient", &[("family".into(), "same".into())], true).unwrap();
        for (rows, holds) in [(9, true), (10, true), (11, false), (1, true)] {
            let (condition, values) = compiled.has_index_rows("t", "Patient", rows).unwrap();
            let row = bind_all(
                sqlx::query(AssertSqlSafe(format!("SELECT {condition} AS holds"))),
                &values,
            )
            .fetch_one(&mut *store.lease().await.unwrap())
            .await
            .unwrap();
            assert_eq!(row.get::<bool, _>("holds"), holds, "{rows} rows");
        }
    }

    /// The resources of tenant `t` a search returns, in its order.
    async fn searched_resources(store: &SqliteStore, query: &SearchQuery) -> Vec<Value> {
        let result = store.search("t", query).await.unwrap();
        result
            .resources
            .into_iter()
            .map(|stored| stored.resource.unwrap())
            .collect()
    }

    #[tokio::test]
    async fn resources_as_json_are_the_page_search_finds_in_its_order() {
        let store = SqliteStore::in_memory().await.unwrap();
        pages_as_json_are_the_pages_search_finds(&store).await;
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("fhirop.db")).await.unwrap();
        pages_as_json_are_the_pages_search_finds(&store).await;
    }

    /// Asynchronous and on the calling thread alike.
    async fn pages_as_json_are_the_pages_search_finds(store: &SqliteStore) {
        // Walked (300 of 600 match) and listed (a short id list) pages alike.
        patients(store, 600, |index| if index % 2 == 0 { "Even" } else { "Odd" }).await;
        store
            .transaction(
                "t",
                vec![Write::Create {
                    resource: patient("rare", "Rare"),
                }],
            )
            .await
            .unwrap();
        for (family, count, offset, found) in [
            ("even", 20, 0, 20),
            ("even", 7, 40, 7),
            ("rare", 20, 0, 1),
            ("none", 20, 0, 0),
        ] {
            // With a total, and without one, where the index rows are counted to choose.
            for want_total in [true, false] {
                let mut query = search(family);
                (query.count, query.offset, query.want_total) = (count, offset, want_total);
                let searched = searched_resources(store, &query).await;
                assert_eq!(searched.len(), found, "{family} from {offset}");
                let text = store.search_resources_json("t", &query).await.unwrap();
                let as_json: Value = serde_json::from_str(&text).unwrap();
                assert_eq!(as_json, Value::Array(searched), "{family} from {offset}");
                let on_this_thread = store.search_resources_json_blocking("t", &query).unwrap().unwrap();
                assert_eq!(on_this_thread, text, "{family} from {offset}");
            }
        }
        // Another tenant's resources are not found.
        assert_eq!(
            store.search_resources_json("other", &search("even")).await.unwrap(),
            "[]"
        );
        assert_eq!(
            store
                .search_resources_json_blocking("other", &search("even"))
                .unwrap()
                .unwrap(),
            "[]"
        );
    }

    #[tokio::test]
    async fn reads_on_the_calling_thread_see_every_commit() {
        let dir = tempfile::tempdir().unwrap();
        for store in [
            SqliteStore::in_memory().await.unwrap(),
            SqliteStore::open(&dir.path().join("fhirop.db")).await.unwrap(),
        ] {
            let found = |store: &SqliteStore| {
                let text = store
                    .search_resources_json_blocking("t", &search("seen"))
                    .unwrap()
                    .unwrap();
                let page: Vec<Value> = serde_json::from_str(&text).unwrap();
                page.iter()
                    .map(|resource| resource["id"].as_str().unwrap().to_owned())
                    .collect::<Vec<_>>()
            };
            // The reader is open before the writes, and stays open across them.
            assert_eq!(found(&store), Vec::<String>::new());
            patients(&store, 2, |_| "Seen").await;
            assert_eq!(found(&store), expected(0..2));
            let update = Write::Update {
                resource: patient("p0000", "Other"),
                if_match: None,
            };
            store.transaction("t", vec![update]).await.unwrap();
            assert_eq!(found(&store), expected(1..2));
        }
    }

    #[tokio::test]
    async fn a_read_on_the_calling_thread_waits_for_an_open_write_in_memory() {
        let store = std::sync::Arc::new(SqliteStore::in_memory().await.unwrap());
        patients(&store, 1, |_| "Before").await;
        let mut connection = store.lease().await.unwrap();
        let mut writing = begin_writing(&mut connection).await.unwrap();
        sqlx::query("UPDATE resource_current SET deleted = 1")
            .execute(&mut *writing)
            .await
            .unwrap();
        // memdb refuses readers while a write is open: this one waits for the commit below,
        // and reads what it committed, never a "database is locked".
        let reader = std::sync::Arc::clone(&store);
        let reading = std::thread::spawn(move || {
            let mut query = search("before");
            query.want_total = false;
            reader.search_resources_json_blocking("t", &query).unwrap()
        });
        writing.commit().await.unwrap();
        drop(connection);
        assert_eq!(reading.join().unwrap().unwrap(), "[]");
    }

    #[tokio::test]
    async fn bodies_of_any_text_come_back_whole_from_a_page() {
        let store = SqliteStore::in_memory().await.unwrap();
        // Multi-byte characters (the body's length is in bytes), escapes, and text that looks
        // like the page's own framing.
        let families = [
            "Müller",
            "Ω😀 ]] [\"x\",1]",
            "quote \" and \\ slash",
            "]{\"resourceType\":\"Patient\"}",
        ];
        let writes = families
            .iter()
            .enumerate()
            .map(|(index, family)| Write::Create {
                resource: patient(&format!("u{index}"), family),
            })
            .collect();
        store.transaction("t", writes).await.unwrap();
        let mut query = search("");
        query.params.clear();
        let found = searched_resources(&store, &query).await;
        let families_found: Vec<&str> = found
            .iter()
            .map(|resource| resource["name"][0]["family"].as_str().unwrap())
            .collect();
        assert_eq!(families_found, families);
        let as_text: Value = serde_json::from_str(&store.search_resources_json("t", &query).await.unwrap()).unwrap();
        assert_eq!(as_text, Value::Array(found));
    }

    #[tokio::test]
    async fn bodies_are_kept_compressed_and_bodies_kept_as_text_still_read() {
        let store = SqliteStore::in_memory().await.unwrap();
        let writes = ["framed", "plain"]
            .iter()
            .map(|id| Write::Create {
                resource: patient(id, "Kept"),
            })
            .collect();
        store.transaction("t", writes).await.unwrap();
        let stored_body = |id: &'static str| {
            let store = &store;
            async move {
                let mut connection = store.lease().await.unwrap();
                sqlx::query_scalar::<_, Vec<u8>>("SELECT body FROM resource_current WHERE id = ?")
                    .bind(id)
                    .fetch_one(&mut *connection)
                    .await
                    .unwrap()
            }
        };
        let framed = stored_body("framed").await;
        let text = body::decode_text(&framed).unwrap();
        assert!(!framed.starts_with(b"{") && framed.len() < text.len(), "{framed:?}");
        // A database written before bodies were compressed holds the text itself.
        let plain_text = text.replace("\"framed\"", "\"plain\"");
        {
            let mut connection = store.lease().await.unwrap();
            sqlx::query("UPDATE resource_current SET body = ? WHERE id = 'plain'")
                .bind(&plain_text)
                .execute(&mut *connection)
                .await
                .unwrap();
        }
        assert_eq!(stored_body("plain").await, plain_text.as_bytes());
        let ReadResult::Found(read) = store.read("t", "Patient", "plain").await.unwrap() else {
            panic!("the text row does not read");
        };
        assert_eq!(
            read.resource.map(|resource| fhirop::format::json_text(&resource)),
            Some(plain_text)
        );
        let found = searched_resources(&store, &search("kept")).await;
        let ids: Vec<&str> = found.iter().map(|resource| resource["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["framed", "plain"]);
        let as_text: Value =
            serde_json::from_str(&store.search_resources_json("t", &search("kept")).await.unwrap()).unwrap();
        assert_eq!(as_text, Value::Array(found));
    }

    #[tokio::test]
    async fn dense_searches_page_alike_whether_walked_or_listed() {
        let store = SqliteStore::in_memory().await.unwrap();
        // 300 of 600 match `even`: past the long-list threshold, so pages are walked.
        patients(&store, 600, |index| if index % 2 == 0 { "Even" } else { "Odd" }).await;
        let evens = |from: usize, count: usize| expected((0..600).step_by(2).skip(from).take(count));
        for want_total in [true, false] {
            let total = want_total.then_some(300);
            assert_eq!(
                page_of(&store, &[("family", "even")], (0, 20), want_total).await,
                (evens(0, 20), total, true)
            );
            assert_eq!(
                page_of(&store, &[("family", "even")], (40, 20), want_total).await,
                (evens(40, 20), total, true)
            );
            // A window past the type's last resource: the id list answers.
            assert_eq!(
                page_of(&store, &[("family", "even")], (290, 20), want_total).await,
                (evens(290, 10), total, false)
            );
        }
        // Several conditions, and a negated one, select the same in both forms.
        assert_eq!(
            page_of(
                &store,
                &[("family", "even"), ("_id", "p0004,p0005,p0006")],
                (0, 20),
                true
            )
            .await,
            (expected([4, 6].into_iter()), Some(2), false)
        );
        assert_eq!(
            page_of(&store, &[("family", "even"), ("gender:not", "male")], (0, 3), false).await,
            (expected([0, 6, 12].into_iter()), None, true)
        );
    }

    #[tokio::test]
    async fn a_remembered_page_plan_never_changes_what_a_page_holds() {
        let store = SqliteStore::in_memory().await.unwrap();
        // 300 of 600 match: the walk answers, and is remembered for this filter.
        patients(&store, 600, |index| if index % 2 == 0 { "Even" } else { "Odd" }).await;
        let evens = |indexes: &mut dyn Iterator<Item = usize>| expected(indexes.step_by(2).take(5));
        assert_eq!(
            page_of(&store, &[("family", "even")], (0, 5), false).await,
            (evens(&mut (0..600)), None, true)
        );
        // Within the plan's lifetime, the first window's matches are deleted: the walk finds
        // too few, and the id list still answers with the page.
        let deletes = (0..200)
            .step_by(2)
            .map(|index| Write::Delete {
                resource_type: "Patient".into(),
                id: format!("p{index:04}"),
            })
            .collect();
        store.transaction("t", deletes).await.unwrap();
        assert_eq!(
            page_of(&store, &[("family", "even")], (0, 5), false).await,
            (evens(&mut (200..600)), None, true)
        );
        // A sparse filter remembers the id list; matches added later are found all the same.
        assert_eq!(
            page_of(&store, &[("family", "rare")], (0, 5), false).await,
            (Vec::new(), None, false)
        );
        let rare = (0..300)
            .map(|index| Write::Create {
                resource: patient(&format!("r{index:04}"), "Rare"),
            })
            .collect();
        store.transaction("t", rare).await.unwrap();
        let (ids, _, more) = page_of(&store, &[("family", "rare")], (0, 5), false).await;
        assert_eq!(
            (ids, more),
            ((0..5).map(|index| format!("r{index:04}")).collect(), true)
        );
    }

    #[tokio::test]
    async fn a_walked_page_reads_its_window_in_order_without_sorting() {
        let store = SqliteStore::in_memory().await.unwrap();
        patients(&store, 50, |_| "Same").await;
        let compiled = compile("Patient", &[("family".into(), "same".into())], true).unwrap();
        let (filter, values) = compiled.filter("t", "Patient", IndexForm::Probe { window: 168 });
        let select = format!("SELECT {STORED_COLUMNS} {filter} ORDER BY {WALK_ORDER} LIMIT 21");
        let plan: Vec<String> = bind_all(
            sqlx::query(AssertSqlSafe(format!("EXPLAIN QUERY PLAN {select}"))),
            &values,
        )
        .fetch_all(&mut *store.lease().await.unwrap())
        .await
        .unwrap()
        .iter()
        .map(|row| row.get::<String, _>("detail"))
        .collect();
        // The walk reads the table in its own order: a range of its key, no lookups, no sort.
        assert!(
            plan.iter().any(|step| step
                .starts_with("SEARCH r USING PRIMARY KEY (tenant=? AND resource_type=? AND (last_updated_ms,id)<")),
            "{plan:?}"
        );
        assert!(!plan.iter().any(|step| step.contains("TEMP B-TREE")), "{plan:?}");
    }

    #[tokio::test]
    async fn a_resource_matching_twice_is_counted_once() {
        let store = SqliteStore::in_memory().await.unwrap();
        let twice = json!({"resourceType": "Patient", "id": "twice",
            "name": [{"family": "Smith"}, {"family": "Smithson"}]});
        let writes = vec![
            Write::Create { resource: twice },
            Write::Create {
                resource: patient("once", "Smythe"),
            },
        ];
        store.transaction("t", writes).await.unwrap();
        // One index condition: counted from the index alone.
        assert_eq!(
            page_of(&store, &[("family", "smi")], (0, 10), true).await,
            (vec!["twice".to_owned()], Some(1), false)
        );
        // Two: counted through the resources.
        assert_eq!(
            page_of(&store, &[("family", "smi"), ("family", "smithson")], (0, 10), true).await,
            (vec!["twice".to_owned()], Some(1), false)
        );
    }

    #[tokio::test]
    async fn referencing_lists_each_linked_resource_once_in_type_and_time_order() {
        let store = SqliteStore::in_memory().await.unwrap();
        let observation = |id: &str, performer: &str| {
            json!({"resourceType": "Observation", "id": id, "status": "final",
                "code": {"text": "x"}, "subject": {"reference": "Patient/p"},
                "performer": [{"reference": performer}]})
        };
        let writes = vec![
            Write::Create {
                resource: patient("p", "Smith"),
            },
            // Linked twice (subject and performer): listed once.
            Write::Create {
                resource: observation("o2", "Patient/p"),
            },
            Write::Create {
                resource: observation("o1", "Practitioner/x"),
            },
            Write::Create {
                resource: json!({"resourceType": "Encounter", "id": "e1", "status": "finished",
                    "class": {"code": "AMB"}, "subject": {"reference": "Patient/p"}}),
            },
            // References the patient through a parameter that is not a compartment link.
            Write::Create {
                resource: json!({"resourceType": "Encounter", "id": "e0", "status": "finished",
                    "class": {"code": "AMB"}, "participant": [{"individual": {"reference": "Patient/p"}}]}),
            },
        ];
        store.transaction("t", writes).await.unwrap();
        let links: &[(&str, &[&str])] = &[("Observation", &["subject", "performer"]), ("Encounter", &["subject"])];
        let found: Vec<(String, String)> = store
            .referencing("t", "Patient", "p", links)
            .await
            .unwrap()
            .into_iter()
            .map(|stored| {
                assert_eq!(stored.resource.as_ref().unwrap()["id"], json!(stored.id));
                (stored.resource_type, stored.id)
            })
            .collect();
        let expected = [("Encounter", "e1"), ("Observation", "o1"), ("Observation", "o2")];
        assert_eq!(
            found,
            expected.map(|(resource_type, id)| (resource_type.to_owned(), id.to_owned()))
        );
    }

    #[tokio::test]
    async fn many_matches_beyond_the_walked_window_come_from_the_id_list() {
        let store = SqliteStore::in_memory().await.unwrap();
        // 300 late matches after 1,700 others: many, but none in the first window.
        patients(&store, 2000, |index| if index >= 1700 { "Late" } else { "Early" }).await;
        for want_total in [true, false] {
            assert_eq!(
                page_of(&store, &[("family", "late")], (0, 5), want_total).await,
                (expected(1700..1705), want_total.then_some(300), true)
            );
        }
        // Few matches: the id list directly.
        assert_eq!(
            page_of(&store, &[("family", "early"), ("_id", "p0001,p1999")], (0, 5), true).await,
            (expected([1].into_iter()), Some(1), false)
        );
    }

    #[tokio::test]
    async fn a_large_batch_of_creates_is_stored_and_indexed_in_order() {
        let store = SqliteStore::in_memory().await.unwrap();
        // More than one statement's worth of rows, to cross the chunk boundary.
        let writes: Vec<Write> = (0..(2 * ROWS_PER_STATEMENT + 7))
            .map(|index| Write::Create {
                resource: patient(&format!("p{index}"), if index % 2 == 0 { "Even" } else { "Odd" }),
            })
            .collect();
        let results = store.transaction("t", writes).await.unwrap();
        assert_eq!(results.len(), 207);
        assert!(results.iter().all(|result| result.created));
        let ids: Vec<&str> = results
            .iter()
            .map(|result| result.stored.as_ref().unwrap().id.as_str())
            .collect();
        assert_eq!(&ids[..3], ["p0", "p1", "p2"]);
        assert_eq!(ids[206], "p206");
        assert_eq!(store.search("t", &search("even")).await.unwrap().total, Some(104));
        assert_eq!(store.search("t", &search("odd")).await.unwrap().total, Some(103));
        assert_eq!(store.search("other", &search("even")).await.unwrap().total, Some(0));
    }

    #[tokio::test]
    async fn creates_and_updates_in_one_transaction_apply_in_order() {
        let store = SqliteStore::in_memory().await.unwrap();
        let writes = vec![
            Write::Create {
                resource: patient("a", "First"),
            },
            Write::Update {
                resource: patient("a", "Second"),
                if_match: Some(1),
            },
            Write::Create {
                resource: patient("b", "Third"),
            },
        ];
        let results = store.transaction("t", writes).await.unwrap();
        let versions: Vec<u64> = results
            .iter()
            .map(|result| result.stored.as_ref().unwrap().version_id)
            .collect();
        assert_eq!(versions, [1, 2, 1]);
        assert_eq!(store.search("t", &search("first")).await.unwrap().total, Some(0));
        assert_eq!(store.search("t", &search("second")).await.unwrap().total, Some(1));
        assert_eq!(store.search("t", &search("third")).await.unwrap().total, Some(1));
    }

    /// An in-memory store holding `Patient/{id}` in tenant `t`.
    fn ids_found(result: &SearchResult) -> Vec<&str> {
        result.resources.iter().map(|stored| stored.id.as_str()).collect()
    }

    #[tokio::test]
    async fn a_create_from_json_text_is_stored_and_indexed_as_the_same_tree_would_be() {
        let store = SqliteStore::in_memory().await.unwrap();
        let event = |id: &str| {
            json!({"resourceType": "AuditEvent", "id": id, "type": {"code": "execute"}, "recorded": "2026-12-02T10:00:00Z",
                   "agent": [{"who": {"reference": "Patient/p1"}, "requestor": true}], "source": {"observer": {"reference": "Bot/b"}}})
        };
        let observation = r#"{"resourceType":"Observation","id":"o1","status":"final","code":{"text":"x"},"effectiveDateTime":"2020-05-01"}"#;
        let results = store
            .transaction(
                "t",
                vec![
                    Write::Create {
                        resource: event("tree"),
                    },
                    Write::CreateJson {
                        resource_type: "AuditEvent".into(),
                        id: "text".into(),
                        json: event("text").to_string(),
                    },
                    Write::CreateJson {
                        resource_type: "Observation".into(),
                        id: "o1".into(),
                        json: observation.into(),
                    },
                ],
            )
            .await
            .unwrap();
        assert!(results[0].stored.is_some());
        assert_eq!(
            results[1],
            WriteResult {
                stored: None,
                created: true
            }
        );
        let read = |id: &'static str| {
            let store = &store;
            async move {
                match store.read("t", "AuditEvent", id).await.unwrap() {
                    ReadResult::Found(stored) => stored.resource.unwrap(),
                    other => panic!("{id}: {other:?}"),
                }
            }
        };
        let (mut from_tree, from_text) = (read("tree").await, read("text").await);
        from_tree["id"] = json!("text");
        assert_eq!(from_text, from_tree);
        let keys = |value: &Value| value.as_object().unwrap().keys().cloned().collect::<Vec<_>>();
        assert_eq!(keys(&from_text), keys(&from_tree));
        assert_eq!(from_text["meta"]["versionId"], "1");

        let query = |resource_type: &str, name: &str, value: &str| SearchQuery {
            resource_type: resource_type.into(),
            params: vec![(name.into(), value.into())],
            ..search("")
        };
        let by_patient = store
            .search("t", &query("AuditEvent", "patient", "Patient/p1"))
            .await
            .unwrap();
        // One transaction, one lastUpdated: the page is in id order.
        assert_eq!(ids_found(&by_patient), ["text", "tree"]);
        // `effective` is a choice element: the member `effectiveDateTime` is indexed too.
        let by_date = store
            .search("t", &query("Observation", "date", "2020-05"))
            .await
            .unwrap();
        assert_eq!(ids_found(&by_date), ["o1"]);
    }

    #[tokio::test]
    async fn a_create_from_json_text_that_misnames_itself_or_is_not_json_writes_nothing() {
        let store = SqliteStore::in_memory().await.unwrap();
        let create = |id: &str, json: &str| Write::CreateJson {
            resource_type: "Basic".into(),
            id: id.into(),
            json: json.into(),
        };
        for (write, expected) in [
            (
                create("b1", r#"{"resourceType":"Basic","id":"other","code":{}}"#),
                "a resource given as JSON must begin with its resourceType Basic and id b1",
            ),
            (
                create("b1", r#"{"id":"b1","resourceType":"Basic"}"#),
                "a resource given as JSON must begin with its resourceType Basic and id b1",
            ),
            (
                create("b", r#"{"resourceType":"Basic","id":"bx"}"#),
                "a resource given as JSON must begin with its resourceType Basic and id b",
            ),
        ] {
            let error = store
                .transaction("t", vec![create("ok", r#"{"resourceType":"Basic","id":"ok"}"#), write])
                .await
                .unwrap_err();
            assert_eq!(error, StoreError::Invalid(expected.into()));
        }
        // An AuditEvent naming no Patient has nothing to index, and is still checked in full.
        for json in [
            r#"{"resourceType":"Basic","id":"b1","code":}"#,
            r#"{"resourceType":"AuditEvent","id":"b1","agent":[}"#,
            r#"{"resourceType":"AuditEvent","id":"b1"} {}"#,
        ] {
            let resource_type = if json.contains("Basic") { "Basic" } else { "AuditEvent" };
            let write = Write::CreateJson {
                resource_type: resource_type.into(),
                id: "b1".into(),
                json: json.into(),
            };
            let error = store.transaction("t", vec![write]).await.unwrap_err();
            assert!(
                matches!(&error, StoreError::Invalid(message) if message.starts_with("a resource to store is not JSON")),
                "{json}: {error:?}"
            );
        }
        assert_eq!(store.read("t", "Basic", "ok").await.unwrap(), ReadResult::NotFound);
        assert_eq!(store.read("t", "Basic", "b1").await.unwrap(), ReadResult::NotFound);
    }

    async fn store_with_patient(id: &str, family: &str) -> SqliteStore {
        let store = SqliteStore::in_memory().await.unwrap();
        let create = Write::Create {
            resource: patient(id, family),
        };
        store.transaction("t", vec![create]).await.unwrap();
        store
    }

    /// `(version, family or None for a deletion)` of every version, newest first.
    async fn history_of(store: &SqliteStore, id: &str) -> Vec<(u64, Option<String>)> {
        let family = |stored: &StoredResource| {
            stored
                .resource
                .as_ref()
                .map(|resource| resource["name"][0]["family"].as_str().unwrap().to_owned())
        };
        let history = store.history("t", "Patient", id).await.unwrap();
        let mut versions = Vec::new();
        for stored in &history {
            // Each version also reads back by vread.
            match store.vread("t", "Patient", id, stored.version_id).await.unwrap() {
                ReadResult::Found(read) | ReadResult::Deleted(read) => assert_eq!(family(&read), family(stored)),
                ReadResult::NotFound => panic!("version {} of {id} does not vread", stored.version_id),
            }
            versions.push((stored.version_id, family(stored)));
        }
        versions
    }

    async fn archived_rows(store: &SqliteStore) -> i64 {
        let mut connection = store.lease().await.unwrap();
        sqlx::query_scalar("SELECT COUNT(*) FROM resource_version")
            .fetch_one(&mut *connection)
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn history_holds_every_version_with_each_body_stored_once() {
        let store = SqliteStore::in_memory().await.unwrap();
        let write = |writes: Vec<Write>| store.transaction("t", writes);
        write(vec![Write::Create {
            resource: patient("a", "One"),
        }])
        .await
        .unwrap();
        assert_eq!(archived_rows(&store).await, 0, "a create writes its body once");
        assert_eq!(history_of(&store, "a").await, [(1, Some("One".into()))]);
        let update = |family| Write::Update {
            resource: patient("a", family),
            if_match: None,
        };
        write(vec![update("Two"), update("Three")]).await.unwrap();
        write(vec![Write::Delete {
            resource_type: "Patient".into(),
            id: "a".into(),
        }])
        .await
        .unwrap();
        write(vec![update("Five")]).await.unwrap();
        assert_eq!(
            history_of(&store, "a").await,
            [
                (5, Some("Five".into())),
                (4, None),
                (3, Some("Three".into())),
                (2, Some("Two".into())),
                (1, Some("One".into()))
            ]
        );
        assert_eq!(archived_rows(&store).await, 4);
    }

    #[tokio::test]
    async fn a_database_with_a_rowid_table_of_current_versions_is_moved_into_page_order() {
        async fn layout(store: &SqliteStore) -> String {
            let mut connection = store.lease().await.unwrap();
            sqlx::query_scalar(
                "SELECT group_concat(name || ': ' || coalesce(sql, 'automatic'), '; ') FROM sqlite_schema \
                 WHERE tbl_name = 'resource_current'",
            )
            .fetch_one(&mut *connection)
            .await
            .unwrap()
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("fhirop.db");
        {
            let store = SqliteStore::open(&path).await.unwrap();
            for (index, family) in ["Smith", "Jones", "Smythe"].iter().enumerate() {
                let create = Write::Create {
                    resource: patient(&format!("p{index}"), family),
                };
                store.transaction("t", vec![create]).await.unwrap();
            }
            // The layout before: a rowid table, with an index by id and one in page order.
            let mut connection = store.lease().await.unwrap();
            for statement in [
                "CREATE TABLE resource_current_rowid (
                    tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
                    last_updated TEXT NOT NULL, last_updated_ms INTEGER NOT NULL, deleted INTEGER NOT NULL, body TEXT,
                    PRIMARY KEY (tenant, resource_type, id))",
                "INSERT INTO resource_current_rowid SELECT * FROM resource_current",
                "DROP TABLE resource_current",
                "ALTER TABLE resource_current_rowid RENAME TO resource_current",
                "CREATE INDEX resource_current_order ON resource_current (tenant, resource_type, last_updated_ms, id)",
            ] {
                sqlx::query(statement).execute(&mut *connection).await.unwrap();
            }
            assert!(
                layout(&store)
                    .await
                    .contains("sqlite_autoindex_resource_current_1: automatic")
            );
        }
        let store = SqliteStore::open(&path).await.unwrap();
        let schema = layout(&store).await;
        assert!(
            schema.contains("PRIMARY KEY (tenant, resource_type, last_updated_ms, id)) WITHOUT ROWID"),
            "{schema}"
        );
        assert!(schema.contains("resource_current_id: CREATE UNIQUE INDEX"), "{schema}");
        assert!(!schema.contains("resource_current_order"), "{schema}");
        assert!(!schema.contains("automatic"), "{schema}");
        let ReadResult::Found(read) = store.read("t", "Patient", "p1").await.unwrap() else {
            panic!("p1 was not read back");
        };
        assert_eq!(read.resource.unwrap()["name"][0]["family"], "Jones");
        let (ids, total, _) = page_of(&store, &[("family", "sm")], (0, 10), true).await;
        assert_eq!((ids, total), (vec!["p0".to_owned(), "p2".to_owned()], Some(2)));
        // Opening the moved database again leaves it as it is.
        drop(store);
        let store = SqliteStore::open(&path).await.unwrap();
        assert_eq!(layout(&store).await, schema);
    }

    #[tokio::test]
    async fn a_database_that_also_kept_current_versions_in_the_history_reads_the_same() {
        let store = store_with_patient("a", "One").await;
        {
            // The layout before: the current version in both tables.
            let mut connection = store.lease().await.unwrap();
            sqlx::query(
                "INSERT INTO resource_version (tenant, resource_type, id, version, last_updated, deleted, body) \
                 SELECT tenant, resource_type, id, version, last_updated, deleted, body FROM resource_current",
            )
            .execute(&mut *connection)
            .await
            .unwrap();
        }
        assert_eq!(history_of(&store, "a").await, [(1, Some("One".into()))]);
        store
            .transaction(
                "t",
                vec![Write::Update {
                    resource: patient("a", "Two"),
                    if_match: Some(1),
                }],
            )
            .await
            .unwrap();
        assert_eq!(
            history_of(&store, "a").await,
            [(2, Some("Two".into())), (1, Some("One".into()))]
        );
    }

    #[tokio::test]
    async fn creating_an_existing_id_fails_naming_it_and_writes_nothing() {
        let store = store_with_patient("taken", "Old").await;
        let clash = store
            .transaction(
                "t",
                vec![
                    Write::Create {
                        resource: patient("new", "New"),
                    },
                    Write::Create {
                        resource: patient("taken", "New"),
                    },
                ],
            )
            .await
            .unwrap_err();
        assert_eq!(clash, StoreError::Invalid("Patient/taken already exists".into()));
        assert_eq!(store.search("t", &search("new")).await.unwrap().total, Some(0));
        assert!(matches!(
            store.read("t", "Patient", "new").await.unwrap(),
            ReadResult::NotFound
        ));
        // The same id in another tenant is another resource.
        store
            .transaction(
                "u",
                vec![Write::Create {
                    resource: patient("taken", "Other"),
                }],
            )
            .await
            .unwrap();
    }
}
