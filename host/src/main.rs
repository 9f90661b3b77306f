//! The audit-ingest binary.
fn main() {}
