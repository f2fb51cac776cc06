//! `GET /sub/{channels}`: one URL, three transports, chosen by the request
//! itself (as Nchan does): an `Upgrade: websocket` request gets a WebSocket,
//! `Accept: text/event-stream` gets Server-Sent Events, anything else a long poll.

use std::collections::HashMap;

use axum::extract::rejection::PathRejection;
use std::net::{IpAddr, SocketAddr};

use axum::extract::{ConnectInfo, Path, Query, Request};
use axum::http::{header, HeaderMap};
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::hub::{ChannelName, Cursor, Since};
use crate::transport::{self, Context};

/// Which transport a subscribe request asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransportKind {
    WebSocket,
    EventStream,
    LongPoll,
}

/// Reads the transport from the request: headers first, `?transport=` as an override.
pub fn transport_kind(
    headers: &HeaderMap,
    query: &HashMap<String, String>,
) -> Result<TransportKind, ApiError> {
    let upgrade = headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    if upgrade {
        return Ok(TransportKind::WebSocket);
    }
    match query.get("transport").map(String::as_str) {
        Some("sse") => return Ok(TransportKind::EventStream),
        Some("poll") => return Ok(TransportKind::LongPoll),
        Some("ws" | "websocket") => {
            return Err(ApiError::bad_request(
                "websocket_upgrade_required",
                "a WebSocket subscription needs an Upgrade: websocket request",
            ))
        }
        Some(other) => {
            return Err(ApiError::bad_request(
                "bad_transport",
                format!("unknown transport {other:?}; use sse, poll or a WebSocket upgrade"),
            ))
        }
        None => {}
    }
    let wants_events = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("text/event-stream"));
    Ok(if wants_events {
        TransportKind::EventStream
    } else {
        TransportKind::LongPoll
    })
}

/// Where each channel starts: `Last-Event-ID` (SSE reconnects), then
/// `?lastEventId=`, then `?since=`; nothing means "from now".
pub fn starting_points(
    kind: TransportKind,
    headers: &HeaderMap,
    query: &HashMap<String, String>,
    channels: &[ChannelName],
) -> Result<Vec<Since>, ApiError> {
    let header_id = (kind == TransportKind::EventStream)
        .then(|| headers.get("last-event-id").and_then(|v| v.to_str().ok()))
        .flatten()
        .filter(|v| !v.trim().is_empty());
    let raw = header_id
        .or_else(|| query.get("lastEventId").map(String::as_str))
        .or_else(|| query.get("since").map(String::as_str))
        .filter(|v| !v.trim().is_empty());
    match raw {
        Some(raw) => Ok(Cursor::parse_since(raw, channels)?),
        None => Ok(vec![Since::Now; channels.len()]),
    }
}

/// `GET /sub/{channels}`.
pub async fn subscribe(
    axum::extract::State(ctx): axum::extract::State<Context>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    request: Request,
) -> Result<Response, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("bad_channel", e.body_text()))?;
    let channels = ChannelName::parse_list(&raw, ctx.config.max_channels_per_subscription)?;
    let (parts, _body) = request.into_parts();
    let kind = transport_kind(&parts.headers, &query)?;
    let since = starting_points(kind, &parts.headers, &query, &channels)?;
    if kind != TransportKind::LongPoll {
        transport::socket::check_origin(&ctx, &parts.headers)?;
    }
    let who = ctx
        .config
        .auth
        .identify(&parts.headers, query.get("token").map(String::as_str))?;
    for channel in &channels {
        transport::access::may_subscribe(&ctx, &who, channel)?;
    }
    if ctx.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    match kind {
        TransportKind::WebSocket => {
            let peer = parts
                .extensions
                .get::<ConnectInfo<SocketAddr>>()
                .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
            let peer = transport::publish::client_ip(&ctx, peer, &parts.headers);
            transport::ws::upgrade(ctx, parts, channels, since, who, peer).await
        }
        TransportKind::EventStream => {
            let envelope = query
                .get("envelope")
                .is_some_and(|v| v == "1" || v == "true" || v == "json");
            Ok(transport::sse::respond(ctx, channels, since, envelope, who)
                .await?
                .into_response())
        }
        TransportKind::LongPoll => {
            let options = transport::poll::PollOptions::from_query(&ctx.config, &query)?;
            transport::poll::respond(ctx, channels, since, options).await
        }
    }
}
