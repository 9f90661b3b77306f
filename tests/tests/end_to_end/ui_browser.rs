//! The web page in a real browser: Debian's `chromium`, driven by
//! `playwright-core` (`tests/ui/browser.mjs`), against the service on a real
//! socket holding a realistic mix of the three sources (Stalwart batches
//! posted as signed webhooks, authentik pages and oCIS lines through their
//! mappers, a dead letter). The script signs in (a wrong token first),
//! walks the timeline to its end, filters, opens an event and checks its
//! original's 64-bit numbers, pivots, sees a live event after a webhook,
//! reads as a tenant reader, checks the chart's totals and the dead
//! letters, signs in through a local identity provider (authorization code
//! with PKCE), and saves screenshots in `target/ui-screenshots/`.
//!
//! `.ci/run` installs the browser and the driver and sets
//! `AUDIT_TEST_REQUIRE_BROWSER`. Elsewhere, without them, the test says
//! SKIPPED (with what is missing) and passes; with that variable or `CI` set
//! it fails instead, so CI cannot skip it silently.

use std::process::Command;
use std::sync::Arc;

use audit_ingest::access::{Access, tokens};
use audit_ingest::api::{self, AppState};
use audit_ingest::config::Secret;
use audit_ingest::event::Transport;
use audit_ingest::health::Health;
use audit_ingest::ingest::{Received, Tenants};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::webhook::signature::stalwart_signature;
use audit_ingest::store::Store;
use audit_ingest_tests::browser::{Served, find_tools, workspace};
use audit_ingest_tests::{STALWART_SECRET, TOKEN, embedded_store, pipeline, runtime, stalwart_endpoint};
use chrono::{Duration, SecondsFormat, Utc};
use serde_json::{Value, json};

/// Stalwart batches posted, and events per batch.
const BATCHES: u64 = 30;
const PER_BATCH: u64 = 10;
/// authentik events and oCIS lines mapped.
const AUTHENTIK_EVENTS: usize = 120;
const OCIS_LINES: u64 = 80;

/// The `k`-th Stalwart event of a batch: logins and failed logins of users
/// in tenants acme and beta, with Stalwart's 64-bit span ids.
fn stalwart_event(k: u64, at: &str) -> Value {
    let kinds = [
        "auth.success",
        "auth.failed",
        "auth.failed",
        "message-ingest.ham",
        "security.authentication-ban",
    ];
    let tenant = if k.is_multiple_of(3) { "beta" } else { "acme" };
    json!({
        "id": format!("{}", 1_750_000_000 + k),
        "createdAt": at,
        "type": kinds[(k % kinds.len() as u64) as usize],
        "data": {
            "accountName": format!("user{}@{tenant}", k % 7),
            "accountId": k % 7,
            // Above 2^53: a float would round it.
            "spanId": 1_432_795_264_225_280_001u64 + k,
            "listenerId": "imaps",
            "localPort": 993,
            "remoteIp": format!("198.51.100.{}", k % 20),
            "remotePort": 40_000 + k % 1000,
        }
    })
}

async fn post_stalwart(client: &reqwest::Client, base: &str, body: &str) -> reqwest::StatusCode {
    client
        .post(format!("{base}/ingest/stalwart/webhook"))
        .header("content-type", "application/json")
        .header("x-signature", stalwart_signature(STALWART_SECRET, body.as_bytes()))
        .body(body.to_string())
        .send()
        .await
        .expect("the service answers")
        .status()
}

