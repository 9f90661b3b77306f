//! The one error type of the HTTP API. Its answers never carry internals:
//! store and mapper details go to the log, the client gets a status and a
//! short message saying what to do.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::store::StoreError;

/// An answer other than a plain 200.
#[derive(Debug)]
pub enum AppError {
    /// 202: a signed delivery the mapper could not map; it is kept as a dead
    /// letter (the sender must not retry it) and re-mapped later.
    DeadLettered {
        /// The dead letter's id.
        id: String,
    },
    /// 400: a parameter or body is wrong; the message says which and why.
    BadRequest(String),
    /// 401: missing or wrong credentials.
    Unauthorized(String),
    /// 403: the credential is valid but lacks the scope the route needs.
    Forbidden(String),
    /// 404: nothing there.
    NotFound(String),
    /// 413: the body is over the limit.
    PayloadTooLarge(u64),
    /// 415: the body is not of a type this endpoint reads.
    UnsupportedMediaType(String),
    /// 429 with `Retry-After`: too much in flight; the sender retries later.
    TooManyRequests {
        /// Seconds to wait.
        retry_after_secs: u64,
        /// What is busy.
        message: String,
    },
    /// 503 with `Retry-After`, or 400 for input the store says cannot exist.
    Store(StoreError),
    /// 503 with `Retry-After`: no mapper instance was free; nothing was
    /// stored, the sender retries.
    MapperBusy(String),
    /// 503 with `Retry-After`: other request bodies hold the whole budget
    /// of body bytes in memory (the number).
    BodyBudget(usize),
    /// 408: the body did not arrive within the deadline.
    RequestTimeout(std::time::Duration),
    /// 503 with `Retry-After`: a bounded resource of the service (live
    /// streams) is taken; the message says which.
    Unavailable(String),
}

/// Seconds a client is asked to wait when the store is unavailable.
pub const RETRY_AFTER_SECS: u64 = 5;

impl From<StoreError> for AppError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::InvalidInput(message) => AppError::BadRequest(message),
            e => AppError::Store(e),
        }
    }
}

impl IntoResponse for AppError {
    fn into_response(self) -> Response {
        let mut retry_after = None;
        let (status, body) = match self {
            AppError::DeadLettered { id } => (
                StatusCode::ACCEPTED,
                json!({
                    "received": 0,
                    "inserted": 0,
                    "duplicates": 0,
                    "deadLetter": id,
                    "error": "the payload could not be mapped; it is kept and will be re-mapped when a fixed mapper is installed",
                }),
            ),
            AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, json!({ "error": m })),
            AppError::Unauthorized(m) => (StatusCode::UNAUTHORIZED, json!({ "error": m })),
            AppError::Forbidden(m) => (StatusCode::FORBIDDEN, json!({ "error": m })),
            AppError::NotFound(m) => (StatusCode::NOT_FOUND, json!({ "error": m })),
            AppError::PayloadTooLarge(limit) => (
                StatusCode::PAYLOAD_TOO_LARGE,
                json!({ "error": format!("the body is larger than the limit of {limit} bytes") }),
            ),
            AppError::UnsupportedMediaType(m) => (StatusCode::UNSUPPORTED_MEDIA_TYPE, json!({ "error": m })),
            AppError::TooManyRequests {
                retry_after_secs,
                message,
            } => {
                retry_after = Some(retry_after_secs);
                (StatusCode::TOO_MANY_REQUESTS, json!({ "error": message }))
            }
            AppError::MapperBusy(why) => {
                tracing::warn!(reason = %why, "delivery refused for now: no mapper instance free");
                retry_after = Some(1);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "the service is busy mapping other deliveries; retry later" }),
                )
            }
            AppError::BodyBudget(budget) => {
                tracing::warn!(
                    budget_bytes = budget,
                    "request refused for now: the body budget is taken by other requests"
                );
                retry_after = Some(1);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "the service is reading too many request bodies at once; retry later" }),
                )
            }
            AppError::RequestTimeout(limit) => (
                StatusCode::REQUEST_TIMEOUT,
                json!({ "error": format!("the request body did not arrive within {} s", limit.as_secs_f64()) }),
            ),
            AppError::Unavailable(m) => {
                retry_after = Some(RETRY_AFTER_SECS);
                (StatusCode::SERVICE_UNAVAILABLE, json!({ "error": m }))
            }
            AppError::Store(StoreError::TooSlow(budget)) => {
                tracing::warn!(
                    budget_secs = budget.as_secs(),
                    "a read ran past the store's read budget and was stopped"
                );
                retry_after = Some(RETRY_AFTER_SECS);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": format!(
                        "the query took longer than {} s and was stopped; narrow it (since, until, source, action)",
                        budget.as_secs()
                    ) }),
                )
            }
            AppError::Store(e) => {
                // The client learns only that it should retry; the cause goes to the log.
                match &e {
                    StoreError::Corrupt { .. } => tracing::error!(error = %e, "store data could not be read"),
                    _ => tracing::error!(error = %e, "store operation failed"),
                }
                retry_after = Some(RETRY_AFTER_SECS);
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    json!({ "error": "the audit store is unavailable; retry later" }),
                )
            }
        };
        let mut response = (status, Json(body)).into_response();
        if let Some(secs) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_read_past_its_budget_says_to_narrow_the_query() {
        let response = AppError::from(StoreError::TooSlow(std::time::Duration::from_secs(10))).into_response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let body = axum::body::to_bytes(response.into_body(), 4096).await.unwrap();
        let text = String::from_utf8_lossy(&body);
        assert!(
            text.contains("took longer than 10 s") && text.contains("narrow it"),
            "{text}"
        );
    }
}
