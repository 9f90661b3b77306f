//! The mappers shipped inside the binary, built from `mappers/` by `build.rs`.
//! A file of the same mapper name in the mapper directory takes precedence.

/// Component bytes of the built-in mappers: Stalwart, Authentik, oCIS.
pub const MAPPERS: [&[u8]; 3] = [
    include_bytes!(concat!(env!("OUT_DIR"), "/stalwart.wasm")),
    include_bytes!(concat!(env!("OUT_DIR"), "/authentik.wasm")),
    include_bytes!(concat!(env!("OUT_DIR"), "/ocis.wasm")),
];
