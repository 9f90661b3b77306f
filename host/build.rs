//! Builds the three shipped mappers to components; `src/builtin.rs` embeds them.

fn main() {
    // MongoDB store tests run when a server is named at build time.
    println!("cargo:rustc-check-cfg=cfg(mongodb_tests)");
    println!("cargo:rerun-if-env-changed=AUDIT_TEST_MONGODB_URI");
    if std::env::var_os("AUDIT_TEST_MONGODB_URI").is_some_and(|v| !v.is_empty()) {
        println!("cargo:rustc-cfg=mongodb_tests");
    }
    guest_build::build(&[
        guest_build::Guest {
            package: "mapper-stalwart",
            features: &[],
            out_name: "stalwart.wasm",
        },
        guest_build::Guest {
            package: "mapper-authentik",
            features: &[],
            out_name: "authentik.wasm",
        },
        guest_build::Guest {
            package: "mapper-ocis",
            features: &[],
            out_name: "ocis.wasm",
        },
    ]);
}
