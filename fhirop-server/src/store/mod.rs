//! The example server's resource store: SQLite through sqlx, with the search index the
//! REST search and `$everything` use.

mod connections;
pub mod observed;
pub mod search;
pub mod search_parameters;
pub mod sqlite;

pub use observed::ObservedStore;
pub use sqlite::SqliteStore;
