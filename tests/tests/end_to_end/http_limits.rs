//! The real listener over TCP against connections that try to silence it:
//! stalled uploads, slow-drip heads and bodies, idle keep-alives and more
//! connections than allowed. A correctly signed delivery still gets through,
//! and every stalled connection is cut off within its timeout.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use audit_ingest::api::{self, AppState, Intake};
use audit_ingest::health::Health;
use audit_ingest::http_server::{self, ConnectionCounts, ConnectionLimits};
use audit_ingest::runtime::{InstanceMode, Limits};
use audit_ingest::sources::webhook::signature::stalwart_signature;
use audit_ingest_tests::{STALWART_SECRET, embedded_store, runtime, stalwart_endpoint};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A correctness bound well above every timeout below (the timing itself
/// is measured in BENCHMARKS.md).
const GENEROUS: Duration = Duration::from_secs(10);

struct Server {
    addr: SocketAddr,
    counts: Arc<ConnectionCounts>,
    _dir: tempfile::TempDir,
}

async fn start(limits: ConnectionLimits, intake: Intake) -> Server {
    let dir = tempfile::tempdir().unwrap();
    let router = api::router(AppState {
        pipeline: audit_ingest_tests::pipeline(
            embedded_store(dir.path()),
            runtime(None, InstanceMode::Auto, Limits::default()),
            Default::default(),
        ),
        health: Health::new(),
        access: std::sync::Arc::new(audit_ingest::access::Access::service_token(None)),
        webhooks: Arc::new(vec![stalwart_endpoint()]),
        ingest_slots: api::ingest_slots(api::DEFAULT_INGEST_SLOTS),
        intake,
        live: Default::default(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let counts = Arc::new(ConnectionCounts::default());
    tokio::spawn(http_server::serve(
        listener,
        router,
        limits,
        counts.clone(),
        std::future::pending(),
    ));
    Server {
        addr,
        counts,
        _dir: dir,
    }
}

fn limits() -> ConnectionLimits {
    ConnectionLimits {
        max_connections: 1024,
        header_read_timeout: Duration::from_millis(800),
        idle_timeout: Duration::from_secs(2),
    }
}

fn intake() -> Intake {
    Intake::new(64 << 20, Duration::from_millis(1500))
}

const BODY: &str = r#"{"events":[{"id":"1","createdAt":"2026-01-01T00:00:00Z","type":"auth.failed","data":{"accountName":"x@example.org","remoteIp":"203.0.113.9"}}]}"#;

/// A correctly signed single-event delivery over a new connection.
async fn signed_delivery(addr: SocketAddr) -> reqwest::StatusCode {
    reqwest::Client::new()
        .post(format!("http://{addr}/ingest/stalwart/webhook"))
        .header("content-type", "application/json")
        .header("x-signature", stalwart_signature(STALWART_SECRET, BODY.as_bytes()))
        .body(BODY)
        .timeout(GENEROUS)
        .send()
        .await
        .expect("the signed delivery is answered")
        .status()
}

/// The head of a 1 MB upload (under the endpoint's limit); `signature` is a well-formed but forged tag.
fn upload_head(signature: Option<&str>) -> String {
    let mut head = "POST /ingest/stalwart/webhook HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: 1000000\r\n".to_string();
    if let Some(sig) = signature {
        head.push_str(&format!("x-signature: {sig}\r\n"));
    }
    head.push_str("\r\n");
    head
}

/// Reads until the server closes the connection; what it answered, if anything.
async fn until_closed(mut stream: TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(GENEROUS, stream.read_to_end(&mut answer))
        .await
        .expect("the server closed the connection within the bound");
    String::from_utf8_lossy(&answer).into_owned()
}

fn forged() -> String {
    stalwart_signature("not-the-secret", b"some other body")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hundreds_of_stalled_uploads_do_not_hold_back_a_signed_delivery() {
    let server = start(limits(), intake()).await;
    let mut anonymous = Vec::new();
    let mut stalled = Vec::new();
    for i in 0..300 {
        let mut s = TcpStream::connect(server.addr).await.unwrap();
        if i % 2 == 0 {
            s.write_all(upload_head(None).as_bytes()).await.unwrap();
            anonymous.push(s);
        } else {
            s.write_all(upload_head(Some(&forged())).as_bytes()).await.unwrap();
            stalled.push(s);
        }
    }
    let started = Instant::now();
    assert_eq!(signed_delivery(server.addr).await, reqwest::StatusCode::OK);
    assert!(started.elapsed() < GENEROUS);

    // No credential: refused before the body is read, at once.
    for s in anonymous {
        let answer = until_closed(s).await;
        assert!(answer.starts_with("HTTP/1.1 401"), "{answer}");
    }
    // A forged tag passes the header check; its body never comes: cut off
    // at the body deadline (408), the connection closed.
    let cut = Instant::now();
    for s in stalled {
        let answer = until_closed(s).await;
        assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
    }
    assert!(cut.elapsed() < GENEROUS);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_body_is_cut_off_at_the_body_deadline() {
    let server = start(limits(), intake()).await;
    let mut s = TcpStream::connect(server.addr).await.unwrap();
    let head = upload_head(Some(&forged())).replace("1000000", "1000");
    s.write_all(head.as_bytes()).await.unwrap();
    let started = Instant::now();
    let mut sent = 0;
    while sent < 1000 {
        if s.write_all(b"x").await.is_err() {
            break;
        }
        sent += 1;
        tokio::time::sleep(Duration::from_millis(50)).await;
        if started.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    let answer = until_closed(s).await;
    assert!(sent < 1000, "the whole body was taken at a drip");
    assert!(answer.is_empty() || answer.starts_with("HTTP/1.1 408"), "{answer}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_drip_head_and_an_idle_connection_are_closed() {
    let server = start(limits(), intake()).await;
    let mut drip = TcpStream::connect(server.addr).await.unwrap();
    let idle = TcpStream::connect(server.addr).await.unwrap();
    let head = upload_head(None);
    for b in head.as_bytes().iter().take(60) {
        if drip.write_all(&[*b]).await.is_err() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(until_closed(drip).await, "", "a head that never ends is not answered");
    assert_eq!(until_closed(idle).await, "");
    assert!(server.counts.slow_heads.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    assert!(server.counts.idle.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    // Keep-alive still works for a sender that keeps sending.
    assert_eq!(signed_delivery(server.addr).await, reqwest::StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_are_closed_at_once() {
    let server = start(
        ConnectionLimits {
            max_connections: 8,
            idle_timeout: Duration::from_secs(30),
            ..limits()
        },
        intake(),
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..8 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    // Give the server a moment to accept all eight before the ninth.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let over = TcpStream::connect(server.addr).await.unwrap();
    assert_eq!(until_closed(over).await, "", "the ninth is closed unanswered");
    assert!(server.counts.over_capacity.load(std::sync::atomic::Ordering::Relaxed) >= 1);
    drop(held.pop());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(
        signed_delivery(server.addr).await,
        reqwest::StatusCode::OK,
        "a freed place is taken again"
    );
}
