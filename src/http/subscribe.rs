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
use crate::hooks::auth::ForwardedHeaders;
use crate::hub::presence::{new_client_id, valid_client_id};
use crate::hub::{ChannelName, Cursor, Since};
use crate::transport::access::Caller;
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
    let token = query.get("token").map(String::as_str);
    let who = ctx.config.auth.identify(&parts.headers, token)?;
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.ip());
    let ip = transport::publish::client_ip(&ctx, peer, &parts.headers);
    // Kept for the auth hook only (a cookie can be long).
    let headers = match &ctx.auth_hook {
        Some(_) => ForwardedHeaders::of(&parts.headers),
        None => ForwardedHeaders::default(),
    };
    let (name, client, poll_credential) = match kind {
        TransportKind::WebSocket => ("ws", new_client_id(), None),
        TransportKind::EventStream => ("sse", new_client_id(), None),
        TransportKind::LongPoll => {
            let credential = crate::auth::Auth::token(&parts.headers, token).map(str::to_owned);
            let client = poller_id(query.get("client").map(String::as_str), ip, &parts.headers);
            ("poll", client, Some(credential))
        }
    };
    let caller = Caller {
        who,
        transport: name,
        client,
        ip,
        headers,
        poll_credential,
    };
    let mut entries = Vec::with_capacity(channels.len());
    for channel in &channels {
        entries.push(transport::access::authorize_subscribe(&ctx, &caller, channel).await?);
    }
    if ctx.shutdown.is_cancelled() {
        return Err(ApiError::ShuttingDown);
    }
    let subscriber = transport::Subscriber {
        channels,
        since,
        caller,
        entries,
    };
    match kind {
        TransportKind::WebSocket => transport::ws::upgrade(ctx, parts, subscriber).await,
        TransportKind::EventStream => {
            let envelope = query
                .get("envelope")
                .is_some_and(|v| v == "1" || v == "true" || v == "json");
            Ok(transport::sse::respond(ctx, subscriber, envelope)
                .await?
                .into_response())
        }
        TransportKind::LongPoll => {
            let options = transport::poll::PollOptions::from_query(&ctx.config, &query)?;
            transport::poll::respond(ctx, subscriber, options).await
        }
    }
}

/// A long poller's presence id: `p.` and its own `?client=` id (herald.js
/// sends one per client), or else one derived from its address, credentials
/// and user agent, so that a plain polling loop stays one member.
fn poller_id(given: Option<&str>, ip: IpAddr, headers: &HeaderMap) -> std::sync::Arc<str> {
    use std::hash::{Hash, Hasher};
    if let Some(id) = given.filter(|id| valid_client_id(id)) {
        return format!("p.{id}").into();
    }
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    ip.hash(&mut hasher);
    for name in [header::AUTHORIZATION, header::COOKIE, header::USER_AGENT] {
        for value in headers.get_all(name) {
            value.as_bytes().hash(&mut hasher);
        }
    }
    format!("p.{:016x}", hasher.finish()).into()
}
