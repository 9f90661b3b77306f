//! The fuzzers' saved corpora as regression tests: every input a fuzz run
//! kept (`tests/fuzz/corpus/<target>/`), and every crash it found and that
//! was fixed (`tests/fuzz/regressions/<target>/`), runs through the same
//! entry point as under libFuzzer (`audit_ingest_tests::fuzz`).

use std::path::{Path, PathBuf};

use audit_ingest_tests::fuzz::{NAMES, target};

fn inputs(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.flatten().map(|e| e.path()).filter(|p| p.is_file()).collect())
        .unwrap_or_default();
    files.sort();
    files
}

#[test]
fn every_saved_fuzz_input_passes_its_target() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for name in NAMES {
        let mut t = target(name).expect("a target of that name");
        let files: Vec<PathBuf> = ["corpus", "regressions"]
            .iter()
            .flat_map(|kind| inputs(&root.join(kind).join(name)))
            .collect();
        assert!(
            !files.is_empty(),
            "target `{name}` has no saved corpus under {}",
            root.display()
        );
        for file in &files {
            let data = std::fs::read(file).unwrap();
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| t.run(&data)));
            assert!(outcome.is_ok(), "{name}: {} fails", file.display());
        }
        total += files.len();
    }
    println!("{total} saved fuzz inputs replayed");
}
