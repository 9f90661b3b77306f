//! The HTTP API: ingest endpoints, the `/audit` timeline, health.
//!
//! `router(state)` builds the whole app, so tests drive it with `oneshot`
//! exactly as a client would.

pub mod auth;
pub mod error;
pub mod export;
pub mod health;
pub mod intake;
pub mod replay;
pub mod stats;
pub mod stream;
pub mod timeline;
pub mod ui;

use std::sync::Arc;

use axum::Router;
use axum::routing::get;

pub use error::AppError;
pub use intake::Intake;

use crate::access::Access;
use crate::health::Health;
use crate::ingest::Pipeline;
use crate::sources::webhook::{self, Endpoint};

/// What every handler can reach.
#[derive(Clone)]
pub struct AppState {
    /// Where deliveries go (and, through it, the store, mappers and metrics).
    pub pipeline: Pipeline,
    /// Progress of the background sources, for `/readyz`.
    pub health: Health,
    /// Who may call the read and admin routes.
    pub access: Arc<Access>,
    /// Webhook endpoints served under `/ingest/...`.
    pub webhooks: Arc<Vec<Endpoint>>,
    /// Webhook requests being processed at once at most; when all slots are
    /// taken, senders get 429 with `Retry-After` instead of memory growing.
    pub ingest_slots: Arc<tokio::sync::Semaphore>,
    /// How webhook bodies are read: a deadline and a budget of bytes.
    pub intake: Intake,
    /// The open live streams (`/audit/stream`), bounded, closed at shutdown.
    pub live: stream::Live,
}

/// Default number of webhook requests processed at once.
pub const DEFAULT_INGEST_SLOTS: usize = 256;

/// A fresh set of ingest slots.
pub fn ingest_slots(n: usize) -> Arc<tokio::sync::Semaphore> {
    Arc::new(tokio::sync::Semaphore::new(n))
}

/// The service's own paths; no webhook may be served at one (or under
/// `/audit/` or `/admin/`).
pub const OWN_ROUTES: &[&str] = &[
    "/",
    "/ui",
    "/audit",
    "/healthz",
    "/readyz",
    "/metrics",
    "/openapi.json",
    "/admin/replay",
    "/admin/dead-letters",
];

/// The API description (OpenAPI 3.1), kept in sync by a test.
pub const OPENAPI: &str = include_str!("openapi.json");

async fn openapi() -> ([(axum::http::HeaderName, &'static str); 1], &'static str) {
    ([(axum::http::header::CONTENT_TYPE, "application/json")], OPENAPI)
}

/// The application's routes.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/audit", get(timeline::list))
        .route("/audit/stream", get(stream::stream))
        .route("/audit/stats", get(stats::stats))
        .route("/audit/export", get(export::export))
        .route("/audit/{id}", get(timeline::one))
        .merge(ui::routes())
        .route("/healthz", get(health::live))
        .route("/readyz", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/openapi.json", get(openapi))
        .route("/admin/replay", axum::routing::post(replay::run))
        .route("/admin/dead-letters", get(replay::list))
        .merge(webhook::routes(&state.webhooks))
        .with_state(state)
}
