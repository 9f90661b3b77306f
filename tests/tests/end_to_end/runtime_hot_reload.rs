//! Hot reload: a mapper replaced on disk while calls flow, broken files
//! rejected while the previous version keeps serving, fixtures that gate a
//! swap, and deletion falling back to the built-in.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use audit_ingest::event::Delivery;
use audit_ingest::runtime::{InstanceMode, Limits, Runtime};
use audit_ingest_tests::{
    PROBE_AS_STALWART, PROBE_V1, PROBE_V2, PROBE_WIT_0_2, PROBE_WIT_0_3, install, runtime, runtime_overriding_builtins,
    wait_until,
};

fn version(rt: &Runtime, source: &str) -> Option<String> {
    rt.describe(source).map(|i| i.version)
}

fn watched(dir: &std::path::Path) -> (Runtime, tokio::runtime::Runtime, audit_ingest::runtime::WatchHandle) {
    let rt = runtime_overriding_builtins(dir, InstanceMode::Fresh, Limits::default());
    let tokio = tokio::runtime::Runtime::new().unwrap();
    let handle = tokio.block_on(async { rt.watch().unwrap() });
    (rt, tokio, handle)
}

#[test]
fn a_mapper_replaced_while_calls_flow_never_fails_a_call() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    install(&file, PROBE_V1);
    let (rt, _tokio, _watch) = watched(dir.path());
    assert_eq!(version(&rt, "probe").as_deref(), Some("1.0.0"));

    let stop = Arc::new(AtomicBool::new(false));
    let calls = Arc::new(AtomicU64::new(0));
    let callers: Vec<_> = (0..2)
        .map(|_| {
            let (rt, stop, calls) = (rt.clone(), stop.clone(), calls.clone());
            std::thread::spawn(move || {
                let mut seen = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    let d = Delivery::from_body("probe", br#"{"do":"echo"}"#.to_vec());
                    let out = rt.map_blocking("probe", &d).expect("no call fails during a swap");
                    calls.fetch_add(1, Ordering::Relaxed);
                    // A steady flow, not a flood: leave the other core to the reload.
                    std::thread::sleep(Duration::from_millis(1));
                    let action = out.mapped.events[0].action.clone();
                    if seen.last() != Some(&action) {
                        seen.push(action);
                    }
                }
                seen
            })
        })
        .collect();

    wait_until(Duration::from_secs(5), || calls.load(Ordering::Relaxed) > 20).expect("calls flow");
    install(&file, PROBE_V2);
    let took = wait_until(Duration::from_secs(10), || {
        version(&rt, "probe").as_deref() == Some("2.0.0")
    })
    .expect("the new version serves");
    // How fast is a benchmark's business (BENCHMARKS.md, hot swap: ~134 ms in
    // release); here it only has to happen, while calls keep succeeding.
    eprintln!("new version serving {took:?} after the file was replaced");
    let before = calls.load(Ordering::Relaxed);
    wait_until(Duration::from_secs(5), || calls.load(Ordering::Relaxed) > before + 20).unwrap();
    stop.store(true, Ordering::Relaxed);
    for caller in callers {
        let seen = caller.join().expect("no caller panicked");
        // Each caller saw v1, then v2, and never went back.
        assert_eq!(seen, vec!["probe.echo_v1", "probe.echo_v2"]);
    }
}

