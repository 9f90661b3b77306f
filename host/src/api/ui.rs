//! The web page: `/ui/` and its assets, embedded in the binary (no Node.js
//! to build or run it; plain HTML, CSS and JavaScript with no library), and
//! `GET /audit/me`, which tells the page who its credential is.
//!
//! Every path under `/ui/` that is not an asset answers the page itself, so
//! a view's address (`/ui/event/42`, `/ui/overview?range=7d`) can be shared
//! and reloaded. The page calls the same API as any client, with the token
//! the reader pasted (kept in the tab's session storage).

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde_json::{Value, json};
use sha2::Digest as _;

use super::AppState;
use super::auth::Authed;

const INDEX: &str = include_str!("../../ui/index.html");
const SCRIPT: &str = include_str!("../../ui/app.js");
const STYLE: &str = include_str!("../../ui/app.css");
const ICON: &str = include_str!("../../ui/icon.svg");

/// What the page may load and talk to: only this service.
const POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
     connect-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'";

/// The page's routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/{*path}", get(asset))
        .route("/audit/me", get(me))
}

/// The embedded file at `path`, with its content type.
fn file(path: &str) -> (&'static str, &'static str) {
    match path {
        "app.js" => (SCRIPT, "text/javascript; charset=utf-8"),
        "app.css" => (STYLE, "text/css; charset=utf-8"),
        "icon.svg" => (ICON, "image/svg+xml"),
        _ => (INDEX, "text/html; charset=utf-8"),
    }
}

async fn page(headers: HeaderMap) -> Response {
    serve(INDEX, "text/html; charset=utf-8", &headers)
}

async fn asset(Path(path): Path<String>, headers: HeaderMap) -> Response {
    let (body, kind) = file(&path);
    serve(body, kind, &headers)
}

/// One embedded file, revalidated by its hash (`ETag`), so a new build's
/// page is never mixed with an old build's script.
fn serve(body: &'static str, kind: &'static str, headers: &HeaderMap) -> Response {
    let tag = format!("\"{}\"", hex(&sha2::Sha256::digest(body.as_bytes())[..12]));
    let mut response = if headers
        .get(header::IF_NONE_MATCH)
        .is_some_and(|v| v.as_bytes() == tag.as_bytes())
    {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        ([(header::CONTENT_TYPE, kind)], body).into_response()
    };
    let h = response.headers_mut();
    if let Ok(tag) = HeaderValue::from_str(&tag) {
        h.insert(header::ETAG, tag);
    }
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(POLICY));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /audit/me`: the caller's name and scopes, so the page can say
/// whose records it shows. Reveals nothing of the timeline.
pub async fn me(State(_state): State<AppState>, authed: Authed) -> Json<Value> {
    let c = &authed.caller;
    Json(json!({
        "id": c.id,
        "name": c.name,
        "credential": c.credential.as_str(),
        "scopes": c.grants.describe(),
    }))
}
