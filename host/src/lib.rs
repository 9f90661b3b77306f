//! audit-ingest: collects the audit trail of a self-hosted platform into one
//! deduplicated timeline.
//!
//! Data flows one way: a source (`sources/`) turns the outside world into
//! deliveries; the runtime (`runtime/`, the only module that names wasmtime)
//! maps them with the WebAssembly mapper for that source; the store
//! (`store/`) writes the events, deduplicated on `(source, externalId)`; the
//! API (`api/`) serves ingest endpoints and the `/audit` timeline.

pub mod api;
pub mod builtin;
pub mod config;
pub mod ingest;
pub mod metrics;
pub mod replay;
pub mod runtime;
pub mod serve;
pub mod sources;
pub mod store;
