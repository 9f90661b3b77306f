//! Dead letters in MongoDB, whatever their size. A body of up to
//! [`INLINE_BODY_BYTES`] is kept in the letter's document; a larger one
//! (a 16 MiB webhook body, a 32 MiB poll page: both accepted, both over
//! MongoDB's document limit once the letter's other fields are added) is
//! split into `dead_letter_chunks` documents (`letter`, `n`, `data`, the
//! GridFS layout without its files collection), written before the letter
//! that names them, so a letter never exists without its body. The letter
//! says `bodyChunks` and `bodyBytes` instead of `body`; reading puts the
//! body back together and checks its length; deleting a letter deletes its
//! chunks.

use futures_util::TryStreamExt;
use mongodb::bson::{self, Bson, Document, doc, oid::ObjectId};

use super::{MongoStore, read_failed};
use crate::store::{DeadLetter, StoreError, unavailable};

/// The largest body kept inside the letter's own document.
pub const INLINE_BODY_BYTES: usize = 4 * 1024 * 1024;
/// The size of one chunk of a larger body.
const CHUNK_BYTES: usize = 4 * 1024 * 1024;

fn binary(bytes: Vec<u8>) -> Bson {
    Bson::Binary(bson::Binary {
        subtype: bson::spec::BinarySubtype::Generic,
        bytes,
    })
}

/// The letter's document without its body.
fn letter_doc(letter: &DeadLetter) -> Document {
    doc! {
        "source": &letter.source,
        "receivedAt": bson::DateTime::from_chrono(letter.received_at),
        "sender": super::opt(&letter.sender),
        "mapper": super::opt(&letter.mapper),
        "error": &letter.error,
        "transport": serde_json::to_value(letter.transport).ok().and_then(|t| t.as_str().map(str::to_string)),
        "headers": letter.headers.iter().map(|(n, v)| vec![n.clone(), v.clone()]).collect::<Vec<_>>(),
        "origin": super::opt(&letter.origin),
    }
}

impl MongoStore {
    pub(super) async fn save_letter(&self, letter: DeadLetter) -> Result<String, StoreError> {
        let id = ObjectId::new();
        let mut doc = letter_doc(&letter);
        doc.insert("_id", id);
        if letter.body.len() <= INLINE_BODY_BYTES {
            doc.insert("body", binary(letter.body));
        } else {
            let chunks: Vec<Document> = letter
                .body
                .chunks(CHUNK_BYTES)
                .enumerate()
                .map(|(n, data)| doc! { "letter": id, "n": n as i32, "data": binary(data.to_vec()) })
                .collect();
            doc.insert("bodyChunks", chunks.len() as i32);
            doc.insert("bodyBytes", letter.body.len() as i64);
            // One chunk per command: each is well under the document limit,
            // and a batch of them could exceed the 48 MB message limit.
            for chunk in chunks {
                self.letter_chunks.insert_one(chunk).await.map_err(unavailable)?;
            }
        }
        self.dead_letters.insert_one(doc).await.map_err(unavailable)?;
        Ok(id.to_hex())
    }

    /// The body of the letter `d`: inline, or put back together.
    pub(super) async fn body_of(&self, d: &Document) -> Result<Vec<u8>, StoreError> {
        let corrupt = |what: &str| {
            StoreError::corrupt(format!(
                "dead letter {}: {what}",
                d.get("_id").map_or_else(String::new, |i| i.to_string())
            ))
        };
        if let Ok(body) = d.get_binary_generic("body") {
            return Ok(body.clone());
        }
        let (Ok(id), Ok(expected)) = (d.get_object_id("_id"), d.get_i64("bodyBytes")) else {
            return Err(corrupt("no body"));
        };
        let chunks: Vec<Document> = self
            .letter_chunks
            .find(doc! { "letter": id })
            .sort(doc! { "n": 1 })
            .max_time(crate::store::READ_BUDGET)
            .await
            .map_err(read_failed)?
            .try_collect()
            .await
            .map_err(read_failed)?;
        let mut body = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
        for (n, chunk) in chunks.iter().enumerate() {
            if chunk.get_i32("n").ok() != Some(n as i32) {
                return Err(corrupt(&format!("body chunk {n} is missing")));
            }
            body.extend_from_slice(
                chunk
                    .get_binary_generic("data")
                    .map_err(|_| corrupt("a body chunk without data"))?,
            );
        }
        if body.len() as i64 != expected {
            return Err(corrupt(&format!("its body has {} of {expected} bytes", body.len())));
        }
        Ok(body)
    }

    /// Deletes the letters `ids` and their chunks; how many letters.
    pub(super) async fn delete_letters(&self, ids: Vec<Bson>) -> Result<u64, StoreError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let deleted = self
            .dead_letters
            .delete_many(doc! { "_id": { "$in": ids.clone() } })
            .await
            .map_err(unavailable)?
            .deleted_count;
        // After the letters: a crash in between leaves chunks no letter
        // names (garbage), never a letter without its body.
        self.letter_chunks
            .delete_many(doc! { "letter": { "$in": ids } })
            .await
            .map_err(unavailable)?;
        Ok(deleted)
    }
}
