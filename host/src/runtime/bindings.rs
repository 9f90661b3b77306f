//! The host side of the mapper contract, in every version the host loads,
//! and the conversions between its types and the host's (`crate::event`) and,
//! for fixture checks, the guest SDK's.
//!
//! `audit:mapper@0.4.0` (`wit/mapper.wit`) and the frozen `0.3.0` and
//! `0.2.0` (`wit/0.3.0/`, `wit/0.2.0/`) share their `types` interface
//! unchanged, so one set of Rust types (0.2.0's) serves all three; 0.3.0
//! adds the `map-lines` export, 0.4.0 the `digest` import (answered by
//! [`super::sandbox`]). Which one a component is, is decided at load time
//! from its imports and exports ([`Pre::new`]).

use audit_guest_sdk as sdk;
use wasmtime::Store;
use wasmtime::component::InstancePre;

use crate::event;

/// `audit:mapper@0.2.0`.
mod v2 {
    wasmtime::component::bindgen!({
        path: "../wit/0.2.0",
        world: "mapper",
    });
}

/// `audit:mapper@0.3.0`, with 0.2.0's (identical) types.
mod v3 {
    wasmtime::component::bindgen!({
        path: "../wit/0.3.0",
        world: "mapper",
        with: {
            "audit:mapper/types@0.3.0": super::v2::audit::mapper::types,
        },
    });
}

/// `audit:mapper@0.4.0`, with 0.2.0's types and 0.3.0's file lines (both
/// identical).
mod v4 {
    wasmtime::component::bindgen!({
        path: "../wit",
        world: "mapper",
        with: {
            "audit:mapper/types@0.4.0": super::v2::audit::mapper::types,
            "audit:mapper/lines@0.4.0": super::v3::audit::mapper::lines,
        },
    });
}

pub(crate) use v2::audit::mapper::types as wit;
use v3::audit::mapper::lines::FileLines as WitFileLines;
pub(crate) use v4::audit::mapper::digest as wit_digest;

/// A component's pre-linked exports, by contract version.
pub(crate) enum Pre<T: 'static> {
    V2(v2::MapperPre<T>),
    V3(v3::MapperPre<T>),
    V4(v4::MapperPre<T>),
}

/// An instance's exports, by contract version.
pub(crate) enum Bound {
    V2(v2::Mapper),
    V3(v3::Mapper),
    V4(v4::Mapper),
}

impl<T: Send + 'static> Pre<T> {
    /// The newest contract the component fulfils. The exports of 0.4.0 and
    /// 0.3.0 are the same: a component that imports any `audit:mapper`
    /// interface of 0.4.0 (its types, `digest`) is 0.4.0.
    pub(crate) fn new(instance_pre: InstancePre<T>) -> anyhow::Result<Pre<T>> {
        let of_0_4 = instance_pre
            .component()
            .component_type()
            .imports(instance_pre.engine())
            .any(|(name, _)| name.starts_with("audit:mapper/") && name.ends_with("@0.4.0"));
        if of_0_4 {
            return v4::MapperPre::new(instance_pre)
                .map(Pre::V4)
                .map_err(|e| anyhow::anyhow!("imports audit:mapper 0.4.0 but does not export its world: {e:#}"));
        }
        if let Ok(pre) = v3::MapperPre::new(instance_pre.clone()) {
            return Ok(Pre::V3(pre));
        }
        v2::MapperPre::new(instance_pre)
            .map(Pre::V2)
            .map_err(|e| anyhow::anyhow!("does not export the audit:mapper world (0.4.0, 0.3.0 or 0.2.0): {e:#}"))
    }

    /// Instantiates it in `store`.
    pub(crate) fn instantiate(&self, store: &mut Store<T>) -> wasmtime::Result<Bound> {
        Ok(match self {
            Pre::V2(pre) => Bound::V2(pre.instantiate(&mut *store)?),
            Pre::V3(pre) => Bound::V3(pre.instantiate(&mut *store)?),
            Pre::V4(pre) => Bound::V4(pre.instantiate(&mut *store)?),
        })
    }

    /// The contract version, for logs and status.
    pub(crate) fn version(&self) -> &'static str {
        match self {
            Pre::V2(_) => "0.2.0",
            Pre::V3(_) => "0.3.0",
            Pre::V4(_) => "0.4.0",
        }
    }
}

