//! The one place where settings are read and validated: a TOML file (optional)
//! plus environment overrides, checked here and resolved once (secrets read,
//! HTTP clients built) into [`Settings`]. Unknown keys are errors; secrets are never in
//! the file itself, only named there (an environment variable or a file), and
//! they print as `<redacted>`.

use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

mod settings;

use serde::{Deserialize, Serialize};

pub use settings::Settings;

use crate::runtime::InstanceMode;
use crate::store::sqlite::Durability;

/// A secret value: never shown by `Debug`, `Display` or serialisation.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a value.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The value itself, for the one place that must compare or use it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for Secret {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

/// Where a secret comes from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecretSource {
    /// Read from this environment variable.
    pub env: Option<String>,
    /// Read from this file (trailing newline removed), e.g. a Docker secret.
    pub file: Option<PathBuf>,
}

impl SecretSource {
    fn from_env(name: &str) -> SecretSource {
        SecretSource {
            env: Some(name.to_string()),
            file: None,
        }
    }

    /// Resolves the secret: the file wins when both are set; an empty value is none.
    pub fn resolve(&self, key: &str) -> Result<Option<Secret>, ConfigError> {
        if let Some(path) = &self.file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| ConfigError::new(format!("{key}.file"), format!("cannot read {}: {e}", path.display())))?;
            let value = text.trim_end_matches(['\n', '\r']).to_string();
            if value.is_empty() {
                return Err(ConfigError::new(
                    format!("{key}.file"),
                    format!("{} is empty", path.display()),
                ));
            }
            return Ok(Some(Secret(value)));
        }
        Ok(self
            .env
            .as_deref()
            .and_then(|name| std::env::var(name).ok())
            .filter(|v| !v.is_empty())
            .map(Secret))
    }
}

/// A source name is used in routes, metrics labels and store keys: letters,
/// digits, `-` and `_` only. `key` names the table in the message.
pub fn check_source_name(key: &str, name: &str) -> Result<(), ConfigError> {
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
        return Err(ConfigError::new(
            format!("{key}.source"),
            "use letters, digits, - and _ only",
        ));
    }
    Ok(())
}

/// A configuration problem: the key (or environment variable, or file) at
/// fault and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct ConfigError {
    /// The key, e.g. `webhooks[stalwart].auth.secret.file` or `AUDIT_LISTEN`.
    pub key: String,
    /// What is wrong and what is expected.
    pub problem: String,
}

impl ConfigError {
    /// A problem with `key`.
    pub fn new(key: impl Into<String>, problem: impl Into<String>) -> ConfigError {
        ConfigError {
            key: key.into(),
            problem: problem.into(),
        }
    }
}

/// Log output format.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Human,
    /// One JSON object per line.
    Json,
}

/// The whole configuration, as in `audit-ingest.example.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to listen on (`AUDIT_LISTEN`).
    pub listen: SocketAddr,
    /// Where the embedded store and other state live (`AUDIT_DATA_DIR`).
    pub data_dir: PathBuf,
    /// Drop-in mapper directory (`AUDIT_MAPPERS_DIR`).
    pub mappers_dir: PathBuf,
    /// `human` or `json` (`AUDIT_LOG_FORMAT`).
    pub log_format: LogFormat,
    /// Known tenant slugs (`AUDIT_TENANT_SLUGS`, comma-separated).
    pub tenant_slugs: Vec<String>,
    /// The read API.
    pub api: ApiConfig,
    /// The store.
    pub store: StoreConfig,
    /// Limits of mapper calls.
    pub mapper: MapperConfig,
    /// Webhook endpoints (`[[webhooks]]`). Stalwart's is added with its
    /// defaults unless an entry with `source = "stalwart"` is given (see
    /// `presets`).
    pub webhooks: Vec<crate::sources::webhook::Config>,
    /// Whether pollers and file tails run (`AUDIT_INGEST_ENABLED`); false
    /// leaves only pushed webhooks, e.g. in test environments.
    pub ingest_enabled: bool,
    /// This instance's name among instances sharing one store, the owner of
    /// the poll leases it takes (`AUDIT_INSTANCE`; default: the host name
    /// and the listening port, so a restarted instance takes its leases
    /// back at once). Two live instances must never share a name.
    pub instance: Option<String>,
    /// Poll sources (`[[pollers]]`). authentik's is added when `AUTHENTIK_URL`
    /// is set and no entry has `source = "authentik"`.
    pub pollers: Vec<crate::sources::poll::Config>,
    /// Tailed files (`[[tails]]`). oCIS's is added when `OCIS_AUDIT_FILE` is
    /// set and no entry has `source = "ocis"`.
    pub tails: Vec<crate::sources::tail::Config>,
    /// Webhook requests processed at once; more are answered 429 with
    /// `Retry-After` (bounded memory under overload).
    pub max_in_flight_requests: usize,
    /// Bounds on HTTP connections and request bodies.
    pub http: HttpConfig,
    /// How long a shutdown waits for sources to commit and save their cursors.
    pub shutdown_timeout_secs: u64,
    /// Signed digests of the store's hash chain (`[evidence]`).
    pub evidence: crate::evidence::Config,
    /// How long records are kept (`[retention]`).
    pub retention: crate::retention::Config,
}

