//! Helpers shared by the end-to-end tests: the probe components, a runtime
//! over a temporary mapper directory, an embedded store, the app router, and
//! a one-shot HTTP call.

pub mod accounting;
pub mod authentik;
pub mod bench;
pub mod browser;
pub mod ceilings;
pub mod faulty;
pub mod fuzz;
pub mod ocis;
pub mod oidc;

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_ingest::api::{self, AppState};
use audit_ingest::config::{Secret, SecretSource};
use audit_ingest::health::Health;
use audit_ingest::ingest::{Pipeline, Shutdown, SourceContext, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits, Runtime, RuntimeConfig};
use audit_ingest::sources::webhook::{self, Endpoint};
use audit_ingest::store::Store;
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use audit_ingest::telemetry::Telemetry;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;

/// The probe mapper, version 1.0.0 (`probe`).
pub const PROBE_V1: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_v1.wasm"));
/// The probe mapper, version 2.0.0 (`probe`).
pub const PROBE_V2: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_v2.wasm"));
/// The probe (version 1.0.0) built against the frozen `audit:mapper@0.2.0`.
pub const PROBE_WIT_0_2: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_wit_0_2.wasm"));
/// The probe built against the frozen `audit:mapper@0.3.0` (no `digest` import).
pub const PROBE_WIT_0_3: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_wit_0_3.wasm"));
/// The probe whose `describe` sleeps 30 s.
pub const PROBE_DESCRIBE_SLEEPS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_describe_sleeps.wasm"));
/// The probe whose `describe` answers a 1 MiB name and 100,000 event types.
pub const PROBE_DESCRIBE_HUGE: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_describe_huge.wasm"));
/// The probe calling itself `stalwart` (version 2.0.0).
pub const PROBE_AS_STALWART: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/probe_as_stalwart.wasm"));

/// The API token the test apps accept.
pub const TOKEN: &str = "test-token-0123456789";

/// A runtime with the built-in mappers, watching `dir`.
pub fn runtime(dir: Option<&Path>, mode: InstanceMode, limits: Limits) -> Runtime {
    runtime_with(RuntimeConfig {
        dir: dir.map(Path::to_path_buf),
        limits,
        mode,
        ..RuntimeConfig::default()
    })
}

/// [`runtime`], where a drop-in may take over a built-in source without
/// fixtures (`mapper.allow_override_without_fixtures`): for tests that
/// swap the probe in as `stalwart`.
pub fn runtime_overriding_builtins(dir: &Path, mode: InstanceMode, limits: Limits) -> Runtime {
    runtime_with(RuntimeConfig {
        dir: Some(dir.to_path_buf()),
        limits,
        mode,
        trust: audit_ingest::runtime::Trust {
            override_without_fixtures: true,
            ..Default::default()
        },
        ..RuntimeConfig::default()
    })
}

/// A runtime with the built-in mappers, set up as `config` says.
pub fn runtime_with(config: RuntimeConfig) -> Runtime {
    Runtime::new(&audit_ingest::builtin::MAPPERS, config).expect("the runtime loads the built-in mappers")
}

/// An embedded store in `dir`, with `durability = "normal"` (what a commit
/// guarantees does not change what the tests check, and it spares the
/// disk); benchmarks use [`embedded_store_with`] and the service's default.
pub fn embedded_store(dir: &Path) -> Store {
    embedded_store_with(dir, Durability::Normal)
}

/// An embedded store in `dir` with the given durability.
pub fn embedded_store_with(dir: &Path, durability: Durability) -> Store {
    Arc::new(SqliteStore::open(&dir.join("audit.sqlite3"), durability).expect("open the store"))
}

/// A pipeline over `store` and `runtime` with its own metrics.
pub fn pipeline(store: Store, runtime: Runtime, tenants: Tenants) -> Pipeline {
    Pipeline::new(store, runtime, tenants, Telemetry::new())
}

