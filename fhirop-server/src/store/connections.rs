//! The store's SQLite connections, lent out one query or transaction at a time.
//!
//! sqlx's pool is not used: when a pooled connection is dropped, the pool spawns a task that
//! pings the connection on its worker thread before putting it back. That is two more thread
//! hand-offs per query, and on a busy core they cost more than the query itself (a Bot's
//! `medplum.searchResources` waits through them with its worker blocked). A SQLite connection
//! lives in this process and does not go stale, so here it simply goes back when the lease
//! ends. A query abandoned halfway leaves nothing behind either: the connection's worker runs
//! commands in order, so the next one waits for it, and an abandoned transaction queues its
//! rollback when dropped (sqlx).

use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, PoisonError};

use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, SqliteConnection};
use tokio::sync::{Semaphore, SemaphorePermit};

/// A fixed set of open connections.
pub(super) struct Connections {
    idle: Mutex<Vec<SqliteConnection>>,
    /// One permit per connection in `idle`: holding one guarantees a connection to take.
    available: Semaphore,
}

impl std::fmt::Debug for Connections {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connections")
            .field("available", &self.available.available_permits())
            .finish_non_exhaustive()
    }
}

impl Connections {
    /// Opens `count` connections with `options` (at least one).
    pub(super) async fn open(options: &SqliteConnectOptions, count: usize) -> Result<Connections, sqlx::Error> {
        let count = count.max(1);
        let mut idle = Vec::with_capacity(count);
        for _ in 0..count {
            idle.push(options.connect().await?);
        }
        Ok(Connections {
            idle: Mutex::new(idle),
            available: Semaphore::new(count),
        })
    }

    /// A connection, once one is free.
    pub(super) async fn acquire(&self) -> Result<Lease<'_>, sqlx::Error> {
        // The semaphore is never closed, so acquiring fails only if it were.
        let permit = self.available.acquire().await.map_err(|_| sqlx::Error::PoolClosed)?;
        let connection = self
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
            .ok_or(sqlx::Error::PoolTimedOut)?;
        Ok(Lease {
            connections: self,
            connection: Some(connection),
            _permit: permit,
        })
    }
}

/// One connection, returned to its set when dropped.
pub(super) struct Lease<'a> {
    connections: &'a Connections,
    connection: Option<SqliteConnection>,
    // Dropped after `drop` has put the connection back, so the next waiter finds it.
    _permit: SemaphorePermit<'a>,
}

impl Deref for Lease<'_> {
    type Target = SqliteConnection;

    fn deref(&self) -> &SqliteConnection {
        // Some from construction until drop.
        self.connection
            .as_ref()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl DerefMut for Lease<'_> {
    fn deref_mut(&mut self) -> &mut SqliteConnection {
        self.connection
            .as_mut()
            .unwrap_or_else(|| unreachable!("a lease holds its connection until dropped"))
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        if let Some(connection) = self.connection.take() {
            self.connections
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(connection);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    #[tokio::test]
    async fn leases_wait_for_a_free_connection_and_give_it_back() {
        let options = SqliteConnectOptions::from_str("sqlite::memory:").unwrap();
        let connections = Connections::open(&options, 1).await.unwrap();
        let mut first = connections.acquire().await.unwrap();
        sqlx::query("CREATE TABLE kept (value INTEGER)")
            .execute(&mut *first)
            .await
            .unwrap();
        let waiting = futures_util::FutureExt::now_or_never(connections.acquire());
        assert!(
            waiting.is_none(),
            "a second lease waits while the only connection is lent"
        );
        drop(first);
        let mut second = connections.acquire().await.unwrap();
        // The same in-memory database: the connection came back, it was not reopened.
        sqlx::query("INSERT INTO kept VALUES (1)")
            .execute(&mut *second)
            .await
            .unwrap();
    }
}
