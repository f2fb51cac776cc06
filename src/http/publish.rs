//! The publish API: `POST /pub/{channel}`, `POST /pub` (batch),
//! `GET /pub/{channel}` (info) and `DELETE /pub/{channel}`.

use std::collections::HashMap;

use axum::body::{to_bytes, Body};
use axum::extract::rejection::PathRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{header, HeaderMap};
use axum::Json;
use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use std::net::SocketAddr;

use crate::auth::{AuthError, Credential};
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::hub::{ChannelInfo, ChannelName, ChannelOptions, DataKind, Draft, EventName};
use crate::transport::publish::{data_from_json, published_json, PublishedAnswer};
use crate::transport::{self, Context};

/// Most messages in one batch publish.
pub const MAX_BATCH: usize = 1000;

fn info_json(info: &ChannelInfo, options: &ChannelOptions) -> Value {
    json!({
        "channel": info.channel.as_str(),
        "subscribers": info.subscribers,
        "messages": info.messages,
        "bytes": info.bytes,
        "first_id": info.first_id.map(|id| id.to_string()),
        "last_id": info.last_id.map(|id| id.to_string()),
        "options": options_json(options),
    })
}

/// The options in force for a channel, with the `[[channels]]` keys' names
/// (durations as text, as the file takes them).
fn options_json(options: &ChannelOptions) -> Value {
    json!({
        "history_size": options.history.max_messages,
        "history_ttl": humantime::format_duration(options.history.ttl).to_string(),
        "history_bytes": options.history.max_bytes,
        "max_message_size": options.max_message_size,
        "presence": options.presence,
        "join_leave": options.join_leave,
        "client_publish": options.client_publish,
        "anonymous": options.anonymous,
    })
}

/// Takes the channel from the path, turning extractor failures into JSON errors.
pub fn channel_from_path(
    path: Result<Path<String>, PathRejection>,
) -> Result<ChannelName, ApiError> {
    let Path(raw) = path.map_err(|e| ApiError::bad_request("bad_channel", e.body_text()))?;
    Ok(ChannelName::parse(&raw)?)
}

fn idempotency_key(headers: &HeaderMap) -> Result<Option<String>, ApiError> {
    let Some(value) = headers.get("idempotency-key") else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 256)
        .ok_or_else(|| {
            ApiError::bad_request(
                "bad_idempotency_key",
                "Idempotency-Key must be 1-256 visible ASCII characters",
            )
        })?;
    Ok(Some(key.to_owned()))
}

fn event_name(raw: Option<&String>) -> Result<Option<EventName>, ApiError> {
    raw.filter(|e| !e.is_empty())
        .map(|e| {
            EventName::parse(e)
                .map_err(|err| ApiError::bad_request("bad_event", format!("bad event name: {err}")))
        })
        .transpose()
}

/// Refuses a publisher that may not publish to every one of `channels`.
fn authorize_publisher<'a>(
    ctx: &Context,
    headers: &HeaderMap,
    query_token: Option<&str>,
    channels: impl IntoIterator<Item = &'a ChannelName>,
) -> Result<(), ApiError> {
    let who = ctx.config.auth.identify(headers, query_token)?;
    for channel in channels {
        ctx.config.auth.may_publish(&who, channel)?;
    }
    Ok(())
}

/// Text or binary, by the body's `Content-Type`: none, `text/*`, JSON, XML,
/// JavaScript and form data (what `curl -d` sends) are text; anything else
/// (`application/octet-stream`, protobuf, msgpack, images) is binary and
/// stays binary on every transport, even when its bytes are valid UTF-8.
fn data_kind(headers: &HeaderMap) -> DataKind {
    let Some(value) = headers.get(header::CONTENT_TYPE) else {
        return DataKind::Text;
    };
    let Ok(value) = value.to_str() else {
        return DataKind::Binary;
    };
    let essence = value
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let (kind, subtype) = essence.split_once('/').unwrap_or((essence.as_str(), ""));
    let text = essence.is_empty()
        || kind == "text"
        || subtype.ends_with("+json")
        || subtype.ends_with("+xml")
        || matches!(
            essence.as_str(),
            "application/json"
                | "application/xml"
                | "application/javascript"
                | "application/x-www-form-urlencoded"
                | "application/x-ndjson"
        );
    if text {
        DataKind::Text
    } else {
        DataKind::Binary
    }
}

/// Most bytes of an unread body read and dropped before refusing a request.
const DISCARD_LIMIT: usize = 1 << 20;

/// Reads and drops what is left of a refused request's body (at most
/// [`DISCARD_LIMIT`], within the body read timeout), so that the connection
/// can carry the next request. Refused unread, a body makes the server close
/// the connection with the body's bytes still in its receive buffer, and the
/// kernel then resets it: the client may lose the answer, and a client that
/// reuses the connection loses its next request.
pub async fn discard_body(config: &ServerConfig, headers: &HeaderMap, body: Body) {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > DISCARD_LIMIT as u64) {
        return;
    }
    let _ = tokio::time::timeout(config.body_read_timeout, to_bytes(body, DISCARD_LIMIT)).await;
}

/// `error`, after the request's unread body is discarded.
async fn refuse_unread(
    ctx: &Context,
    headers: &HeaderMap,
    body: Body,
    error: ApiError,
) -> ApiError {
    discard_body(&ctx.config, headers, body).await;
    error
}