/// `[api]`: who may read the timeline, replay and read metrics (see
/// `docs/access.md`).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// The service token (default: env `AUDIT_API_TOKEN`): every tenant,
    /// replay and metrics.
    pub token: SecretSource,
    /// Machine tokens with scopes (`[[api.tokens]]`, made by `audit-ingest
    /// token create`).
    pub tokens: Vec<crate::access::tokens::TokenConfig>,
    /// OpenID Connect access tokens from this issuer (`[api.oidc]`).
    pub oidc: Option<crate::access::oidc::Config>,
    /// Refused credentials per client address (`[api.failed_auth]`).
    pub failed_auth: crate::access::throttle::Config,
    /// `/metrics` and `/readyz` details need the `metrics` scope.
    pub protect_metrics: bool,
    /// Proxies trusted for `X-Forwarded-For` (the client address of the
    /// trail and of the failure counts).
    pub trusted_proxies: Vec<String>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            token: SecretSource::from_env("AUDIT_API_TOKEN"),
            tokens: Vec::new(),
            oidc: None,
            failed_auth: crate::access::throttle::Config::default(),
            protect_metrics: false,
            trusted_proxies: Vec::new(),
        }
    }
}

/// `[store]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct StoreConfig {
    /// MongoDB connection string (default: env `AUDIT_MONGODB_URI`); when none
    /// is set the embedded store is used.
    pub mongodb_uri: SecretSource,
    /// MongoDB database name.
    pub database: String,
    /// MongoDB collection of audit events.
    pub collection: String,
    /// Embedded store: `full` (survives power loss) or `normal` (survives a crash).
    pub durability: Durability,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            mongodb_uri: SecretSource::from_env("AUDIT_MONGODB_URI"),
            database: "audit".into(),
            collection: "audit_events".into(),
            durability: Durability::Full,
        }
    }
}

/// `[http]`: what one connection or request may hold, and for how long.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpConfig {
    /// Connections open at once; one over is closed at once.
    pub max_connections: usize,
    /// From the first byte of a request head to its end, milliseconds.
    pub header_read_timeout_ms: u64,
    /// A whole request body, from the end of its head, milliseconds (408 after).
    pub body_read_timeout_ms: u64,
    /// A keep-alive connection with no request, milliseconds.
    pub idle_timeout_ms: u64,
    /// Request-body bytes held in memory at once, over all requests (503
    /// with `Retry-After` when taken).
    pub max_body_bytes_in_memory: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        let c = crate::http_server::ConnectionLimits::default();
        HttpConfig {
            max_connections: c.max_connections,
            header_read_timeout_ms: c.header_read_timeout.as_millis() as u64,
            body_read_timeout_ms: crate::api::intake::DEFAULT_BODY_READ_TIMEOUT.as_millis() as u64,
            idle_timeout_ms: c.idle_timeout.as_millis() as u64,
            max_body_bytes_in_memory: crate::api::intake::DEFAULT_BODY_BUDGET_BYTES,
        }
    }
}

