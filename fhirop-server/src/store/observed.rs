//! A store that tells listeners what was written, after the commit: caches of stored
//! resources (deployed Bots) stay right whatever route wrote them (REST, transactions, Bots).

use std::sync::{Arc, RwLock};

use fhirop::store::{
    ReadResult, ResourceStore, SearchQuery, SearchResult, StoreError, StoredResource, Write, WriteResult,
};
use futures_util::future::BoxFuture;

/// Told `(tenant, resource type, id)` of every resource a committed transaction wrote
/// (deletions included), after the commit.
pub type WriteListener = Box<dyn Fn(&str, &str, &str) + Send + Sync>;

/// Forwards to a store and reports committed writes.
pub struct ObservedStore {
    inner: Arc<dyn ResourceStore>,
    listeners: RwLock<Vec<WriteListener>>,
}

impl std::fmt::Debug for ObservedStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObservedStore").finish_non_exhaustive()
    }
}

impl ObservedStore {
    /// Observes `inner`.
    pub fn new(inner: Arc<dyn ResourceStore>) -> ObservedStore {
        ObservedStore {
            inner,
            listeners: RwLock::default(),
        }
    }

    /// Adds a listener.
    pub fn listen(&self, listener: WriteListener) {
        if let Ok(mut listeners) = self.listeners.write() {
            listeners.push(listener);
        }
    }
}

impl ResourceStore for ObservedStore {
    fn read<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<ReadResult, StoreError>> {
        self.inner.read(tenant, resource_type, id)
    }

    fn vread<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
        version_id: u64,
    ) -> BoxFuture<'a, Result<ReadResult, StoreError>> {
        self.inner.vread(tenant, resource_type, id, version_id)
    }

    fn history<'a>(
        &'a self,
        tenant: &'a str,
        resource_type: &'a str,
        id: &'a str,
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>> {
        self.inner.history(tenant, resource_type, id)
    }

    fn search<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<SearchResult, StoreError>> {
        self.inner.search(tenant, query)
    }

    fn search_resources_json<'a>(
        &'a self,
        tenant: &'a str,
        query: &'a SearchQuery,
    ) -> BoxFuture<'a, Result<String, StoreError>> {
        self.inner.search_resources_json(tenant, query)
    }

    fn search_resources_json_blocking(&self, tenant: &str, query: &SearchQuery) -> Option<Result<String, StoreError>> {
        self.inner.search_resources_json_blocking(tenant, query)
    }

    fn referencing<'a>(
        &'a self,
        tenant: &'a str,
        target_type: &'a str,
        target_id: &'a str,
        links: &'a [(&'static str, &'static [&'static str])],
    ) -> BoxFuture<'a, Result<Vec<StoredResource>, StoreError>> {
        self.inner.referencing(tenant, target_type, target_id, links)
    }

    fn tenants_with<'a>(&'a self, resource_type: &'a str) -> BoxFuture<'a, Result<Vec<String>, StoreError>> {
        self.inner.tenants_with(resource_type)
    }

    fn transaction<'a>(
        &'a self,
        tenant: &'a str,
        writes: Vec<Write>,
    ) -> BoxFuture<'a, Result<Vec<WriteResult>, StoreError>> {
        Box::pin(async move {
            // A create from JSON text has no stored resource in its result: its key is taken
            // from the write.
            let from_json: Vec<(String, String)> = writes
                .iter()
                .filter_map(|write| match write {
                    Write::CreateJson { resource_type, id, .. } => Some((resource_type.clone(), id.clone())),
                    _ => None,
                })
                .collect();
            let results = self.inner.transaction(tenant, writes).await?;
            if let Ok(listeners) = self.listeners.read() {
                let written = results
                    .iter()
                    .filter_map(|result| result.stored.as_ref())
                    .map(|stored| (stored.resource_type.as_str(), stored.id.as_str()))
                    .chain(
                        from_json
                            .iter()
                            .map(|(resource_type, id)| (resource_type.as_str(), id.as_str())),
                    );
                for (resource_type, id) in written {
                    for listener in listeners.iter() {
                        listener(tenant, resource_type, id);
                    }
                }
            }
            Ok(results)
        })
    }

    fn supports_search_param(&self, resource_type: &str, name: &str) -> bool {
        self.inner.supports_search_param(resource_type, name)
    }

    fn search_params(&self, resource_type: &str) -> Vec<(&'static str, &'static str)> {
        self.inner.search_params(resource_type)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[tokio::test]
    async fn listeners_hear_of_every_resource_written_from_a_tree_or_from_text() {
        let inner = Arc::new(crate::store::sqlite::SqliteStore::in_memory().await.unwrap());
        let store = ObservedStore::new(inner);
        let heard = Arc::new(Mutex::new(Vec::new()));
        let log = heard.clone();
        store.listen(Box::new(move |tenant, resource_type, id| {
            log.lock().unwrap().push(format!("{tenant} {resource_type}/{id}"));
        }));
        let writes = vec![
            Write::Create {
                resource: serde_json::json!({"resourceType": "Bot", "id": "b1"}),
            },
            Write::CreateJson {
                resource_type: "AccessPolicy".into(),
                id: "a1".into(),
                json: r#"{"resourceType":"AccessPolicy","id":"a1"}"#.into(),
            },
            // Nothing to delete: nothing written, nothing heard.
            Write::Delete {
                resource_type: "Bot".into(),
                id: "missing".into(),
            },
        ];
        store.transaction("t", writes).await.unwrap();
        assert_eq!(*heard.lock().unwrap(), ["t Bot/b1", "t AccessPolicy/a1"]);
    }
}
