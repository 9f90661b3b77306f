//! audit-ingest: collects the audit trail of a self-hosted platform into one
//! deduplicated timeline.
//!
//! # Layout
//!
//! How a delivery flows, and where each step lives:
//!
//! 1. `sources/` turns the outside world into deliveries and checkpoints:
//!    `webhook` (pushed HTTP requests, signatures checked first), `poll` (an
//!    HTTP list walked from a stored cursor), `tail` (a file followed from a
//!    stored position). Each has a documented `Config` and a `run`, and gets
//!    an [`ingest::SourceContext`].
//! 2. `ingest/` is the pipeline every source and replay calls: map with the
//!    source's mapper, normalise, write with the checkpoint that covers the
//!    records, count, and keep what cannot be mapped as a dead letter.
//! 3. `runtime/` (the only module that names wasmtime) runs the WebAssembly
//!    mappers in a sandbox no import of which can wait, under a wall-clock
//!    deadline, memory and answer caps and a bounded number of calls at
//!    once, and hot-reloads trusted files from a directory.
//! 4. `store/` is the [`store::AuditStore`] contract and its backends
//!    (embedded SQLite, MongoDB); a write is durable when it returns, and a
//!    checkpoint moves only in or after the commit of what it covers.
//! 5. `api/` serves the HTTP side: the ingest routes, the `/audit`
//!    timeline, health and metrics, with one `AppError` for every answer.
//!    Its read and admin routes ask `access/` who is calling (the service
//!    token, machine tokens, OIDC access tokens) and what they may read,
//!    and write every read and refusal back into the store as a record of
//!    the service's own source (`access::trail`).
//!
//! The embedded store's writer chains every record it commits
//! (`store::sqlite::chain`); `evidence` signs digests of that chain and
//! verifies a store file against them (`audit-ingest verify`).
//!
//! Around them: `config` (the one place settings are parsed and checked),
//! `presets` (what the service knows of Stalwart, authentik and oCIS), `serve`
//! (assembling and stopping the service), `replay` (re-mapping dead
//! letters), `telemetry` (metrics) and `health` (progress of background
//! sources), `builtin` (the mappers shipped in the binary).

pub mod access;
pub mod api;
pub mod builtin;
pub mod config;
pub mod event;
pub mod evidence;
pub mod export;
#[cfg(feature = "test-support")]
pub mod fuzzing;
pub mod health;
pub mod http_server;
pub mod ingest;
pub mod lease;
pub mod presets;
pub mod replay;
pub mod retention;
pub mod runtime;
mod scheduling;
pub mod serve;
pub mod sources;
pub mod store;
pub mod telemetry;
