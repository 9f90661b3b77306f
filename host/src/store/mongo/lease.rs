//! Leases in MongoDB (see [`crate::store::lease`]): `ingest_leases`, one
//! document per lease (`_id` = name, `owner`, `token`, `expiresAt`). Taking
//! a lease is one `findAndModify` whose filter and update read the server's
//! clock (`$$NOW`), so replicas with skewed clocks agree on who holds it:
//! it matches a lease that is free, expired or the caller's, and upserts a
//! missing one; a lease held by another owner matches nothing, and the
//! upsert's duplicate `_id` says so.
//!
//! Fencing needs no transaction: a new holder first raises `fence` on the
//! source's cursor document to its token (`$max`), and a fenced cursor write
//! matches only while `fence` still equals its token, in the same
//! single-document update that writes the cursor.

use std::time::Duration;

use chrono::{DateTime, Utc};
use mongodb::bson::{Bson, Document, doc};
use mongodb::error::{ErrorKind, WriteFailure};
use mongodb::options::ReturnDocument;

use super::MongoStore;
use crate::store::lease::{MAX_TTL, fenced_source};
use crate::store::{Checkpoint, Claim, StoreError, unavailable};

/// Whether the server refused a write as a duplicate key (here: of `_id`).
fn duplicate_key(e: &mongodb::error::Error) -> bool {
    match e.kind.as_ref() {
        ErrorKind::Command(c) => c.code == super::DUPLICATE_KEY,
        ErrorKind::Write(WriteFailure::WriteError(w)) => w.code == super::DUPLICATE_KEY,
        _ => false,
    }
}

fn token_of(d: &Document) -> Result<u64, StoreError> {
    match d.get("token") {
        Some(Bson::Int64(n)) if *n > 0 => Ok(*n as u64),
        Some(Bson::Int32(n)) if *n > 0 => Ok(*n as u64),
        _ => Err(StoreError::corrupt("a lease without a positive token")),
    }
}

impl MongoStore {
    pub(super) async fn take(&self, name: &str, owner: &str, ttl: Duration) -> Result<Claim, StoreError> {
        let ttl_ms = i64::try_from(ttl.min(MAX_TTL).as_millis()).unwrap_or(i64::MAX);
        let filter = doc! {
            "_id": name,
            "$expr": { "$or": [
                { "$eq": ["$owner", owner] },
                { "$lte": [{ "$ifNull": ["$expiresAt", Bson::Null] }, "$$NOW"] },
            ] },
        };
        let update = vec![doc! { "$set": {
            "token": { "$cond": [
                { "$eq": ["$owner", owner] },
                "$token",
                { "$add": [{ "$ifNull": ["$token", 0_i64] }, 1_i64] },
            ] },
            "owner": owner,
            "expiresAt": { "$add": ["$$NOW", ttl_ms] },
        } }];
        let taken = self
            .leases
            .find_one_and_update(filter, update)
            .upsert(true)
            .return_document(ReturnDocument::After)
            .await;
        let granted = match taken {
            Ok(Some(d)) => d,
            Ok(None) => return Err(unavailable("the lease upsert returned no document")),
            Err(e) if duplicate_key(&e) => return self.holder(name).await,
            Err(e) => return Err(unavailable(e)),
        };
        let token = token_of(&granted)?;
        if let Some(source) = fenced_source(name) {
            // From here on, a cursor write of an earlier holder matches nothing.
            self.cursors
                .update_one(doc! { "_id": source }, doc! { "$max": { "fence": token as i64 } })
                .upsert(true)
                .await
                .map_err(unavailable)?;
        }
        Ok(Claim::Granted { token })
    }

    /// Who holds `name` (read after a take found it held).
    async fn holder(&self, name: &str) -> Result<Claim, StoreError> {
        let d = self
            .leases
            .find_one(doc! { "_id": name })
            .await
            .map_err(unavailable)?
            .ok_or_else(|| unavailable("the lease was held and is gone; try again"))?;
        let owner = d.get_str("owner").unwrap_or("(unknown)").to_string();
        let until = d
            .get_datetime("expiresAt")
            .map(|t| t.to_chrono())
            .unwrap_or_else(|_| Utc::now());
        Ok(Claim::Held { owner, until })
    }

    pub(super) async fn release(&self, name: &str, owner: &str) -> Result<(), StoreError> {
        self.leases
            .update_one(
                doc! { "_id": name, "owner": owner },
                doc! { "$set": { "expiresAt": mongodb::bson::DateTime::from_chrono(DateTime::<Utc>::UNIX_EPOCH) } },
            )
            .await
            .map_err(unavailable)?;
        Ok(())
    }

    /// Writes a source's cursor: unconditionally, or (fenced) only while
    /// its lease's token is still the one the write carries.
    pub(super) async fn write_cursor(&self, checkpoint: Checkpoint) -> Result<(), StoreError> {
        let Checkpoint {
            source,
            envelope,
            fence,
        } = checkpoint;
        let set = doc! { "$set": { "cursor": envelope.to_string(), "updatedAt": mongodb::bson::DateTime::now() } };
        let Some(token) = fence else {
            self.cursors
                .update_one(doc! { "_id": &source }, set)
                .upsert(true)
                .await
                .map_err(unavailable)?;
            return Ok(());
        };
        // The holder's take created the document with its fence.
        let written = self
            .cursors
            .update_one(doc! { "_id": &source, "fence": token as i64 }, set)
            .await
            .map_err(unavailable)?;
        if written.matched_count == 0 {
            return Err(StoreError::Fenced { lease: source, token });
        }
        Ok(())
    }
}
