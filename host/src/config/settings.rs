//! A configuration resolved once: secrets read, endpoints, pollers and tails
//! built (each poller with its HTTP client). `serve`, `replay` and
//! `config check` all start from here, so nothing is resolved twice.

use std::path::Path;

use super::{Config, ConfigError, Secret};
use crate::access::{Access, oidc, throttle, tokens};
use crate::sources::poll::Poller;
use crate::sources::tail::Tailer;
use crate::sources::webhook::Endpoint;

/// Everything the service needs to start.
pub struct Settings {
    /// The checked configuration (listen address, directories, limits, ...).
    pub config: Config,
    /// Who may call the API.
    pub access: Access,
    /// MongoDB's connection string; none means the embedded store.
    pub mongodb_uri: Option<Secret>,
    /// The enabled webhook endpoints.
    pub webhooks: Vec<Endpoint>,
    /// The enabled pollers.
    pub pollers: Vec<Poller>,
    /// The enabled file tails.
    pub tails: Vec<Tailer>,
    /// The key digests of the hash chain are signed with, if configured.
    pub signing_key: Option<crate::evidence::SigningKey>,
}

impl Settings {
    /// Loads the file (if any) with the environment, checks and resolves it.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Settings::resolve(Config::load(path)?)
    }

    /// Resolves a checked configuration. Disabled entries are resolved too
    /// (so `config check` finds their mistakes) and then left out.
    pub fn resolve(config: Config) -> Result<Settings, ConfigError> {
        let access = resolve_access(&config)?;
        let mongodb_uri = config.store.mongodb_uri.resolve("store.mongodb_uri")?;
        let mut webhooks = Vec::new();
        for w in &config.webhooks {
            let endpoint = w.resolve()?;
            if w.enabled {
                webhooks.push(endpoint);
            }
        }
        let mut pollers = Vec::new();
        for p in &config.pollers {
            let poller = p.resolve()?;
            if p.enabled {
                pollers.push(poller);
            }
        }
        let mut tails = Vec::new();
        for t in &config.tails {
            let tailer = t.resolve()?;
            if t.enabled {
                tails.push(tailer);
            }
        }
        let signing_key = config.evidence.key()?;
        Ok(Settings {
            config,
            access,
            mongodb_uri,
            webhooks,
            pollers,
            tails,
            signing_key,
        })
    }
}

/// `[api]`: the service token, machine tokens, the OIDC issuer, limits.
fn resolve_access(config: &Config) -> Result<Access, ConfigError> {
    let api = &config.api;
    let service_token: Option<Secret> = api.token.resolve("api.token")?;
    let machine = tokens::MachineTokens::resolve(&api.tokens)?;
    let oidc = api.oidc.clone().map(oidc::Verifier::new).transpose()?;
    let trusted = api
        .trusted_proxies
        .iter()
        .map(|p| {
            crate::sources::webhook::Cidr::parse(p)
                .ok_or_else(|| ConfigError::new("api.trusted_proxies", format!("`{p}` is not an address or CIDR")))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let mut access = Access::new(service_token, machine, oidc, api.protect_metrics);
    access.throttle = throttle::Throttle::new(api.failed_auth.clone());
    access.trusted_proxies = trusted;
    Ok(access)
}
