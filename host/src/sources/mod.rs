//! Sources turn the outside world into deliveries and nothing more.
//!
//! - `webhook`: pushed HTTP requests, authenticated by configuration.

pub mod webhook;
