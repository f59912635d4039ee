//! The SQLite resource store: one file in the data directory (WAL, fsync on every commit),
//! or a throw-away in-memory database. sqlx keeps it async, and the same queries would run on
//! PostgreSQL behind the same trait.

use std::path::Path;
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use fhirop::capability::format_instant;
use fhirop::store::{
    ReadResult, ResourceStore, SearchQuery, SearchResult, SortOrder, StoreError, StoredResource, Write, WriteResult,
};
use futures_util::future::BoxFuture;
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
// Dynamic SQL here is assembled only from fixed table names and conditions with `?`
// placeholders (search::compile); every value is bound.
use sqlx::{AssertSqlSafe, Row, SqliteConnection, SqlitePool};

use super::search::{IndexValue, SqlValue, compile, index_table, index_values, params_of};

/// The schema. Every row carries its tenant, so tenants share the tables and never the rows.
const SCHEMA: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS resource_version (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, deleted INTEGER NOT NULL, body TEXT,
        PRIMARY KEY (tenant, resource_type, id, version))",
    "CREATE TABLE IF NOT EXISTS resource_current (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL,
        last_updated TEXT NOT NULL, last_updated_ms INTEGER NOT NULL, deleted INTEGER NOT NULL, body TEXT,
        PRIMARY KEY (tenant, resource_type, id))",
    "CREATE INDEX IF NOT EXISTS resource_current_updated ON resource_current (tenant, resource_type, last_updated_ms)",
    "CREATE TABLE IF NOT EXISTS search_token (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        system TEXT, code TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS search_token_value ON search_token (tenant, resource_type, param, code)",
    "CREATE INDEX IF NOT EXISTS search_token_owner ON search_token (tenant, resource_type, id)",
    "CREATE TABLE IF NOT EXISTS search_string (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        normalized TEXT NOT NULL, exact TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS search_string_value ON search_string (tenant, resource_type, param, normalized)",
    "CREATE INDEX IF NOT EXISTS search_string_owner ON search_string (tenant, resource_type, id)",
    "CREATE TABLE IF NOT EXISTS search_date (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        low INTEGER NOT NULL, high INTEGER NOT NULL)",
    "CREATE INDEX IF NOT EXISTS search_date_value ON search_date (tenant, resource_type, param, low)",
    "CREATE INDEX IF NOT EXISTS search_date_owner ON search_date (tenant, resource_type, id)",
    "CREATE TABLE IF NOT EXISTS search_reference (
        tenant TEXT NOT NULL, resource_type TEXT NOT NULL, id TEXT NOT NULL, param TEXT NOT NULL,
        target_type TEXT NOT NULL, target_id TEXT NOT NULL)",
    "CREATE INDEX IF NOT EXISTS search_reference_value ON search_reference (tenant, target_id, param)",
    "CREATE INDEX IF NOT EXISTS search_reference_param ON search_reference (tenant, resource_type, param, target_id)",
    "CREATE INDEX IF NOT EXISTS search_reference_owner ON search_reference (tenant, resource_type, id)",
];

fn database_error(error: sqlx::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// The SQLite store.
#[derive(Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// One writer at a time: SQLite allows one anyway, and waiting here is cheaper than
    /// retrying a busy transaction.
    writer: tokio::sync::Mutex<()>,
}

impl SqliteStore {
    /// Opens (or creates) the database file `path`.
    pub async fn open(path: &Path) -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            // FULL: the WAL is fsynced at every commit, so a 2xx survives kill -9 and power loss.
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(std::time::Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(options)
            .await
            .map_err(database_error)?;
        SqliteStore::with_pool(pool).await
    }

    /// A throw-away in-memory database (`--memory`).
    pub async fn in_memory() -> Result<SqliteStore, StoreError> {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").map_err(database_error)?;
        // One connection: every connection to :memory: is a database of its own.
        let pool = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await
            .map_err(database_error)?;
        SqliteStore::with_pool(pool).await
    }