impl HttpConfig {
    fn validate(&self, largest_body: usize) -> Result<(), ConfigError> {
        let ranges: [(&str, u64, u64, u64); 5] = [
            ("http.max_connections", self.max_connections as u64, 1, 1_000_000),
            ("http.header_read_timeout_ms", self.header_read_timeout_ms, 100, 600_000),
            ("http.body_read_timeout_ms", self.body_read_timeout_ms, 100, 3_600_000),
            ("http.idle_timeout_ms", self.idle_timeout_ms, 100, 3_600_000),
            (
                "http.max_body_bytes_in_memory",
                self.max_body_bytes_in_memory as u64,
                1 << 20,
                64 << 30,
            ),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(ConfigError::new(
                    key,
                    format!("expected {low} to {high}, found {value}"),
                ));
            }
        }
        if self.max_body_bytes_in_memory < largest_body {
            return Err(ConfigError::new(
                "http.max_body_bytes_in_memory",
                format!("must hold at least the largest webhook body ({largest_body} bytes)"),
            ));
        }
        Ok(())
    }

    /// The listener's bounds.
    pub fn connection_limits(&self) -> crate::http_server::ConnectionLimits {
        crate::http_server::ConnectionLimits {
            max_connections: self.max_connections,
            header_read_timeout: std::time::Duration::from_millis(self.header_read_timeout_ms),
            idle_timeout: std::time::Duration::from_millis(self.idle_timeout_ms),
        }
    }

    /// How webhook bodies are read.
    pub fn intake(&self) -> crate::api::Intake {
        crate::api::Intake::new(
            self.max_body_bytes_in_memory,
            std::time::Duration::from_millis(self.body_read_timeout_ms),
        )
    }
}

/// `[mapper]`
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct MapperConfig {
    /// Wall-clock deadline of one call, milliseconds (real time while the
    /// mapper runs, not CPU time; a mapper cannot sleep or wait).
    #[serde(alias = "deadline_ms")]
    pub timeout_ms: u64,
    /// Memory limit of one mapper instance, bytes.
    pub memory_limit_bytes: usize,
    /// `fresh` (an instance per call) or `reuse` (warm instances).
    pub instance_mode: InstanceMode,
    /// Bytes one call may hand back (strings counted each time they are read).
    pub max_output_bytes: usize,
    /// Events one call may return.
    pub max_events_per_call: usize,
    /// Bytes of one event field other than `original`.
    pub max_field_bytes: usize,
    /// Mapper calls that run at once (each holds one instance); default:
    /// twice the CPU cores, 4 to 64.
    pub max_concurrent_calls: usize,
    /// Calls that may wait for a free instance; more are answered busy
    /// (a webhook gets 503 with `Retry-After`).
    pub max_queued_calls: usize,
    /// How long a call waits for a free instance, milliseconds.
    pub queue_wait_ms: u64,
    /// When not empty, only drop-in files with one of these SHA-256 digests
    /// (hex) load.
    pub allowed_sha256: Vec<String>,
    /// Lets a drop-in take over a built-in source (`stalwart`, `authentik`,
    /// `ocis`) without fixtures beside it.
    pub allow_override_without_fixtures: bool,
}

impl Default for MapperConfig {
    fn default() -> Self {
        let limits = crate::runtime::Limits::default();
        let capacity = crate::runtime::Capacity::default();
        MapperConfig {
            timeout_ms: limits.deadline.as_millis() as u64,
            memory_limit_bytes: limits.memory_bytes,
            instance_mode: InstanceMode::default(),
            max_output_bytes: limits.output_bytes,
            max_events_per_call: limits.events_per_call,
            max_field_bytes: limits.field_bytes,
            max_concurrent_calls: capacity.calls,
            max_queued_calls: capacity.queued,
            queue_wait_ms: capacity.wait.as_millis() as u64,
            allowed_sha256: Vec::new(),
            allow_override_without_fixtures: false,
        }
    }
}

