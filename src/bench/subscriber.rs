//! Fan-out subscribers, one kind per transport: raw WebSocket, SSE, long
//! polling (herald's or Nchan's dialect) and herald's `/ws` JSON protocol.
//!
//! Each subscriber connects (so the run can wait until all are in place),
//! then receives until told to stop, feeding every message's data into a
//! [`Tally`]: latency from the send time in the data, order from its sequence
//! number.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};
use tokio_util::sync::CancellationToken;

use super::args::{PollDialect, Transport};
use super::payload;
use super::stats::{Latency, Order};
use super::BenchError;

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Counters every subscriber of a run adds to (for progress and the end time).
#[derive(Debug, Default)]
pub struct Shared {
    /// Messages received by every subscriber together.
    pub received: AtomicU64,
    /// When the last message arrived, µs since the epoch.
    pub last_receive_us: AtomicU64,
    /// Bytes raw WebSocket subscribers read off their sockets.
    pub wire_bytes: AtomicU64,
}

/// What one subscriber saw.
#[derive(Debug, Default)]
pub struct Tally {
    pub order: Order,
    pub latency: Latency,
    pub gaps: u64,
    pub errors: u64,
    /// The connection ended before the run told it to stop.
    pub dropped: bool,
}

impl Tally {
    /// Takes in one message's data.
    fn data(&mut self, data: &[u8], highest: &AtomicU64, shared: &Shared) {
        let mut batch = Batch::default();
        batch.data(self, data);
        batch.finish(self, highest, shared);
    }
}

/// The messages one read brought: they arrived together, so they share one
/// arrival time and one update of the run's counters.
#[derive(Default)]
struct Batch {
    now_us: u64,
    count: u64,
}

impl Batch {
    fn data(&mut self, tally: &mut Tally, data: &[u8]) {
        let Some((seq, sent_us)) = payload::decode(data) else {
            tally.errors += 1;
            return;
        };
        if self.count == 0 {
            self.now_us = payload::now_us();
        }
        self.count += 1;
        tally.latency.record(self.now_us.saturating_sub(sent_us));
        tally.order.see(seq);
    }

    fn finish(self, tally: &Tally, highest: &AtomicU64, shared: &Shared) {
        if self.count == 0 {
            return;
        }
        highest.store(tally.order.highest(), Ordering::Relaxed);
        shared.received.fetch_add(self.count, Ordering::Relaxed);
        shared
            .last_receive_us
            .fetch_max(self.now_us, Ordering::Relaxed);
    }
}

/// Where and how one subscriber connects.
#[derive(Debug, Clone)]
pub struct Spec {
    pub transport: Transport,
    /// The subscribe URL (http scheme) of its channel.
    pub url: String,
    /// The `/ws` protocol URL (for [`Transport::Wsproto`]).
    pub wsproto_url: String,
    pub channel: String,
    pub dialect: PollDialect,
    /// Raw WebSocket subscribers offer permessage-deflate.
    pub ws_deflate: bool,
    /// Raw WebSocket subscribers use the minimal client without the offer.
    pub ws_raw: bool,
}