    async fn with_pool(pool: SqlitePool) -> Result<SqliteStore, StoreError> {
        for statement in SCHEMA {
            sqlx::query(*statement).execute(&pool).await.map_err(database_error)?;
        }
        Ok(SqliteStore {
            pool,
            writer: tokio::sync::Mutex::new(()),
        })
    }
}

fn row_to_stored(row: &sqlx::sqlite::SqliteRow) -> Result<StoredResource, StoreError> {
    let body: Option<String> = row.try_get("body").map_err(database_error)?;
    let resource = body
        .map(|body| serde_json::from_str(&body))
        .transpose()
        .map_err(|error| StoreError::Database(format!("a stored resource is not JSON: {error}")))?;
    Ok(StoredResource {
        resource_type: row.try_get("resource_type").map_err(database_error)?,
        id: row.try_get("id").map_err(database_error)?,
        version_id: row.try_get::<i64, _>("version").map_err(database_error)? as u64,
        last_updated: row.try_get("last_updated").map_err(database_error)?,
        resource,
    })
}

fn read_result(stored: Option<StoredResource>) -> ReadResult {
    match stored {
        Some(stored) if stored.is_deleted() => ReadResult::Deleted(stored),
        Some(stored) => ReadResult::Found(stored),
        None => ReadResult::NotFound,
    }
}

fn bind_all<'q>(
    mut query: sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments>,
    values: &'q [SqlValue],
) -> sqlx::query::Query<'q, sqlx::Sqlite, sqlx::sqlite::SqliteArguments> {
    for value in values {
        query = match value {
            SqlValue::Text(text) => query.bind(text.as_str()),
            SqlValue::Integer(number) => query.bind(*number),
            SqlValue::Null => query.bind(None::<String>),
        };
    }
    query
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
    // Keep FHIR's member order: resourceType, id, meta, then the rest.
    let resource_type = members.shift_remove("resourceType");
    members.shift_remove("id");
    let rest = std::mem::take(members);
    if let Some(resource_type) = resource_type {
        members.insert("resourceType".into(), resource_type);
    }
    members.insert("id".into(), id.into());
    members.insert("meta".into(), Value::Object(meta));
    members.extend(rest);
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

/// Writes one version and its index rows.
async fn put_version(
    connection: &mut SqliteConnection,
    tenant: &str,
    resource_type: &str,
    id: &str,
    version: u64,
    resource: Option<&Value>,
    (last_updated, last_updated_ms): &(String, i64),
) -> Result<(), StoreError> {
    let body = resource.map(Value::to_string);
    let deleted = i64::from(resource.is_none());
    sqlx::query(
        "INSERT INTO resource_version (tenant, resource_type, id, version, last_updated, deleted, body) VALUES (?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(resource_type)
    .bind(id)
    .bind(version as i64)
    .bind(last_updated)
    .bind(deleted)
    .bind(body.as_deref())
    .execute(&mut *connection)
    .await
    .map_err(database_error)?;
    sqlx::query(
        "INSERT OR REPLACE INTO resource_current (tenant, resource_type, id, version, last_updated, last_updated_ms, deleted, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
    )
    .bind(tenant)
    .bind(resource_type)
    .bind(id)
    .bind(version as i64)
    .bind(last_updated)
    .bind(last_updated_ms)
    .bind(deleted)
    .bind(body.as_deref())
    .execute(&mut *connection)
    .await
    .map_err(database_error)?;
    for table in ["search_token", "search_string", "search_date", "search_reference"] {
        sqlx::query(AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE tenant = ? AND resource_type = ? AND id = ?"
        )))
        .bind(tenant)
        .bind(resource_type)
        .bind(id)
        .execute(&mut *connection)
        .await
        .map_err(database_error)?;
    }
    let Some(resource) = resource else { return Ok(()) };
    for (param, value) in index_values(resource_type, resource) {
        let (sql, first, second): (String, SqlValue, SqlValue) = match value {
            IndexValue::Token { system, code } => (
                "INSERT INTO search_token (tenant, resource_type, id, param, system, code) VALUES (?, ?, ?, ?, ?, ?)".into(),
                system.map_or(SqlValue::Null, SqlValue::Text),
                SqlValue::Text(code),
            ),
            IndexValue::String { normalized, exact } => (
                "INSERT INTO search_string (tenant, resource_type, id, param, normalized, exact) VALUES (?, ?, ?, ?, ?, ?)".into(),
                SqlValue::Text(normalized),
                SqlValue::Text(exact),
            ),
            IndexValue::Date { low, high } => (
                "INSERT INTO search_date (tenant, resource_type, id, param, low, high) VALUES (?, ?, ?, ?, ?, ?)".into(),
                SqlValue::Integer(low),
                SqlValue::Integer(high),
            ),
            IndexValue::Reference { target_type, target_id } => (
                "INSERT INTO search_reference (tenant, resource_type, id, param, target_type, target_id) VALUES (?, ?, ?, ?, ?, ?)".into(),
                SqlValue::Text(target_type),
                SqlValue::Text(target_id),
            ),
        };
        let values = [first, second];
        let query = sqlx::query(AssertSqlSafe(sql))
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .bind(param);
        bind_all(query, &values)
            .execute(&mut *connection)
            .await
            .map_err(database_error)?;
    }
    Ok(())
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

