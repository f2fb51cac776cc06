//! Shared helpers for integration tests: a real herald on port 0 and real
//! clients for each transport. Every wait is bounded.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{SinkExt, Stream, StreamExt};
use herald::config::ServerConfig;
use herald::http::RunningServer;
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long any single wait may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(5);

/// Awaits `future`, failing the test with `what` if it takes too long.
pub async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// Starts herald on a free loopback port with `configure` applied to the defaults.
pub async fn start(configure: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    configure(&mut config);
    herald::http::start(config).await.unwrap()
}

pub async fn server() -> RunningServer {
    start(|_| {}).await
}

pub fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

/// Publishes `data` to `channel` and returns the answer, asserting 200.
pub async fn publish(addr: SocketAddr, channel: &str, data: impl Into<reqwest::Body>) -> Value {
    let response = reqwest::Client::new()
        .post(url(addr, &format!("/pub/{channel}")))
        .body(data)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200, "publish to {channel}");
    response.json().await.unwrap()
}

/// `GET path` as JSON, with its status.
pub async fn get_json(addr: SocketAddr, path: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url(addr, path))
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Waits until `channel` has at least `count` subscribers.
pub async fn wait_for_subscribers(addr: SocketAddr, channel: &str, count: u64) {
    within(&format!("{count} subscribers on {channel}"), async {
        loop {
            let (status, info) = get_json(addr, &format!("/pub/{channel}")).await;
            if status == 200 && info["subscribers"].as_u64().unwrap_or(0) >= count {
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await
}

/// An SSE subscription read with an independent SSE parser.
pub struct Sse {
    pub headers: reqwest::header::HeaderMap,
    events: Pin<Box<dyn Stream<Item = Event> + Send>>,
}

impl Sse {
    /// Opens `path` with `Accept: text/event-stream` plus `extra` headers.
    pub async fn open(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Self {
        let mut request = reqwest::Client::new()
            .get(url(addr, path))
            .header("accept", "text/event-stream");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = within("the SSE response", request.send()).await.unwrap();
        assert_eq!(response.status(), 200, "SSE {path}");
        let headers = response.headers().clone();
        let events = response
            .bytes_stream()
            .eventsource()
            .map(|e| e.expect("a well-formed event stream"));
        Self {
            headers,
            events: Box::pin(events),
        }
    }

    /// The next event, or `None` when the stream ends.
    pub async fn next(&mut self) -> Option<Event> {
        within("an SSE event", self.events.next()).await
    }

    /// The next `count` message events (skipping none).
    pub async fn messages(&mut self, count: usize) -> Vec<Event> {
        let mut out = Vec::with_capacity(count);
        while out.len() < count {
            out.push(self.next().await.expect("the stream ended early"));
        }
        out
    }
}

/// Long-polls `path` (which may carry a query) and returns the answer.
pub async fn poll(addr: SocketAddr, path: &str) -> Value {
    let (status, body) = within("a poll answer", get_json(addr, path)).await;
    assert_eq!(status, 200, "poll {path}: {body}");
    body
}

/// A raw WebSocket on `path`.
pub async fn websocket(addr: SocketAddr, path: &str) -> Socket {
    let (socket, _) = within(
        "a WebSocket",
        tokio_tungstenite::connect_async(format!("ws://{addr}{path}")),
    )
    .await
    .unwrap();
    socket
}

/// The next data frame (text or binary), skipping pings and pongs, on
/// any WebSocket (plain or over TLS).
pub async fn next_frame<S>(socket: &mut WebSocketStream<S>) -> Message
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    loop {
        let frame = within("a WebSocket frame", socket.next())
            .await
            .expect("the socket closed")
            .expect("the socket failed");
        match frame {
            Message::Ping(_) | Message::Pong(_) => continue,
            other => return other,
        }
    }
}

/// The next `/ws` protocol frame as JSON.
pub async fn next_json(socket: &mut Socket) -> Value {
    let frame = next_frame(socket).await;
    serde_json::from_str(frame.to_text().expect("a text frame")).expect("a JSON frame")
}

/// Sends a `/ws` protocol frame.
pub async fn send_json(socket: &mut Socket, frame: Value) {
    socket.send(Message::text(frame.to_string())).await.unwrap();
}

/// Subscribes a `/ws` socket and returns the `ok` answer.
pub async fn ws_sub(socket: &mut Socket, channel: &str, since: Option<&str>) -> Value {
    send_json(
        socket,
        json!({"op": "sub", "channel": channel, "since": since, "ref": channel}),
    )
    .await;
    let answer = next_json(socket).await;
    assert_eq!(answer["op"], "ok", "sub {channel}: {answer}");
    answer
}

/// Waits until `channel` has exactly `count` subscribers.
pub async fn wait_for_exact_subscribers(addr: SocketAddr, channel: &str, count: u64) {
    within(
        &format!("exactly {count} subscribers on {channel}"),
        async {
            loop {
                let (_, info) = get_json(addr, &format!("/pub/{channel}")).await;
                if info["subscribers"].as_u64() == Some(count) {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        },
    )
    .await
}

/// The `data` fields of a long-poll page, in order.
pub fn page_data(page: &Value) -> Vec<String> {
    page["messages"]
        .as_array()
        .expect("a messages array")
        .iter()
        .map(|m| m["data"].as_str().expect("string data").to_owned())
        .collect()
}

/// Reads a raw response body until it contains `needle`; returns everything read.
pub async fn read_until(response: &mut reqwest::Response, needle: &str) -> String {
    let mut raw = String::new();
    within(&format!("{needle:?} in the response body"), async {
        while !raw.contains(needle) {
            let chunk = response
                .chunk()
                .await
                .expect("the body to keep arriving")
                .expect("the stream to stay open");
            raw.push_str(std::str::from_utf8(&chunk).expect("UTF-8 body"));
        }
    })
    .await;
    raw
}

/// A scratch directory of one test under the system's temporary directory,
/// removed when dropped, so that a failing test leaves nothing behind either.
pub struct Scratch(std::path::PathBuf);

impl Scratch {
    /// A new empty directory named `herald-{name}-{pid}`.
    pub fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a scratch directory");
        Self(dir)
    }
}

impl std::ops::Deref for Scratch {
    type Target = std::path::Path;
    fn deref(&self) -> &std::path::Path {
        &self.0
    }
}

impl AsRef<std::path::Path> for Scratch {
    fn as_ref(&self) -> &std::path::Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
