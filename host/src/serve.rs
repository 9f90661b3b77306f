//! Assembling and running the service: store, runtime, watcher, HTTP server,
//! and a graceful shutdown on SIGTERM or Ctrl-C.

use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::config::{Config, Secret, Settings};
use crate::health::Health;
use crate::ingest::{Pipeline, ShutdownSignal, SourceContext, Tenants};
use crate::runtime::{Runtime, WatchHandle};
use crate::sources::webhook::signature::Verifier;
use crate::store::{Store, mongo::MongoStore, sqlite::SqliteStore};
use crate::telemetry::Telemetry;

/// A running service's parts, for `serve` and for tests.
pub struct App {
    /// Shared handler state.
    pub state: AppState,
    /// Keeps the mapper directory watched while alive.
    pub watch: WatchHandle,
    /// Tells pollers and tails to stop.
    shutdown: ShutdownSignal,
    /// The running pollers and tails.
    tasks: Vec<tokio::task::JoinHandle<()>>,
    /// Helpers with nothing to commit (tenant list refresh), aborted on stop.
    background: Vec<tokio::task::JoinHandle<()>>,
    /// Signs digests of the hash chain (one more at stop), if a key is configured.
    digests: Option<Arc<crate::evidence::Digests>>,
}

impl App {
    /// Stops pollers and tails: each finishes the page or lines in flight,
    /// commits, and saves its cursor or offset. Waits at most `bound`.
    pub async fn stop(self, bound: std::time::Duration) {
        self.shutdown.trigger();
        self.background.iter().for_each(|t| t.abort());
        let all = futures_util::future::join_all(self.tasks);
        if tokio::time::timeout(bound, all).await.is_err() {
            tracing::warn!(
                bound_secs = bound.as_secs(),
                "sources did not stop in time; their cursors cover what was committed"
            );
        }
        // The last commits are signed before the process ends.
        if let Some(digests) = &self.digests
            && let Err(e) = digests.make().await
        {
            tracing::warn!(error = %e, "could not sign the last digest of the hash chain");
        }
    }
}

/// Whether opening the store waits for a MongoDB that does not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreWait {
    /// The service: wait (logging each attempt) until MongoDB answers or a
    /// stop signal arrives, rather than exit and be restarted in a loop.
    UntilItAnswers,
    /// A one-shot command: fail at once.
    No,
}

/// The longest pause between two attempts to reach MongoDB at start.
const MAX_CONNECT_PAUSE: std::time::Duration = std::time::Duration::from_secs(30);

/// Connects to MongoDB, waiting for it as `wait` says.
async fn connect_mongodb(uri: &Secret, config: &Config, wait: StoreWait) -> anyhow::Result<MongoStore> {
    let (database, collection) = (&config.store.database, &config.store.collection);
    let mut attempt = 1u32;
    let stop = shutdown_signal();
    tokio::pin!(stop);
    loop {
        let pool = crate::store::mongo::pool_for(config.max_in_flight_requests);
        let error = match MongoStore::connect_sized(uri.expose(), database, collection, pool).await {
            Ok(store) => return Ok(store),
            Err(e @ crate::store::StoreError::Unavailable(_)) if wait == StoreWait::UntilItAnswers => e,
            Err(e) => return Err(anyhow::Error::new(e).context("connect to MongoDB")),
        };
        let pause = std::time::Duration::from_secs(1u64 << (attempt - 1).min(5)).min(MAX_CONNECT_PAUSE);
        tracing::warn!(
            attempt, retry_in_secs = pause.as_secs(), error = %error,
            "waiting for MongoDB: it does not answer yet; the service starts once it does"
        );
        tokio::select! {
            _ = tokio::time::sleep(pause) => attempt += 1,
            _ = &mut stop => anyhow::bail!("stopped while waiting for MongoDB"),
        }
    }
}

