//! Sources turn the outside world into deliveries and checkpoints and hand
//! them to the [`crate::ingest::Pipeline`]; none writes to the store itself.
//!
//! - `webhook`: pushed HTTP requests, authenticated by configuration.
//! - `poll`: an HTTP list fetched on an interval, resumed from a cursor.
//! - `tail`: a JSON-lines file followed line by line, resumed from an offset.

pub mod poll;
pub mod tail;
pub mod webhook;
