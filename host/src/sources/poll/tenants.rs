//! Tenant inference for polled events: the acting user's groups, looked up in
//! the source's API and cached, matched against the known tenant slugs.
//!
//! authentik: `GET /api/v3/core/users/{pk}/` answers `groups_obj:
//! [{name, ...}]` (direct memberships). Admin groups are dropped first, so
//! an operator who is also in `acme` is not filed under it only by being an
//! admin; the first remaining group whose name is a known slug wins.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::fetch::{self, Answer};
use crate::config::Secret;
use crate::ingest::Tenants;

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

/// Looks up and caches each user's tenant.
pub struct TenantLookup {
    config: LookupConfig,
    base_url: String,
    cache: HashMap<String, (Instant, Option<String>)>,
    /// Lookups that went to the API (for tests and metrics).
    pub lookups: u64,
    warned: bool,
}

impl TenantLookup {
    /// A lookup against `base_url`.
    pub fn new(config: LookupConfig, base_url: &str) -> TenantLookup {
        TenantLookup {
            config,
            base_url: base_url.trim_end_matches('/').to_string(),
            cache: HashMap::new(),
            lookups: 0,
            warned: false,
        }
    }

    /// The tenant of user `id`, from the cache while it is fresh.
    pub async fn tenant_of(
        &mut self,
        client: &reqwest::Client,
        token: Option<&Secret>,
        id: &str,
        tenants: &Tenants,
    ) -> Option<String> {
        let ttl = Duration::from_secs(self.config.cache_ttl_secs);
        if let Some((at, tenant)) = self.cache.get(id)
            && at.elapsed() < ttl
        {
            return tenant.clone();
        }
        let tenant = self.fetch(client, token, id, tenants).await;
        if self.cache.len() > 50_000 {
            self.cache.retain(|_, (at, _)| at.elapsed() < ttl);
        }
        self.cache.insert(id.to_string(), (Instant::now(), tenant.clone()));
        tenant
    }

    async fn fetch(
        &mut self,
        client: &reqwest::Client,
        token: Option<&Secret>,
        id: &str,
        tenants: &Tenants,
    ) -> Option<String> {
        // Ids come from the source's own events; keep them to a safe path segment.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return None;
        }
        self.lookups += 1;
        let url = format!("{}{}", self.base_url, self.config.user_path.replace("{id}", id));
        match fetch::get(client, &url, &[], token, LOOKUP_MAX_BYTES).await {
            Answer::Page { body, .. } => {
                let user: Value = serde_json::from_slice(&body).ok()?;
                self.pick(&user, tenants)
            }
            Answer::NoSuchPage => None, // the user was deleted since
            Answer::Failed(why) => {
                if !self.warned {
                    self.warned = true;
                    tracing::warn!(
                        %why, url = %url,
                        "cannot look up a user's groups for tenant inference; events land without a tenant \
                         (the token needs view_user and view_group)"
                    );
                }
                None
            }
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

/// The largest answer to one user lookup read.
const LOOKUP_MAX_BYTES: usize = 1 << 20;

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn admin_groups_are_skipped_and_the_first_known_slug_wins() {
        let lookup = TenantLookup::new(LookupConfig::default(), "http://x");
        let tenants = Tenants::new(["acme".to_string(), "globex".to_string()]);
        let user = json!({"groups_obj": [
            {"name": "authentik Admins"}, {"name": "staff"}, {"name": "Globex"}, {"name": "acme"}
        ]});
        assert_eq!(lookup.pick(&user, &tenants).as_deref(), Some("globex"));
        let admin_only = json!({"groups_obj": [{"name": "authentik Admins"}]});
        assert_eq!(lookup.pick(&admin_only, &tenants), None);
    }
}
