//! Tenant inference for a poll source's events, polled or pushed: the acting
//! user's groups, looked up in the source's API and cached, matched against
//! the known tenant slugs.
//!
//! authentik: `GET /api/v3/core/users/{pk}/` answers `groups_obj:
//! [{name, ...}]` (direct memberships). Admin groups are dropped first, so
//! an operator who is also in `acme` is not filed under it only by being an
//! admin; the first remaining group whose name is a known slug wins.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fetch::{self, Answer};
use crate::config::Secret;
use crate::ingest::{ActorTenants, Tenants};

/// `[pollers.tenant_lookup]`: where a user's groups are found.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct LookupConfig {
    /// Path of one user, `{id}` replaced by the event's actor id.
    pub user_path: String,
    /// The field holding the group objects.
    pub groups_field: String,
    /// The field of a group object holding its name.
    pub name_field: String,
    /// Group names never used as a tenant (case-insensitive).
    pub admin_groups: Vec<String>,
    /// How long a user's groups are cached, seconds.
    pub cache_ttl_secs: u64,
}

impl Default for LookupConfig {
    fn default() -> Self {
        LookupConfig {
            user_path: "/api/v3/core/users/{id}/".into(),
            groups_field: "groups_obj".into(),
            name_field: "name".into(),
            admin_groups: vec!["authentik Admins".into(), "admins".into()],
            cache_ttl_secs: 300,
        }
    }
}

/// Looks up and caches each user's tenant. Shared by everything that
/// brings the source's events (the poller, a push endpoint of the same
/// source, replay): one cache, and one request per user however many of
/// its events arrive at once.
pub struct TenantLookup {
    config: LookupConfig,
    base_url: String,
    client: reqwest::Client,
    token: Option<Secret>,
    cache: Mutex<HashMap<String, Entry>>,
    /// Lookups in flight against the API at most.
    in_flight: tokio::sync::Semaphore,
    lookups: AtomicU64,
    warned: AtomicBool,
}

/// One user's lookup: made once, read by every caller until it expires.
struct Entry {
    made: Instant,
    answer: Arc<tokio::sync::OnceCell<Looked>>,
}

#[derive(Debug, Clone)]
struct Looked {
    tenant: Option<String>,
    /// The API did not answer: kept only briefly, so its events are looked
    /// up again soon rather than filed without a tenant for the whole TTL.
    failed: bool,
}

/// How long a failed lookup is remembered.
const FAILED_TTL: Duration = Duration::from_secs(30);
/// How long one record waits for its actor's lookup: past it the record
/// is written without a tenant rather than hold a push or a page.
const LOOKUP_WAIT: Duration = Duration::from_secs(5);
/// Requests to the users API at once.
const MAX_IN_FLIGHT: usize = 4;
/// Users cached at most; expired entries are dropped when it is reached.
const MAX_CACHED: usize = 50_000;

impl TenantLookup {
    /// A lookup against `base_url` with the poller's client and token.
    pub fn new(config: LookupConfig, base_url: &str, client: reqwest::Client, token: Option<Secret>) -> TenantLookup {
        TenantLookup {
            config,
            base_url: base_url.trim_end_matches('/').to_string(),
            client,
            token,
            cache: Mutex::new(HashMap::new()),
            in_flight: tokio::sync::Semaphore::new(MAX_IN_FLIGHT),
            lookups: AtomicU64::new(0),
            warned: AtomicBool::new(false),
        }
    }

    /// Lookups that went to the API since start (the cache absorbs the rest).
    pub fn lookups(&self) -> u64 {
        self.lookups.load(Ordering::Relaxed)
    }