#[test]
fn broken_files_are_rejected_and_the_previous_mapper_keeps_serving() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    install(&file, PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    let (_, rejected_before) = rt.reload_counts();

    // Garbage bytes.
    install(&file, b"\0asm garbage that is not a component");
    rt.rescan();
    assert_eq!(version(&rt, "probe").as_deref(), Some("1.0.0"));

    // A valid component of the wrong world (it exports nothing).
    let empty_component = wat_component();
    install(&file, &empty_component);
    rt.rescan();
    assert_eq!(version(&rt, "probe").as_deref(), Some("1.0.0"));
    let (_, rejected_after) = rt.reload_counts();
    assert_eq!(rejected_after - rejected_before, 2);

    let d = Delivery::from_body("probe", br#"{"do":"echo"}"#.to_vec());
    assert_eq!(rt.map_blocking("probe", &d).unwrap().mapper.version, "1.0.0");
}

/// Components built against the frozen `audit:mapper@0.2.0` and 0.3.0 still load and
/// maps; it is served one file line per call (it has no `map-lines`), and a
/// build of the same mapper against the current contract takes several.
#[test]
fn components_of_wit_0_2_and_0_3_still_load_beside_0_4() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    install(&file, PROBE_WIT_0_2);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    let status = rt
        .status()
        .into_iter()
        .find(|m| m.name == "probe")
        .expect("the 0.2.0 probe serves");
    assert_eq!(status.contract, "0.2.0");
    assert!(!rt.maps_lines("probe"));
    let d = Delivery::from_body("probe", br#"{"do":"echo"}"#.to_vec());
    assert_eq!(
        rt.map_blocking("probe", &d).unwrap().mapped.events[0].action,
        "probe.echo_v1"
    );
    let lines = audit_ingest::event::FileLines {
        source: "probe".into(),
        lines: vec![b"{}".to_vec()],
        ..Default::default()
    };
    assert!(
        rt.map_lines_blocking("probe", &lines).is_none(),
        "no map-lines: the caller maps line by line"
    );

    install(&file, PROBE_V1);
    rt.rescan();
    let status = rt.status().into_iter().find(|m| m.name == "probe").unwrap();
    assert_eq!(status.contract, "0.4.0");
    let lines = audit_ingest::event::FileLines {
        source: "probe".into(),
        lines: vec![
            br#"{"do":"echo"}"#.to_vec(),
            b"not json".to_vec(),
            br#"{"do":"echo"}"#.to_vec(),
        ],
        ..Default::default()
    };
    let results = rt
        .map_lines_blocking("probe", &lines)
        .expect("a 0.4.0 mapper takes lines")
        .expect("the call works");
    let ok: Vec<bool> = results.iter().map(Result::is_ok).collect();
    assert_eq!(ok, [true, false, true], "one result per line; the bad line fails alone");

    // A 0.3.0 build (no `digest` import) serves as 0.3.0, lines and all.
    install(&file, PROBE_WIT_0_3);
    rt.rescan();
    let status = rt.status().into_iter().find(|m| m.name == "probe").unwrap();
    assert_eq!(status.contract, "0.3.0");
    let results = rt
        .map_lines_blocking("probe", &lines)
        .expect("a 0.3.0 mapper takes lines")
        .expect("the call works");
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 2);
}

/// `(component)`: a valid component that fits no world of ours.
fn wat_component() -> Vec<u8> {
    // The binary encoding of an empty component: magic, version 0x0d, layer 1.
    vec![0x00, 0x61, 0x73, 0x6d, 0x0d, 0x00, 0x01, 0x00]
}

#[test]
fn failing_sidecar_fixtures_block_the_swap() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("probe.wasm");
    install(&file, PROBE_V1);
    let fixtures = dir.path().join("probe.fixtures");
    std::fs::create_dir(&fixtures).unwrap();
    std::fs::write(fixtures.join("echo.input.json"), br#"{"do":"echo"}"#).unwrap();
    std::fs::write(
        fixtures.join("echo.expected.json"),
        br#"{"events":[{"action":"probe.echo_v1","actor":{},"outcome":"unknown","original":{"do":"echo"}}]}"#,
    )
    .unwrap();
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, Limits::default());
    assert_eq!(
        version(&rt, "probe").as_deref(),
        Some("1.0.0"),
        "v1 passes its fixtures"
    );

    // v2 maps to probe.echo_v2, which the fixtures do not expect.
    install(&file, PROBE_V2);
    rt.rescan();
    assert_eq!(version(&rt, "probe").as_deref(), Some("1.0.0"), "v2 fails the fixtures");
}

#[test]
fn deleting_a_file_falls_back_to_the_built_in() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("stalwart-next.wasm");
    let (rt, _tokio, _watch) = watched(dir.path());
    assert_eq!(version(&rt, "stalwart").as_deref(), Some("0.1.0"));

    install(&file, PROBE_AS_STALWART);
    wait_until(Duration::from_secs(10), || {
        version(&rt, "stalwart").as_deref() == Some("2.0.0")
    })
    .expect("the file replaces the built-in");
    std::fs::remove_file(&file).unwrap();
    wait_until(Duration::from_secs(10), || {
        version(&rt, "stalwart").as_deref() == Some("0.1.0")
    })
    .expect("the built-in serves again");
}

/// Small deliveries to a built-in mapper are mapped on the async worker;
/// a drop-in mapper, even one that replaced the built-in, never is (a
/// hostile one must not hold a worker).
#[test]
fn only_the_builtin_mapper_maps_small_deliveries_in_place() {
    use audit_ingest::runtime::INLINE_MAX_BYTES;
    let dir = tempfile::tempdir().unwrap();
    let rt = runtime_overriding_builtins(dir.path(), InstanceMode::Fresh, Limits::default());
    assert!(rt.maps_inline("stalwart", 600));
    assert!(
        !rt.maps_inline("stalwart", INLINE_MAX_BYTES + 1),
        "a large delivery goes to the blocking pool"
    );
    assert!(!rt.maps_inline("nosuchsource", 10));
    install(&dir.path().join("stalwart.wasm"), PROBE_AS_STALWART);
    rt.rescan();
    assert!(
        !rt.maps_inline("stalwart", 600),
        "the drop-in that replaced the built-in"
    );
}
