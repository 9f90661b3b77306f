//! Builds the probe mapper (seven variants: two against the frozen WIT 0.2.0 and 0.3.0,
//! two with a hostile `describe`) for the end-to-end tests.

fn main() {
    guest_build::build(&[
        guest_build::Guest {
            package: "probe-mapper",
            features: &[],
            out_name: "probe_v1.wasm",
        },
        guest_build::Guest {
            package: "probe-mapper",
            features: &["v2"],
            out_name: "probe_v2.wasm",
        },
        guest_build::Guest {
            package: "probe-mapper",
            features: &["as-stalwart", "v2"],
            out_name: "probe_as_stalwart.wasm",
        },
        guest_build::Guest {
            package: "probe-mapper",
            features: &["wit-0-2"],
            out_name: "probe_wit_0_2.wasm",
        },
        guest_build::Guest {
            package: "probe-mapper",
            features: &["wit-0-3"],
            out_name: "probe_wit_0_3.wasm",
        },
        guest_build::Guest {
            package: "probe-mapper",
            features: &["describe-sleeps"],
            out_name: "probe_describe_sleeps.wasm",
        },
        guest_build::Guest {
            package: "probe-mapper",
            features: &["describe-huge"],
            out_name: "probe_describe_huge.wasm",
        },
    ]);
}
