//! The mappers shipped inside the binary, built from `mappers/` by `build.rs`.
//! A file of the same mapper name in the mapper directory takes precedence.

/// The Stalwart mapper component.
pub const STALWART: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/stalwart.wasm"));
/// The Authentik mapper component.
pub const AUTHENTIK: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/authentik.wasm"));
/// The oCIS mapper component.
pub const OCIS: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/ocis.wasm"));

/// Every built-in mapper.
pub const MAPPERS: [&[u8]; 3] = [STALWART, AUTHENTIK, OCIS];
