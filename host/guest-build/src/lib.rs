//! Build-script helper: compiles workspace guest crates to `wasm32-wasip2`
//! components, in the style of wasmtime's test-programs. Nobody runs a step by
//! hand; a plain `cargo build` or `cargo test` at the root builds the guests.
//!
//! Guests go to their own target directory (`<target>/guests`), so the nested
//! cargo never waits on the lock of the build that runs it, and incremental
//! rebuilds stay cheap.

use std::path::{Path, PathBuf};
use std::process::Command;

/// A guest crate to build.
pub struct Guest<'a> {
    /// Its package name in the workspace.
    pub package: &'a str,
    /// Cargo features to enable.
    pub features: &'a [&'a str],
    /// The file name to copy the component to in `OUT_DIR`.
    pub out_name: &'a str,
}

/// The workspace root, from a crate's manifest directory (`host/` or `tests/`).
fn workspace_root(manifest_dir: &Path) -> PathBuf {
    manifest_dir
        .ancestors()
        .find(|d| std::fs::read_to_string(d.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")))
        .expect("a workspace Cargo.toml above the crate")
        .to_path_buf()
}

/// Builds each guest in release mode for `wasm32-wasip2` and copies the
/// components to `OUT_DIR`; returns their paths in the order given.
pub fn build(guests: &[Guest<'_>]) -> Vec<PathBuf> {
    let manifest_dir = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(std::env::var("OUT_DIR").expect("OUT_DIR"));
    let root = workspace_root(&manifest_dir);
    let target_dir = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"))
        .join("guests");
    for watched in ["wit", "guest-sdk", "mappers", "tests/probe-mapper", "Cargo.lock"] {
        println!("cargo:rerun-if-changed={}", root.join(watched).display());
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut outputs = Vec::new();
    for guest in guests {
        let mut cmd = Command::new(&cargo);
        cmd.current_dir(&root)
            .args([
                "build",
                "--release",
                "--target",
                "wasm32-wasip2",
                "--package",
                guest.package,
            ])
            .arg("--target-dir")
            .arg(&target_dir)
            // Small components compile faster in the host: no debug info.
            .args([
                "--config",
                "profile.release.debug=false",
                "--config",
                "profile.release.strip=true",
            ])
            // Whole-program optimisation: mapping runs once per event.
            .args([
                "--config",
                "profile.release.lto=true",
                "--config",
                "profile.release.codegen-units=1",
            ]);
        if !guest.features.is_empty() {
            cmd.arg("--features").arg(guest.features.join(","));
        }
        // The outer build's flags are for the host target, not for wasm.
        for var in [
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTFLAGS",
            "CARGO_BUILD_TARGET",
            "CARGO_TARGET_DIR",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            cmd.env_remove(var);
        }
        let status = cmd.status().expect("run cargo for a guest crate");
        assert!(
            status.success(),
            "building guest `{}` for wasm32-wasip2 failed. If the target is missing, run \
             `rustup toolchain install` in the project directory (it reads rust-toolchain.toml).",
            guest.package
        );
        let built = target_dir
            .join("wasm32-wasip2/release")
            .join(format!("{}.wasm", guest.package.replace('-', "_")));
        let dest = out_dir.join(guest.out_name);
        std::fs::copy(&built, &dest).unwrap_or_else(|e| panic!("copy {} to {}: {e}", built.display(), dest.display()));
        outputs.push(dest);
    }
    outputs
}
