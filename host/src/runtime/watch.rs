//! Watches the mapper directory with `notify` and rescans it after a short
//! debounce; a periodic rescan covers filesystems where notify misses events.

use std::time::Duration;

use notify::{RecursiveMode, Watcher};
use tokio::sync::mpsc;

use super::Runtime;

/// Changes arriving within this window are handled by one rescan.
const DEBOUNCE: Duration = Duration::from_millis(50);
/// A rescan happens at least this often, events or not.
const FALLBACK_RESCAN: Duration = Duration::from_secs(5);

/// Keeps the watcher alive; dropping it stops watching.
pub struct WatchHandle {
    _watcher: Option<notify::RecommendedWatcher>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for WatchHandle {
    fn drop(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
        }
    }
}

pub(super) fn start(runtime: Runtime) -> anyhow::Result<WatchHandle> {
    let Some(dir) = runtime.dir().map(|d| d.to_path_buf()) else {
        return Ok(WatchHandle {
            _watcher: None,
            task: None,
        });
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<()>();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        if event.is_ok() {
            let _ = tx.send(());
        }
    })?;
    watcher.watch(&dir, RecursiveMode::Recursive)?;
    let task = tokio::spawn(async move {
        let mut fallback = tokio::time::interval(FALLBACK_RESCAN);
        fallback.tick().await;
        loop {
            tokio::select! {
                got = rx.recv() => {
                    if got.is_none() { break; }
                    tokio::time::sleep(DEBOUNCE).await;
                    while rx.try_recv().is_ok() {}
                }
                _ = fallback.tick() => {}
            }
            let rt = runtime.clone();
            let _ = tokio::task::spawn_blocking(move || rt.rescan()).await;
        }
    });
    Ok(WatchHandle {
        _watcher: Some(watcher),
        task: Some(task),
    })
}