impl MapperConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let ranges: [(&str, u64, u64, u64); 7] = [
            ("mapper.timeout_ms", self.timeout_ms, 1, 60_000),
            (
                "mapper.max_output_bytes",
                self.max_output_bytes as u64,
                64 << 10,
                1 << 30,
            ),
            (
                "mapper.max_events_per_call",
                self.max_events_per_call as u64,
                1,
                1_000_000,
            ),
            ("mapper.max_field_bytes", self.max_field_bytes as u64, 256, 16 << 20),
            ("mapper.max_concurrent_calls", self.max_concurrent_calls as u64, 1, 1024),
            ("mapper.max_queued_calls", self.max_queued_calls as u64, 0, 100_000),
            ("mapper.queue_wait_ms", self.queue_wait_ms, 0, 60_000),
        ];
        for (key, value, low, high) in ranges {
            if !(low..=high).contains(&value) {
                return Err(ConfigError::new(
                    key,
                    format!("expected {low} to {high}, found {value}"),
                ));
            }
        }
        let ceiling = 1usize << 30;
        if !(1 << 20..=ceiling).contains(&self.memory_limit_bytes) {
            return Err(ConfigError::new(
                "mapper.memory_limit_bytes",
                format!("expected 1048576 (1 MiB) to {ceiling} (1 GiB)"),
            ));
        }
        self.allowed_digests().map(|_| ())
    }

    fn allowed_digests(&self) -> Result<Vec<[u8; 32]>, ConfigError> {
        self.allowed_sha256
            .iter()
            .map(|text| {
                let text = text.trim();
                let bytes: Option<Vec<u8>> = (text.len() == 64)
                    .then(|| {
                        (0..32)
                            .map(|i| u8::from_str_radix(text.get(2 * i..2 * i + 2)?, 16).ok())
                            .collect()
                    })
                    .flatten();
                bytes.and_then(|b| b.try_into().ok()).ok_or_else(|| {
                    ConfigError::new(
                        "mapper.allowed_sha256",
                        format!("`{text}` is not a SHA-256 digest (64 hex digits, as `sha256sum` prints)"),
                    )
                })
            })
            .collect()
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([0, 0, 0, 0], 3001)),
            data_dir: PathBuf::from("./data"),
            mappers_dir: PathBuf::from("./mappers.d"),
            log_format: LogFormat::Human,
            tenant_slugs: Vec::new(),
            api: ApiConfig::default(),
            store: StoreConfig::default(),
            mapper: MapperConfig::default(),
            webhooks: Vec::new(),
            ingest_enabled: true,
            instance: None,
            pollers: Vec::new(),
            tails: Vec::new(),
            shutdown_timeout_secs: 20,
            max_in_flight_requests: crate::api::DEFAULT_INGEST_SLOTS,
            http: HttpConfig::default(),
            evidence: crate::evidence::Config::default(),
            retention: crate::retention::Config::default(),
        }
    }
}

impl Config {
    /// This instance's name (see [`Config::instance`]): as configured, or
    /// the host name and the port it listens on.
    pub fn instance_name(&self) -> String {
        if let Some(name) = &self.instance {
            return name.clone();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .or_else(|| std::env::var("HOSTNAME").ok())
            .map(|h| h.trim().to_string())
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "audit-ingest".into());
        format!("{host}:{}", self.listen.port())
    }
}

/// Reads an environment variable, treating an empty value as unset.
pub(crate) fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

