//! A misbehaving mapper fails only its own call, within the bound, with a
//! clear reason, and the next call is served normally.

use std::time::{Duration, Instant};

use audit_ingest::event::Delivery;
use audit_ingest::runtime::{CallFailure, InstanceMode, Limits, MapError};
use audit_ingest_tests::{PROBE_V1, install, runtime};

/// Generous, so that a slow or loaded machine still finishes a trap or a
/// memory cap inside it; the loop is then cut by it, well below its own end.
const LIMITS: Limits = Limits {
    deadline: Duration::from_secs(2),
    memory_bytes: 16 << 20,
    output_bytes: 4 << 20,
    events_per_call: 1000,
    field_bytes: 4096,
};

fn probe_delivery(what: &str) -> Delivery {
    Delivery::from_body("probe", format!(r#"{{"do":"{what}"}}"#).into_bytes())
}

fn failure(result: Result<audit_ingest::runtime::MapOutput, MapError>) -> CallFailure {
    match result {
        Err(MapError::Failed { failure, .. }) => failure,
        other => panic!("expected a failed call, got {other:?}"),
    }
}

fn check_mode(mode: InstanceMode) {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(dir.path()), mode, LIMITS);

    let started = Instant::now();
    let looped = failure(rt.map_blocking("probe", &probe_delivery("loop")));
    let took = started.elapsed();
    assert!(matches!(looped, CallFailure::TimedOut(_)), "{looped:?}");
    // Interrupted by the deadline, not by anything slower (generous bound: a
    // correctness check, the deadline itself is measured in BENCHMARKS.md).
    assert!(took < Duration::from_secs(10), "the loop ran for {took:?}");

    let grew = failure(rt.map_blocking("probe", &probe_delivery("grow")));
    assert!(matches!(grew, CallFailure::OutOfMemory(_)), "{grew:?}");

    let trapped = failure(rt.map_blocking("probe", &probe_delivery("trap")));
    match &trapped {
        CallFailure::Trapped(detail) => assert!(
            detail.contains("the probe was asked to trap"),
            "the panic message is reported: {detail}"
        ),
        other => panic!("expected a trap, got {other:?}"),
    }

    // The host keeps serving: the same mapper answers the next call normally.
    let ok = rt
        .map_blocking("probe", &probe_delivery("echo"))
        .expect("a normal call works");
    assert_eq!(ok.mapped.events[0].action, "probe.echo_v1");
    assert_eq!(ok.mapper.to_string(), "probe@1.0.0");
}

#[test]
fn fresh_instances_bound_cpu_and_memory_and_survive_traps() {
    check_mode(InstanceMode::Fresh);
}

#[test]
fn reused_instances_bound_cpu_and_memory_and_survive_traps() {
    check_mode(InstanceMode::Reuse);
}

#[test]
fn fresh_instances_never_carry_state_from_one_call_to_the_next() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, LIMITS);
    for _ in 0..3 {
        let out = rt.map_blocking("probe", &probe_delivery("remember")).unwrap();
        assert_eq!(out.mapped.events[0].action, "probe.calls_1");
    }
}

#[test]
fn a_rejection_is_the_mappers_answer_not_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::Fresh, LIMITS);
    match rt.map_blocking("probe", &probe_delivery("reject")) {
        Err(MapError::Rejected { mapper, error }) => {
            assert_eq!(mapper.name, "probe");
            assert!(error.to_string().contains("asked to reject"));
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert!(matches!(
        rt.map_blocking("nobody", &probe_delivery("echo")),
        Err(MapError::NoMapper(s)) if s == "nobody"
    ));
}

#[test]
fn reused_instances_are_replaced_after_a_failure() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::Reuse, LIMITS);
    let count = |rt: &audit_ingest::runtime::Runtime| {
        rt.map_blocking("probe", &probe_delivery("remember"))
            .unwrap()
            .mapped
            .events[0]
            .action
            .clone()
    };
    assert_eq!(count(&rt), "probe.calls_1");
    assert_eq!(count(&rt), "probe.calls_2", "a warm instance is reused");
    let _ = rt.map_blocking("probe", &probe_delivery("trap"));
    assert_eq!(count(&rt), "probe.calls_1", "the trapped instance was not reused");
}

#[test]
fn by_default_drop_in_mappers_get_a_fresh_instance_per_call() {
    let dir = tempfile::tempdir().unwrap();
    install(&dir.path().join("probe.wasm"), PROBE_V1);
    let rt = runtime(Some(dir.path()), InstanceMode::default(), LIMITS);
    for _ in 0..3 {
        let out = rt.map_blocking("probe", &probe_delivery("remember")).unwrap();
        assert_eq!(out.mapped.events[0].action, "probe.calls_1");
    }
}