/// Reads a body of at most `limit` bytes, answering 413 beyond it.
async fn read_body(
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    timeout: std::time::Duration,
) -> Result<Bytes, ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|len| len > limit as u64) {
        return Err(ApiError::TooLarge { limit });
    }
    match tokio::time::timeout(timeout, to_bytes(body, limit)).await {
        Ok(read) => read.map_err(|_| ApiError::TooLarge { limit }),
        Err(_) => Err(ApiError::bad_request(
            "body_timeout",
            "the request body did not arrive in time",
        )),
    }
}

/// `POST /pub/{channel}`: the body is the message.
pub async fn publish_one(
    State(ctx): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<PublishedAnswer>, ApiError> {
    let checked = (|| {
        let channel = channel_from_path(path)?;
        let token = query.get("token").map(String::as_str);
        authorize_publisher(&ctx, &headers, token, [&channel])?;
        transport::check_publish_rate(
            &ctx,
            transport::publish::client_ip(&ctx, peer.ip(), &headers),
        )?;
        let event = event_name(query.get("event"))?;
        Ok((channel, event, idempotency_key(&headers)?))
    })();
    let (channel, event, idempotency_key) = match checked {
        Ok(checked) => checked,
        Err(error) => return Err(refuse_unread(&ctx, &headers, body, error).await),
    };
    let data = read_body(
        &headers,
        body,
        ctx.channels.options(&channel).max_message_size,
        ctx.config.body_read_timeout,
    )
    .await?;
    let draft = Draft {
        channel,
        event,
        data,
        kind: data_kind(&headers),
        idempotency_key,
    };
    let published = transport::publish(&ctx, draft).await?;
    Ok(Json(PublishedAnswer(published)))
}

#[derive(Deserialize)]
struct BatchItem {
    channel: String,
    data: Value,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

/// `POST /pub`: a JSON array of `{"channel", "data", "event"?, "encoding"?}`,
/// checked whole before anything is published.
pub async fn publish_batch(
    State(ctx): State<Context>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Body,
) -> Result<Json<Value>, ApiError> {
    let checked = (|| {
        if ctx.config.auth.enabled()
            && ctx.config.auth.identify(&headers, None)? == Credential::Anonymous
        {
            return Err(AuthError::Missing.into());
        }
        transport::check_publish_rate(
            &ctx,
            transport::publish::client_ip(&ctx, peer.ip(), &headers),
        )
    })();
    if let Err(error) = checked {
        return Err(refuse_unread(&ctx, &headers, body, error).await);
    }
    let largest = ctx.channels.largest_message_size();
    let limit = (largest * 16).max(1 << 20);
    let raw = read_body(&headers, body, limit, ctx.config.body_read_timeout).await?;
    let items: Vec<BatchItem> = serde_json::from_slice(&raw).map_err(|e| {
        ApiError::bad_request(
            "bad_json",
            format!("expected a JSON array of {{\"channel\", \"data\", \"event\"?}}: {e}"),
        )
    })?;
    if items.len() > MAX_BATCH {
        return Err(ApiError::bad_request(
            "batch_too_large",
            format!(
                "{} messages in one batch; the limit is {MAX_BATCH}",
                items.len()
            ),
        ));
    }
    let key = idempotency_key(&headers)?;
    let mut drafts = Vec::with_capacity(items.len());
    for (index, item) in items.into_iter().enumerate() {
        let (data, kind) = data_from_json(item.data, item.encoding.as_deref())?;
        let channel = ChannelName::parse(&item.channel)?;
        let limit = ctx.channels.options(&channel).max_message_size;
        if data.len() > limit {
            return Err(ApiError::TooLarge { limit });
        }
        drafts.push(Draft {
            channel,
            event: event_name(item.event.as_ref())?,
            data,
            kind,
            idempotency_key: key.as_ref().map(|k| format!("{k}#{index}")),
        });
    }
    authorize_publisher(&ctx, &headers, None, drafts.iter().map(|d| &d.channel))?;
    let mut results = Vec::with_capacity(drafts.len());
    for draft in drafts {
        results.push(published_json(&transport::publish(&ctx, draft).await?));
    }
    Ok(Json(Value::Array(results)))
}

/// `GET /pub/{channel}`.
pub async fn channel_info(
    State(ctx): State<Context>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let channel = channel_from_path(path)?;
    let token = query.get("token").map(String::as_str);
    authorize_publisher(&ctx, &headers, token, [&channel])?;
    match ctx.engine.info(&channel).await? {
        Some(info) => Ok(Json(info_json(&info, &ctx.channels.options(&channel)))),
        None => Err(ApiError::NotFound(format!(
            "channel {channel:?} has never been used"
        ))),
    }
}

/// `GET /pub/{channel}/presence`: who is on a channel with presence
/// (guarded like the rest of `/pub`; `404 presence_off` without presence).
pub async fn channel_presence(
    State(ctx): State<Context>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let channel = channel_from_path(path)?;
    let token = query.get("token").map(String::as_str);
    authorize_publisher(&ctx, &headers, token, [&channel])?;
    Ok(Json(
        crate::transport::presence::listing(&ctx, &channel).await?,
    ))
}

/// `DELETE /pub/{channel}`.
pub async fn delete_channel(
    State(ctx): State<Context>,
    path: Result<Path<String>, PathRejection>,
    Query(query): Query<HashMap<String, String>>,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    let channel = channel_from_path(path)?;
    let token = query.get("token").map(String::as_str);
    authorize_publisher(&ctx, &headers, token, [&channel])?;
    if ctx.engine.delete(&channel).await? {
        Ok(Json(
            json!({ "channel": channel.as_str(), "deleted": true }),
        ))
    } else {
        Err(ApiError::NotFound(format!(
            "channel {channel:?} does not exist"
        )))
    }
}
