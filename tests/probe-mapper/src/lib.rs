//! A test mapper whose behaviour the payload chooses, so the runtime's limits
//! and hot reload can be tested with a real component:
//! `{"do":"echo"}` maps one event, `loop` never returns, `grow` allocates
//! without end, `trap` panics, `remember` reports how many calls this
//! instance has seen (1 with fresh instances).
//!
//! Hostile modes, each of which the host must cut off and survive:
//! `sleep` (`std::thread::sleep` for 30 s), `sleep-forever`, `wait` (a poll
//! on a pollable that is never ready), `alias` (10,000 events whose action
//! strings all point at one 1 MiB buffer, so that lifting them naively would
//! copy 10 GiB), `many` (`{"do":"many","n":N}` events), `big-field` (a 1 MiB
//! actor name), `spin` (`n` iterations of busy work, then one event with
//! the body's `id` as external id), `stderr` (a line of stderr, then an echo), `grow-table`
//! (host resource handles without end). Page 7 of `page-query` sleeps; the
//! `describe-sleeps` and `describe-huge` builds make `describe` hostile.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use audit_guest_sdk::json::first_text;
use audit_guest_sdk::{AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError, PageRequest, QueryParam};

/// The probe.
pub struct Probe;

static CALLS: AtomicU64 = AtomicU64::new(0);

const NAME: &str = if cfg!(feature = "as-stalwart") {
    "stalwart"
} else {
    "probe"
};
const VERSION: &str = if cfg!(feature = "v2") { "2.0.0" } else { "1.0.0" };

impl Mapper for Probe {
    fn describe() -> MapperInfo {
        if cfg!(feature = "describe-sleeps") {
            std::thread::sleep(Duration::from_secs(30));
        }
        if cfg!(feature = "describe-huge") {
            return MapperInfo {
                name: "p".repeat(1 << 20),
                version: VERSION.into(),
                event_types: (0..100_000).map(|i| format!("type-{i}")).collect(),
            };
        }
        MapperInfo {
            name: NAME.into(),
            version: VERSION.into(),
            event_types: vec!["echo".into()],
        }
    }

    fn page_query(request: &PageRequest) -> Vec<QueryParam> {
        if request.page == 7 {
            std::thread::sleep(Duration::from_secs(30));
        }
        vec![QueryParam {
            name: "page".into(),
            value: request.page.to_string(),
        }]
    }

    fn map(delivery: &Delivery) -> Result<Mapped, MappingError> {
        let calls = CALLS.fetch_add(1, Ordering::SeqCst) + 1;
        let body = delivery.json()?;
        let action = first_text(&body, &["do"]).unwrap_or_else(|| "echo".into());
        match action.as_str() {
            "loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            "trap" => panic!("the probe was asked to trap"),
            "reject" => Err(MappingError::UnsupportedShape("the probe was asked to reject".into())),
            "remember" => Ok(vec![AuditEvent::new(format!("probe.calls_{calls}"))].into()),
            "sleep" => {
                std::thread::sleep(Duration::from_secs(30));
                Ok(vec![AuditEvent::new("probe.slept")].into())
            }
            "sleep-forever" => {
                std::thread::sleep(Duration::MAX);
                Ok(vec![AuditEvent::new("probe.slept")].into())
            }
            "wait" => {
                hostile::wait_forever();
                Ok(vec![AuditEvent::new("probe.waited")].into())
            }
            "grow-table" => {
                hostile::hold_handles();
                Ok(vec![AuditEvent::new("probe.held")].into())
            }
            "alias" => Ok(hostile::aliased_events(10_000, 1 << 20).into()),
            "many" => {
                let n = body.get("n").and_then(|n| n.as_u64()).unwrap_or(10);
                Ok((0..n)
                    .map(|i| AuditEvent::new(format!("probe.many_{i}")))
                    .collect::<Vec<_>>()
                    .into())
            }
            "big-field" => {
                let mut e = AuditEvent::new("probe.big");
                e.actor.name = Some("n".repeat(1 << 20));
                Ok(vec![e].into())
            }
            "spin" => {
                let n = body.get("n").and_then(|n| n.as_u64()).unwrap_or(1_000_000);
                let mut x: u64 = 1;
                for i in 0..n {
                    x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(i | 1);
                }
                let mut e = AuditEvent::new("probe.spun");
                e.external_id = first_text(&body, &["id"]);
                e.actor.id = Some(format!("{:x}", x >> 48));
                Ok(vec![e].into())
            }
            "stderr" => {
                eprintln!("probe call {calls}: a line of diagnostics a chatty mapper writes on every call");
                Ok(vec![AuditEvent::new(format!("{NAME}.echo_v{}", &VERSION[..1])).original(body)].into())
            }
            _ => Ok(vec![AuditEvent::new(format!("{NAME}.echo_v{}", &VERSION[..1])).original(body)].into()),
        }
    }
}

audit_guest_sdk::export_mapper!(Probe);

/// What a hostile mapper does beyond the standard library.
mod hostile {
    use audit_guest_sdk::AuditEvent;

    /// Polls a clock pollable that is due in 584 years.
    pub fn wait_forever() {
        #[cfg(target_arch = "wasm32")]
        {
            let due = wasip2::clocks::monotonic_clock::subscribe_duration(u64::MAX);
            wasip2::io::poll::poll(&[&due]);
        }
    }

    /// Takes a new stderr handle again and again, keeping every one.
    pub fn hold_handles() {
        #[cfg(target_arch = "wasm32")]
        {
            let mut held = Vec::new();
            loop {
                held.push(wasip2::cli::stderr::get_stderr());
            }
        }
    }

    /// `count` events whose actions are all the same `bytes`-long string:
    /// one buffer, `count` string headers pointing at it. (Each `String`
    /// claims the buffer; the host must refuse the answer before it is
    /// handed back and freed, so no string is ever freed twice.)
    #[allow(unsafe_code, reason = "a hostile mapper aliases its output on purpose")]
    pub fn aliased_events(count: usize, bytes: usize) -> Vec<AuditEvent> {
        let shared: &'static mut str = "a".repeat(bytes).leak();
        let (ptr, len) = (shared.as_mut_ptr(), shared.len());
        (0..count)
            // SAFETY: deliberately not: every String aliases one leaked
            // buffer. They are only read (lowered for the host) before the
            // call is refused; none is mutated or dropped in the guest.
            .map(|_| AuditEvent::new(unsafe { String::from_raw_parts(ptr, len, len) }))
            .collect()
    }
}
