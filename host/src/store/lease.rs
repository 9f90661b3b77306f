//! Leases: work that one service instance at a time may do (a poller, the
//! retention passes), when several run on one store.
//!
//! A lease has a name, an owner (the instance holding it), an expiry and a
//! *fencing token* that grows by one every time the lease changes hands.
//! [`AuditStore::take_lease`](super::AuditStore::take_lease) grants it to
//! an owner when it is free, expired or already theirs, and says who holds
//! it otherwise; the holder renews it by taking it again well before it
//! expires. When the holder dies, its lease expires and the next instance
//! to ask gets it with a higher token.
//!
//! A lease named after a source fences that source's checkpoint: a
//! checkpoint written with [`Checkpoint::fenced`](super::Checkpoint::fenced)
//! is refused ([`StoreError::Fenced`](super::StoreError::Fenced)) unless its
//! token is still the lease's current one, checked by the store in the same
//! atomic step as the write. So an instance that lost its lease while it
//! was paused (a long GC, a frozen VM, a partition) cannot move the cursor
//! back under the new holder, however late its write arrives. Other leases
//! are named with a leading `@` (never a source name) and fence nothing.

use std::time::Duration;

use chrono::{DateTime, Utc};

/// The lease of the retention passes.
pub const RETENTION: &str = "@retention";

/// The source whose checkpoint a lease fences, if it is a source's.
pub fn fenced_source(lease: &str) -> Option<&str> {
    (!lease.starts_with('@')).then_some(lease)
}

/// What taking a lease answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// The lease is the caller's until `ttl` from now; `token` fences its
    /// writes (the same token as before when the caller already held it).
    Granted {
        /// The fencing token.
        token: u64,
    },
    /// Another owner holds it.
    Held {
        /// Who.
        owner: String,
        /// Until when, unless renewed.
        until: DateTime<Utc>,
    },
}

/// The longest lease accepted: a dead holder's work waits at most this long.
pub const MAX_TTL: Duration = Duration::from_secs(3600);
