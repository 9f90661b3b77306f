//! What the browser test and the page benchmark share: finding `node`,
//! Debian's `chromium` and the installed `playwright-core`, and serving an
//! app on a real local socket for the browser to reach.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use audit_ingest::api::{self, AppState};
use audit_ingest::http_server::{ConnectionCounts, ConnectionLimits};

/// The workspace root.
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace")
        .to_path_buf()
}

/// What a browser run needs.
pub struct Tools {
    /// `node`.
    pub node: PathBuf,
    /// Debian's `chromium` (or `AUDIT_TEST_CHROMIUM`).
    pub chromium: PathBuf,
    /// `tests/ui`, where the scripts and `node_modules` are.
    pub dir: PathBuf,
}

/// The tools, or what is missing.
pub fn find_tools() -> Result<Tools, String> {
    let on_path = |name: &str| {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths)
                .map(|p| p.join(name))
                .find(|p| p.is_file())
        })
    };
    let node = on_path("node").ok_or("no `node` on PATH")?;
    let chromium = std::env::var_os("AUDIT_TEST_CHROMIUM")
        .map(PathBuf::from)
        .or_else(|| on_path("chromium"))
        .ok_or("no `chromium` on PATH (Debian: apt-get install chromium; or set AUDIT_TEST_CHROMIUM)")?;
    let dir = workspace().join("tests/ui");
    if !dir.join("node_modules/playwright-core").is_dir() {
        return Err("playwright-core is not installed (run `npm ci --prefix tests/ui`)".into());
    }
    Ok(Tools { node, chromium, dir })
}

/// An app served on a free local port until dropped (or [`Served::stop`]).
pub struct Served {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    server: Option<tokio::task::JoinHandle<()>>,
}

impl Served {
    /// Serves `state`'s router with the service's own connection handling.
    pub async fn start(state: AppState) -> Served {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let base = format!("http://{}", listener.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(audit_ingest::http_server::serve(
            listener,
            api::router(state),
            ConnectionLimits::default(),
            Arc::new(ConnectionCounts::default()),
            async move {
                let _ = stopped.await;
            },
        ));
        Served {
            base,
            stop: Some(stop),
            server: Some(server),
        }
    }

    /// Stops accepting and waits until every connection has ended.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(server) = self.server.take() {
            server.await.expect("the server task");
        }
    }
}
