//! Tenant slugs an event may be attributed to.

use std::collections::BTreeSet;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, RwLock};

use crate::store::Store;

/// Where the tenant of an event's actor is looked up, for records no
/// tenant hint placed (authentik: the user's groups, through its API).
pub trait ActorTenants: Send + Sync {
    /// The tenant of actor `id`: the known slug one of its groups names, if any.
    fn tenant_of<'a>(
        &'a self,
        id: &'a str,
        tenants: &'a Tenants,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>>;
}

/// Tenant slugs an event may be attributed to: the configured ones plus,
/// with MongoDB, the platform's `tenants` collection (refreshed while running).
#[derive(Debug, Clone, Default)]
pub struct Tenants {
    configured: Arc<BTreeSet<String>>,
    slugs: Arc<RwLock<BTreeSet<String>>>,
}

fn normalise(slugs: impl IntoIterator<Item = String>) -> BTreeSet<String> {
    slugs
        .into_iter()
        .map(|s| s.trim().to_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

impl Tenants {
    /// From a list of slugs (case-insensitive).
    pub fn new(slugs: impl IntoIterator<Item = String>) -> Tenants {
        let configured = normalise(slugs);
        Tenants {
            slugs: Arc::new(RwLock::new(configured.clone())),
            configured: Arc::new(configured),
        }
    }

    /// Replaces the slugs learned from the store (the configured ones stay).
    pub fn set_learned(&self, learned: impl IntoIterator<Item = String>) {
        let mut all = normalise(learned);
        all.extend(self.configured.iter().cloned());
        *self.slugs.write().unwrap_or_else(|e| e.into_inner()) = all;
    }

    /// True when no tenant slug is known (nothing can be inferred).
    pub fn is_empty(&self) -> bool {
        self.slugs.read().unwrap_or_else(|e| e.into_inner()).is_empty()
    }

    /// The slug a mapper's hint names, if it is a known tenant.
    pub fn resolve(&self, hint: Option<&str>) -> Option<String> {
        let hint = hint?.trim().to_lowercase();
        let slugs = self.slugs.read().unwrap_or_else(|e| e.into_inner());
        slugs.contains(&hint).then_some(hint)
    }

    /// Keeps the learned slugs in step with the store, every `every`.
    pub async fn follow(self, store: Store, every: std::time::Duration) {
        let mut warned = false;
        loop {
            match store.tenant_slugs().await {
                Ok(slugs) => {
                    warned = false;
                    self.set_learned(slugs);
                }
                Err(e) if !warned => {
                    warned = true;
                    tracing::warn!(error = %e, "cannot read the tenants collection; using the configured tenant slugs");
                }
                Err(_) => {}
            }
            tokio::time::sleep(every).await;
        }
    }
}
