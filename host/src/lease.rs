//! Doing work that one instance at a time may do: take the store's lease
//! (see [`crate::store::lease`]), keep it renewed in the background while
//! the work runs, and notice at once when it is lost.
//!
//! The renewer takes the lease again every third of its time. The lease
//! counts as lost when the store says another owner holds it, when it was
//! granted again under another token (it expired and changed hands in
//! between), or when no renewal succeeded for a whole lease time (the store
//! is unreachable: another instance may hold it by now). Losing it is safe
//! even when noticed late: the store refuses the old holder's fenced writes.

use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use tokio::sync::watch;

use crate::ingest::Shutdown;
use crate::store::{Claim, Store, StoreError};

/// One lease as one instance asks for it.
#[derive(Clone)]
pub struct Lease {
    store: Store,
    name: Arc<str>,
    owner: Arc<str>,
    ttl: Duration,
}

/// Who holds a lease the caller asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldElsewhere {
    /// The holder.
    pub owner: String,
    /// Until when, unless it renews.
    pub until: DateTime<Utc>,
}

impl Lease {
    /// The lease `name`, asked for by `owner` for `ttl` at a time.
    pub fn new(store: Store, name: &str, owner: &str, ttl: Duration) -> Lease {
        Lease {
            store,
            name: name.into(),
            owner: owner.into(),
            ttl,
        }
    }

    /// One attempt: the lease, renewed from now on, or who holds it.
    pub async fn try_take(&self) -> Result<Result<Held, HeldElsewhere>, StoreError> {
        let asked = Instant::now();
        match self.store.take_lease(&self.name, &self.owner, self.ttl).await? {
            Claim::Granted { token } => Ok(Ok(Held::start(self.clone(), token, asked + self.ttl))),
            Claim::Held { owner, until } => Ok(Err(HeldElsewhere { owner, until })),
        }
    }

    /// Waits until the lease is granted (asking every third of its time),
    /// or `None` at shutdown. `waiting` hears who holds it each time that
    /// changes, and store failures are logged once per streak.
    pub async fn wait(&self, shutdown: &Shutdown, mut waiting: impl FnMut(&HeldElsewhere)) -> Option<Held> {
        let mut shutdown = shutdown.clone();
        let mut last_holder: Option<String> = None;
        let mut failing = false;
        loop {
            if shutdown.is_set() {
                return None;
            }
            match self.try_take().await {
                Ok(Ok(held)) => return Some(held),
                Ok(Err(elsewhere)) => {
                    failing = false;
                    if last_holder.as_deref() != Some(elsewhere.owner.as_str()) {
                        last_holder = Some(elsewhere.owner.clone());
                        waiting(&elsewhere);
                    }
                }
                Err(e) => {
                    if !failing {
                        tracing::warn!(lease = %self.name, error = %e, "cannot ask the store for the lease; asking again");
                        failing = true;
                    }
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(self.renew_every()) => {}
                _ = shutdown.wait() => return None,
            }
        }
    }

    fn renew_every(&self) -> Duration {
        (self.ttl / 3).max(Duration::from_millis(50))
    }
}

/// A lease this instance holds, renewed in the background until it is
/// released or dropped.
pub struct Held {
    lease: Lease,
    token: u64,
    lost: watch::Receiver<Option<String>>,
    renewer: tokio::task::JoinHandle<()>,
}

impl Held {
    fn start(lease: Lease, token: u64, valid_until: Instant) -> Held {
        let (tell, lost) = watch::channel(None);
        let renewer = tokio::spawn(renew(lease.clone(), token, valid_until, tell));
        Held {
            lease,
            token,
            lost,
            renewer,
        }
    }

    /// The fencing token the work's writes carry.
    pub fn token(&self) -> u64 {
        self.token
    }

    /// Why the lease was lost, once it was.
    pub fn lost_because(&self) -> Option<String> {
        self.lost.borrow().clone()
    }

    /// Resolves once the lease is lost, with why.
    pub async fn lost(&mut self) -> String {
        match self.lost.wait_for(Option::is_some).await {
            Ok(why) => why.clone().unwrap_or_default(),
            // The renewer ended without a word: it was stopped.
            Err(_) => "the renewer stopped".into(),
        }
    }

    /// Gives the lease up, so the next instance need not wait for it to
    /// expire (a clean shutdown).
    pub async fn release(self) {
        self.renewer.abort();
        if self.lost_because().is_none()
            && let Err(e) = self
                .lease
                .store
                .release_lease(&self.lease.name, &self.lease.owner)
                .await
        {
            tracing::warn!(lease = %self.lease.name, error = %e, "could not release the lease; it expires by itself");
        }
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        self.renewer.abort();
    }
}

/// Renews until the lease is lost; says why through `tell`.
async fn renew(lease: Lease, token: u64, mut valid_until: Instant, tell: watch::Sender<Option<String>>) {
    loop {
        let next = Instant::now() + lease.renew_every();
        tokio::time::sleep_until(next.min(valid_until).into()).await;
        if Instant::now() >= valid_until {
            let _ = tell.send(Some(format!(
                "no renewal succeeded for {} s (the store did not answer)",
                lease.ttl.as_secs_f64()
            )));
            return;
        }
        let asked = Instant::now();
        let why = match lease.store.take_lease(&lease.name, &lease.owner, lease.ttl).await {
            Ok(Claim::Granted { token: t }) if t == token => {
                valid_until = asked + lease.ttl;
                continue;
            }
            Ok(Claim::Granted { token: t }) => format!("it changed hands meanwhile (token {token} became {t})"),
            Ok(Claim::Held { owner, .. }) => format!("{owner} holds it now"),
            Err(e) => {
                tracing::warn!(lease = %lease.name, error = %e, "renewing the lease failed; trying again");
                continue;
            }
        };
        let _ = tell.send(Some(why));
        return;
    }
}
