//! The one error type of the HTTP API. Its answers never carry internals:
//! store and mapper details go to the log, the client gets a status and a
//! short message saying what to do.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An error answer.
#[derive(Debug)]
pub enum AppError {
    /// 400: a parameter or body is wrong; the message says which and why.
    BadRequest(String),
    /// 401: missing or wrong credentials.
    Unauthorized(String),
    /// 404: nothing there.
    NotFound(String),
    /// 413: the body is over the limit.
    PayloadTooLarge(u64),
    /// 503 with `Retry-After`: the store cannot take or serve data right now.
    Unavailable,
}

/// Seconds a client is asked to wait when the store is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        tracing::error!(error = %e, "store operation failed");
        AppError::Unavailable
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let (status, message) = match self {
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m),
            AppError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, m),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, m),
            AppError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the body is larger than the limit of {limit} bytes"),
            ),
            AppError::Unavailable => (
                StatusCode::SERVICE_UNAVAILABLE,
                "the audit store is unavailable; retry later".to_string(),
            ),
        };
        let mut response = (status, Json(json!({ "error": message }))).into_response();
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}
