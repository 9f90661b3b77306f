//! Machine tokens: a name, scopes, and the SHA-256 of the token, never the
//! token itself (`[[api.tokens]]`; `audit-ingest token create` makes one).
//!
//! A token is 32 random bytes, so a plain SHA-256 is as strong as a slow
//! password hash here (there is no dictionary to try) and costs a
//! microsecond per request. The given token's hash is compared with every
//! configured hash in constant time, all of them every time, so the answer's
//! timing says nothing about which or how many bytes matched.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use super::{Caller, Credential, Grants};
use crate::config::ConfigError;
use crate::store::TenantScope;

/// The prefix of every machine token (secret scanners can match it).
pub const TOKEN_PREFIX: &str = "ait_";

/// The most machine tokens one configuration may hold.
pub const MAX_TOKENS: usize = 1000;

/// One `[[api.tokens]]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    /// Who holds it (shown in the trail as the actor): letters, digits, `-`, `_`, `.`.
    pub name: String,
    /// `sha256:` and 64 hex digits: the hash `token create` printed.
    pub hash: String,
    /// `read` (all tenants), `read:tenant=<slug>`, `admin`, `metrics`.
    pub scopes: Vec<String>,
}

/// One scope of a machine token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// Read every tenant's records.
    Read,
    /// Read one tenant's records.
    ReadTenant(String),
    /// Replay and dead letters.
    Admin,
    /// `/metrics` and `/readyz` details.
    Metrics,
}

impl Scope {
    /// Parses `read`, `read:tenant=<slug>`, `admin` or `metrics`.
    pub fn parse(text: &str) -> Result<Scope, String> {
        match text.trim() {
            "read" => Ok(Scope::Read),
            "admin" => Ok(Scope::Admin),
            "metrics" => Ok(Scope::Metrics),
            other => match other.strip_prefix("read:tenant=") {
                Some(slug) if !slug.trim().is_empty() => Ok(Scope::ReadTenant(slug.trim().to_lowercase())),
                _ => Err(format!(
                    "`{other}` is not a scope; use read, read:tenant=<slug>, admin or metrics"
                )),
            },
        }
    }

    fn grant(&self, grants: &mut Grants) {
        match self {
            Scope::Read => grants.read = Some(TenantScope::All),
            Scope::ReadTenant(slug) => grants.add_tenant(slug.clone()),
            Scope::Admin => grants.admin = true,
            Scope::Metrics => grants.metrics = true,
        }
    }
}

/// What a list of scopes grants.
pub fn grants_of(scopes: &[Scope]) -> Grants {
    let mut grants = Grants::default();
    for scope in scopes {
        scope.grant(&mut grants);
    }
    grants
}

struct Entry {
    name: String,
    hash: [u8; 32],
    grants: Grants,
}

/// The configured machine tokens (their hashes print as `<redacted>`).
#[derive(Default)]
pub struct MachineTokens {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for MachineTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.entries.iter().map(|e| &e.name)).finish()
    }
}