impl Config {
    /// Parses TOML text; `origin` names the file in messages.
    pub fn from_toml(text: &str, origin: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::new(origin, e.to_string()))
    }

    /// Loads the file (if any), applies environment overrides and validates.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(p) => {
                let text = std::fs::read_to_string(p)
                    .map_err(|e| ConfigError::new(p.display().to_string(), format!("cannot read it: {e}")))?;
                Config::from_toml(&text, &p.display().to_string())?
            }
            None => Config::default(),
        };
        config.apply_env()?;
        crate::presets::apply(&mut config)?;
        config.validate()?;
        Ok(config)
    }

    fn apply_env(&mut self) -> Result<(), ConfigError> {
        if let Some(v) = env("AUDIT_LISTEN") {
            self.listen = v.parse().map_err(|_| {
                ConfigError::new("AUDIT_LISTEN", format!("`{v}` is not an address such as 0.0.0.0:3001"))
            })?;
        }
        if let Some(v) = env("AUDIT_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = env("AUDIT_MAPPERS_DIR") {
            self.mappers_dir = PathBuf::from(v);
        }
        if let Some(v) = env("AUDIT_LOG_FORMAT") {
            self.log_format = match v.as_str() {
                "human" => LogFormat::Human,
                "json" => LogFormat::Json,
                other => {
                    return Err(ConfigError::new(
                        "AUDIT_LOG_FORMAT",
                        format!("`{other}` is not one of human, json"),
                    ));
                }
            };
        }
        if let Some(v) = env("AUDIT_INGEST_ENABLED") {
            self.ingest_enabled = match v.to_ascii_lowercase().as_str() {
                "true" | "1" | "yes" | "on" => true,
                "false" | "0" | "no" | "off" => false,
                _ => {
                    return Err(ConfigError::new(
                        "AUDIT_INGEST_ENABLED",
                        format!("`{v}` is not true or false"),
                    ));
                }
            };
        }
        if let Some(v) = env("AUDIT_INSTANCE") {
            self.instance = Some(v);
        }
        if let Some(v) = env("AUDIT_SIGNING_KEY_FILE") {
            self.evidence.signing_key = Some(PathBuf::from(v));
        }
        if let Some(v) = env("AUDIT_RETENTION_DAYS") {
            self.retention.retention_days = Some(v.trim().parse().map_err(|_| {
                ConfigError::new("AUDIT_RETENTION_DAYS", format!("`{v}` is not a whole number of days"))
            })?);
        }
        if let Some(v) = env("AUDIT_TENANT_SLUGS") {
            self.tenant_slugs = v
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect();
        }
        Ok(())
    }

    /// Checks values that parse but cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.mapper.validate()?;
        let largest_body = self.webhooks.iter().map(|w| w.max_body_bytes).max().unwrap_or(0);
        self.http.validate(largest_body)?;
        if !(1..=3600).contains(&self.shutdown_timeout_secs) {
            return Err(ConfigError::new("shutdown_timeout_secs", "expected 1 to 3600"));
        }
        if !(1..=100_000).contains(&self.max_in_flight_requests) {
            return Err(ConfigError::new("max_in_flight_requests", "expected 1 to 100000"));
        }
        if self.store.collection.trim().is_empty() || self.store.database.trim().is_empty() {
            return Err(ConfigError::new(
                "store.database",
                "store.database and store.collection must not be empty",
            ));
        }
        let mut paths = std::collections::HashSet::new();
        for w in &self.webhooks {
            let route = w.route();
            if crate::api::OWN_ROUTES.iter().any(|own| {
                route == *own
                    || route.starts_with("/audit/")
                    || route.starts_with("/admin/")
                    || route.starts_with("/ui/")
            }) {
                return Err(ConfigError::new(
                    format!("webhooks[{}].path", w.source),
                    format!("{route} is one of the service's own routes; choose another path"),
                ));
            }
            if !paths.insert(w.route()) {
                return Err(ConfigError::new(
                    "webhooks",
                    format!("two endpoints use the path {}", w.route()),
                ));
            }
        }
        if let Some(name) = &self.instance
            && (name.trim().is_empty() || name.len() > 200 || name.chars().any(char::is_control))
        {
            return Err(ConfigError::new(
                "instance",
                "expected 1 to 200 printable characters (AUDIT_INSTANCE)",
            ));
        }
        self.evidence.validate()?;
        self.retention.validate()?;
        self.api.failed_auth.validate()?;
        if let Some(oidc) = &self.api.oidc {
            oidc.validate()?;
        }
        let own = crate::access::trail::SOURCE;
        let mut sources = std::collections::HashSet::new();
        let named = self.webhooks.iter().map(|w| ("webhooks", &w.source));
        let named = named
            .chain(self.pollers.iter().map(|p| ("pollers", &p.source)))
            .chain(self.tails.iter().map(|t| ("tails", &t.source)));
        for (key, source) in named {
            if source == own {
                return Err(ConfigError::new(
                    format!("{key}[{source}].source"),
                    format!("`{own}` is the service's own source (its access records); choose another name"),
                ));
            }
        }
        for p in &self.pollers {
            if !sources.insert(p.source.as_str()) {
                return Err(ConfigError::new(
                    "pollers",
                    format!("two pollers use the source {}", p.source),
                ));
            }
        }
        for t in &self.tails {
            if !sources.insert(t.source.as_str()) {
                return Err(ConfigError::new(
                    "tails",
                    format!("the source {} is already used by another poller or tail", t.source),
                ));
            }
        }
        Ok(())
    }

    /// The mapper runtime as `[mapper]` and `mappers_dir` set it up (a
    /// validated configuration: digests that do not parse are left out).
    pub fn runtime_config(&self) -> crate::runtime::RuntimeConfig {
        let m = &self.mapper;
        crate::runtime::RuntimeConfig {
            dir: Some(self.mappers_dir.clone()),
            limits: crate::runtime::Limits {
                deadline: std::time::Duration::from_millis(m.timeout_ms),
                memory_bytes: m.memory_limit_bytes,
                output_bytes: m.max_output_bytes,
                events_per_call: m.max_events_per_call,
                field_bytes: m.max_field_bytes,
            },
            mode: m.instance_mode,
            capacity: crate::runtime::Capacity {
                calls: m.max_concurrent_calls,
                queued: m.max_queued_calls,
                wait: std::time::Duration::from_millis(m.queue_wait_ms),
            },
            trust: crate::runtime::Trust {
                allowed_sha256: m.allowed_digests().unwrap_or_default(),
                override_without_fixtures: m.allow_override_without_fixtures,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_errors_that_name_the_key() {
        let err = Config::from_toml("listen = \"127.0.0.1:1\"\nlisten_port = 3\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("listen_port"), "{err}");
        let err = Config::from_toml("[mapper]\ntimeout = 3\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("timeout"), "{err}");
    }

    #[test]
    fn wrong_types_and_impossible_values_are_explained() {
        let err = Config::from_toml("[mapper]\ntimeout_ms = \"fast\"\n", "x.toml").unwrap_err();
        assert!(err.to_string().contains("timeout_ms"), "{err}");
        let mut c = Config::default();
        c.mapper.timeout_ms = 0;
        assert_eq!(c.validate().unwrap_err().key, "mapper.timeout_ms");
    }

    #[test]
    fn a_webhook_on_one_of_the_services_own_routes_is_an_error() {
        for path in ["/audit", "/readyz", "/audit/abc", "/admin/replay", "/metrics"] {
            let text = format!("[[webhooks]]\nsource = \"x\"\npath = \"{path}\"\nauth = {{ scheme = \"unsigned\" }}\n");
            let c = Config::from_toml(&text, "x.toml").unwrap();
            let err = c.validate().unwrap_err();
            assert_eq!(err.key, "webhooks[x].path", "{path}: {err}");
        }
    }

    #[test]
    fn short_and_malformed_webhook_secrets_and_wide_windows_are_refused() {
        use crate::sources::webhook::{AuthConfig, Config as Hook};
        let file = |text: &str| {
            let f = tempfile_path(text);
            SecretSource {
                env: None,
                file: Some(f),
            }
        };
        let hmac = |secret: &str| {
            Hook::new(
                "x",
                AuthConfig::Hmac {
                    header: "X-Signature".into(),
                    encoding: crate::sources::webhook::signature::Encoding::Base64,
                    prefix: String::new(),
                    secret: file(secret),
                },
            )
        };
        let sw = |secret: &str, tolerance_secs: u64| {
            Hook::new(
                "x",
                AuthConfig::StandardWebhooks {
                    secret: file(secret),
                    tolerance_secs,
                },
            )
        };
        assert!(hmac("short").resolve().is_err());
        assert!(hmac("sixteen-bytes-ok").resolve().is_ok());
        assert!(sw("whsec_", 300).resolve().is_err(), "an empty whsec_ key");
        assert!(
            sw("whsec_not base64!", 300).resolve().is_err(),
            "a malformed whsec_ key"
        );
        assert!(sw("whsec_c2hvcnQ=", 300).resolve().is_err(), "5 decoded bytes");
        assert!(sw("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 300).resolve().is_ok());
        let err = sw("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", 10_000_000)
            .resolve()
            .unwrap_err();
        assert_eq!(err.key, "webhooks[x].auth.tolerance_secs");
    }

    /// A file holding `text`, kept for the test process.
    fn tempfile_path(text: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("audit-ingest-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join(format!(
            "{:x}",
            sha2::Digest::finalize(<sha2::Sha256 as sha2::Digest>::new_with_prefix(text))
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn secrets_never_print() {
        let s = Secret::new("hunter2");
        assert_eq!(format!("{s:?}"), "<redacted>");
        assert_eq!(serde_json::to_string(&s).unwrap(), "\"<redacted>\"");
    }

    #[test]
    fn an_unreadable_secret_file_names_the_key() {
        let src = SecretSource {
            env: None,
            file: Some("/nonexistent/token".into()),
        };
        let err = src.resolve("api.token").unwrap_err();
        assert_eq!(err.key, "api.token.file");
        assert!(
            err.to_string()
                .starts_with("api.token.file: cannot read /nonexistent/token"),
            "{err}"
        );
    }
}
