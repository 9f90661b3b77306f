//! Who is calling, as the handlers see it: the [`Authed`] extractor
//! authenticates the bearer credential (see [`crate::access`]), counts
//! refusals per client address and writes them into the trail; handlers then
//! ask it for what their route needs ([`Authed::require`]) and record what
//! they did ([`Authed::record`]).

use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use serde_json::{Value, json};

use super::{AppError, AppState};
use crate::access::trail::{self, Act};
use crate::access::{Caller, Refused};
use crate::store::TenantScope;

/// What a route needs of its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Reading the timeline (some or all tenants).
    Read,
    /// Replay and dead letters.
    Admin,
    /// Metrics and readiness details.
    Metrics,
}

/// An authenticated request.
pub struct Authed {
    /// Who.
    pub caller: Caller,
    /// The client's address (the peer, or `X-Forwarded-For` through a trusted proxy).
    pub ip: Option<IpAddr>,
    /// This request's id: the external id of its trail record.
    pub request_id: String,
    /// `METHOD path`.
    pub line: String,
    /// The raw query string.
    pub query: Option<String>,
}

fn bearer(parts: &Parts) -> Option<&str> {
    parts
        .headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
}

fn client_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0.ip());
    crate::sources::webhook::sender(peer, &parts.headers, &state.access.trusted_proxies)
}

fn line(parts: &Parts) -> String {
    format!("{} {}", parts.method, parts.uri.path())
}

impl FromRequestParts<AppState> for Authed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Authed, AppError> {
        let ip = client_ip(parts, state);
        if let Err(wait) = state.access.throttle.check(ip) {
            return Err(AppError::TooManyRequests {
                retry_after_secs: wait,
                message: "too many refused credentials from this address; retry later".into(),
            });
        }
        let result = match bearer(parts) {
            Some(token) => state.access.authenticate(token, state.pipeline.tenants()).await,
            None => Err(Refused {
                message: "a bearer token is required",
                detail: "no `Authorization: Bearer` header".into(),
            }),
        };
        let request_id = trail::request_id();
        match result {
            Ok(caller) => Ok(Authed {
                caller,
                ip,
                request_id,
                line: line(parts),
                query: parts.uri.query().map(str::to_string),
            }),
            Err(refused) => {
                state.access.throttle.failed(ip);
                tracing::info!(ip = ?ip, reason = %refused.detail, path = %parts.uri.path(), "API credential refused");
                let access = trail::Access {
                    act: Act::AuthFailed,
                    request_id: &request_id,
                    caller: None,
                    ip,
                    request: line(parts),
                    query: parts.uri.query(),
                    target: None,
                    status: 401,
                    detail: json!({ "reason": refused.detail }),
                };
                // The refusal stands whether or not it could be recorded.
                if let Err(e) = write(state, &access).await {
                    tracing::warn!(error = %e, "cannot record a refused API credential in the trail");
                }
                Err(AppError::Unauthorized(refused.message.into()))
            }
        }
    }
}

/// An optional credential: none when the request has no `Authorization`
/// header, refused (and counted) like [`Authed`] when it has a bad one.
pub struct MaybeAuthed(pub Option<Authed>);

impl FromRequestParts<AppState> for MaybeAuthed {
    type Rejection = AppError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<MaybeAuthed, AppError> {
        if parts.headers.contains_key(AUTHORIZATION) {
            Authed::from_request_parts(parts, state)
                .await
                .map(|a| MaybeAuthed(Some(a)))
        } else {
            Ok(MaybeAuthed(None))
        }
    }
}

async fn write(state: &AppState, access: &trail::Access<'_>) -> Result<(), crate::store::StoreError> {
    state
        .pipeline
        .write(
            trail::SOURCE,
            None,
            vec![trail::record(access)],
            crate::store::Commit::Records,
        )
        .await
        .map(|_| ())
}

impl Authed {
    /// Whether the caller may do what `need` names.
    pub fn may(&self, need: Need) -> bool {
        let g = &self.caller.grants;
        match need {
            Need::Read => g.read.is_some(),
            Need::Admin => g.admin,
            Need::Metrics => g.metrics,
        }
    }

    /// The caller's read scope, or 403 (recorded) when it may not read.
    pub async fn read_scope(&self, state: &AppState, act: Act) -> Result<TenantScope, AppError> {
        self.require(state, Need::Read, act).await?;
        Ok(self
            .caller
            .grants
            .read
            .clone()
            .unwrap_or(TenantScope::Tenants(Default::default())))
    }

    /// Ok when the caller may do what `need` names; otherwise 403, recorded.
    pub async fn require(&self, state: &AppState, need: Need, act: Act) -> Result<(), AppError> {
        if self.may(need) {
            return Ok(());
        }
        let scope = match need {
            Need::Read => "read or read:tenant=<slug>",
            Need::Admin => "admin",
            Need::Metrics => "metrics",
        };
        self.record(
            state,
            Act::AccessDenied,
            None,
            403,
            json!({ "wanted": act.action(), "needs": scope }),
        )
        .await?;
        Err(AppError::Forbidden(format!(
            "this credential lacks the `{scope}` scope"
        )))
    }

    /// Records what the request did (its answer's status and details).
    /// The read is answered only once its record is stored: an access the
    /// trail cannot hold is refused (503) rather than left unrecorded.
    pub async fn record(
        &self,
        state: &AppState,
        act: Act,
        target: Option<&str>,
        status: u16,
        detail: Value,
    ) -> Result<(), AppError> {
        let access = trail::Access {
            act,
            request_id: &self.request_id,
            caller: Some(&self.caller),
            ip: self.ip,
            request: self.line.clone(),
            query: self.query.as_deref(),
            target,
            status,
            detail,
        };
        write(state, &access).await.map_err(AppError::from)
    }
}
