//! Retention in MongoDB: the same batched deletion as the embedded store,
//! not a TTL index. A TTL index deletes on the server's schedule with one
//! period per index, cannot hand the records to an export first, and
//! leaves nothing to count or log; batches found and deleted here keep
//! per-source periods, the export and the metric for both backends alike.

use futures_util::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};

use super::{MongoStore, doc_to_record, object_id, read_failed};
use crate::store::{Expiry, Record, StoreError, unavailable};

impl MongoStore {
    /// The sources `collection` holds (by the `source` index).
    async fn sources_in(collection: &mongodb::Collection<Document>) -> Result<Vec<String>, StoreError> {
        let values = collection.distinct("source", doc! {}).await.map_err(read_failed)?;
        Ok(values
            .into_iter()
            .filter_map(|v| match v {
                Bson::String(s) => Some(s),
                _ => None,
            })
            .collect())
    }

    pub(super) async fn expiring_records(&self, expiry: &Expiry, limit: usize) -> Result<Vec<Record>, StoreError> {
        let mut due = self.due_in(&self.events, expiry, limit).await?;
        // Superseded records expire by the same periods.
        let room = limit.saturating_sub(due.len());
        if room > 0 {
            due.extend(self.due_in(&self.superseded, expiry, room).await?);
        }
        Ok(due)
    }

    async fn due_in(
        &self,
        collection: &mongodb::Collection<Document>,
        expiry: &Expiry,
        limit: usize,
    ) -> Result<Vec<Record>, StoreError> {
        let mut due = Vec::new();
        for source in Self::sources_in(collection).await? {
            let Some(cutoff) = expiry.cutoff(&source) else {
                continue;
            };
            let room = limit.saturating_sub(due.len());
            if room == 0 {
                break;
            }
            // Only this service's documents: another program's (another `_id`
            // type, no date) are not its to delete.
            let filter = doc! {
                "source": &source,
                "at": { "$lt": bson::DateTime::from_chrono(cutoff) },
                "_id": { "$type": "objectId" },
            };
            let docs: Vec<Document> = collection
                .find(filter)
                .sort(doc! { "at": 1, "_id": 1 })
                .limit(room as i64)
                .max_time(crate::store::READ_BUDGET)
                .await
                .map_err(read_failed)?
                .try_collect()
                .await
                .map_err(read_failed)?;
            for d in &docs {
                match doc_to_record(d) {
                    Ok(r) => due.push(r),
                    Err(e) => tracing::warn!(error = %e, "retention: passing over a document that is not a record"),
                }
            }
        }
        Ok(due)
    }

    pub(super) async fn delete_records(&self, ids: Vec<String>) -> Result<u64, StoreError> {
        let oids = ids
            .iter()
            .map(|id| object_id(id, "record"))
            .collect::<Result<Vec<ObjectId>, _>>()?;
        if oids.is_empty() {
            return Ok(0);
        }
        let mut deleted = 0;
        for collection in [&self.events, &self.superseded] {
            deleted += collection
                .delete_many(doc! { "_id": { "$in": oids.clone() } })
                .await
                .map_err(unavailable)?
                .deleted_count;
        }
        Ok(deleted)
    }

    pub(super) async fn delete_dead_letters(&self, expiry: &Expiry, limit: usize) -> Result<u64, StoreError> {
        let mut deleted = 0;
        for source in Self::sources_in(&self.dead_letters).await? {
            let Some(cutoff) = expiry.cutoff(&source) else {
                continue;
            };
            let room = limit.saturating_sub(deleted as usize);
            if room == 0 {
                break;
            }
            let ids: Vec<Bson> = self
                .dead_letters
                .find(doc! { "source": &source, "receivedAt": { "$lt": bson::DateTime::from_chrono(cutoff) } })
                .projection(doc! { "_id": 1 })
                .limit(room as i64)
                .max_time(crate::store::READ_BUDGET)
                .await
                .map_err(read_failed)?
                .try_collect::<Vec<Document>>()
                .await
                .map_err(read_failed)?
                .into_iter()
                .filter_map(|d| d.get("_id").cloned())
                .collect();
            if ids.is_empty() {
                continue;
            }
            deleted += self.delete_letters(ids).await?;
        }
        Ok(deleted)
    }
}