/// A `map-delivery` or `map-lines` answer in the contract's types.
pub(crate) type WitResult = Result<wit::Mapped, wit::MappingError>;

impl Bound {
    pub(crate) fn describe<T: Send>(&self, store: &mut Store<T>) -> wasmtime::Result<wit::MapperInfo> {
        match self {
            Bound::V2(m) => m.call_describe(store),
            Bound::V3(m) => m.call_describe(store),
            Bound::V4(m) => m.call_describe(store),
        }
    }

    pub(crate) fn map_delivery<T: Send>(&self, store: &mut Store<T>, d: &wit::Delivery) -> wasmtime::Result<WitResult> {
        match self {
            Bound::V2(m) => m.call_map_delivery(store, d),
            Bound::V3(m) => m.call_map_delivery(store, d),
            Bound::V4(m) => m.call_map_delivery(store, d),
        }
    }

    pub(crate) fn page_query<T: Send>(
        &self,
        store: &mut Store<T>,
        r: wit::PageRequest,
    ) -> wasmtime::Result<Vec<wit::QueryParam>> {
        match self {
            Bound::V2(m) => m.call_page_query(store, r),
            Bound::V3(m) => m.call_page_query(store, r),
            Bound::V4(m) => m.call_page_query(store, r),
        }
    }

    /// `None` for a 0.2.0 component, which has no `map-lines`.
    pub(crate) fn map_lines<T: Send>(
        &self,
        store: &mut Store<T>,
        lines: &WitFileLines,
    ) -> Option<wasmtime::Result<Vec<WitResult>>> {
        match self {
            Bound::V2(_) => None,
            Bound::V3(m) => Some(m.call_map_lines(store, lines)),
            Bound::V4(m) => Some(m.call_map_lines(store, lines)),
        }
    }
}

pub(crate) fn delivery_to_wit(d: &event::Delivery) -> wit::Delivery {
    wit::Delivery {
        source: d.source.clone(),
        transport: match d.transport {
            event::Transport::Webhook => wit::Transport::Webhook,
            event::Transport::Poll => wit::Transport::Poll,
            event::Transport::File => wit::Transport::File,
        },
        received_at: d.received_at.clone(),
        headers: d
            .headers
            .iter()
            .map(|(name, value)| wit::Header {
                name: name.clone(),
                value: value.clone(),
            })
            .collect(),
        origin: d.origin.clone(),
        body: d.body.clone(),
    }
}

pub(crate) fn file_lines_to_wit(l: &event::FileLines) -> WitFileLines {
    WitFileLines {
        source: l.source.clone(),
        received_at: l.received_at.clone(),
        origin: l.origin.clone(),
        lines: l.lines.clone(),
    }
}

pub(crate) fn page_request_to_wit(r: &event::PageRequest) -> wit::PageRequest {
    wit::PageRequest {
        page: r.page,
        page_size: r.page_size,
    }
}

pub(crate) fn info_from_wit(i: wit::MapperInfo) -> event::MapperInfo {
    event::MapperInfo {
        name: i.name,
        version: i.version,
        event_types: i.event_types,
    }
}

pub(crate) fn params_from_wit(p: Vec<wit::QueryParam>) -> Vec<event::QueryParam> {
    p.into_iter()
        .map(|p| event::QueryParam {
            name: p.name,
            value: p.value,
        })
        .collect()
}