/// Posts the Stalwart batches and one body that cannot be mapped (a dead
/// letter); maps the authentik pages and oCIS lines. Returns how many
/// Stalwart records were stored.
async fn seed(store: &Store, base: &str, deliver: &audit_ingest::ingest::Pipeline) -> u64 {
    let client = reqwest::Client::new();
    let now = Utc::now();
    for b in 0..BATCHES {
        let events: Vec<Value> = (0..PER_BATCH)
            .map(|i| {
                let k = b * PER_BATCH + i;
                let at = now - Duration::minutes(((BATCHES * PER_BATCH - k) * 2) as i64);
                stalwart_event(k, &at.to_rfc3339_opts(SecondsFormat::Secs, true))
            })
            .collect();
        let body = json!({ "events": events }).to_string();
        assert!(post_stalwart(&client, base, &body).await.is_success());
    }
    assert_eq!(
        post_stalwart(&client, base, "{\"events\": [ this is not json").await,
        reqwest::StatusCode::ACCEPTED,
        "a body the mapper rejects is kept as a dead letter"
    );
    let mut ak = audit_ingest_tests::authentik::Authentik::default();
    let start = (now - Duration::hours(5)).to_rfc3339_opts(SecondsFormat::Micros, true);
    ak.events.push(json!({ "created": start }));
    audit_ingest_tests::authentik::add(&mut ak, AUTHENTIK_EVENTS);
    ak.events.remove(0);
    for page in ak.events.chunks(40) {
        let body = json!({
            "pagination": { "next": 0, "previous": 0, "count": page.len(), "current": 1, "total_pages": 1 },
            "results": page,
        });
        let received = Received::now("authentik", None);
        let delivery = received.delivery(
            Transport::Poll,
            Vec::new(),
            Some("http://authentik.local/api/v3/events/events/".into()),
            body.to_string().into_bytes(),
        );
        deliver.deliver("authentik", received, delivery).await.unwrap();
    }
    for n in 0..OCIS_LINES {
        let at = (now - Duration::minutes(3 * n as i64)).to_rfc3339_opts(SecondsFormat::Secs, true);
        let line = audit_ingest_tests::ocis::line(n).replace("2025-02-13T15:50:18Z", &at);
        let received = Received::now("ocis", None);
        let delivery = received.delivery(
            Transport::File,
            Vec::new(),
            Some("/var/log/ocis/audit.log".into()),
            line.into_bytes(),
        );
        deliver.deliver("ocis", received, delivery).await.unwrap();
    }
    audit_ingest_tests::all_records(store, "stalwart").await.len() as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_page_works_in_a_real_browser() {
    let tools = match find_tools() {
        Ok(t) => t,
        Err(missing)
            if std::env::var_os("AUDIT_TEST_REQUIRE_BROWSER").is_some() || std::env::var_os("CI").is_some() =>
        {
            panic!("the browser test cannot run: {missing}; .ci/run installs what it needs")
        }
        Err(missing) => {
            eprintln!("SKIPPED the_page_works_in_a_real_browser: {missing}");
            return;
        }
    };
    let dir = tempfile::tempdir().unwrap();
    let store = embedded_store(dir.path());
    let tenants = Tenants::new(["acme".to_string(), "beta".to_string()]);
    let pipeline = pipeline(
        store.clone(),
        runtime(None, InstanceMode::Auto, Limits::default()),
        tenants,
    );
    let acme = tokens::create("acme-reader", &["read:tenant=acme".into()]).unwrap();
    let machine = tokens::MachineTokens::resolve(std::slice::from_ref(&acme.entry)).unwrap();
    // The platform's identity provider, with a client for the page.
    let issuer =
        audit_ingest_tests::oidc::Issuer::start(vec![audit_ingest_tests::oidc::SigningKey::ed25519("k1")]).await;
    issuer.sign_in_as("carol", &["acme", "staff"]);
    let mut oidc = issuer.config();
    oidc.web_client_id = Some(audit_ingest_tests::oidc::AUDIENCE.into());
    let verifier = audit_ingest::access::oidc::Verifier::new(oidc).unwrap();
    let access = Access::new(Some(Secret::new(TOKEN.to_string())), machine, Some(verifier), false);
    let state = AppState {
        pipeline: pipeline.clone(),
        health: Health::new(),
        access: Arc::new(access),
        webhooks: Arc::new(vec![stalwart_endpoint()]),
        ingest_slots: api::ingest_slots(api::DEFAULT_INGEST_SLOTS),
        intake: audit_ingest::api::Intake::default(),
        live: Default::default(),
    };
    let served = Served::start(state.clone()).await;
    let base = served.base.clone();
    let stalwart = seed(&store, &base, &pipeline).await;
    assert_eq!(stalwart, BATCHES * PER_BATCH);

    let shots = workspace().join("target/ui-screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let output = tokio::task::spawn_blocking(move || {
        Command::new(&tools.node)
            .arg(tools.dir.join("browser.mjs"))
            .env("BASE_URL", &base)
            .env("TOKEN", TOKEN)
            .env("TENANT_TOKEN", &acme.token)
            .env("STALWART_SECRET", STALWART_SECRET)
            .env("EXPECT_STALWART", stalwart.to_string())
            .env("CHROMIUM", &tools.chromium)
            .env("SHOTS_DIR", &shots)
            .output()
            .expect("run node")
    })
    .await
    .unwrap();
    let log = String::from_utf8_lossy(&output.stdout);
    println!("{log}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser run failed:\n{log}");
    assert_eq!(
        issuer.issued(),
        1,
        "the page signed in once through the identity provider"
    );
    // The live event the script posted is stored once.
    assert_eq!(
        audit_ingest_tests::all_records(&store, "stalwart").await.len() as u64,
        stalwart + 1
    );
    state.live.close_all();
    tokio::time::timeout(std::time::Duration::from_secs(10), served.stop())
        .await
        .expect("the server drains once live streams are closed");
}
