//! The end-to-end tests across the host, the guest SDK and real mapper
//! components, in one test binary (each binary links wasmtime, SQLite and
//! the MongoDB driver; one link instead of eleven). Each module is one area,
//! named for what it checks.

mod access;
mod api_timeline;
mod authentik_poll;
mod authentik_push;
mod deploy_files;
mod evidence;
mod export;
mod http_limits;
mod live_and_stats;
mod mapper_fixtures;
mod mapper_sandbox;
mod mapper_trust;
mod metrics;
mod ocis_tail;
mod openapi;
mod poll_lease;
mod replay;
mod retention;
mod runtime_hot_reload;
mod runtime_limits;
mod stalwart_webhook;
mod ui_browser;
