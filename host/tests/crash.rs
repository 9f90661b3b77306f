//! `kill -9` under a steady webhook load, several times in a row: every event
//! that was answered 2xx is in the store after the restarts, and none is
//! stored twice. The real binary, real sockets, the embedded store with its
//! default durability. Also SIGTERM under load, and two processes on one
//! data directory.

use std::collections::{BTreeSet, HashMap};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use audit_ingest::sources::webhook::signature::stalwart_signature;

const SECRET: &str = "crash-test-secret";
const TOKEN: &str = "crash-test-token";

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn start(data: &Path, port: u16) -> Child {
    start_with(data, port, &[])
}

fn start_with(data: &Path, port: u16, extra: &[(&str, &Path)]) -> Child {
    Command::new(env!("CARGO_BIN_EXE_audit-ingest"))
        .arg("serve")
        .envs(extra.iter().copied())
        .env("AUDIT_LISTEN", format!("127.0.0.1:{port}"))
        .env("AUDIT_DATA_DIR", data)
        .env("AUDIT_MAPPERS_DIR", data.join("mappers.d"))
        .env("STALWART_WEBHOOK_SECRET", SECRET)
        .env("AUDIT_API_TOKEN", TOKEN)
        .env_remove("AUDIT_MONGODB_URI")
        .env_remove("AUTHENTIK_URL")
        .env_remove("OCIS_AUDIT_FILE")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start audit-ingest")
}

/// A one-event Stalwart batch whose remote IP encodes `k` (unique per event).
fn batch(k: u64) -> String {
    format!(
        r#"{{"events":[{{"id":"1750{k}","createdAt":"2026-11-29T10:00:00Z","type":"auth.success","data":{{"accountName":"user{k}@example.org","accountId":{k},"spanId":{span},"listenerId":"imaps","localPort":993,"remoteIp":"10.{}.{}.{}","remotePort":40000}}}}]}}"#,
        (k >> 16) & 255,
        (k >> 8) & 255,
        k & 255,
        span = 1432795264225280001u64 + k
    )
}

fn ip(k: u64) -> String {
    format!("10.{}.{}.{}", (k >> 16) & 255, (k >> 8) & 255, k & 255)
}

/// One sender of the steady load: one-event batches with fresh keys until
/// `running` is cleared; remembers which were answered 2xx.
async fn send_until_stopped(
    client: reqwest::Client,
    port: u16,
    answered: Arc<Mutex<BTreeSet<u64>>>,
    next: Arc<AtomicU64>,
    running: Arc<AtomicBool>,
) {
    while running.load(Ordering::SeqCst) {
        let k = next.fetch_add(1, Ordering::SeqCst);
        let body = batch(k);
        let sent = client
            .post(format!("http://127.0.0.1:{port}/ingest/stalwart/webhook"))
            .header("content-type", "application/json")
            .header("x-signature", stalwart_signature(SECRET, body.as_bytes()))
            .body(body)
            .send()
            .await;
        if let Ok(r) = sent
            && r.status().is_success()
        {
            answered.lock().unwrap().insert(k);
        }
    }
}

