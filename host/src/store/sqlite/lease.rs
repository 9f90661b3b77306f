//! Leases in the embedded store (see [`crate::store::lease`]): one row per
//! lease in `leases`, changed only by the writer, in immediate transactions,
//! so two processes on one data directory see one holder. Expiry is the
//! holder's wall clock against the other process's: both run on the host
//! that has the file (SQLite is not for network file systems).

use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{OptionalExtension, Transaction, params};

use crate::store::{Claim, micros};

/// Grants `name` to `owner` for `ttl` from `now` when it is free, expired
/// or theirs; a new holder gets the next token.
pub(super) fn take(
    tx: &Transaction<'_>,
    name: &str,
    owner: &str,
    ttl: Duration,
    now: DateTime<Utc>,
) -> rusqlite::Result<Claim> {
    let until = micros(&now).saturating_add(i64::try_from(ttl.as_micros()).unwrap_or(i64::MAX));
    let held: Option<(String, i64, i64)> = tx
        .prepare_cached("SELECT owner, token, expires_at FROM leases WHERE name = ?1")?
        .query_row([name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let token = match held {
        Some((holder, token, _)) if holder == owner => token,
        Some((holder, _, expires)) if expires > micros(&now) => {
            return Ok(Claim::Held {
                owner: holder,
                until: DateTime::from_timestamp_micros(expires).unwrap_or(now),
            });
        }
        Some((_, token, _)) => token + 1,
        None => 1,
    };
    tx.prepare_cached(
        "INSERT INTO leases (name, owner, token, expires_at) VALUES (?1, ?2, ?3, ?4) \
         ON CONFLICT (name) DO UPDATE SET owner = excluded.owner, token = excluded.token, \
         expires_at = excluded.expires_at",
    )?
    .execute(params![name, owner, token, until])?;
    Ok(Claim::Granted { token: token as u64 })
}

/// Ends `owner`'s lease on `name` now (the token stays, so the next
/// holder's is higher).
pub(super) fn release(tx: &Transaction<'_>, name: &str, owner: &str, now: DateTime<Utc>) -> rusqlite::Result<()> {
    tx.prepare_cached("UPDATE leases SET expires_at = ?3 WHERE name = ?1 AND owner = ?2")?
        .execute(params![name, owner, micros(&now)])?;
    Ok(())
}

/// Whether a checkpoint of `source` written with fencing token `token` may
/// commit: the source's lease still has that token.
pub(super) fn fence_holds(tx: &Transaction<'_>, source: &str, token: u64) -> rusqlite::Result<bool> {
    let current: Option<i64> = tx
        .prepare_cached("SELECT token FROM leases WHERE name = ?1")?
        .query_row([source], |r| r.get(0))
        .optional()?;
    Ok(current == Some(token as i64))
}
