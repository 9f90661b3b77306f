//! Sources turn the outside world into deliveries and nothing more.
//!
//! - `webhook`: pushed HTTP requests, authenticated by configuration.
//! - `poll`: an HTTP list fetched on an interval, resumed from a cursor.

pub mod poll;
pub mod webhook;