/// Opens the configured store: MongoDB at `mongodb_uri`, or the embedded one.
pub async fn open_store(config: &Config, mongodb_uri: Option<&Secret>, wait: StoreWait) -> anyhow::Result<Store> {
    match mongodb_uri {
        Some(uri) => {
            let store = connect_mongodb(uri, config, wait).await?;
            tracing::info!(database = %config.store.database, collection = %config.store.collection, "using the MongoDB store");
            Ok(Arc::new(store))
        }
        None => {
            let path = config.data_dir.join("audit.sqlite3");
            let durability = config.store.durability;
            // Opening may migrate an old file (minutes on a large one): off the async workers.
            let opening = path.clone();
            let store = tokio::task::spawn_blocking(move || SqliteStore::open(&opening, durability))
                .await
                .context("open the embedded store")?
                .with_context(|| format!("open the embedded store at {}", path.display()))?;
            tracing::info!(path = %path.display(), "using the embedded store");
            Ok(Arc::new(store))
        }
    }
}

/// Loads the built-in mappers and the mapper directory's, as configured:
/// the same for `serve` and `replay`.
pub async fn runtime_for(config: &Config) -> anyhow::Result<Runtime> {
    let dir = config.mappers_dir.clone();
    let runtime_config = config.runtime_config();
    tokio::task::spawn_blocking(move || {
        std::fs::create_dir_all(&dir).with_context(|| format!("create the mapper directory {}", dir.display()))?;
        Runtime::new(&crate::builtin::MAPPERS, runtime_config)
    })
    .await
    .context("load mappers")?
}

/// The store, mappers and tenants of the settings, as one pipeline: the same
/// for `serve` and `replay`.
pub async fn pipeline_for(settings: &Settings, telemetry: Telemetry, wait: StoreWait) -> anyhow::Result<Pipeline> {
    let config = &settings.config;
    let store = open_store(config, settings.mongodb_uri.as_ref(), wait).await?;
    let runtime = runtime_for(config).await?;
    let tenants = Tenants::new(config.tenant_slugs.clone());
    let mut pipeline = Pipeline::new(store, runtime, tenants, telemetry);
    for poller in &settings.pollers {
        if let Some(lookup) = poller.tenant_lookup() {
            pipeline = pipeline.with_actor_tenants(&poller.source, lookup);
        }
    }
    Ok(pipeline)
}

/// How long pushes of a pushed and polled source may be silent while its
/// poller finds newer events before `/readyz` warns that they stopped.
pub const PUSH_SILENCE: std::time::Duration = std::time::Duration::from_secs(300);

/// Builds the service from its settings.
pub async fn build(settings: Settings) -> anyhow::Result<App> {
    let pipeline = pipeline_for(&settings, Telemetry::new(), StoreWait::UntilItAnswers).await?;
    let Settings {
        config,
        access,
        webhooks,
        pollers,
        tails,
        signing_key,
        ..
    } = settings;
    let runtime = pipeline.runtime().clone();
    for m in runtime.status() {
        tracing::info!(mapper = %m.name, version = %m.version, contract = m.contract, file = ?m.file, "mapper serving");
    }
    let watch = runtime.watch().context("watch the mapper directory")?;
    if !access.accepts_anything() {
        tracing::warn!(
            "no API credential is configured: every /audit request will be refused; set AUDIT_API_TOKEN (or [api] token = {{ file = \"...\" }}), add [[api.tokens]] or configure [api.oidc]"
        );
    }
    for w in &webhooks {
        let accepts = !matches!(w.verifier, Verifier::MissingSecret(_));
        if accepts && pollers.iter().any(|p| p.source == w.source) {
            // Pushed and polled (authentik's notifications beside its event
            // list): the poller is the safety net, and says when pushes stop.
            // An endpoint without its secret takes no pushes: nothing to miss.
            pipeline.telemetry().expect_pushes(&w.source, PUSH_SILENCE);
        }
        match &w.verifier {
            Verifier::Unsigned => tracing::warn!(
                source = %w.source, path = %w.path,
                "UNSIGNED webhook intake is on: anyone who can reach this port can write audit records for this source"
            ),
            Verifier::MissingSecret(hint) => tracing::warn!(
                source = %w.source, path = %w.path,
                "webhook has no secret and refuses every request; {hint}"
            ),
            _ => tracing::info!(source = %w.source, path = %w.path, mapper = %w.mapper, "webhook endpoint ready"),
        }
    }
    let state = AppState {
        pipeline,
        health: Health::new(),
        access: Arc::new(access),
        webhooks: Arc::new(webhooks),
        ingest_slots: api::ingest_slots(config.max_in_flight_requests),
        intake: config.http.intake(),
        live: Default::default(),
    };
    let shutdown = ShutdownSignal::new();
    let tasks = start_sources(&config, pollers, tails, &state, &shutdown);
    let mut background = Vec::new();
    let store = state.pipeline.store().clone();
    if store.kind() == "mongodb" {
        let follow = state
            .pipeline
            .tenants()
            .clone()
            .follow(store.clone(), std::time::Duration::from_secs(300));
        background.push(tokio::spawn(follow));
    }
    let digests = start_digests(&config, signing_key, &state, &mut background);
    if config.retention.is_on() {
        let retention = crate::retention::Retention::new(
            config.retention.clone(),
            store.clone(),
            state.pipeline.telemetry().clone(),
            digests.clone(),
        );
        background.push(tokio::spawn(retention.run(config.instance_name())));
    }
    Ok(App {
        state,
        watch,
        shutdown,
        tasks,
        background,
        digests,
    })
}

