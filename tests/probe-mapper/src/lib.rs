//! A test mapper whose behaviour the payload chooses, so the runtime's limits
//! and hot reload can be tested with a real component:
//! `{"do":"echo"}` maps one event, `loop` never returns, `grow` allocates
//! without end, `trap` panics, `remember` reports how many calls this
//! instance has seen (1 with fresh instances).

use std::sync::atomic::{AtomicU64, Ordering};

use audit_guest_sdk::json::first_text;
use audit_guest_sdk::{AuditEvent, Delivery, Mapped, Mapper, MapperInfo, MappingError};

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
        MapperInfo {
            name: NAME.into(),
            version: VERSION.into(),
            event_types: vec!["echo".into()],
        }
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
            _ => Ok(vec![AuditEvent::new(format!("{NAME}.echo_v{}", &VERSION[..1])).original(body)].into()),
        }
    }
}

audit_guest_sdk::export_mapper!(Probe);