/// A number no other call in this process returns (the clock's nanoseconds,
/// moved on when two calls meet).
fn unique_nanos() -> u128 {
    static LAST: std::sync::Mutex<u128> = std::sync::Mutex::new(0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let mut last = LAST.lock().unwrap_or_else(|e| e.into_inner());
    *last = now.max(*last + 1);
    *last
}

/// What a poller or tail gets, stopping when `shutdown` says: a service
/// instance of its own (its own name, so its own leases).
pub fn source_context(pipeline: Pipeline, shutdown: Shutdown) -> SourceContext {
    SourceContext {
        pipeline,
        shutdown,
        health: Health::new(),
        instance: format!("test-{}-{}", std::process::id(), unique_nanos()),
    }
}

/// The Stalwart webhook secret the test apps use.
pub const STALWART_SECRET: &str = "stalwart-test-secret";

/// `POST /ingest/stalwart/webhook` with `body`, signed with [`STALWART_SECRET`] as Stalwart signs.
pub fn signed_stalwart(body: &str) -> Request<Body> {
    Request::post("/ingest/stalwart/webhook")
        .header("content-type", "application/json")
        .header(
            "x-signature",
            audit_ingest::sources::webhook::signature::stalwart_signature(STALWART_SECRET, body.as_bytes()),
        )
        .body(Body::from(body.to_string()))
        .expect("a request")
}

/// Stalwart's endpoint as shipped (`X-Signature`, base64), keyed with [`STALWART_SECRET`].
pub fn stalwart_endpoint() -> Endpoint {
    let mut config = audit_ingest::presets::stalwart_webhook();
    config.auth = webhook::AuthConfig::Hmac {
        header: "X-Signature".into(),
        encoding: webhook::signature::Encoding::Base64,
        prefix: String::new(),
        secret: secret_file(STALWART_SECRET),
    };
    config.max_body_bytes = 1 << 20;
    config.resolve().expect("a valid endpoint")
}

/// The token authentik's webhook transport sends (its header mapping) in the test apps.
pub const AK_WEBHOOK_TOKEN: &str = "authentik-webhook-token-for-tests";

/// authentik's push endpoint as shipped (`Authorization: Bearer`), with [`AK_WEBHOOK_TOKEN`].
pub fn authentik_endpoint() -> Endpoint {
    let mut config = audit_ingest::presets::authentik_webhook();
    config.auth = webhook::AuthConfig::Bearer {
        token: secret_file(AK_WEBHOOK_TOKEN),
    };
    config.resolve().expect("a valid endpoint")
}

/// `POST /ingest/authentik/webhook` with `body` and `token`, as authentik's
/// webhook transport sends it (`requests.post(json=...)`).
pub fn pushed_authentik(body: Vec<u8>, token: &str) -> Request<Body> {
    Request::post("/ingest/authentik/webhook")
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {token}"))
        .header("user-agent", "authentik@2026.8.5")
        .body(Body::from(body))
        .expect("a request")
}

/// A secret source backed by a temporary file holding `value` (kept for the
/// life of the process).
pub fn secret_file(value: &str) -> SecretSource {
    let file = tempfile::NamedTempFile::new().expect("a temp file");
    std::fs::write(file.path(), value).expect("write the secret");
    let (_, path) = file.keep().expect("keep the secret file");
    SecretSource {
        env: None,
        file: Some(path),
    }
}

/// The app router over `store` with the Stalwart endpoint, accepting [`TOKEN`].
pub fn app(store: Store, runtime: Runtime) -> axum::Router {
    app_with(store, runtime, vec![stalwart_endpoint()])
}

/// The app router with the given webhook endpoints.
pub fn app_with(store: Store, runtime: Runtime, webhooks: Vec<Endpoint>) -> axum::Router {
    let access = audit_ingest::access::Access::service_token(Some(Secret::new(TOKEN)));
    app_with_access(store, runtime, webhooks, access)
}

/// The app router with the given webhook endpoints and API access (tenants
/// `acme`, `beta` and `example.org` known).
pub fn app_with_access(
    store: Store,
    runtime: Runtime,
    webhooks: Vec<Endpoint>,
    access: audit_ingest::access::Access,
) -> axum::Router {
    api::router(state_with_access(store, runtime, webhooks, access))
}

/// The handler state [`app_with_access`] serves, for tests that change a part.
pub fn state_with_access(
    store: Store,
    runtime: Runtime,
    webhooks: Vec<Endpoint>,
    access: audit_ingest::access::Access,
) -> AppState {
    let tenants = Tenants::new(["acme".to_string(), "beta".to_string(), "example.org".to_string()]);
    AppState {
        pipeline: pipeline(store, runtime, tenants),
        health: Health::new(),
        access: Arc::new(access),
        webhooks: Arc::new(webhooks),
        ingest_slots: api::ingest_slots(api::DEFAULT_INGEST_SLOTS),
        intake: audit_ingest::api::Intake::default(),
        live: Default::default(),
    }
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

/// Every stored record of `source`, newest first (pages through the timeline).
pub async fn all_records(store: &Store, source: &str) -> Vec<audit_ingest::store::Record> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store
            .query(&audit_ingest::store::Query {
                source: Some(source.to_string()),
                after,
                limit: 500,
                ..Default::default()
            })
            .await
            .expect("query the store");
        out.extend(page.records);
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}
