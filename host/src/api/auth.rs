//! Bearer-token authentication of the read API, compared in constant time.

use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use subtle::ConstantTimeEq;

use super::AppError;
use crate::config::Secret;

/// Checks `Authorization: Bearer <token>` against the configured token.
/// With no token configured, every request is refused.
pub fn require_token(headers: &HeaderMap, configured: Option<&Secret>) -> Result<(), AppError> {
    let Some(expected) = configured else {
        // How to fix it is for the operator's log (said at start-up), not
        // for an anonymous caller.
        return Err(AppError::Unauthorized("reading is not enabled on this server".into()));
    };
    let given = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .ok_or_else(|| AppError::Unauthorized("a bearer token is required".into()))?;
    if bool::from(given.trim().as_bytes().ct_eq(expected.expose().as_bytes())) {
        Ok(())
    } else {
        Err(AppError::Unauthorized("the bearer token is not valid".into()))
    }
}
