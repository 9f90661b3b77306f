//! A local stand-in for authentik's events API, reproducing what the research
//! notes document (`../shared/research/authentik-events.md`): newest-first
//! default ordering (`ordering=created` flips it, unknown terms are ignored),
//! page-number pagination with the `pagination` object, a 404 `Invalid page.`
//! past the last page, page size clamped to 100 (default 20), unknown query
//! parameters (such as `created__gt`) silently ignored, bearer tokens, and
//! `GET /api/v3/core/users/{pk}/` with `groups_obj`.
//!
//! Hooks let a test change the list while a walk is in progress (new events,
//! deletions) and make the server fail (5xx, 429).
//!
//! Notification pushes: [`StandIn::notifications`] hands out the bodies a
//! "Webhook (generic)" transport with the shipped body mapping
//! (`mappers/authentik/notification-body-mapping.py`) POSTs for the events
//! added since the last call, once per recipient (a rule's destination
//! users, when the transport does not "send once"), serialised as
//! authentik's `requests` call does (Python's `json.dumps`). A test pins
//! these bytes to what the mapping itself produces under Python.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::{DateTime, Duration, Utc};
use serde_json::{Value, json};

/// The token the stand-in accepts.
pub const AK_TOKEN: &str = "ak-api-token-for-tests";

/// Something the server does once, before answering the next events request.
pub type Hook = Box<dyn FnMut(&mut Authentik) + Send>;

/// The stand-in's state.
#[derive(Default)]
pub struct Authentik {
    /// Events, oldest first.
    pub events: Vec<Value>,
    /// Users: pk → group names.
    pub users: HashMap<u64, Vec<String>>,
    /// Called before each events request is answered (to change the list mid-walk).
    pub on_request: Option<Hook>,
    /// The next N events requests answer this status (503, 429, ...).
    pub fail_next: Vec<u16>,
    /// Events requests served (including failures).
    pub event_requests: u64,
    /// User requests served.
    pub user_requests: u64,
    /// Every query string seen, in order.
    pub queries: Vec<HashMap<String, String>>,
    next_id: u64,
    /// Events before this index have had their notifications handed out (or lost).
    notified: usize,
}

/// A shared handle to a running stand-in.
#[derive(Clone)]
pub struct StandIn {
    /// The state, for tests to change and inspect.
    pub state: Arc<Mutex<Authentik>>,
    /// `http://127.0.0.1:<port>`.
    pub base_url: String,
}

impl StandIn {
    /// Starts a stand-in on a free local port.
    pub async fn start() -> StandIn {
        let state = Arc::new(Mutex::new(Authentik::default()));
        let app = axum::Router::new()
            .route("/api/v3/events/events/", get(events))
            .route("/api/v3/core/users/{pk}/", get(user))
            .with_state(state.clone());
        let listener = tokio::net::TcpListener::bind(SocketAddr::from(([127, 0, 0, 1], 0)))
            .await
            .expect("bind the stand-in");
        let base_url = format!("http://{}", listener.local_addr().expect("an address"));
        tokio::spawn(async move {
            axum::serve(listener, app).await.expect("the stand-in serves");
        });
        StandIn { state, base_url }
    }

    /// Appends `n` events created about a second apart after the newest one.
    pub fn add_events(&self, n: usize) {
        let mut s = self.state.lock().expect("state");
        add(&mut s, n);
    }

    /// Appends `n` events created a second apart, the newest now (for
    /// tests of what happens live; the list must hold nothing newer).
    pub fn add_events_ending_now(&self, n: usize) {
        let mut s = self.state.lock().expect("state");
        let start = Utc::now() - Duration::seconds(n as i64);
        append_from(&mut s, start, n);
    }

    /// Appends one event created now and returns it (a live source, one
    /// event at a time; the list must hold nothing newer).
    pub fn add_event_now(&self) -> Value {
        let mut s = self.state.lock().expect("state");
        s.next_id += 1;
        let e = event(s.next_id, Utc::now());
        s.events.push(e.clone());
        e
    }

    /// The bodies authentik POSTs for the events added since the last call
    /// (or since [`StandIn::lose_notifications`]), oldest first, each
    /// `recipients` times in a row (one per destination user).
    pub fn notifications(&self, recipients: usize) -> Vec<Vec<u8>> {
        let mut s = self.state.lock().expect("state");
        let fresh = &s.events[s.notified.min(s.events.len())..];
        let bodies: Vec<Vec<u8>> = fresh
            .iter()
            .flat_map(|e| std::iter::repeat_n(notification_body(e), recipients))
            .collect();
        s.notified = s.events.len();
        bodies
    }