/// Signs a digest of the hash chain every interval, when the store keeps a
/// chain and a key is configured; says at start what is and is not covered.
fn start_digests(
    config: &Config,
    key: Option<crate::evidence::SigningKey>,
    state: &AppState,
    background: &mut Vec<tokio::task::JoinHandle<()>>,
) -> Option<Arc<crate::evidence::Digests>> {
    let store = state.pipeline.store().clone();
    match (store.keeps_chain(), key) {
        (false, _) => {
            tracing::warn!(
                store = store.kind(),
                "tamper evidence: this store keeps no hash chain (the embedded store does)"
            );
            None
        }
        (true, None) => {
            tracing::warn!(
                "tamper evidence: the store chains every record, but no signing key is configured, so no digest \
                 is signed and a rewritten chain cannot be told from the original; make one with `audit-ingest keygen` \
                 and set AUDIT_SIGNING_KEY_FILE (docs/evidence.md)"
            );
            None
        }
        (true, Some(key)) => {
            let dir = config.evidence.digest_dir(&config.data_dir);
            tracing::info!(key = %key.public().id(), dir = %dir.display(), every_secs = config.evidence.digest_interval_secs, "tamper evidence: signing digests of the hash chain");
            let digests = Arc::new(crate::evidence::Digests::new(store, key, dir));
            let every = std::time::Duration::from_secs(config.evidence.digest_interval_secs);
            background.push(tokio::spawn(digests.clone().run(every)));
            Some(digests)
        }
    }
}

/// Starts the pollers and file tails, unless ingest is switched off.
fn start_sources(
    config: &Config,
    pollers: Vec<crate::sources::poll::Poller>,
    tails: Vec<crate::sources::tail::Tailer>,
    state: &AppState,
    shutdown: &ShutdownSignal,
) -> Vec<tokio::task::JoinHandle<()>> {
    let instance = config.instance_name();
    let ctx = || SourceContext {
        pipeline: state.pipeline.clone(),
        shutdown: shutdown.subscribe(),
        health: state.health.clone(),
        instance: instance.clone(),
    };
    let mut tasks = Vec::new();
    if !config.ingest_enabled {
        if !pollers.is_empty() || !tails.is_empty() {
            tracing::warn!("AUDIT_INGEST_ENABLED=false: pollers and file tails do not run");
        }
        return tasks;
    }
    for poller in pollers {
        if poller.sends_token_in_clear() {
            tracing::warn!(source = %poller.source, "the poller sends its token over plain http://: anyone on the path can read it; use https://");
        }
        if !poller.has_token() {
            tracing::warn!(source = %poller.source, "poller not started: no token; {}", poller.token_hint());
            continue;
        }
        tasks.push(tokio::spawn(crate::sources::poll::run(poller, ctx())));
    }
    for tailer in tails {
        tasks.push(tokio::spawn(crate::sources::tail::run(tailer, ctx())));
    }
    tasks
}

