//! The host's own vocabulary for what goes into a mapper and what comes out:
//! deliveries, mapped events, raw JSON. The store, the sources and the API
//! speak these types; the guest SDK (what mapper authors depend on, with its
//! own semver) is converted to and from only in `runtime/`.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON kept as text, exactly as written: stored and returned without being
/// parsed into a tree and printed again.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps text that must be valid JSON.
    pub fn from_text(text: String) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text).map(RawJson)
    }

    /// Copies raw JSON as it is (no parsing, no printing).
    pub fn from_raw(raw: &RawValue) -> RawJson {
        RawJson(raw.to_owned())
    }

    /// Serialises a value.
    pub fn from_value(value: &serde_json::Value) -> RawJson {
        RawJson::from_serialize(value)
    }

    /// Serialises anything serialisable (`null` if it cannot be).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> RawJson {
        serde_json::value::to_raw_value(value).map(RawJson).unwrap_or_default()
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// The raw value itself, to serialise as it is.
    pub fn raw(&self) -> &RawValue {
        &self.0
    }

    /// Parses it into a value (`Null` if it somehow is not JSON).
    pub fn parse(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or_default()
    }
}

impl Default for RawJson {
    /// `null`.
    fn default() -> Self {
        RawJson(Box::<RawValue>::default())
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

/// How a delivery reached the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    /// An HTTP request pushed by the source.
    #[default]
    Webhook,
    /// A page fetched by the host's poller.
    Poll,
    /// Lines of a tailed file.
    File,
}

/// One unit of input, as the host hands it to a mapper.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Delivery {
    /// The configured source name.
    pub source: String,
    /// How it arrived.
    pub transport: Transport,
    /// When the host received it (RFC 3339, milliseconds).
    pub received_at: String,
    /// Lower-case header names with their values (credentials removed).
    pub headers: Vec<(String, String)>,
    /// Sender address, polled URL or file path.
    pub origin: Option<String>,
    /// The raw bytes.
    pub body: Vec<u8>,
}

impl Delivery {
    /// A webhook delivery with only a source name and a body.
    pub fn from_body(source: &str, body: Vec<u8>) -> Delivery {
        Delivery {
            source: source.to_string(),
            received_at: "1970-01-01T00:00:00.000Z".to_string(),
            body,
            ..Delivery::default()
        }
    }
}

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It was refused or failed.
    Failure,
    /// The payload does not say.
    #[default]
    Unknown,
}

impl Outcome {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Unknown => "unknown",
        }
    }
}

/// Who performed the action.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Actor {
    /// A stable identifier in the source system.
    pub id: Option<String>,
    /// A login or display name.
    pub name: Option<String>,
    /// An e-mail address.
    pub email: Option<String>,
}

/// What the action was performed on.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Target {
    /// The kind of object.
    pub kind: Option<String>,
    /// Its identifier.
    pub id: Option<String>,
    /// Its name.
    pub name: Option<String>,
}

/// One event as a mapper returned it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MappedEvent {
    /// Dotted verb, `<source>.<verb>`.
    pub action: String,
    /// When it happened (RFC 3339), if the payload says.
    pub occurred_at: Option<String>,
    /// The deduplication key within the source.
    pub external_id: Option<String>,
    /// Who did it.
    pub actor: Actor,
    /// The client IP.
    pub ip: Option<String>,
    /// What it was done to.
    pub target: Option<Target>,
    /// Success, failure or unknown.
    pub outcome: Outcome,
    /// A hint for the tenant.
    pub tenant_hint: Option<String>,
    /// The original event, verbatim.
    pub original: RawJson,
    /// The mapper used a catch-all verb.
    pub unrecognised: bool,
}

/// Poll only: what a fetched page says about its list.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct PollPage {
    /// Items in the whole list when the page was served, if known.
    pub total: Option<u64>,
    /// No page follows this one.
    pub last: bool,
}

/// What a mapper made of one delivery.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Mapped {
    /// The events, in write order.
    pub events: Vec<MappedEvent>,
    /// Poll deliveries: what the page says about the list.
    pub poll: Option<PollPage>,
}

/// A mapping failure the mapper reported on purpose.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    /// The payload is not in a format the mapper understands.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The payload parsed, but its shape is unknown.
    #[error("unsupported payload shape: {0}")]
    UnsupportedShape(String),
}

/// What a mapper says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MapperInfo {
    /// Its name: the source it serves.
    pub name: String,
    /// Its version.
    pub version: String,
    /// The source event types it maps deliberately.
    pub event_types: Vec<String>,
}

/// Which page of a poll source's list the host wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageRequest {
    /// The page number, from 1.
    pub page: u32,
    /// The page size wanted.
    pub page_size: u32,
}

/// A query parameter of a poll request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryParam {
    /// Name.
    pub name: String,
    /// Value, not URL-encoded.
    pub value: String,
}

/// Consecutive lines of one tailed file, for one `map-lines` call.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileLines {
    /// The configured source name.
    pub source: String,
    /// When the host read them (RFC 3339, milliseconds).
    pub received_at: String,
    /// The file's path.
    pub origin: Option<String>,
    /// The lines in file order, without line terminators.
    pub lines: Vec<Vec<u8>>,
}
