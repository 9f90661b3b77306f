//! Who is calling the API and what they may do.
//!
//! A request's bearer credential is one of three kinds, tried in this order:
//!
//! - the configured service token (`AUDIT_API_TOKEN`): every tenant, replay
//!   and metrics, as before scopes existed;
//! - a machine token (`[[api.tokens]]`, see [`tokens`]): stored as a hash,
//!   with the scopes it was created with;
//! - an OpenID Connect access token from the configured issuer (see
//!   [`oidc`]): its groups claim decides the roles.
//!
//! The answer is a [`Caller`]: a name for the trail and the [`Grants`] the
//! handlers check. Failed attempts are counted per client address
//! ([`throttle`]); every read and every refusal is written back into the
//! timeline as a record of the service's own source ([`trail`]).

pub mod oidc;
pub mod throttle;
pub mod tokens;
pub mod trail;
pub mod verified;

use std::collections::BTreeSet;

use subtle::ConstantTimeEq;

use crate::config::Secret;
use crate::ingest::Tenants;
use crate::store::TenantScope;

/// What a caller may do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Grants {
    /// Whose records it may read; `None` when it may not read the timeline.
    pub read: Option<TenantScope>,
    /// Replay and dead letters.
    pub admin: bool,
    /// `/metrics` and `/readyz` details when they are protected.
    pub metrics: bool,
}

impl Grants {
    /// Everything: the service token.
    pub fn everything() -> Grants {
        Grants {
            read: Some(TenantScope::All),
            admin: true,
            metrics: true,
        }
    }

    /// Adds the right to read `tenant`'s records (nothing when all are readable).
    pub fn add_tenant(&mut self, tenant: String) {
        match &mut self.read {
            Some(TenantScope::All) => {}
            Some(TenantScope::Tenants(slugs)) => {
                slugs.insert(tenant);
            }
            None => self.read = Some(TenantScope::Tenants(BTreeSet::from([tenant]))),
        }
    }

    /// The scopes in their written form (`read`, `read:tenant=acme`, `admin`,
    /// `metrics`), for the trail and logs.
    pub fn describe(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.read {
            Some(TenantScope::All) => out.push("read".to_string()),
            Some(TenantScope::Tenants(slugs)) => out.extend(slugs.iter().map(|s| format!("read:tenant={s}"))),
            None => {}
        }
        if self.admin {
            out.push("admin".into());
        }
        if self.metrics {
            out.push("metrics".into());
        }
        out
    }
}

/// How a caller proved who it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Credential {
    /// The configured service token.
    ServiceToken,
    /// A machine token of `[[api.tokens]]`.
    MachineToken,
    /// An OpenID Connect access token.
    Oidc,
}

impl Credential {
    /// The written form, for the trail.
    pub fn as_str(self) -> &'static str {
        match self {
            Credential::ServiceToken => "service-token",
            Credential::MachineToken => "machine-token",
            Credential::Oidc => "oidc",
        }
    }
}

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// Who: a machine token's name, `service-token`, or the token subject.
    pub id: String,
    /// A readable name when the credential has one (`preferred_username`).
    pub name: Option<String>,
    /// How it proved it.
    pub credential: Credential,
    /// What it may do.
    pub grants: Grants,
}

/// Why a credential was not accepted. The message is safe to show the
/// caller; [`Refused::detail`] is for the log and the trail only.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refused {
    /// What the caller is told.
    pub message: &'static str,
    /// What went wrong, for the operator.
    pub detail: String,
}

impl Refused {
    fn new(message: &'static str, detail: impl Into<String>) -> Refused {
        Refused {
            message,
            detail: detail.into(),
        }
    }
}

/// Everything that authenticates API callers, resolved from `[api]`.
pub struct Access {
    service_token: Option<Secret>,
    machine_tokens: tokens::MachineTokens,
    oidc: Option<oidc::Verifier>,
    /// Whether `/metrics` and `/readyz` details need the `metrics` scope.
    pub protect_metrics: bool,
    /// Refused credentials per client address.
    pub throttle: throttle::Throttle,
    /// Proxies trusted for `X-Forwarded-For`.
    pub trusted_proxies: Vec<crate::sources::webhook::Cidr>,
}

impl Access {
    /// From resolved parts.
    pub fn new(
        service_token: Option<Secret>,
        machine_tokens: tokens::MachineTokens,
        oidc: Option<oidc::Verifier>,
        protect_metrics: bool,
    ) -> Access {
        Access {
            service_token,
            machine_tokens,
            oidc,
            protect_metrics,
            throttle: throttle::Throttle::new(throttle::Config::default()),
            trusted_proxies: Vec::new(),
        }
    }

    /// The OpenID Connect verifier, when `[api.oidc]` is configured.
    pub fn oidc(&self) -> Option<&oidc::Verifier> {
        self.oidc.as_ref()
    }

    /// Only the service token (tests, and a service without `[api]` extras).
    pub fn service_token(token: Option<Secret>) -> Access {
        Access::new(token, tokens::MachineTokens::default(), None, false)
    }

    /// Whether any credential can succeed (the start-up warning otherwise).
    pub fn accepts_anything(&self) -> bool {
        self.service_token.is_some() || !self.machine_tokens.is_empty() || self.oidc.is_some()
    }

    /// The caller behind a bearer credential (`Authorization: Bearer …`
    /// without the prefix).
    pub async fn authenticate(&self, bearer: &str, tenants: &Tenants) -> Result<Caller, Refused> {
        let bearer = bearer.trim();
        if let Some(expected) = &self.service_token
            && bool::from(bearer.as_bytes().ct_eq(expected.expose().as_bytes()))
        {
            return Ok(Caller {
                id: "service-token".into(),
                name: None,
                credential: Credential::ServiceToken,
                grants: Grants::everything(),
            });
        }
        if let Some(caller) = self.machine_tokens.find(bearer) {
            return Ok(caller);
        }
        match &self.oidc {
            Some(verifier) if oidc::looks_like_jwt(bearer) => verifier.verify(bearer, tenants).await,
            _ if !self.accepts_anything() => Err(Refused::new(
                "reading is not enabled on this server",
                "no API token, machine token or OIDC issuer is configured",
            )),
            _ => Err(Refused::new(
                "the bearer token is not valid",
                "no configured token matches",
            )),
        }
    }
}
