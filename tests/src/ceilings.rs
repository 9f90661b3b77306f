//! The webhook path's stages measured alone, on the same bodies the load
//! generator sends, each using every core: what this machine allows for
//! signature checks, mapping (natively and through the WASM runtime) and the
//! embedded store, so each end-to-end figure has denominators from the same
//! run (`cargo bench --bench webhook_load`, BENCHMARKS.md).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use audit_guest_sdk::{Delivery, Mapper};
use audit_ingest::config::Secret;
use audit_ingest::event::Delivery as HostDelivery;
use audit_ingest::ingest::{Received, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::webhook::signature::{Encoding, Verifier, stalwart_signature};
use audit_ingest::store::sqlite::{Durability, SqliteStore};
use audit_ingest::store::{NewRecord, Store};

use crate::bench::stalwart_batch;
use crate::{STALWART_SECRET, runtime};

/// Events per second each stage reaches alone.
#[derive(Debug, Clone, Copy)]
pub struct Ceilings {
    /// HMAC-SHA256 verification of the signed bodies.
    pub signature: f64,
    /// The Stalwart mapper compiled natively.
    pub native_mapping: f64,
    /// The same mapper through the WASM runtime (warm instances, as served).
    pub wasm_mapping: f64,
    /// Batch inserts of the mapped records into a fresh embedded store,
    /// from as many concurrent callers as the load has connections.
    pub store: f64,
}

/// Signed bodies of `batch` events, made as the load generator makes them.
fn bodies(batch: usize) -> Vec<(Vec<u8>, String)> {
    let count = (20_000 / batch).clamp(16, 2_000);
    (1..=count as u64)
        .map(|seed| {
            let body = stalwart_batch(batch, seed);
            let signature = stalwart_signature(STALWART_SECRET, &body);
            (body, signature)
        })
        .collect()
}

/// Runs `work(i)` on every core for `budget`; returns calls per second.
fn on_every_core(budget: Duration, work: impl Fn(usize) + Sync) -> f64 {
    let threads = std::thread::available_parallelism().map_or(2, usize::from);
    let calls = AtomicU64::new(0);
    let start = Instant::now();
    std::thread::scope(|scope| {
        for t in 0..threads {
            let (work, calls) = (&work, &calls);
            scope.spawn(move || {
                let mut i = t;
                while start.elapsed() < budget {
                    work(i);
                    i += threads;
                    calls.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
    });
    calls.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}

/// Measures every ceiling for `batch`-event bodies, `budget` per stage.
pub async fn measure(batch: usize, connections: usize, durability: Durability, budget: Duration) -> Ceilings {
    let signed = bodies(batch);
    let verifier = Verifier::Hmac {
        header: "x-signature".into(),
        encoding: Encoding::Base64,
        prefix: String::new(),
        key: Secret::new(STALWART_SECRET),
    };
    let signature = on_every_core(budget, |i| {
        let (body, tag) = &signed[i % signed.len()];
        let mut headers = axum::http::HeaderMap::new();
        headers.insert("x-signature", tag.parse().expect("a header value"));
        verifier.verify(&headers, body, 0).expect("a valid signature");
    }) * batch as f64;
    let deliveries: Vec<Delivery> = signed
        .iter()
        .map(|(body, _)| Delivery::from_body("stalwart", body.clone()))
        .collect();
    let native_mapping = on_every_core(budget, |i| {
        std::hint::black_box(mapper_stalwart::Stalwart::map(&deliveries[i % deliveries.len()]).expect("maps"));
    }) * batch as f64;
    // The same bodies as the host hands them to the runtime.
    let deliveries: Vec<HostDelivery> = signed
        .iter()
        .map(|(body, _)| HostDelivery::from_body("stalwart", body.clone()))
        .collect();
    let rt = runtime(None, InstanceMode::Auto, Limits::default());
    let wasm_mapping = on_every_core(budget, |i| {
        std::hint::black_box(
            rt.map_blocking("stalwart", &deliveries[i % deliveries.len()])
                .expect("maps"),
        );
    }) * batch as f64;
    let store = store_ceiling(&rt, &deliveries, connections, durability, budget).await;
    Ceilings {
        signature,
        native_mapping,
        wasm_mapping,
        store,
    }
}

/// The mapped records of the bodies inserted from `connections` tasks (the
/// writer group-commits them, as under load) for `budget`; events/s.
async fn store_ceiling(
    rt: &audit_ingest::runtime::Runtime,
    deliveries: &[HostDelivery],
    connections: usize,
    durability: Durability,
    budget: Duration,
) -> f64 {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let store: Store =
        Arc::new(SqliteStore::open(&dir.path().join("ceiling.sqlite3"), durability).expect("open the store"));
    let pipeline = crate::pipeline(store.clone(), rt.clone(), Tenants::default());
    let received = Received::now("stalwart", None);
    let mapped: Vec<Vec<NewRecord>> = deliveries
        .iter()
        .map(|d| pipeline.map_blocking("stalwart", &received, d).expect("maps").records)
        .collect();
    let mapped = Arc::new(mapped);
    let next = Arc::new(AtomicU64::new(0));
    let inserted = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (store, mapped, next, inserted) = (store.clone(), mapped.clone(), next.clone(), inserted.clone());
        tasks.push(tokio::spawn(async move {
            while start.elapsed() < budget {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                // Each pass over the bodies gets new external ids, so every
                // insert is a real one (no duplicate short-cuts).
                let pass = n / mapped.len();
                let mut batch = mapped[n % mapped.len()].clone();
                for r in &mut batch {
                    if let Some(id) = r.external_id.as_mut() {
                        id.push_str(&format!("/{pass}"));
                    }
                }
                let summary = store.insert(batch, None).await.expect("insert");
                inserted.fetch_add(summary.inserted, Ordering::Relaxed);
            }
        }));
    }
    for t in tasks {
        t.await.expect("an insert task");
    }
    inserted.load(Ordering::Relaxed) as f64 / start.elapsed().as_secs_f64()
}