    /// The tenant of user `id`, from the cache while it is fresh; callers
    /// asking for the same user at once share one request.
    pub async fn tenant(&self, id: &str, tenants: &Tenants) -> Option<String> {
        let answer = self.entry(id);
        let looked = answer.get_or_init(|| self.fetch(id, tenants));
        match tokio::time::timeout(LOOKUP_WAIT, looked).await {
            Ok(looked) => looked.tenant.clone(),
            Err(_) => {
                self.warn_once(&format!("no answer within {} s", LOOKUP_WAIT.as_secs()), id);
                None
            }
        }
    }

    fn entry(&self, id: &str) -> Arc<tokio::sync::OnceCell<Looked>> {
        let ttl = Duration::from_secs(self.config.cache_ttl_secs);
        let fresh = |e: &Entry| {
            let limit = match e.answer.get() {
                Some(l) if l.failed => FAILED_TTL.min(ttl),
                _ => ttl,
            };
            e.made.elapsed() < limit
        };
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = cache.get(id).filter(|e| fresh(e)) {
            return e.answer.clone();
        }
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, e| fresh(e));
        }
        let answer = Arc::new(tokio::sync::OnceCell::new());
        cache.insert(
            id.to_string(),
            Entry {
                made: Instant::now(),
                answer: answer.clone(),
            },
        );
        answer
    }

    async fn fetch(&self, id: &str, tenants: &Tenants) -> Looked {
        // Ids come from the source's own events; keep them to a safe path segment.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Looked {
                tenant: None,
                failed: false,
            };
        }
        let Ok(_permit) = self.in_flight.acquire().await else {
            return Looked {
                tenant: None,
                failed: true,
            };
        };
        self.lookups.fetch_add(1, Ordering::Relaxed);
        let url = format!("{}{}", self.base_url, self.config.user_path.replace("{id}", id));
        match fetch::get(&self.client, &url, &[], self.token.as_ref(), LOOKUP_MAX_BYTES).await {
            Answer::Page { body, .. } => Looked {
                tenant: serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|user| self.pick(&user, tenants)),
                failed: false,
            },
            // The user was deleted since.
            Answer::NoSuchPage => Looked {
                tenant: None,
                failed: false,
            },
            Answer::Failed(why) => {
                self.warn_once(&why.to_string(), &url);
                Looked {
                    tenant: None,
                    failed: true,
                }
            }
        }
    }

    fn warn_once(&self, why: &str, at: &str) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                %why, at = %at,
                "cannot look up a user's groups for tenant inference; events land without a tenant \
                 (the token needs view_user and view_group)"
            );
        }
    }

    fn pick(&self, user: &Value, tenants: &Tenants) -> Option<String> {
        let groups = user.get(&self.config.groups_field)?.as_array()?;
        groups
            .iter()
            .filter_map(|g| g.get(&self.config.name_field)?.as_str())
            .filter(|name| !self.config.admin_groups.iter().any(|a| a.eq_ignore_ascii_case(name)))
            .find_map(|name| tenants.resolve(Some(name)))
    }
}

impl ActorTenants for TenantLookup {
    fn tenant_of<'a>(
        &'a self,
        id: &'a str,
        tenants: &'a Tenants,
    ) -> Pin<Box<dyn Future<Output = Option<String>> + Send + 'a>> {
        Box::pin(self.tenant(id, tenants))
    }
}

/// The largest answer to one user lookup read.
const LOOKUP_MAX_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn admin_groups_are_skipped_and_the_first_known_slug_wins() {
        let client = reqwest::Client::new();
        let lookup = TenantLookup::new(LookupConfig::default(), "http://x", client, None);
        let tenants = Tenants::new(["acme".to_string(), "globex".to_string()]);
        let user = json!({"groups_obj": [
            {"name": "authentik Admins"}, {"name": "staff"}, {"name": "Globex"}, {"name": "acme"}
        ]});
        assert_eq!(lookup.pick(&user, &tenants).as_deref(), Some("globex"));
        let admin_only = json!({"groups_obj": [{"name": "authentik Admins"}]});
        assert_eq!(lookup.pick(&admin_only, &tenants), None);
    }
}