    /// The notifications of the events added since the last call are never
    /// delivered (a broken rule, a receiver down past authentik's retries).
    pub fn lose_notifications(&self) {
        let mut s = self.state.lock().expect("state");
        s.notified = s.events.len();
    }

    /// The pks of every event the stand-in holds.
    pub fn pks(&self) -> Vec<String> {
        let s = self.state.lock().expect("state");
        s.events
            .iter()
            .map(|e| e["pk"].as_str().expect("pk").to_string())
            .collect()
    }
}

/// Appends `n` realistic events (logins, failed logins, model updates) by
/// users 1..=5, created about a second apart after the newest one.
pub fn add(state: &mut Authentik, n: usize) {
    let start = state
        .events
        .last()
        .and_then(|e| e["created"].as_str())
        .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
        .map(|t| t.with_timezone(&Utc))
        .unwrap_or_else(|| Utc::now() - Duration::days(7));
    append_from(state, start, n);
}

fn append_from(state: &mut Authentik, start: DateTime<Utc>, n: usize) {
    for i in 0..n {
        state.next_id += 1;
        let id = state.next_id;
        let created = start + Duration::seconds(i as i64 + 1) + Duration::microseconds((id % 997) as i64);
        state.events.push(event(id, created));
    }
}

fn event(id: u64, created: DateTime<Utc>) -> Value {
    let user_pk = id % 5 + 1;
    let pk = format!(
        "{:08x}-{:04x}-4{:03x}-8{:03x}-{:012x}",
        id,
        id % 0xffff,
        id % 0xfff,
        id % 0xfff,
        id
    );
    let created_text = created.to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let expires = (created + Duration::days(365)).to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    let brand = json!({"pk": "fcba828076b94dedb2d5a6b4c5556fa1", "app": "authentik_brands", "name": "Default brand", "model_name": "brand"});
    let http = json!({"args": {"query": "next=%2F"}, "path": "/api/v3/flows/executor/default-authentication-flow/", "method": "POST"});
    match id % 3 {
        0 => json!({
            "pk": pk, "user": {"pk": 2, "email": "", "username": "AnonymousUser"},
            "action": "login_failed", "app": "authentik.events.signals",
            "context": {"stage": {"pk": "7e88f4a991c442c1a1335d80f0827d7f", "app": "authentik_stages_password",
                        "name": "default-authentication-password", "model_name": "passwordstage"},
                        "password": "********************", "username": format!("user{user_pk}"), "http_request": http},
            "client_ip": "198.51.100.7", "created": created_text, "expires": expires, "brand": brand
        }),
        1 => json!({
            "pk": pk, "user": {"pk": user_pk, "email": format!("user{user_pk}@example.org"), "username": format!("user{user_pk}")},
            "action": "login", "app": "authentik.events.signals",
            "context": {"auth_method": "password", "http_request": http, "auth_method_args": {}},
            "client_ip": "203.0.113.9", "created": created_text, "expires": expires, "brand": brand
        }),
        _ => json!({
            "pk": pk, "user": {"pk": user_pk, "email": format!("user{user_pk}@example.org"), "username": format!("user{user_pk}")},
            "action": "model_updated", "app": "authentik.events.middleware",
            "context": {"model": {"app": "authentik_core", "model_name": "group", "pk": format!("{id:032x}"), "name": "staff"},
                        "http_request": {"args": {}, "path": "/api/v3/core/groups/", "method": "PATCH"}},
            "client_ip": "203.0.113.9", "created": created_text, "expires": expires, "brand": brand
        }),
    }
}

/// The fields the shipped body mapping returns, in its order: those of the
/// events list.
pub const MAPPED_FIELDS: [&str; 9] = [
    "pk",
    "user",
    "action",
    "app",
    "context",
    "client_ip",
    "created",
    "expires",
    "brand",
];

/// What authentik POSTs for `event` with the shipped body mapping.
pub fn notification_body(event: &Value) -> Vec<u8> {
    let mut out = String::from("{");
    for (i, name) in MAPPED_FIELDS.iter().enumerate() {
        if i > 0 {
            out.push_str(", ");
        }
        python_json(&Value::String((*name).to_string()), &mut out);
        out.push_str(": ");
        python_json(event.get(*name).unwrap_or(&Value::Null), &mut out);
    }
    out.push('}');
    out.into_bytes()
}

