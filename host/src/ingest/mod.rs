//! The middle of the service: what happens to a delivery between its source
//! and the store.
//!
//! - `pipeline`: [`Pipeline`], the one place that maps, normalises, writes,
//!   counts and dead-letters;
//! - `normalise`: the mapper's events to store records (times, tenants,
//!   metadata);
//! - `tenants`: the tenant slugs events may be attributed to;
//! - `shutdown`: how background sources are told to stop.
//!
//! Every source gets a [`SourceContext`].

mod normalise;
mod pipeline;
mod shutdown;
mod tenants;

pub use normalise::Received;
pub use pipeline::{Delivered, Mapped, Pipeline, ResumeError};
pub use shutdown::{Shutdown, ShutdownSignal};
pub use tenants::{ActorTenants, Tenants};

use crate::health::Health;

/// What every source gets from the service.
#[derive(Clone)]
pub struct SourceContext {
    /// Where deliveries go.
    pub pipeline: Pipeline,
    /// When to stop.
    pub shutdown: Shutdown,
    /// Where a background source reports its progress.
    pub health: Health,
    /// This instance's name among those sharing the store: the owner of
    /// the leases it takes (see [`crate::lease`]).
    pub instance: String,
}
