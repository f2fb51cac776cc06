//! `herald sub`: subscribe over the chosen transport, print one line per
//! message, and on a dropped connection reconnect and resume from the last id.

use std::io::Write;
use std::time::Duration;

use base64::Engine as _;
use eventsource_stream::Eventsource;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message as Frame;

use super::{base_url, ClientError};
use crate::config::cli::{SubArgs, SubTransport};
use crate::hub::{ChannelName, Cursor, Since};

/// Prints messages and counts them.
struct Printer {
    json: bool,
    remaining: Option<u64>,
}

impl Printer {
    /// Prints a message object (`id`, `channel`, `event`?, `data`, `encoding`?).
    /// Returns false once `--count` messages have been printed.
    fn message(&mut self, message: &Value) -> bool {
        let mut out = std::io::stdout().lock();
        let _ = if self.json {
            writeln!(out, "{message}")
        } else {
            let data = message["data"].as_str().unwrap_or_default();
            writeln!(out, "{data}")
        };
        let _ = out.flush();
        match &mut self.remaining {
            Some(n) => {
                *n = n.saturating_sub(1);
                *n > 0
            }
            None => true,
        }
    }

    fn gap(&self, gap: &Value) {
        if self.json {
            println!("{}", json!({ "gap": gap }));
        } else {
            eprintln!("gap: {gap}");
        }
    }
}