async fn apply(
    connection: &mut SqliteConnection,
    tenant: &str,
    write: Write,
    time: &(String, i64),
) -> Result<WriteResult, StoreError> {
    match write {
        Write::Create { mut resource } => {
            let (resource_type, id) = resource_key(&resource)?;
            if current_version(connection, tenant, &resource_type, &id)
                .await?
                .is_some()
            {
                return Err(StoreError::Invalid(format!("{resource_type}/{id} already exists")));
            }
            stamp(&mut resource, tenant, &id, 1, &time.0);
            put_version(connection, tenant, &resource_type, &id, 1, Some(&resource), time).await?;
            Ok(WriteResult {
                stored: Some(StoredResource {
                    resource_type,
                    id,
                    version_id: 1,
                    last_updated: time.0.clone(),
                    resource: Some(resource),
                }),
                created: true,
            })
        }
        Write::Update { mut resource, if_match } => {
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
            stamp(&mut resource, tenant, &id, version, &time.0);
            put_version(connection, tenant, &resource_type, &id, version, Some(&resource), time).await?;
            Ok(WriteResult {
                stored: Some(StoredResource {
                    resource_type,
                    id,
                    version_id: version,
                    last_updated: time.0.clone(),
                    resource: Some(resource),
                }),
                created,
            })
        }
        Write::Delete { resource_type, id } => {
            let current = current_version(connection, tenant, &resource_type, &id).await?;
            let Some((version, false)) = current else {
                return Ok(WriteResult {
                    stored: None,
                    created: false,
                });
            };
            put_version(connection, tenant, &resource_type, &id, version + 1, None, time).await?;
            Ok(WriteResult {
                stored: Some(StoredResource {
                    resource_type,
                    id,
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
            .fetch_optional(&self.pool)
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
                "SELECT resource_type, id, version, last_updated, body FROM resource_version WHERE tenant = ? AND resource_type = ? AND id = ? AND version = ?",
            )
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .bind(version_id as i64)
            .fetch_optional(&self.pool)
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
                "SELECT resource_type, id, version, last_updated, body FROM resource_version WHERE tenant = ? AND resource_type = ? AND id = ? ORDER BY version DESC",
            )
            .bind(tenant)
            .bind(resource_type)
            .bind(id)
            .fetch_all(&self.pool)
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
            let compiled =
                compile(tenant, &query.resource_type, &query.params, query.strict).map_err(StoreError::Invalid)?;
            let mut filter =
                "FROM resource_current r WHERE r.tenant = ? AND r.resource_type = ? AND r.deleted = 0".to_owned();
            for condition in &compiled.conditions {
                filter.push_str(" AND ");
                filter.push_str(condition);
            }
            let mut values = vec![
                SqlValue::Text(tenant.to_owned()),
                SqlValue::Text(query.resource_type.clone()),
            ];
            values.extend(compiled.values.iter().cloned());
            let total = if query.want_total || query.count_only {
                let row = bind_all(
                    sqlx::query(AssertSqlSafe(format!("SELECT COUNT(*) AS total {filter}"))),
                    &values,
                )
                .fetch_one(&self.pool)
                .await
                .map_err(database_error)?;
                Some(row.try_get::<i64, _>("total").map_err(database_error)? as u64)
            } else {
                None
            };
            if query.count_only {
                return Ok(SearchResult {
                    resources: Vec::new(),
                    total,
                    has_more: false,
                    used_params: compiled.used,
                });
            }
            let order = match query.sort_last_updated {
                Some(SortOrder::Descending) => "r.last_updated_ms DESC, r.id",
                _ => "r.last_updated_ms ASC, r.id",
            };
            let mut page_values = values;
            page_values.push(SqlValue::Integer(query.count as i64 + 1));
            page_values.push(SqlValue::Integer(query.offset as i64));
            let sql = format!(
                "SELECT r.resource_type, r.id, r.version, r.last_updated, r.body {filter} ORDER BY {order} LIMIT ? OFFSET ?"
            );
            let rows = bind_all(sqlx::query(AssertSqlSafe(sql)), &page_values)
                .fetch_all(&self.pool)
                .await
                .map_err(database_error)?;
            let mut resources: Vec<StoredResource> = rows.iter().map(row_to_stored).collect::<Result<_, _>>()?;
            let has_more = resources.len() > query.count;
            resources.truncate(query.count);
            Ok(SearchResult {
                resources,
                total,
                has_more,
                used_params: compiled.used,
            })
        })
    }

    fn referencing<'a>(
        &'a self,
        tenant: &'a str,
        target_type: &'a str,
        target_id: &'a str,
        links: &'a [(&'static str, &'static [&'static str])],
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>> {
        Box::pin(async move {
            let rows = sqlx::query(
                "SELECT r.resource_type, r.id, r.version, r.last_updated, r.body, i.param FROM search_reference i \
                 JOIN resource_current r ON r.tenant = i.tenant AND r.resource_type = i.resource_type AND r.id = i.id \
                 WHERE i.tenant = ? AND i.target_id = ? AND i.target_type = ? AND r.deleted = 0 \
                 ORDER BY r.resource_type, r.last_updated_ms, r.id",
            )
            .bind(tenant)
            .bind(target_id)
            .bind(target_type)
            .fetch_all(&self.pool)
            .await
            .map_err(database_error)?;
            let mut found: Vec<StoredResource> = Vec::new();
            let mut seen = std::collections::HashSet::new();
            for row in &rows {
                let resource_type: String = row.try_get("resource_type").map_err(database_error)?;
                let param: String = row.try_get("param").map_err(database_error)?;
                let linked = links
                    .iter()
                    .any(|(linked_type, params)| *linked_type == resource_type && params.contains(&param.as_str()));
                let id: String = row.try_get("id").map_err(database_error)?;
                if linked && seen.insert((resource_type, id)) {
                    found.push(row_to_stored(row)?);
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
                    .fetch_all(&self.pool)
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
            let mut transaction = self.pool.begin().await.map_err(database_error)?;
            let time = now();
            let mut results = Vec::with_capacity(writes.len());
            for write in writes {
                results.push(apply(&mut transaction, tenant, write, &time).await?);
            }
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
