//! The mapper's input and output types, mirroring `wit/mapper.wit` as plain Rust.
//!
//! These types compile on every target, so a mapper's logic runs under a native
//! `cargo test` exactly as it does inside the component.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// JSON kept as text, exactly as written: stored and returned without being
/// parsed into a tree and printed again.
///
/// ```
/// use audit_guest_sdk::RawJson;
/// let raw = RawJson::from_value(&serde_json::json!({"spanId": 1432795264225280001u64}));
/// assert_eq!(raw.get(), r#"{"spanId":1432795264225280001}"#);
/// assert_eq!(raw.parse()["spanId"], 1432795264225280001u64);
/// ```
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(transparent)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Wraps text that must be valid JSON.
    pub fn from_text(text: String) -> Result<RawJson, serde_json::Error> {
        RawValue::from_string(text).map(RawJson)
    }

    /// The JSON text, without copying it.
    pub fn into_string(self) -> String {
        let text: Box<str> = self.0.into();
        text.into()
    }

    /// Copies raw JSON as it is (no parsing, no printing).
    pub fn from_raw(raw: &RawValue) -> RawJson {
        RawJson(raw.to_owned())
    }

    /// Serialises a value.
    pub fn from_value(value: &serde_json::Value) -> RawJson {
        RawJson::from_serialize(value)
    }

    /// Serialises anything serialisable (without parsing the result again).
    pub fn from_serialize<T: Serialize + ?Sized>(value: &T) -> RawJson {
        RawJson(serde_json::value::to_raw_value(value).expect("the value serialises to JSON"))
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Parses it into a value (`Null` if it somehow is not JSON).
    pub fn parse(&self) -> serde_json::Value {
        serde_json::from_str(self.get()).unwrap_or_default()
    }
}

impl Default for RawJson {
    fn default() -> Self {
        RawJson(RawValue::from_string("null".into()).expect("null is JSON"))
    }
}

impl PartialEq for RawJson {
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl From<serde_json::Value> for RawJson {
    fn from(value: serde_json::Value) -> Self {
        RawJson::from_value(&value)
    }
}

impl From<&serde_json::Value> for RawJson {
    fn from(value: &serde_json::Value) -> Self {
        RawJson::from_value(value)
    }
}

/// How a delivery reached the host.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Transport {
    /// An HTTP request pushed by the source.
    #[default]
    Webhook,
    /// A page fetched by the host's poller.
    Poll,
    /// One line of a tailed file.
    File,
}

/// One unit of input: a webhook body, a poll response page, or one file line.
///
/// ```
/// use audit_guest_sdk::Delivery;
/// let d = Delivery::from_body("stalwart", br#"{"events":[]}"#.to_vec());
/// assert_eq!(d.json().unwrap()["events"], serde_json::json!([]));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Delivery {
    /// The configured source name.
    pub source: String,
    /// How it arrived.
    pub transport: Transport,
    /// When the host received it (RFC 3339).
    pub received_at: String,
    /// Lower-case header names with their values.
    pub headers: Vec<(String, String)>,
    /// Sender address, polled URL or file path.
    pub origin: Option<String>,
    /// The raw bytes.
    #[serde(skip)]
    pub body: Vec<u8>,
}

impl Delivery {
    /// A webhook delivery with only a source name and a body, for tests and examples.
    pub fn from_body(source: &str, body: Vec<u8>) -> Self {
        Delivery {
            source: source.to_string(),
            received_at: "1970-01-01T00:00:00.000Z".to_string(),
            body,
            ..Delivery::default()
        }
    }

    /// The body parsed as JSON, or a [`MappingError::Malformed`] saying why not.
    ///
    /// ```
    /// use audit_guest_sdk::{Delivery, MappingError};
    /// let d = Delivery::from_body("x", b"not json".to_vec());
    /// assert!(matches!(d.json(), Err(MappingError::Malformed(_))));
    /// ```
    pub fn json(&self) -> Result<serde_json::Value, MappingError> {
        serde_json::from_slice(&self.body).map_err(|e| MappingError::Malformed(format!("body is not JSON: {e}")))
    }

    /// The first value of a header (name compared case-insensitively).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Consecutive lines of one tailed file, read together: what
/// [`Mapper::map_lines`](crate::Mapper::map_lines) gets.
///
/// ```
/// use audit_guest_sdk::{FileLines, Transport};
/// let lines = FileLines { source: "ocis".into(), lines: vec![b"{}".to_vec(), b"[]".to_vec()], ..FileLines::default() };
/// let first = lines.deliveries().next().unwrap();
/// assert_eq!((first.transport, first.body.as_slice()), (Transport::File, &b"{}"[..]));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct FileLines {
    /// The configured source name.
    pub source: String,
    /// When the host read them (RFC 3339).
    pub received_at: String,
    /// The file's path.
    pub origin: Option<String>,
    /// The lines in file order, without line terminators.
    pub lines: Vec<Vec<u8>>,
}

impl FileLines {
    /// Each line as the `file` delivery the host would send for it alone.
    pub fn deliveries(&self) -> impl Iterator<Item = Delivery> + '_ {
        self.lines.iter().map(|line| Delivery {
            source: self.source.clone(),
            transport: Transport::File,
            received_at: self.received_at.clone(),
            headers: Vec::new(),
            origin: self.origin.clone(),
            body: line.clone(),
        })
    }
}

/// Whether the audited action succeeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Outcome {
    /// It succeeded.
    Success,
    /// It was refused or failed.
    Failure,
    /// The payload does not say.
    #[default]
    Unknown,
}

/// Who performed the action.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Actor {
    /// A stable identifier in the source system.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A login or display name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// An e-mail address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
}

