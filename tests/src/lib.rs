//! Helpers shared by the end-to-end tests: the probe components, a runtime
//! over a temporary mapper directory, an embedded store, the app router, and
//! a one-shot HTTP call.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_ingest::api::{self, AppState};
use audit_ingest::config::Secret;
use audit_ingest::ingest::Tenants;
use audit_ingest::runtime::{InstanceMode, Limits, Runtime, RuntimeConfig};
use audit_ingest::store::Store;
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The probe mapper, version 1.0.0 (`probe`).
pub const PROBE_V1: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_v1.wasm"));
/// The probe mapper, version 2.0.0 (`probe`).
pub const PROBE_V2: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_v2.wasm"));
/// The probe calling itself `stalwart` (version 2.0.0).
pub const PROBE_AS_STALWART: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_as_stalwart.wasm"));

/// The API token the test apps accept.
pub const TOKEN: &str = "test-token-0123456789";

/// A runtime with the built-in mappers, watching `dir`.
pub fn runtime(dir: Option<&Path>, mode: InstanceMode, limits: Limits) -> Runtime {
    Runtime::new(
        &audit_ingest::builtin::MAPPERS,
        RuntimeConfig {
            dir: dir.map(Path::to_path_buf),
            limits,
            mode,
        },
    )
    .expect("the runtime loads the built-in mappers")
}

/// An embedded store in `dir`.
pub fn embedded_store(dir: &Path) -> Store {
    Store::Sqlite(Arc::new(
        SqliteStore::open(&dir.join("audit.sqlite3"), Durability::Normal).expect("open the store"),
    ))
}

/// The app router over `store`, accepting [`TOKEN`].
pub fn app(store: Store, runtime: Runtime) -> axum::Router {
    api::router(AppState {
        store,
        runtime,
        api_token: Some(Secret::new(TOKEN)),
        tenants: Tenants::new(["acme".to_string(), "example.org".to_string()]),
    })
}

/// Sends one request through the router; returns the status and the JSON body
/// (`Value::Null` when the body is empty or not JSON).
pub async fn call(router: &axum::Router, request: Request<Body>) -> (StatusCode, Value) {
    let response = router.clone().oneshot(request).await.expect("the router answers");
    let status = response.status();
    let bytes = response.into_body().collect().await.expect("read the body").to_bytes();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
}

/// `GET uri` with the test token.
pub fn get(uri: &str) -> Request<Body> {
    Request::get(uri)
        .header("authorization", format!("Bearer {TOKEN}"))
        .body(Body::empty())
        .expect("a request")
}

/// Polls `check` until it is true or `limit` passes; returns the time it took.
pub fn wait_until(limit: Duration, mut check: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < limit {
        if check() {
            return Some(start.elapsed());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    None
}

/// Writes `bytes` to `path` atomically (temp file + rename), as a deploy would.
pub fn install(path: &Path, bytes: &[u8]) {
    let tmp = path.with_extension("partial");
    std::fs::write(&tmp, bytes).expect("write the mapper");
    std::fs::rename(&tmp, path).expect("rename the mapper into place");
}