fn digest(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

fn parse_hash(text: &str) -> Option<[u8; 32]> {
    let hex = text.strip_prefix("sha256:")?;
    if hex.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(out)
}

fn check_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

impl MachineTokens {
    /// Checks and resolves `[[api.tokens]]`, naming the entry at fault.
    pub fn resolve(configs: &[TokenConfig]) -> Result<MachineTokens, ConfigError> {
        if configs.len() > MAX_TOKENS {
            return Err(ConfigError::new("api.tokens", format!("at most {MAX_TOKENS} tokens")));
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(configs.len());
        for (i, c) in configs.iter().enumerate() {
            let key = |field: &str| format!("api.tokens[{i}].{field}");
            if !check_name(&c.name) {
                return Err(ConfigError::new(
                    key("name"),
                    "use 1 to 64 letters, digits, -, _ and . only",
                ));
            }
            if entries.iter().any(|e| e.name == c.name) {
                return Err(ConfigError::new(key("name"), format!("`{}` is used twice", c.name)));
            }
            let hash = parse_hash(&c.hash).ok_or_else(|| {
                ConfigError::new(
                    key("hash"),
                    "expected `sha256:` and 64 hex digits, as `audit-ingest token create` prints",
                )
            })?;
            if entries.iter().any(|e| e.hash == hash) {
                return Err(ConfigError::new(key("hash"), "the same token is configured twice"));
            }
            if c.scopes.is_empty() {
                return Err(ConfigError::new(key("scopes"), "give at least one scope"));
            }
            let scopes = c
                .scopes
                .iter()
                .map(|s| Scope::parse(s))
                .collect::<Result<Vec<_>, _>>()
                .map_err(|problem| ConfigError::new(key("scopes"), problem))?;
            entries.push(Entry {
                name: c.name.clone(),
                hash,
                grants: grants_of(&scopes),
            });
        }
        Ok(MachineTokens { entries })
    }

    /// Whether none is configured.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The caller holding `token`, comparing with every entry.
    pub fn find(&self, token: &str) -> Option<Caller> {
        if self.entries.is_empty() || !token.starts_with(TOKEN_PREFIX) {
            return None;
        }
        let given = digest(token);
        let mut found = None;
        for entry in &self.entries {
            if bool::from(entry.hash.ct_eq(&given)) {
                found = Some(entry);
            }
        }
        found.map(|e| Caller {
            id: e.name.clone(),
            name: None,
            credential: Credential::MachineToken,
            grants: e.grants.clone(),
        })
    }
}

/// A new token and the entry that accepts it.
pub struct Created {
    /// The token, to hand to the client once.
    pub token: String,
    /// The `[[api.tokens]]` entry.
    pub entry: TokenConfig,
}

/// Makes a new token for `name` with `scopes` (checked as the configuration would).
pub fn create(name: &str, scopes: &[String]) -> Result<Created, String> {
    if !check_name(name) {
        return Err("the name must be 1 to 64 letters, digits, -, _ and . only".into());
    }
    if scopes.is_empty() {
        return Err("give at least one --scope (read, read:tenant=<slug>, admin, metrics)".into());
    }
    for s in scopes {
        Scope::parse(s)?;
    }
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| format!("no randomness available: {e}"))?;
    let token = format!("{TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(secret));
    let hash = digest(&token).iter().map(|b| format!("{b:02x}")).collect::<String>();
    Ok(Created {
        entry: TokenConfig {
            name: name.to_string(),
            hash: format!("sha256:{hash}"),
            scopes: scopes.to_vec(),
        },
        token,
    })
}

/// The entry as TOML, ready to paste into the configuration file.
pub fn entry_toml(entry: &TokenConfig) -> String {
    #[derive(Serialize)]
    struct File<'a> {
        api: Api<'a>,
    }
    #[derive(Serialize)]
    struct Api<'a> {
        tokens: [&'a TokenConfig; 1],
    }
    toml::to_string(&File {
        api: Api { tokens: [entry] },
    })
    .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_created_token_is_found_with_its_scopes_and_nothing_else_is() {
        let made = create("ci", &["read:tenant=Acme".into(), "metrics".into()]).unwrap();
        assert!(made.token.starts_with(TOKEN_PREFIX) && made.token.len() > 40);
        assert!(!made.entry.hash.contains(&made.token[4..]));
        let tokens = MachineTokens::resolve(std::slice::from_ref(&made.entry)).unwrap();
        let caller = tokens.find(&made.token).expect("found");
        assert_eq!(caller.id, "ci");
        assert_eq!(caller.grants.read, Some(TenantScope::tenant("acme")));
        assert!(caller.grants.metrics && !caller.grants.admin);
        assert_eq!(tokens.find(&format!("{}x", made.token)), None);
        assert_eq!(tokens.find("ait_"), None);
        let other = create("ci", &["read".into()]).unwrap();
        assert_eq!(tokens.find(&other.token), None, "another token of the same name");
    }

    #[test]
    fn the_printed_entry_is_what_the_configuration_reads() {
        let made = create("backup-job", &["read".into(), "admin".into()]).unwrap();
        let text = entry_toml(&made.entry);
        assert!(text.contains("[[api.tokens]]"), "{text}");
        #[derive(Deserialize)]
        struct File {
            api: Api,
        }
        #[derive(Deserialize)]
        struct Api {
            tokens: Vec<TokenConfig>,
        }
        let file: File = toml::from_str(&text).unwrap();
        assert_eq!(file.api.tokens, vec![made.entry]);
    }

    #[test]
    fn bad_entries_name_their_key() {
        let good = create("a", &["read".into()]).unwrap().entry;
        let with = |f: &dyn Fn(&mut TokenConfig)| {
            let mut e = good.clone();
            f(&mut e);
            MachineTokens::resolve(&[e]).err().map(|e| e.key)
        };
        assert_eq!(with(&|e| e.name = "a b".into()), Some("api.tokens[0].name".into()));
        assert_eq!(with(&|e| e.hash = "deadbeef".into()), Some("api.tokens[0].hash".into()));
        assert_eq!(
            with(&|e| e.scopes = vec!["write".into()]),
            Some("api.tokens[0].scopes".into())
        );
        assert_eq!(with(&|e| e.scopes = vec![]), Some("api.tokens[0].scopes".into()));
        assert_eq!(with(&|_| {}), None);
        let twice = MachineTokens::resolve(&[good.clone(), good]).unwrap_err();
        assert_eq!(twice.key, "api.tokens[1].name");
    }
}
