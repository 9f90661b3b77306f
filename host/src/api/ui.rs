//! The web page: `/ui/` and its assets, embedded in the binary (no Node.js
//! to build or run it; plain HTML, CSS and JavaScript with no library),
//! `GET /ui/config.json` (how the page may sign in), and `GET /audit/me`,
//! which tells the page who its credential is.
//!
//! Sign-in is a pasted token or, with `[api.oidc] web_client_id`, the
//! platform's identity provider: authorization code with PKCE (S256), the
//! page a public client whose redirect URI is `<this service>/ui/`. The
//! page's policy lets it reach only this service and, for the code
//! exchange, the issuer's token endpoint.
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

/// What the page may load and talk to: only this service, and the issuer's
/// token endpoint (`extra`) for the sign-in code exchange.
fn policy(extra: Option<&str>) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self'{}; form-action 'none'; base-uri 'none'; frame-ancestors 'none'",
        extra.map(|o| format!(" {o}")).unwrap_or_default()
    )
}

/// The page's routes.
pub fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/", get(|| async { Redirect::to("/ui/") }))
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(page))
        .route("/ui/config.json", get(config))
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

async fn page(State(state): State<AppState>, headers: HeaderMap) -> Response {
    serve(&state, INDEX, "text/html; charset=utf-8", &headers)
}

async fn asset(State(state): State<AppState>, Path(path): Path<String>, headers: HeaderMap) -> Response {
    let (body, kind) = file(&path);
    serve(&state, body, kind, &headers)
}

/// `GET /ui/config.json`: whether and where the page signs in with the
/// identity provider. Public, like the page: it names endpoints the
/// issuer publishes anyway.
async fn config(State(state): State<AppState>) -> Response {
    let answer = match state.access.oidc() {
        None => json!({ "oidc": null }),
        Some(verifier) => match verifier.web_sign_in().await {
            None => json!({ "oidc": null }),
            Some(Ok(sign_in)) => json!({ "oidc": sign_in }),
            Some(Err(why)) => {
                tracing::warn!(error = %why, "the web page cannot offer sign-in with the identity provider");
                json!({ "oidc": null, "oidcError": "the identity provider cannot be reached; sign in with a token" })
            }
        },
    };
    let mut response = Json(answer).into_response();
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// One embedded file, revalidated by its hash (`ETag`), so a new build's
/// page is never mixed with an old build's script.
fn serve(state: &AppState, body: &'static str, kind: &'static str, headers: &HeaderMap) -> Response {
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
    let token_origin = state.access.oidc().and_then(|v| v.token_origin_now());
    let strict = HeaderValue::from_str(&policy(None)).unwrap_or(HeaderValue::from_static("default-src 'none'"));
    let policy = HeaderValue::from_str(&policy(token_origin.as_deref())).unwrap_or(strict);
    h.insert(header::CONTENT_SECURITY_POLICY, policy);
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// `GET /audit/me`: the caller's name and scopes, so the page can say
/// whose records it shows. Reveals nothing of the timeline.
pub async fn me(authed: Authed) -> Json<Value> {
    let c = &authed.caller;
    Json(json!({
        "id": c.id,
        "name": c.name,
        "credential": c.credential.as_str(),
        "scopes": c.grants.describe(),
    }))
}
