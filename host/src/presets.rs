//! What audit-ingest knows about the systems it ships mappers for (beside
//! `builtin`, which embeds those mappers): Stalwart's webhook, authentik's
//! events list and oCIS's audit file, with their defaults and the
//! environment variables that switch them on. The generic source kinds know
//! none of this.
//!
//! - Stalwart: `POST /ingest/stalwart/webhook`, `X-Signature` = base64
//!   HMAC-SHA256 of the body, secret from `STALWART_WEBHOOK_SECRET`; added
//!   unless a `[[webhooks]]` entry has `source = "stalwart"`.
//! - authentik: `AUTHENTIK_URL` adds the poller of `/api/v3/events/events/`
//!   (token from `AUTHENTIK_TOKEN`, tenants from the acting user's groups),
//!   `AUTHENTIK_POLL_INTERVAL_SECS` sets its interval; `POST
//!   /ingest/authentik/webhook` takes its notification pushes (the shipped
//!   body mapping's one event, `Authorization: Bearer` from the transport's
//!   header mapping, token from `AUTHENTIK_WEBHOOK_TOKEN`), added unless a
//!   `[[webhooks]]` entry has `source = "authentik"`.
//! - oCIS: `OCIS_AUDIT_FILE` adds the tail of that file.

use std::path::{Path, PathBuf};

use crate::config::{Config, ConfigError, SecretSource, env};
use crate::sources::poll::tenants::LookupConfig;
use crate::sources::webhook::signature::Encoding;
use crate::sources::{poll, tail, webhook};

/// What authentik needs of the poller's token, said when it is refused.
const AUTHENTIK_TOKEN_HELP: &str = "it must be an API-intent, non-expiring token whose user has view_event \
     (and view_user, view_group for tenants); a token a non-superuser creates is always expiring, so have an \
     administrator create it with Expiring off (docs/authentik.md, section 1)";

/// Stalwart's endpoint: `X-Signature`, base64, secret from `STALWART_WEBHOOK_SECRET`.
pub fn stalwart_webhook() -> webhook::Config {
    webhook::Config::new(
        "stalwart",
        webhook::AuthConfig::Hmac {
            header: "X-Signature".into(),
            encoding: Encoding::Base64,
            prefix: String::new(),
            secret: SecretSource {
                env: Some("STALWART_WEBHOOK_SECRET".into()),
                file: None,
            },
        },
    )
}

/// authentik's notification pushes: one event per request (the body mapping
/// in `docs/authentik.md`), bearer token from `AUTHENTIK_WEBHOOK_TOKEN`.
/// authentik's webhook transport cannot sign a body; it can send headers
/// (a header mapping, in every version the docs cover), so a shared secret
/// in `Authorization` over TLS is the strongest check it allows.
pub fn authentik_webhook() -> webhook::Config {
    webhook::Config::new(
        "authentik",
        webhook::AuthConfig::Bearer {
            token: SecretSource {
                env: Some("AUTHENTIK_WEBHOOK_TOKEN".into()),
                file: None,
            },
        },
    )
}

/// authentik's events list at `base_url`, token from `AUTHENTIK_TOKEN`,
/// tenants from the acting user's groups.
pub fn authentik_poller(base_url: &str) -> poll::Config {
    let mut config = poll::Config::new("authentik", base_url, "/api/v3/events/events/");
    config.token = SecretSource {
        env: Some("AUTHENTIK_TOKEN".into()),
        file: None,
    };
    config.tenant_lookup = Some(LookupConfig::default());
    config.refused_token_help = Some(AUTHENTIK_TOKEN_HELP.into());
    config
}

/// oCIS's audit file at `path`.
pub fn ocis_tail(path: &Path) -> tail::Config {
    tail::Config::new("ocis", path)
}

/// Adds the built-in sources the environment (or their absence from the
/// file) asks for, and applies their environment overrides.
pub fn apply(config: &mut Config) -> Result<(), ConfigError> {
    if !config.webhooks.iter().any(|w| w.source == "stalwart") {
        config.webhooks.push(stalwart_webhook());
    }
    if !config.webhooks.iter().any(|w| w.source == "authentik") {
        config.webhooks.push(authentik_webhook());
    }
    if let Some(url) = env("AUTHENTIK_URL") {
        match config.pollers.iter_mut().find(|p| p.source == "authentik") {
            Some(p) => p.base_url = url,
            None => config.pollers.push(authentik_poller(&url)),
        }
    }
    if let Some(path) = env("OCIS_AUDIT_FILE") {
        match config.tails.iter_mut().find(|t| t.source == "ocis") {
            Some(t) => t.path = PathBuf::from(path),
            None => config.tails.push(ocis_tail(Path::new(&path))),
        }
    }
    if let Some(v) = env("AUTHENTIK_POLL_INTERVAL_SECS") {
        let secs: u64 = v.parse().ok().filter(|s| *s > 0).ok_or_else(|| {
            ConfigError::new(
                "AUTHENTIK_POLL_INTERVAL_SECS",
                format!("`{v}` is not a number of seconds above 0"),
            )
        })?;
        for p in config.pollers.iter_mut().filter(|p| p.source == "authentik") {
            p.interval_secs = secs;
        }
    }
    for p in config.pollers.iter_mut().filter(|p| p.source == "authentik") {
        p.refused_token_help.get_or_insert_with(|| AUTHENTIK_TOKEN_HELP.into());
    }
    Ok(())
}
