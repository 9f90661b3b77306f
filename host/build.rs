//! Builds the three shipped mappers to components; `src/builtin.rs` embeds them.

fn main() {
    guest_build::build(&[
        guest_build::Guest { package: "mapper-stalwart", features: &[], out_name: "stalwart.wasm" },
        guest_build::Guest { package: "mapper-authentik", features: &[], out_name: "authentik.wasm" },
        guest_build::Guest { package: "mapper-ocis", features: &[], out_name: "ocis.wasm" },
    ]);
}