/// What the action was performed on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(default)]
pub struct Target {
    /// The kind of object (`account`, `message`, `file`, ...).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// A stable identifier of the object.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// A human-readable name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
}

/// One normalised audit event. Build it with [`AuditEvent::new`] and the chained setters.
///
/// ```
/// use audit_guest_sdk::{AuditEvent, Outcome};
/// let e = AuditEvent::new("stalwart.auth_failed")
///     .occurred_at("2025-06-15T15:06:41Z")
///     .actor_name("jdoe")
///     .ip("198.51.100.7")
///     .outcome(Outcome::Failure);
/// assert_eq!(e.actor.name.as_deref(), Some("jdoe"));
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct AuditEvent {
    /// Dotted verb, `<source>.<verb>`.
    pub action: String,
    /// When it happened (RFC 3339), if the payload says.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub occurred_at: Option<String>,
    /// The deduplication key within the source.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_id: Option<String>,
    /// Who did it.
    pub actor: Actor,
    /// Client IP address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    /// What it was done to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<Target>,
    /// Success, failure or unknown.
    pub outcome: Outcome,
    /// A hint for tenant inference.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tenant_hint: Option<String>,
    /// The original event, kept verbatim as metadata.
    pub original: RawJson,
    /// True when a catch-all verb was used.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub unrecognised: bool,
}

impl AuditEvent {
    /// A new event with the given dotted action and nothing else set.
    pub fn new(action: impl Into<String>) -> Self {
        AuditEvent {
            action: action.into(),
            ..AuditEvent::default()
        }
    }

    /// Sets when it happened (RFC 3339).
    pub fn occurred_at(mut self, at: impl Into<String>) -> Self {
        self.occurred_at = Some(at.into());
        self
    }

    /// Sets the deduplication key.
    pub fn external_id(mut self, id: impl Into<String>) -> Self {
        self.external_id = Some(id.into());
        self
    }

    /// Sets the actor's stable id.
    pub fn actor_id(mut self, id: impl Into<String>) -> Self {
        self.actor.id = Some(id.into());
        self
    }

    /// Sets the actor's name; a value containing `@` also fills the e-mail when none is set.
    pub fn actor_name(mut self, name: impl Into<String>) -> Self {
        let name = name.into();
        if self.actor.email.is_none() && name.contains('@') {
            self.actor.email = Some(name.clone());
        }
        self.actor.name = Some(name);
        self
    }

    /// Sets the actor's e-mail address.
    pub fn actor_email(mut self, email: impl Into<String>) -> Self {
        self.actor.email = Some(email.into());
        self
    }

    /// Sets the client IP.
    pub fn ip(mut self, ip: impl Into<String>) -> Self {
        self.ip = Some(ip.into());
        self
    }

    /// Sets the target (kind, id, name).
    pub fn target(mut self, kind: &str, id: Option<String>, name: Option<String>) -> Self {
        self.target = Some(Target {
            kind: Some(kind.to_string()),
            id,
            name,
        });
        self
    }

    /// Sets the outcome.
    pub fn outcome(mut self, outcome: Outcome) -> Self {
        self.outcome = outcome;
        self
    }

    /// Sets the tenant hint.
    pub fn tenant_hint(mut self, hint: impl Into<String>) -> Self {
        self.tenant_hint = Some(hint.into());
        self
    }

    /// Keeps the original event as metadata.
    pub fn original(mut self, original: impl Into<RawJson>) -> Self {
        self.original = original.into();
        self
    }

    /// Marks the event as mapped by a catch-all verb.
    pub fn unrecognised(mut self) -> Self {
        self.unrecognised = true;
        self
    }
}

/// A query parameter of a poll request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueryParam {
    /// Name.
    pub name: String,
    /// Value, not URL-encoded.
    pub value: String,
}

impl QueryParam {
    /// A parameter from a name and a value.
    ///
    /// ```
    /// let p = audit_guest_sdk::QueryParam::new("page", 2);
    /// assert_eq!(p.value, "2");
    /// ```
    pub fn new(name: &str, value: impl ToString) -> Self {
        QueryParam {
            name: name.to_string(),
            value: value.to_string(),
        }
    }
}

/// Poll only: what a fetched page says about the list it came from.
///
/// The host walks the list newest first by page number; it uses `total` to
/// notice items inserted or deleted between two pages (so a shifted page never
/// skips an item) and `last` to know where the list ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PollPage {
    /// How many items the whole list held when the page was served, if known.
    pub total: Option<u64>,
    /// True when no page follows this one.
    pub last: bool,
}

/// The result of mapping one delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct Mapped {
    /// The events, in write order.
    pub events: Vec<AuditEvent>,
    /// Poll deliveries only: what the page says about the list.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub poll: Option<PollPage>,
}

impl From<Vec<AuditEvent>> for Mapped {
    fn from(events: Vec<AuditEvent>) -> Self {
        Mapped { events, poll: None }
    }
}

/// A mapping failure reported on purpose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[serde(rename_all = "camelCase", tag = "kind", content = "message")]
#[non_exhaustive]
pub enum MappingError {
    /// The payload is not in a format the mapper understands.
    #[error("malformed payload: {0}")]
    Malformed(String),
    /// The payload parsed, but its shape is unknown.
    #[error("unsupported payload shape: {0}")]
    UnsupportedShape(String),
}

/// What a mapper says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MapperInfo {
    /// The mapper's name, which is the source it serves.
    pub name: String,
    /// Its semver version.
    pub version: String,
    /// The source event types it maps deliberately.
    pub event_types: Vec<String>,
}

/// Which page of a poll source's list the host wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "camelCase", default)]
pub struct PageRequest {
    /// The page number, starting at 1.
    pub page: u32,
    /// The page size the host wants (the API may serve fewer).
    pub page_size: u32,
}
