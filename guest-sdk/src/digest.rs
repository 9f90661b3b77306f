//! SHA-256 for mappers, with the same answer everywhere: in a component
//! built against `audit:mapper@0.4.0` the host computes it (the `digest`
//! import, natively and with the CPU's SHA instructions, several times
//! faster than SHA-256 compiled to WebAssembly); natively (tests, fixtures)
//! and in components of older contracts (the `wit-0-3` and `wit-0-2`
//! features) it is computed in place.
//!
//! Build the bytes to hash in one buffer (reused from call to call) and hash
//! them in one call: that is one crossing to the host per digest.
//!
//! ```
//! let digest = audit_guest_sdk::digest::sha256(b"abc");
//! assert_eq!(digest[..4], [0xba, 0x78, 0x16, 0xbf]);
//! ```

/// The SHA-256 digest of `data`.
#[cfg(all(target_arch = "wasm32", not(any(feature = "wit-0-2", feature = "wit-0-3"))))]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let (a, b, c, d) = crate::__bindings::audit::mapper::digest::sha256(data);
    let mut out = [0u8; 32];
    for (i, word) in [a, b, c, d].into_iter().enumerate() {
        out[i * 8..i * 8 + 8].copy_from_slice(&word.to_be_bytes());
    }
    out
}

/// The SHA-256 digest of `data`.
#[cfg(not(all(target_arch = "wasm32", not(any(feature = "wit-0-2", feature = "wit-0-3")))))]
pub fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}
