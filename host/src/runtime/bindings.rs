//! The host side of `wit/mapper.wit` and conversions to the SDK's plain types.

use audit_guest_sdk as sdk;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "mapper",
});

use audit::mapper::types as wit;

pub(crate) fn delivery_to_wit(d: &sdk::Delivery) -> wit::Delivery {
    wit::Delivery {
        source: d.source.clone(),
        transport: match d.transport {
            sdk::Transport::Webhook => wit::Transport::Webhook,
            sdk::Transport::Poll => wit::Transport::Poll,
            sdk::Transport::File => wit::Transport::File,
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

pub(crate) fn page_request_to_wit(r: &sdk::PageRequest) -> wit::PageRequest {
    wit::PageRequest {
        page: r.page,
        page_size: r.page_size,
    }
}

pub(crate) fn info_from_wit(i: wit::MapperInfo) -> sdk::MapperInfo {
    sdk::MapperInfo {
        name: i.name,
        version: i.version,
        event_types: i.event_types,
    }
}

pub(crate) fn params_from_wit(p: Vec<wit::QueryParam>) -> Vec<sdk::QueryParam> {
    p.into_iter()
        .map(|p| sdk::QueryParam {
            name: p.name,
            value: p.value,
        })
        .collect()
}

fn event_from_wit(e: wit::AuditEvent) -> sdk::AuditEvent {
    // The original is JSON text from the guest, kept as text. If a guest hands
    // back text that is not JSON, keep it as a JSON string rather than lose it.
    // One parse: the checked slice is copied, not parsed a second time.
    let original = match serde_json::from_str::<&serde_json::value::RawValue>(&e.original) {
        Ok(raw) => sdk::RawJson::from_raw(raw),
        Err(_) => sdk::RawJson::from_value(&serde_json::Value::String(e.original)),
    };
    sdk::AuditEvent {
        action: e.action,
        occurred_at: e.occurred_at,
        external_id: e.external_id,
        actor: sdk::Actor {
            id: e.actor.id,
            name: e.actor.name,
            email: e.actor.email,
        },
        ip: e.ip,
        target: e.target.map(|t| sdk::Target {
            kind: t.kind,
            id: t.id,
            name: t.name,
        }),
        outcome: match e.outcome {
            wit::Outcome::Success => sdk::Outcome::Success,
            wit::Outcome::Failure => sdk::Outcome::Failure,
            wit::Outcome::Unknown => sdk::Outcome::Unknown,
        },
        tenant_hint: e.tenant_hint,
        original,
        unrecognised: e.unrecognised,
    }
}

pub(crate) fn result_from_wit(r: Result<wit::Mapped, wit::MappingError>) -> Result<sdk::Mapped, sdk::MappingError> {
    match r {
        Ok(m) => Ok(sdk::Mapped {
            events: m.events.into_iter().map(event_from_wit).collect(),
            poll: m.poll.map(|p| sdk::PollPage {
                total: p.total,
                last: p.last,
            }),
        }),
        Err(wit::MappingError::Malformed(m)) => Err(sdk::MappingError::Malformed(m)),
        Err(wit::MappingError::UnsupportedShape(m)) => Err(sdk::MappingError::UnsupportedShape(m)),
    }
}
