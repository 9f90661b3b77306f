//! Every shipped mapper's golden fixtures, run again through the real
//! WebAssembly runtime (they also run natively in each mapper crate).

use std::path::Path;

use audit_ingest::builtin;
use audit_ingest::runtime::check_mapper_file;

fn check(source: &str, component: &[u8]) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = root.join("mappers").join(source).join("tests/fixtures");
    let mut inputs: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".input.json"))
        .collect();
    inputs.sort();
    assert!(!inputs.is_empty(), "fixtures exist for {source}");
    let wasm = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(wasm.path(), component).unwrap();
    let report = check_mapper_file(wasm.path(), &inputs, &audit_ingest::runtime::RuntimeConfig::default()).unwrap();
    assert_eq!(report.info.name, source);
    assert_eq!(report.cases.len(), inputs.len());
    for (name, diffs) in &report.cases {
        assert!(
            diffs.is_empty(),
            "{source}/{name} differs through wasm:\n{}",
            diffs.join("\n")
        );
    }
}

#[test]
fn stalwart_fixtures_pass_through_the_runtime() {
    check("stalwart", builtin::STALWART);
}

#[test]
fn authentik_fixtures_pass_through_the_runtime() {
    check("authentik", builtin::AUTHENTIK);
}

#[test]
fn ocis_fixtures_pass_through_the_runtime() {
    check("ocis", builtin::OCIS);
}

/// The built-in Stalwart component hashes on the host (`digest`, 0.4.0);
/// its deduplication keys must be the ones the mapper computes natively,
/// or a batch resent across an upgrade would be stored twice.
#[test]
fn stalwart_keys_hashed_by_the_host_are_the_native_keys() {
    use audit_guest_sdk::Mapper;
    let rt = audit_ingest_tests::runtime(
        None,
        audit_ingest::runtime::InstanceMode::Reuse,
        audit_ingest::runtime::Limits::default(),
    );
    for seed in 1..=5 {
        let body = audit_ingest_tests::bench::stalwart_batch(200, seed);
        let native =
            mapper_stalwart::Stalwart::map(&audit_guest_sdk::Delivery::from_body("stalwart", body.clone())).unwrap();
        let hosted = rt
            .map_blocking("stalwart", &audit_ingest::event::Delivery::from_body("stalwart", body))
            .unwrap();
        let keys = |ids: Vec<Option<String>>| {
            ids.into_iter()
                .map(|k| k.expect("every event has a key"))
                .collect::<Vec<_>>()
        };
        let native = keys(native.events.into_iter().map(|e| e.external_id).collect());
        let hosted = keys(hosted.mapped.events.into_iter().map(|e| e.external_id).collect());
        assert_eq!(native.len(), 200);
        assert_eq!(hosted, native, "batch {seed}");
    }
    let status = rt.status().into_iter().find(|m| m.name == "stalwart").unwrap();
    assert_eq!(status.contract, "0.4.0", "the built-in mapper uses the host's digest");
}