async fn wait_ready(client: &reqwest::Client, port: u16) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        if let Ok(r) = client.get(format!("http://127.0.0.1:{port}/readyz")).send().await
            && r.status().is_success()
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("audit-ingest did not come up");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_under_load_loses_no_answered_event_and_doubles_none() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let answered: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let next = Arc::new(AtomicU64::new(0));
    for cycle in 0..4 {
        let mut child = start(dir.path(), port);
        wait_ready(&client, port).await;
        let running = Arc::new(AtomicBool::new(true));
        let mut senders = Vec::new();
        for _ in 0..4 {
            senders.push(tokio::spawn(send_until_stopped(
                client.clone(),
                port,
                answered.clone(),
                next.clone(),
                running.clone(),
            )));
        }
        // Let the load run, then kill without warning.
        tokio::time::sleep(Duration::from_millis(400 + 150 * cycle)).await;
        child.kill().expect("SIGKILL");
        child.wait().unwrap();
        running.store(false, Ordering::SeqCst);
        for s in senders {
            s.await.unwrap();
        }
    }
    // A last start to read what survived.
    let mut child = start(dir.path(), port);
    wait_ready(&client, port).await;
    let mut stored: HashMap<String, usize> = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut url = format!("http://127.0.0.1:{port}/audit?source=stalwart&limit=500");
        if let Some(c) = &cursor {
            url.push_str(&format!("&cursor={c}"));
        }
        let page: serde_json::Value = client
            .get(url)
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in page["records"].as_array().unwrap() {
            *stored.entry(r["ip"].as_str().unwrap().to_string()).or_default() += 1;
        }
        match page["next"].as_str() {
            Some(n) => cursor = Some(n.to_string()),
            None => break,
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let answered = answered.lock().unwrap();
    assert!(answered.len() > 100, "the load ran ({} answered)", answered.len());
    let lost: Vec<&u64> = answered.iter().filter(|k| !stored.contains_key(&ip(**k))).collect();
    assert!(
        lost.is_empty(),
        "{} of {} answered events were lost, e.g. {:?}",
        lost.len(),
        answered.len(),
        &lost[..lost.len().min(5)]
    );
    let doubled: Vec<(&String, &usize)> = stored.iter().filter(|(_, n)| **n > 1).collect();
    assert!(doubled.is_empty(), "stored twice: {doubled:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_answers_what_it_took_and_exits_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut child = start(dir.path(), port);
    wait_ready(&client, port).await;
    let answered: Arc<Mutex<BTreeSet<u64>>> = Arc::default();
    let running = Arc::new(AtomicBool::new(true));
    let next = Arc::new(AtomicU64::new(1_000_000));
    let mut senders = Vec::new();
    for _ in 0..4 {
        senders.push(tokio::spawn(send_until_stopped(
            client.clone(),
            port,
            answered.clone(),
            next.clone(),
            running.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let term = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(term.success());
    let stopped = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            stopped.elapsed() < Duration::from_secs(25),
            "exits within shutdown_timeout_secs (20 s by default)"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(status.success(), "a clean exit: {status:?}");
    running.store(false, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    let mut child = start(dir.path(), port);
    wait_ready(&client, port).await;
    let answered = answered.lock().unwrap().clone();
    assert!(!answered.is_empty());
    for k in answered.iter().take(2000) {
        let page: serde_json::Value = client
            .get(format!(
                "http://127.0.0.1:{port}/audit?source=stalwart&ip={}&limit=2",
                ip(*k)
            ))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            page["records"].as_array().unwrap().len(),
            1,
            "event {k} answered 2xx before SIGTERM is stored once"
        );
    }
    child.kill().unwrap();
    child.wait().unwrap();
}

/// What the events table holds: how many records per remote IP (one IP per event).
fn stored_per_ip(data: &Path) -> HashMap<String, usize> {
    let db = rusqlite::Connection::open(data.join("audit.sqlite3")).unwrap();
    let mut stmt = db
        .prepare("SELECT ip, count(*) FROM audit_events WHERE source = 'stalwart' GROUP BY ip")
        .unwrap();
    stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as usize)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap()
}

/// Two processes on one data directory (an upgrade without a gap, say),
/// both taking webhooks at once and both signing digests: every answered
/// event is stored once, and the one hash chain they both extended
/// verifies against every digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_data_directory_store_every_event_once_in_one_chain() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("signing.key");
    let binary = env!("CARGO_BIN_EXE_audit-ingest");
    assert!(
        Command::new(binary)
            .args(["keygen", "--out"])
            .arg(&key)
            .status()
            .unwrap()
            .success()
    );
    let data = dir.path().join("data");
    let ports = [free_port(), free_port()];
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let mut children = Vec::new();
    for port in ports {
        children.push(start_with(&data, port, &[("AUDIT_SIGNING_KEY_FILE", &key)]));
    }
    for port in ports {
        wait_ready(&client, port).await;
    }
    // Answered per process: both must keep taking writes beside the other.
    let answered: [Arc<Mutex<BTreeSet<u64>>>; 2] = Default::default();
    let running = Arc::new(AtomicBool::new(true));
    let next = Arc::new(AtomicU64::new(0));
    let mut senders = Vec::new();
    for (port, answered) in ports.iter().zip(&answered).chain(ports.iter().zip(&answered)) {
        senders.push(tokio::spawn(send_until_stopped(
            client.clone(),
            *port,
            answered.clone(),
            next.clone(),
            running.clone(),
        )));
    }
    tokio::time::sleep(Duration::from_millis(1500)).await;
    running.store(false, Ordering::SeqCst);
    for s in senders {
        s.await.unwrap();
    }
    for child in &mut children {
        let pid = child.id().to_string();
        assert!(Command::new("kill").args(["-TERM", &pid]).status().unwrap().success());
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a clean exit");
    }
    let each: Vec<BTreeSet<u64>> = answered.iter().map(|a| a.lock().unwrap().clone()).collect();
    assert!(
        each.iter().all(|a| a.len() > 50),
        "both processes took writes ({} and {} answered)",
        each[0].len(),
        each[1].len()
    );
    let answered: BTreeSet<u64> = each.into_iter().flatten().collect();
    let stored = stored_per_ip(&data);
    let lost = answered.iter().filter(|k| !stored.contains_key(&ip(**k))).count();
    assert_eq!(lost, 0, "{lost} of {} answered events were lost", answered.len());
    assert!(stored.values().all(|n| *n == 1), "an event was stored twice");
    let verified = Command::new(binary)
        .arg("verify")
        .env("AUDIT_DATA_DIR", &data)
        .env("AUDIT_SIGNING_KEY_FILE", &key)
        .output()
        .unwrap();
    let report = String::from_utf8_lossy(&verified.stdout);
    assert_eq!(
        verified.status.code(),
        Some(0),
        "{report}{}",
        String::from_utf8_lossy(&verified.stderr)
    );
    assert!(report.contains("verified: nothing was altered"), "{report}");
}
