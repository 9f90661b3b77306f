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