/// A subscriber that is connected and subscribed.
pub enum Connected {
    Ws(Box<Socket>),
    Deflate(Box<super::rawws::DeflateSocket>),
    Sse(BoxStream<'static, Result<eventsource_stream::Event, String>>),
    Poll(Poller),
    Wsproto(Box<Socket>),
}

/// Opens a WebSocket with Nagle's algorithm off (small frames go out at once)
/// and a 16 KiB read buffer (tungstenite's default, 128 KiB, is a lot times
/// a thousand subscribers).
pub async fn websocket(url: &str) -> Result<Socket, BenchError> {
    let config = WebSocketConfig::default().read_buffer_size(16 * 1024);
    let (socket, _) = tokio_tungstenite::connect_async_with_config(url, Some(config), true)
        .await
        .map_err(|e| BenchError::connect(url, e))?;
    Ok(socket)
}

impl Spec {
    /// Connects and subscribes.
    pub async fn connect(&self, client: &reqwest::Client) -> Result<Connected, BenchError> {
        match self.transport {
            Transport::Ws if self.ws_deflate || self.ws_raw => {
                let url = super::target::to_ws(&self.url);
                let socket = super::rawws::DeflateSocket::connect(&url, self.ws_deflate).await?;
                if self.ws_deflate && !socket.negotiated {
                    return Err(BenchError::connect(
                        &url,
                        "permessage-deflate not negotiated",
                    ));
                }
                Ok(Connected::Deflate(Box::new(socket)))
            }
            Transport::Ws => {
                let url = super::target::to_ws(&self.url);
                Ok(Connected::Ws(Box::new(websocket(&url).await?)))
            }
            Transport::Sse => {
                let response = client
                    .get(&self.url)
                    .header("Accept", "text/event-stream")
                    .send()
                    .await
                    .map_err(|e| BenchError::connect(&self.url, e))?;
                if !response.status().is_success() {
                    return Err(BenchError::connect(
                        &self.url,
                        format!("answered {}", response.status()),
                    ));
                }
                let events = response
                    .bytes_stream()
                    .eventsource()
                    .map(|e| e.map_err(|e| e.to_string()))
                    .boxed();
                Ok(Connected::Sse(events))
            }
            Transport::Poll => Ok(Connected::Poll(Poller {
                client: client.clone(),
                url: self.url.clone(),
                dialect: self.dialect,
                // A fresh channel: "everything in history" is everything
                // published in this run, so the first poll cannot miss one.
                since: "0".into(),
                last_modified: None,
                etag: None,
            })),
            Transport::Wsproto => {
                let mut socket = websocket(&self.wsproto_url).await?;
                let sub = serde_json::json!({"op": "sub", "channel": self.channel, "ref": 1});
                socket
                    .send(Frame::text(sub.to_string()))
                    .await
                    .map_err(|e| BenchError::connect(&self.wsproto_url, e))?;
                // The subscription is in place once the server says ok.
                while let Some(frame) = socket.next().await {
                    let frame = frame.map_err(|e| BenchError::connect(&self.wsproto_url, e))?;
                    if let Frame::Text(text) = frame {
                        let answer: ProtoFrame = serde_json::from_str(text.as_str())
                            .map_err(|e| BenchError::connect(&self.wsproto_url, e))?;
                        match answer.op.as_ref() {
                            "ok" => return Ok(Connected::Wsproto(Box::new(socket))),
                            "error" => {
                                return Err(BenchError::connect(
                                    &self.wsproto_url,
                                    format!("sub refused: {text}"),
                                ))
                            }
                            _ => {}
                        }
                    }
                }
                Err(BenchError::connect(
                    &self.wsproto_url,
                    "closed before the subscription was confirmed",
                ))
            }
        }
    }
}

/// A `/ws` protocol frame, borrowing from the text it was read from.
#[derive(Deserialize)]
struct ProtoFrame<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow, default)]
    data: Option<Cow<'a, str>>,
}