/// Runs the service until SIGTERM or Ctrl-C.
pub async fn serve(settings: Settings) -> anyhow::Result<()> {
    let (listen, shutdown_timeout_secs) = (settings.config.listen, settings.config.shutdown_timeout_secs);
    let limits = settings.config.http.connection_limits();
    let mut signals = StopSignals::listen();
    // Listening first: while the store opens (a MongoDB that does not answer
    // yet, a migration of a large file) /healthz answers 200 and everything
    // else 503 with Retry-After saying why, so probes and senders know.
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("listen on {listen}"))?;
    tracing::info!(address = %listener.local_addr()?, "audit-ingest is listening; opening the store");
    let (opened, on_opened) = tokio::sync::oneshot::channel::<()>();
    let starting = crate::http_server::serve_on(
        &listener,
        starting_router(),
        limits,
        std::sync::Arc::default(),
        async move {
            let _ = on_opened.await;
        },
    );
    let building = async move {
        let app = build(settings).await;
        let _ = opened.send(());
        app
    };
    let started = async { tokio::join!(building, starting).0 };
    let app = tokio::select! {
        app = started => app?,
        () = signals.wait() => anyhow::bail!("stopped while starting"),
    };
    tracing::info!("audit-ingest is ready");
    let router = api::router(app.state.clone());
    let bound = std::time::Duration::from_secs(shutdown_timeout_secs);
    let (signalled, on_signal) = tokio::sync::oneshot::channel::<()>();
    let counts = std::sync::Arc::new(crate::http_server::ConnectionCounts::default());
    let live = app.state.live.clone();
    let server = crate::http_server::serve_on(&listener, router, limits, counts, async move {
        signals.wait().await;
        // Live streams never end by themselves: end them, so the server drains.
        live.close_all();
        let _ = signalled.send(());
    });
    // Requests in flight get the bound to finish; then the server is dropped.
    let deadline = async move {
        if on_signal.await.is_ok() {
            tokio::time::sleep(bound).await;
        } else {
            std::future::pending::<()>().await;
        }
    };
    tokio::select! {
        () = server => {},
        _ = deadline => tracing::warn!(bound_secs = bound.as_secs(), "requests still in flight at the shutdown bound; stopping anyway (their senders got no answer and will retry)"),
    }
    app.stop(bound).await;
    tracing::info!("stopped");
    Ok(())
}

/// What answers while the service starts: alive, not ready.
fn starting_router() -> axum::Router {
    use axum::http::{StatusCode, header};
    axum::Router::new()
        .route("/healthz", axum::routing::get(crate::api::health::live))
        .fallback(|| async {
            (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "5")],
                axum::Json(serde_json::json!({
                    "ready": false,
                    "error": "the service is starting: its store is not open yet \
                              (waiting for MongoDB, or migrating the embedded file; the log says which)",
                })),
            )
        })
}

async fn shutdown_signal() {
    StopSignals::listen().wait().await;
}

/// SIGTERM and Ctrl-C, listened for from the moment this is made: one that
/// arrives while the service starts stops it cleanly instead of killing it
/// (a signal without a listener has its default effect).
struct StopSignals {
    #[cfg(unix)]
    term: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
}

impl StopSignals {
    fn listen() -> StopSignals {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{SignalKind, signal};
            StopSignals {
                term: signal(SignalKind::terminate()).ok(),
                interrupt: signal(SignalKind::interrupt()).ok(),
            }
        }
        #[cfg(not(unix))]
        StopSignals {}
    }

    /// Until one of them arrives.
    async fn wait(&mut self) {
        #[cfg(unix)]
        {
            let term = async {
                match self.term.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            let interrupt = async {
                match self.interrupt.as_mut() {
                    Some(s) => drop(s.recv().await),
                    None => std::future::pending::<()>().await,
                }
            };
            tokio::select! {
                () = term => {},
                () = interrupt => {},
            }
        }
        #[cfg(not(unix))]
        {
            let _ = tokio::signal::ctrl_c().await;
        }
        tracing::info!("shutting down: finishing requests in flight");
    }
}
