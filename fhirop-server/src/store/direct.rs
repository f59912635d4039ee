//! Connections that run reads on the calling thread (rusqlite), lent one read at a time, for
//! callers whose thread may block: a Bot worker.
//!
//! sqlx runs every SQLite connection on a thread of its own, and a statement goes there and
//! its result comes back: two thread switches per statement, and more when the core is busy
//! and the wake-ups preempt. A Bot's `medplum.searchResources` waits through them with its
//! worker blocked anyway, and on a busy core they cost as much as the query. Here the query
//! runs where the caller already waits.
//!
//! The connections are read-only and opened on first use, so a store no Bot reads from holds
//! none. They see what the store's writes committed: the database file (WAL, where readers
//! never wait for the writer), or the in-memory store's memdb database, which memdb shares by
//! name between the connections of one process.

use std::path::PathBuf;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use fhirop::store::StoreError;
use rusqlite::types::{ToSqlOutput, ValueRef};
use rusqlite::{Connection, OpenFlags, ToSql};

use super::search::SqlValue;

/// Statements a connection keeps prepared: the search path's few shapes, each with its
/// conditions.
const STATEMENT_CACHE: usize = 64;
/// Idle connections kept at most: one per Bot worker is what the server uses.
const MAX_IDLE: usize = 16;

/// Which database the connections open.
#[derive(Debug)]
pub(super) enum Database {
    /// A database file.
    File(PathBuf),
    /// A memdb database shared by name (`/...`).
    Memory(String),
}

/// The direct connections of one store.
pub(super) struct DirectReaders {
    database: Database,
    idle: Mutex<Vec<Connection>>,
}

impl std::fmt::Debug for DirectReaders {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectReaders")
            .field("database", &self.database)
            .finish_non_exhaustive()
    }
}

pub(super) fn direct_error(error: rusqlite::Error) -> StoreError {
    StoreError::Database(error.to_string())
}

/// How a direct reader waits while a writer holds the database. memdb refuses a reader for as
/// long as a write transaction is open, and SQLite's own busy timeout sleeps a millisecond at
/// least, an age next to a search; yielding first lets a writer on the same core finish.
fn wait_for_the_writer(attempts: i32) -> bool {
    const YIELDS: i32 = 1000;
    const SLEEPS: i32 = 10_000;
    if attempts < YIELDS {
        std::thread::yield_now();
    } else {
        std::thread::sleep(Duration::from_millis(1));
    }
    attempts < YIELDS + SLEEPS
}

impl DirectReaders {
    /// Readers of `database`; none is open yet.
    pub(super) fn new(database: Database) -> DirectReaders {
        DirectReaders {
            database,
            idle: Mutex::new(Vec::new()),
        }
    }

    fn open(&self) -> Result<Connection, StoreError> {
        let flags = OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX;
        let connection = match &self.database {
            Database::File(path) => Connection::open_with_flags(path, flags),
            Database::Memory(name) => Connection::open_with_flags_and_vfs(name, flags, c"memdb"),
        }
        .map_err(direct_error)?;
        connection
            .busy_handler(Some(wait_for_the_writer))
            .map_err(direct_error)?;
        connection.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        Ok(connection)
    }

    /// Runs `read` on an idle connection, or on a new one when none is idle.
    pub(super) fn with<T>(&self, read: impl FnOnce(&Connection) -> Result<T, StoreError>) -> Result<T, StoreError> {
        let idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop();
        let connection = match idle {
            Some(connection) => connection,
            None => self.open()?,
        };
        let result = read(&connection);
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
        result
    }
}

impl ToSql for SqlValue {
    fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
        Ok(ToSqlOutput::Borrowed(match self {
            SqlValue::Text(text) => ValueRef::Text(text.as_bytes()),
            SqlValue::Integer(number) => ValueRef::Integer(*number),
            SqlValue::Null => ValueRef::Null,
        }))
    }
}
