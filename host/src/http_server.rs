//! The HTTP listener: every connection bounded in count and in time.
//!
//! `axum::serve` sets no timeout and caps nothing, so a few hundred
//! connections that send half a request and then nothing stay open for
//! ever. Here each connection is watched:
//!
//! - at most `max_connections` are open; one over is closed at once;
//! - a request head must arrive within `header_read_timeout` of its first
//!   byte (a slow-drip head is cut off);
//! - a connection with no request in flight and nothing sent is closed after
//!   `idle_timeout` (keep-alive);
//! - the body of a request is read under the handler's own whole-body
//!   deadline (`body_read_timeout`, see `api::Intake`), so while a request is
//!   in flight the watch leaves it alone.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::extract::ConnectInfo;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};

/// Bounds on connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionLimits {
    /// Connections open at once.
    pub max_connections: usize,
    /// From the first byte of a request head to its end.
    pub header_read_timeout: Duration,
    /// A connection with no request in flight and nothing sent.
    pub idle_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: 1024,
            header_read_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
        }
    }
}

/// Counts of connections refused or cut off, for logs and metrics.
#[derive(Debug, Default)]
pub struct ConnectionCounts {
    /// Closed at once: `max_connections` were open.
    pub over_capacity: AtomicU64,
    /// Closed because a request head took longer than allowed.
    pub slow_heads: AtomicU64,
    /// Closed after the keep-alive idle time.
    pub idle: AtomicU64,
}

/// Serves `router` on `listener` until `shutdown` resolves; then stops
/// accepting, lets requests in flight finish and closes idle connections.
pub async fn serve(
    listener: TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    counts: Arc<ConnectionCounts>,
    shutdown: impl Future<Output = ()>,
) {
    serve_on(&listener, router, limits, counts, shutdown).await;
}

/// [`serve`] on a listener the caller keeps, so another router can take
/// over the same socket afterwards (the service answers while it starts).
pub async fn serve_on(
    listener: &TcpListener,
    router: axum::Router,
    limits: ConnectionLimits,
    counts: Arc<ConnectionCounts>,
    shutdown: impl Future<Output = ()>,
) {
    let open = Arc::new(Semaphore::new(limits.max_connections));
    let (stop, stopping) = watch::channel(false);
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: wait, do not spin.
                    tracing::warn!(error = %e, "accept failed; retrying in 100 ms");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Ok(permit) = open.clone().try_acquire_owned() else {
            let n = counts.over_capacity.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                tracing::warn!(peer = %peer, refused_so_far = n, max = limits.max_connections, "connection refused: the connection cap is reached");
            }
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        let (router, counts, stopping) = (router.clone(), counts.clone(), stopping.clone());
        tokio::spawn(async move {
            connection(stream, peer, router, limits, &counts, stopping).await;
            drop(permit);
        });
    }
    let _ = stop.send(true);
    // Wait until every connection has ended (the caller bounds how long).
    let _ = open.acquire_many(limits.max_connections as u32).await;
}

/// What a connection is doing, shared by its reader and its watch.
#[derive(Default)]
struct Activity {
    in_flight: AtomicUsize,
    /// When the connection last became free of requests (or was accepted).
    free_since: Mutex<Option<Instant>>,
    /// When the first byte of a head not yet complete arrived.
    head_since: Mutex<Option<Instant>>,
}

impl Activity {
    fn lock(m: &Mutex<Option<Instant>>) -> std::sync::MutexGuard<'_, Option<Instant>> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn bytes_arrived(&self) {
        if self.in_flight.load(Ordering::Relaxed) == 0 {
            Activity::lock(&self.head_since).get_or_insert_with(Instant::now);
        }
    }

    fn request_began(&self) {
        self.in_flight.fetch_add(1, Ordering::Relaxed);
        *Activity::lock(&self.head_since) = None;
    }

    fn request_ended(&self) {
        if self.in_flight.fetch_sub(1, Ordering::Relaxed) == 1 {
            *Activity::lock(&self.free_since) = Some(Instant::now());
        }
    }

    /// Why the connection should be closed now, if it should.
    fn overdue(&self, limits: &ConnectionLimits) -> Option<Overdue> {
        if self.in_flight.load(Ordering::Relaxed) > 0 {
            return None;
        }
        if let Some(since) = *Activity::lock(&self.head_since) {
            return (since.elapsed() > limits.header_read_timeout).then_some(Overdue::SlowHead);
        }
        let free = Activity::lock(&self.free_since).unwrap_or_else(Instant::now);
        (free.elapsed() > limits.idle_timeout).then_some(Overdue::Idle)
    }
}

enum Overdue {
    SlowHead,
    Idle,
}

/// Ends when the request in flight finishes or is dropped.
struct InFlight(Arc<Activity>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.request_ended();
    }
}

async fn connection(
    stream: TcpStream,
    peer: SocketAddr,
    router: axum::Router,
    limits: ConnectionLimits,
    counts: &ConnectionCounts,
    mut stopping: watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity::default());
    *Activity::lock(&activity.free_since) = Some(Instant::now());
    let io = TokioIo::new(Watched {
        inner: stream,
        activity: activity.clone(),
    });
    let service_activity = activity.clone();
    let service = hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
        service_activity.request_began();
        let in_flight = InFlight(service_activity.clone());
        request.extensions_mut().insert(ConnectInfo(peer));
        let mut router = router.clone();
        async move {
            let answer = tower::Service::call(&mut router, request).await;
            // The request stays in flight until its body is sent (a live
            // stream's body lasts long after its head): the guard goes with it.
            answer.map(|response| {
                response.map(|body| {
                    axum::body::Body::new(http_body_util::BodyExt::map_frame(body, move |frame| {
                        let _ = &in_flight;
                        frame
                    }))
                })
            })
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(true)
        .serve_connection(io, service);
    tokio::pin!(conn);
    let tick = (limits.header_read_timeout.min(limits.idle_timeout) / 4)
        .clamp(Duration::from_millis(10), Duration::from_secs(1));
    let mut watch = tokio::time::interval(tick);
    let mut draining = false;
    loop {
        tokio::select! {
            served = conn.as_mut() => {
                if let Err(e) = served {
                    tracing::debug!(peer = %peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = watch.tick() => match activity.overdue(&limits) {
                Some(Overdue::SlowHead) => {
                    let n = counts.slow_heads.fetch_add(1, Ordering::Relaxed) + 1;
                    if n.is_power_of_two() {
                        tracing::warn!(peer = %peer, cut_so_far = n, "connection closed: its request head took longer than the header read timeout");
                    }
                    return;
                }
                Some(Overdue::Idle) => {
                    counts.idle.fetch_add(1, Ordering::Relaxed);
                    return;
                }
                None => {}
            },
            changed = stopping.changed(), if !draining => {
                if changed.is_err() || *stopping.borrow() {
                    draining = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}

/// A stream that tells its connection's [`Activity`] when bytes arrive.
struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
}

impl AsyncRead for Watched {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.bytes_arrived();
        }
        polled
    }
}

impl AsyncWrite for Watched {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}
