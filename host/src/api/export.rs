//! `GET /audit/export`: every record the `/audit` filters select, streamed
//! as NDJSON or OCSF (`format`), gzip-compressed on request (`gzip=true`),
//! within the caller's tenant scope, in the timeline's order.
//!
//! The answer streams a page of records at a time through a channel of a
//! few pages (the one sent, one queued, one encoded and one read ahead),
//! so memory stays the same however many records there are and
//! a slow reader slows the walk rather than filling memory. A store
//! failure after the first bytes ends the answer without its last chunk
//! (the client sees an incomplete transfer, never a short file that looks
//! whole).

use axum::body::Body;
use axum::extract::{RawQuery, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use serde_json::json;

use super::auth::Authed;
use super::{AppError, AppState};
use crate::access::trail::Act;
use crate::export::{Encoder, Format, Pages, export_query};

/// Encoded pages queued for a slow reader at most (besides the one being
/// queued and the one `Pages` reads ahead).
const AHEAD: usize = 1;

/// The parameters of an export: the format, gzip, and the `/audit` filters.
fn parameters(raw: Option<&str>) -> Result<(Format, bool, crate::store::Query), AppError> {
    let pairs: Vec<(String, String)> = serde_urlencoded::from_str(raw.unwrap_or(""))
        .map_err(|e| AppError::BadRequest(format!("the query string is not valid: {e}")))?;
    let (mut format, mut gzip) = (Format::Ndjson, false);
    let mut filters = Vec::new();
    for (name, value) in pairs {
        match name.as_str() {
            "format" => {
                format = match value.as_str() {
                    "ndjson" => Format::Ndjson,
                    "ocsf" => Format::Ocsf,
                    _ => return Err(AppError::BadRequest("parameter `format` must be ndjson or ocsf".into())),
                }
            }
            "gzip" => {
                gzip = match value.as_str() {
                    "true" | "1" => true,
                    "false" | "0" => false,
                    _ => return Err(AppError::BadRequest("parameter `gzip` must be true or false".into())),
                }
            }
            _ => filters.push((name, value)),
        }
    }
    let query = export_query(&filters).map_err(AppError::BadRequest)?;
    Ok((format, gzip, query))
}

/// `GET /audit/export`
pub async fn export(
    State(state): State<AppState>,
    authed: Authed,
    RawQuery(raw): RawQuery,
) -> Result<Response, AppError> {
    let scope = authed.read_scope(&state, Act::Export).await?;
    let (format, gzip, mut query) = match parameters(raw.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            let response = e.into_response();
            authed
                .record(&state, Act::Export, None, response.status().as_u16(), json!(null))
                .await?;
            return Ok(response);
        }
    };
    query.scope = scope;
    // Recorded before the first record leaves: who exported what.
    let detail = json!({ "format": format.extension(), "gzip": gzip });
    authed.record(&state, Act::Export, None, 200, detail).await?;
    let (send, receive) = tokio::sync::mpsc::channel::<Result<Bytes, std::io::Error>>(AHEAD);
    let store = state.pipeline.store().clone();
    tokio::spawn(async move {
        let mut encoder = Encoder::new(format, gzip);
        let mut pages = Pages::new(store, query);
        loop {
            match pages.next().await {
                Ok(Some(records)) => {
                    for r in &records {
                        encoder.push(r);
                    }
                    if send.send(Ok(Bytes::from(encoder.take()))).await.is_err() {
                        return; // the reader went away: stop reading the store
                    }
                }
                Ok(None) => {
                    let _ = send.send(Ok(Bytes::from(encoder.finish()))).await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "an export stopped before its end");
                    let _ = send.send(Err(std::io::Error::other("the export stopped"))).await;
                    return;
                }
            }
        }
    });
    let stream = futures_util::stream::unfold(receive, |mut receive| async move {
        receive.recv().await.map(|chunk| (chunk, receive))
    });
    let name = format!("audit-export.{}{}", format.extension(), if gzip { ".gz" } else { "" });
    let content_type = if gzip {
        "application/gzip"
    } else {
        "application/x-ndjson"
    };
    Ok((
        [
            (header::CONTENT_TYPE, content_type.to_string()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{name}\"")),
        ],
        Body::from_stream(stream),
    )
        .into_response())
}