/// The original is JSON text from the guest, kept as text. If a guest hands
/// back text that is not JSON, keep it as a JSON string rather than lose it.
/// One parse: the checked slice is copied, not parsed a second time.
fn original_from_wit(text: String) -> event::RawJson {
    match serde_json::from_str::<&serde_json::value::RawValue>(&text) {
        Ok(raw) => event::RawJson::from_raw(raw),
        Err(_) => event::RawJson::from_value(&serde_json::Value::String(text)),
    }
}

fn event_from_wit(e: wit::AuditEvent) -> event::MappedEvent {
    event::MappedEvent {
        action: e.action,
        occurred_at: e.occurred_at,
        external_id: e.external_id,
        actor: event::Actor {
            id: e.actor.id,
            name: e.actor.name,
            email: e.actor.email,
        },
        ip: e.ip,
        target: e.target.map(|t| event::Target {
            kind: t.kind,
            id: t.id,
            name: t.name,
        }),
        outcome: match e.outcome {
            wit::Outcome::Success => event::Outcome::Success,
            wit::Outcome::Failure => event::Outcome::Failure,
            wit::Outcome::Unknown => event::Outcome::Unknown,
        },
        tenant_hint: e.tenant_hint,
        original: original_from_wit(e.original),
        unrecognised: e.unrecognised,
    }
}

pub(crate) fn result_from_wit(r: WitResult) -> Result<event::Mapped, event::MappingError> {
    match r {
        Ok(m) => Ok(event::Mapped {
            events: m.events.into_iter().map(event_from_wit).collect(),
            poll: m.poll.map(|p| event::PollPage {
                total: p.total,
                last: p.last,
            }),
        }),
        Err(wit::MappingError::Malformed(m)) => Err(event::MappingError::Malformed(m)),
        Err(wit::MappingError::UnsupportedShape(m)) => Err(event::MappingError::UnsupportedShape(m)),
    }
}

/// Fixture files hold SDK deliveries: the same delivery in the host's types.
pub(crate) fn delivery_from_sdk(d: &sdk::Delivery) -> event::Delivery {
    event::Delivery {
        source: d.source.clone(),
        transport: match d.transport {
            sdk::Transport::Poll => event::Transport::Poll,
            sdk::Transport::File => event::Transport::File,
            _ => event::Transport::Webhook,
        },
        received_at: d.received_at.clone(),
        headers: d.headers.clone(),
        origin: d.origin.clone(),
        body: d.body.clone(),
    }
}

/// Fixture files compare SDK results: a host result in the SDK's types.
pub(crate) fn result_to_sdk(r: Result<event::Mapped, event::MappingError>) -> Result<sdk::Mapped, sdk::MappingError> {
    let mapped = r.map_err(|e| match e {
        event::MappingError::Malformed(m) => sdk::MappingError::Malformed(m),
        event::MappingError::UnsupportedShape(m) => sdk::MappingError::UnsupportedShape(m),
    })?;
    let events = mapped
        .events
        .into_iter()
        .map(|e| {
            let mut out = sdk::AuditEvent::new(e.action);
            out.occurred_at = e.occurred_at;
            out.external_id = e.external_id;
            out.actor = sdk::Actor {
                id: e.actor.id,
                name: e.actor.name,
                email: e.actor.email,
            };
            out.ip = e.ip;
            out.target = e.target.map(|t| sdk::Target {
                kind: t.kind,
                id: t.id,
                name: t.name,
            });
            out.outcome = match e.outcome {
                event::Outcome::Success => sdk::Outcome::Success,
                event::Outcome::Failure => sdk::Outcome::Failure,
                event::Outcome::Unknown => sdk::Outcome::Unknown,
            };
            out.tenant_hint = e.tenant_hint;
            out.original = sdk::RawJson::from_text(e.original.get().to_string()).unwrap_or_default();
            out.unrecognised = e.unrecognised;
            out
        })
        .collect();
    let poll = mapped.poll.map(|p| sdk::PollPage {
        total: p.total,
        last: p.last,
    });
    Ok(sdk::Mapped { events, poll })
}
