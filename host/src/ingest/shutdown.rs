//! Telling background sources to stop: one [`ShutdownSignal`] held by the
//! service, a [`Shutdown`] per source that finishes what it has in flight,
//! commits, and returns.

use tokio::sync::watch;

/// The sending side, held by whoever may stop the service.
#[derive(Debug)]
pub struct ShutdownSignal(watch::Sender<bool>);

/// A source's view: stop when this says so. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Shutdown(Option<watch::Receiver<bool>>);

impl ShutdownSignal {
    /// A new signal, not yet given.
    pub fn new() -> ShutdownSignal {
        ShutdownSignal(watch::channel(false).0)
    }

    /// A receiver for one source.
    pub fn subscribe(&self) -> Shutdown {
        Shutdown(Some(self.0.subscribe()))
    }

    /// Tells every source to stop.
    pub fn trigger(&self) {
        let _ = self.0.send(true);
    }
}

impl Default for ShutdownSignal {
    fn default() -> Self {
        ShutdownSignal::new()
    }
}

impl Shutdown {
    /// A shutdown that never comes (tests, one-off commands).
    pub fn never() -> Shutdown {
        Shutdown(None)
    }

    /// Whether the source should stop now: the signal was given, or whoever
    /// held it is gone.
    pub fn is_set(&self) -> bool {
        match &self.0 {
            None => false,
            Some(rx) => *rx.borrow() || rx.has_changed().is_err(),
        }
    }

    /// Waits until the source should stop.
    pub async fn wait(&mut self) {
        match &mut self.0 {
            None => std::future::pending().await,
            Some(rx) => {
                let _ = rx.wait_for(|stop| *stop).await;
            }
        }
    }
}
