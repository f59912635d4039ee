//! The example server's resource store: SQLite through sqlx, with the search index the
//! REST search and `$everything` use.

mod body;
mod connections;
mod direct;
pub mod observed;
pub mod search;
pub mod search_parameters;
pub mod sqlite;

pub use observed::ObservedStore;
pub use sqlite::SqliteStore;

/// A new server-assigned resource id: a UUID whose first bits are the time (v7), so the
/// store's primary keys grow at their right edge instead of at random places. With random
/// (v4) ids an AuditEvent insert took twice as long once 60,000 were stored, as every insert
/// touched a page that had left the cache. Ids are names, not secrets: tokens and client
/// secrets stay fully random.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_ids_are_fhir_ids_in_creation_order() {
        let ids: Vec<String> = (0..2000).map(|_| new_id()).collect();
        assert!(
            ids.iter().all(|id| fhirop::types::lexical::is_id(id)),
            "{:?}",
            &ids[..3]
        );
        let mut sorted = ids.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted, ids);
    }
}