/// Runs `herald sub` until `--count` is reached (or forever).
pub async fn run(args: SubArgs) -> Result<(), ClientError> {
    let base = base_url(&args.url)?;
    let channels = ChannelName::parse_list(&args.channels, 1024)
        .map_err(|e| ClientError::Protocol(format!("bad channel list: {e}")))?;
    if let Some(since) = &args.since {
        // A --since that can never parse would otherwise be retried forever.
        Cursor::parse_since(since, &channels)
            .map_err(|e| ClientError::Protocol(format!("bad --since: {e}")))?;
    }
    let mut printer = Printer {
        json: args.json,
        remaining: args.count.filter(|n| *n > 0),
    };
    let mut position = args.since.clone();
    let mut backoff = Duration::from_millis(250);
    loop {
        let outcome = match args.transport {
            SubTransport::Ws => {
                websocket(&base, &channels, &args, &mut position, &mut printer).await
            }
            SubTransport::Sse => event_stream(&base, &args, &mut position, &mut printer).await,
            SubTransport::Poll => poll(&base, &args, &mut position, &mut printer).await,
        };
        match outcome {
            Ok(true) => return Ok(()),
            Ok(false) => backoff = Duration::from_millis(250),
            Err(ClientError::Refused { status, body }) if status < 500 => {
                return Err(ClientError::Refused { status, body })
            }
            Err(error) => {
                eprintln!("herald sub: {error}; reconnecting in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(10));
            }
        }
    }
}

fn with_token(mut url: String, token: &Option<String>) -> String {
    if let Some(token) = token {
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str("token=");
        url.push_str(&urlencode(token));
    }
    url
}

fn urlencode(raw: &str) -> String {
    raw.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// One `/ws` session. `Ok(true)` when done, `Ok(false)` when the server closed it.
async fn websocket(
    base: &str,
    channels: &[ChannelName],
    args: &SubArgs,
    position: &mut Option<String>,
    printer: &mut Printer,
) -> Result<bool, ClientError> {
    let url = with_token(
        format!("ws{}/ws", base.trim_start_matches("http")),
        &args.token,
    );
    let (mut socket, _) = tokio_tungstenite::connect_async(url.as_str()).await?;
    let starts = match position.as_deref() {
        Some(raw) => {
            Cursor::parse_since(raw, channels).map_err(|e| ClientError::Protocol(e.to_string()))?
        }
        None => vec![Since::Now; channels.len()],
    };
    let mut cursor = Cursor::new();
    for (channel, since) in channels.iter().zip(starts) {
        let since = match since {
            Since::Now => Value::Null,
            Since::Oldest => "0".into(),
            Since::After(id) => {
                cursor.set(channel, id);
                id.to_string().into()
            }
        };
        let frame = json!({ "op": "sub", "channel": channel.as_str(), "since": since, "ref": channel.as_str() });
        socket.send(Frame::text(frame.to_string())).await?;
    }
    while let Some(frame) = socket.next().await {
        let text = match frame? {
            Frame::Text(text) => text,
            Frame::Close(_) => return Ok(false),
            _ => continue,
        };
        let value: Value = serde_json::from_str(text.as_str())
            .map_err(|e| ClientError::Protocol(format!("bad frame from server: {e}")))?;
        match value["op"].as_str() {
            Some("msg") => {
                if let (Some(channel), Some(id)) = (value["channel"].as_str(), value["id"].as_str())
                {
                    if let (Ok(channel), Ok(id)) = (ChannelName::parse(channel), id.parse()) {
                        cursor.set(&channel, id);
                        *position = Some(cursor.render());
                    }
                }
                let mut message = value.clone();
                if let Some(object) = message.as_object_mut() {
                    object.remove("op");
                }
                if !printer.message(&message) {
                    return Ok(true);
                }
            }
            Some("ok") => {
                // A fresh subscription learns where it starts, so a reconnect resumes from there.
                if let (Some(channel), Some(last)) =
                    (value["channel"].as_str(), value["last_id"].as_str())
                {
                    if let (Ok(channel), Ok(id)) = (ChannelName::parse(channel), last.parse()) {
                        if cursor.get(&channel).is_none() {
                            cursor.set(&channel, id);
                            *position = Some(cursor.render());
                        }
                    }
                }
            }
            Some("gap") => printer.gap(&value),
            Some("error") => {
                return Err(ClientError::Refused {
                    status: 400,
                    body: value["error"].to_string(),
                });
            }
            _ => {}
        }
    }
    Ok(false)
}

/// One SSE session (with the JSON envelope, which names each message's channel).
async fn event_stream(
    base: &str,
    args: &SubArgs,
    position: &mut Option<String>,
    printer: &mut Printer,
) -> Result<bool, ClientError> {
    let url = with_token(
        format!("{base}/sub/{}?envelope=1", args.channels),
        &args.token,
    );
    let mut request = reqwest::Client::new()
        .get(&url)
        .header("accept", "text/event-stream");
    if let Some(position) = position.as_deref() {
        request = request.header("last-event-id", position);
    }
    let response = request
        .send()
        .await
        .map_err(|source| ClientError::Connect {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        return Err(ClientError::Refused {
            status: status.as_u16(),
            body,
        });
    }
    let mut events = response.bytes_stream().eventsource();
    while let Some(event) = events.next().await {
        let event = event.map_err(|e| ClientError::Protocol(format!("event stream: {e}")))?;
        match event.event.as_str() {
            "message" => {
                if !event.id.is_empty() {
                    *position = Some(event.id.clone());
                }
                let message: Value = serde_json::from_str(&event.data)
                    .map_err(|e| ClientError::Protocol(format!("bad envelope: {e}")))?;
                if !printer.message(&message) {
                    return Ok(true);
                }
            }
            "herald.gap" => printer.gap(&serde_json::from_str(&event.data).unwrap_or(Value::Null)),
            "herald.closed" => return Ok(false),
            _ => {}
        }
    }
    Ok(false)
}

/// Long polls until done; returns `Ok(false)` only on errors worth a reconnect.
async fn poll(
    base: &str,
    args: &SubArgs,
    position: &mut Option<String>,
    printer: &mut Printer,
) -> Result<bool, ClientError> {
    let client = reqwest::Client::new();
    loop {
        let mut url = format!("{base}/sub/{}?timeout=30", args.channels);
        if let Some(since) = position.as_deref() {
            url.push_str("&since=");
            url.push_str(&urlencode(since));
        }
        let url = with_token(url, &args.token);
        let response = client
            .get(&url)
            .timeout(Duration::from_secs(45))
            .send()
            .await
            .map_err(|source| ClientError::Connect {
                url: url.clone(),
                source,
            })?;
        let status = response.status();
        let body = response
            .text()
            .await
            .map_err(|source| ClientError::Connect {
                url: url.clone(),
                source,
            })?;
        if !status.is_success() {
            return Err(ClientError::Refused {
                status: status.as_u16(),
                body,
            });
        }
        let page: Value = serde_json::from_str(&body)
            .map_err(|e| ClientError::Protocol(format!("bad poll answer: {e}")))?;
        if let Some(gaps) = page["gaps"].as_array() {
            for gap in gaps {
                printer.gap(gap);
            }
        }
        for message in page["messages"].as_array().into_iter().flatten() {
            if !printer.message(message) {
                return Ok(true);
            }
        }
        if let Some(next) = page["next"].as_str() {
            *position = Some(next.to_owned());
        }
    }
}

/// Decodes a message's data to bytes (base64 when `encoding` says so).
pub fn message_bytes(message: &Value) -> Vec<u8> {
    let data = message["data"].as_str().unwrap_or_default();
    if message["encoding"] == "base64" {
        base64::engine::general_purpose::STANDARD
            .decode(data)
            .unwrap_or_default()
    } else {
        data.as_bytes().to_vec()
    }
}
