//! Which drop-in files the runtime loads: not links, not files others can
//! write, only listed digests when a list is set, and no silent takeover of
//! a built-in source.

use std::os::unix::fs::PermissionsExt;

use audit_ingest::runtime::{InstanceMode, Limits, RuntimeConfig, Trust};
use audit_ingest_tests::{PROBE_AS_STALWART, PROBE_V1, install, runtime, runtime_with};
use sha2::{Digest, Sha256};

fn version(rt: &audit_ingest::runtime::Runtime, source: &str) -> Option<String> {
    rt.mapper_id(source).map(|m| m.version)
}

#[test]
fn a_symlinked_mapper_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = tempfile::tempdir().unwrap();
    install(&elsewhere.path().join("probe.wasm"), PROBE_V1);
    std::os::unix::fs::symlink(elsewhere.path().join("probe.wasm"), dir.path().join("probe.wasm")).unwrap();
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    assert_eq!(version(&rt, "probe"), None);
    assert_eq!(rt.reload_counts(), (0, 1));
}

#[test]
fn a_mapper_file_or_directory_others_can_write_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    install(&file, PROBE_V1);
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o666)).unwrap();
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    assert_eq!(version(&rt, "probe"), None, "a world-writable file is refused");

    // Fixed, it loads at the next scan.
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    rt.rescan();
    assert_eq!(version(&rt, "probe").as_deref(), Some("1.0.0"));

    // In a directory others can write, nothing is trusted (they could swap
    // the file in it).
    let open = tempfile::tempdir().unwrap();
    install(&open.path().join("probe.wasm"), PROBE_V1);
    std::fs::set_permissions(open.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let rt = runtime(Some(open.path()), InstanceMode::Fresh, Limits::default());
    assert_eq!(version(&rt, "probe"), None, "a world-writable directory is refused");
}

#[test]
fn with_an_allow_list_only_listed_digests_load() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let config = |allowed: Vec<[u8; 32]>| RuntimeConfig {
        dir: Some(dir.path().to_path_buf()),
        trust: Trust {
            allowed_sha256: allowed,
            ..Trust::default()
        },
        ..RuntimeConfig::default()
    };
    let rt = runtime_with(config(vec![[0; 32]]));
    assert_eq!(version(&rt, "probe"), None, "an unlisted file is refused");
    let rt = runtime_with(config(vec![Sha256::digest(PROBE_V1).into()]));
    assert_eq!(version(&rt, "probe").as_deref(), Some("1.0.0"));
}

#[test]
fn taking_over_a_built_in_source_needs_fixtures_unless_the_operator_opts_out() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("stalwart.wasm"), PROBE_AS_STALWART);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    assert_eq!(
        version(&rt, "stalwart").as_deref(),
        Some("0.1.0"),
        "the built-in keeps serving"
    );
    assert_eq!(rt.reload_counts(), (0, 1));

    let rt = runtime_with(RuntimeConfig {
        dir: Some(dir.path().to_path_buf()),
        trust: Trust {
            override_without_fixtures: true,
            ..Trust::default()
        },
        ..RuntimeConfig::default()
    });
    assert_eq!(version(&rt, "stalwart").as_deref(), Some("2.0.0"));
}