impl Connected {
    /// Receives until `stop` (or the connection ends); `highest` is kept at
    /// the highest sequence number seen, for the publisher's lag limit.
    pub async fn receive(
        self,
        highest: Arc<AtomicU64>,
        shared: Arc<Shared>,
        stop: CancellationToken,
    ) -> Tally {
        let mut tally = Tally::default();
        let t = &mut tally;
        let h = &highest;
        let s = &shared;
        match self {
            Connected::Ws(mut socket) => loop {
                let frame = tokio::select! {
                    biased;
                    frame = socket.next() => frame,
                    _ = stop.cancelled() => break,
                };
                match frame {
                    Some(Ok(Frame::Text(text))) => t.data(text.as_bytes(), h, s),
                    Some(Ok(Frame::Binary(data))) => t.data(&data, h, s),
                    Some(Ok(Frame::Close(_))) | None => {
                        t.dropped = true;
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        t.errors += 1;
                        t.dropped = true;
                        break;
                    }
                }
            },
            Connected::Deflate(mut socket) => loop {
                let mut batch = Batch::default();
                let read = tokio::select! {
                    biased;
                    read = socket.read_batch(|data| batch.data(t, data)) => read,
                    _ = stop.cancelled() => break,
                };
                batch.finish(t, h, s);
                s.wire_bytes
                    .fetch_add(socket.take_read_bytes(), Ordering::Relaxed);
                match read {
                    Ok(true) => {}
                    Ok(false) => {
                        t.dropped = true;
                        break;
                    }
                    Err(_) => {
                        t.errors += 1;
                        t.dropped = true;
                        break;
                    }
                }
            },
            Connected::Wsproto(mut socket) => loop {
                let frame = tokio::select! {
                    biased;
                    frame = socket.next() => frame,
                    _ = stop.cancelled() => break,
                };
                match frame {
                    Some(Ok(Frame::Text(text))) => {
                        match serde_json::from_str::<ProtoFrame>(&text) {
                            Ok(f) if f.op == "msg" => match f.data {
                                Some(data) => t.data(data.as_bytes(), h, s),
                                None => t.errors += 1,
                            },
                            Ok(f) if f.op == "gap" => t.gaps += 1,
                            Ok(_) => {}
                            Err(_) => t.errors += 1,
                        }
                    }
                    Some(Ok(Frame::Close(_))) | None => {
                        t.dropped = true;
                        break;
                    }
                    Some(Ok(_)) => {}
                    Some(Err(_)) => {
                        t.errors += 1;
                        t.dropped = true;
                        break;
                    }
                }
            },
            Connected::Sse(mut events) => loop {
                let event = tokio::select! {
                    biased;
                    event = events.next() => event,
                    _ = stop.cancelled() => break,
                };
                match event {
                    Some(Ok(event)) if event.event == "herald.gap" => t.gaps += 1,
                    Some(Ok(event)) if event.event.starts_with("herald.") => {}
                    // herald's first event carries only an id (the resume position).
                    Some(Ok(event)) if event.data.is_empty() => {}
                    Some(Ok(event)) => t.data(event.data.as_bytes(), h, s),
                    Some(Err(_)) => {
                        t.errors += 1;
                        t.dropped = true;
                        break;
                    }
                    None => {
                        t.dropped = true;
                        break;
                    }
                }
            },
            Connected::Poll(mut poller) => loop {
                let page = tokio::select! {
                    biased;
                    page = poller.next() => page,
                    _ = stop.cancelled() => break,
                };
                match page {
                    Ok(page) => {
                        t.gaps += u64::from(page.gap);
                        for data in &page.messages {
                            t.data(data.as_bytes(), h, s);
                        }
                    }
                    Err(_) => {
                        t.errors += 1;
                        // A failed poll is retried after a pause, as a client would.
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                            _ = stop.cancelled() => break,
                        }
                    }
                }
            },
        }
        tally
    }
}

/// One long-poll client's position.
pub struct Poller {
    client: reqwest::Client,
    url: String,
    dialect: PollDialect,
    since: String,
    last_modified: Option<String>,
    etag: Option<String>,
}

/// What one poll brought.
#[derive(Debug, Default)]
pub struct Page {
    pub messages: Vec<String>,
    pub gap: bool,
}

#[derive(Deserialize)]
struct HeraldPage {
    messages: Vec<HeraldMessage>,
    next: String,
    #[serde(default)]
    gap: bool,
}

#[derive(Deserialize)]
struct HeraldMessage {
    data: String,
}

impl Poller {
    /// One long poll: held by the server until there is news (or its timeout).
    async fn next(&mut self) -> Result<Page, BenchError> {
        match self.dialect {
            PollDialect::Herald => {
                let response = self
                    .client
                    .get(&self.url)
                    .query(&[("since", self.since.as_str())])
                    .send()
                    .await?;
                if !response.status().is_success() {
                    return Err(BenchError::Status(response.status().as_u16()));
                }
                let page: HeraldPage = response.json().await?;
                self.since = page.next;
                Ok(Page {
                    messages: page.messages.into_iter().map(|m| m.data).collect(),
                    gap: page.gap,
                })
            }
            PollDialect::Nchan => {
                let mut request = self.client.get(&self.url);
                if let Some(v) = &self.last_modified {
                    request = request.header("If-Modified-Since", v);
                }
                if let Some(v) = &self.etag {
                    request = request.header("If-None-Match", v);
                }
                let response = request.send().await?;
                let status = response.status().as_u16();
                // Nchan answers a poll that timed out with 304 or 408: ask again.
                if status == 304 || status == 408 {
                    return Ok(Page::default());
                }
                if !(200..300).contains(&status) {
                    return Err(BenchError::Status(status));
                }
                let header = |name: &str| {
                    response
                        .headers()
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                self.last_modified = header("last-modified");
                self.etag = header("etag");
                let body = response.text().await?;
                Ok(Page {
                    messages: vec![body],
                    gap: false,
                })
            }
        }
    }
}