/// `value` as Python's `json.dumps` writes it with its defaults (what
/// `requests.post(json=...)` sends): `", "` and `": "` separators, every
/// non-ASCII character as a `\u` escape.
pub fn python_json(value: &Value, out: &mut String) {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Number(n) => out.push_str(&n.to_string()),
        Value::String(text) => {
            out.push('"');
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{8}' => out.push_str("\\b"),
                    '\u{c}' => out.push_str("\\f"),
                    c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
                    c => {
                        let mut units = [0u16; 2];
                        for unit in c.encode_utf16(&mut units) {
                            out.push_str(&format!("\\u{unit:04x}"));
                        }
                    }
                }
            }
            out.push('"');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(item, out);
            }
            out.push(']');
        }
        Value::Object(map) => {
            out.push('{');
            for (i, (k, v)) in map.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                python_json(&Value::String(k.clone()), out);
                out.push_str(": ");
                python_json(v, out);
            }
            out.push('}');
        }
    }
}

fn authorised(headers: &HeaderMap) -> bool {
    headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(&format!("Bearer {AK_TOKEN}"))
}

fn detail(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "detail": text }))).into_response()
}

async fn events(
    State(state): State<Arc<Mutex<Authentik>>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    let mut s = state.lock().expect("state");
    s.event_requests += 1;
    s.queries.push(query.clone());
    if !authorised(&headers) {
        return detail(StatusCode::UNAUTHORIZED, "Token invalid/expired");
    }
    if let Some(mut hook) = s.on_request.take() {
        hook(&mut s);
        if s.on_request.is_none() {
            s.on_request = Some(hook);
        }
    }
    if !s.fail_next.is_empty() {
        let code = s.fail_next.remove(0);
        let status = StatusCode::from_u16(code).expect("a status");
        let mut response = detail(status, "stand-in failure");
        if code == 429 {
            response
                .headers_mut()
                .insert("retry-after", "7".parse().expect("a header"));
        }
        return response;
    }
    // DRF OrderingFilter: unknown terms are dropped and the default applies.
    let ascending = query.get("ordering").map(String::as_str) == Some("created");
    let size = query
        .get("page_size")
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n > 0)
        .unwrap_or(20)
        .min(100);
    let page = match query.get("page").map(|p| p.parse::<usize>()) {
        None => 1,
        Some(Ok(p)) if p >= 1 => p,
        _ => return detail(StatusCode::NOT_FOUND, "Invalid page."),
    };
    let count = s.events.len();
    let pages = count.div_ceil(size).max(1);
    if page > pages {
        return detail(StatusCode::NOT_FOUND, "Invalid page.");
    }
    let ordered: Vec<&Value> = if ascending {
        s.events.iter().collect()
    } else {
        s.events.iter().rev().collect()
    };
    let results: Vec<&Value> = ordered.into_iter().skip((page - 1) * size).take(size).collect();
    let start_index = if count == 0 { 0 } else { (page - 1) * size + 1 };
    Json(json!({
        "pagination": {
            "next": if page < pages { page + 1 } else { 0 },
            "previous": page - 1,
            "count": count,
            "current": page,
            "total_pages": pages,
            "start_index": start_index,
            "end_index": start_index + results.len().saturating_sub(1),
        },
        "results": results,
        "autocomplete": {},
    }))
    .into_response()
}

async fn user(State(state): State<Arc<Mutex<Authentik>>>, headers: HeaderMap, Path(pk): Path<u64>) -> Response {
    let mut s = state.lock().expect("state");
    s.user_requests += 1;
    if !authorised(&headers) {
        return detail(StatusCode::FORBIDDEN, "Authentication credentials were not provided.");
    }
    let Some(groups) = s.users.get(&pk) else {
        return detail(StatusCode::NOT_FOUND, "No User matches the given query.");
    };
    let groups_obj: Vec<Value> = groups
        .iter()
        .enumerate()
        .map(|(i, name)| json!({"pk": format!("{i:032x}"), "num_pk": i, "name": name, "is_superuser": name == "authentik Admins", "attributes": {}}))
        .collect();
    Json(json!({"pk": pk, "username": format!("user{pk}"), "groups": [], "groups_obj": groups_obj})).into_response()
}
