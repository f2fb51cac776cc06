//! Following channels over herald's `/ws` JSON protocol, without loss.
//!
//! A [`Subscription`] keeps, for each channel, the id of the last message it
//! handed out. When the socket drops, it reconnects with bounded, jittered
//! backoff and sends each `sub` with that id as `since`, so herald replays
//! exactly what was missed; when herald no longer has it, an [`Item::Gap`]
//! says so. Before the first message, the position is the `last_id` herald
//! answered the `sub` with, so a drop before anything arrived loses nothing
//! either. (The same logic as the Python and Node SDKs.)

use std::collections::{HashMap, VecDeque};
use std::future::{Future, IntoFuture};
use std::hash::BuildHasher;
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::{Data, Error, Herald};

type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// One message, as published.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Message {
    /// Its id: keep [`Subscription::cursor`] to resume after a restart.
    pub id: String,
    pub channel: String,
    /// The event name it was published with, if any.
    pub event: Option<String>,
    pub data: Data,
}

/// Messages on `channel` were missed and cannot be delivered: history no
/// longer holds them (`reason` `trimmed`, `missed` of them) or was reset
/// (`epoch`). Delivery goes on from `first_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Gap {
    pub channel: String,
    pub reason: String,
    /// The id the subscription asked to resume after.
    pub since: Option<String>,
    pub missed: Option<u64>,
    /// The first message delivered after the gap, if any.
    pub first_id: Option<String>,
}

/// What a [`Subscription`] yields.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Item {
    Message(Message),
    Gap(Gap),
}

/// A subscription being prepared; `.await` connects it (retrying while
/// herald cannot be reached) and answers once every channel is subscribed,
/// so nothing published afterwards is missed.
#[must_use = "a subscription does nothing until awaited"]
pub struct Subscribe<'a> {
    herald: &'a Herald,
    channels: Vec<String>,
    since: String,
    settings: Settings,
}

#[derive(Debug, Clone, Copy)]
struct Settings {
    min_backoff: Duration,
    max_backoff: Duration,
    open_timeout: Duration,
    silence_timeout: Duration,
}

impl<'a> Subscribe<'a> {
    pub(crate) fn new(herald: &'a Herald, channels: Vec<String>) -> Self {
        Self {
            herald,
            channels,
            since: String::new(),
            settings: Settings {
                min_backoff: Duration::from_millis(250),
                max_backoff: Duration::from_secs(10),
                open_timeout: Duration::from_secs(10),
                silence_timeout: Duration::from_secs(90),
            },
        }
    }

    /// Resumes after `since`: an id (one channel), a cursor
    /// (`news=ID,alerts=ID`, as [`Subscription::cursor`] gives), or `0` for
    /// everything still in history. Empty means from now.
    pub fn since(mut self, since: impl Into<String>) -> Self {
        self.since = since.into();
        self
    }

    /// Backoff between reconnection attempts: doubles from `min` up to
    /// `max`, with jitter (defaults 250 ms and 10 s).
    pub fn backoff(mut self, min: Duration, max: Duration) -> Self {
        self.settings.min_backoff = min;
        self.settings.max_backoff = max.max(min);
        self
    }

    /// How long connecting and subscribing may take before it counts as a
    /// failed attempt (default 10 s).
    pub fn open_timeout(mut self, timeout: Duration) -> Self {
        self.settings.open_timeout = timeout;
        self
    }

    /// How long a socket may stay silent before it is taken for dead and
    /// replaced (default 90 s; herald pings every 30 s by default).
    pub fn silence_timeout(mut self, timeout: Duration) -> Self {
        self.settings.silence_timeout = timeout;
        self
    }
}

impl<'a> IntoFuture for Subscribe<'a> {
    type Output = Result<Subscription, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            if self.channels.is_empty() || self.channels.iter().any(String::is_empty) {
                return Err(Error::Usage(
                    "subscribe needs one or more non-empty channel names".into(),
                ));
            }
            let positions = positions(&self.channels, &self.since)?;
            let mut subscription = Subscription {
                url: format!("ws{}/ws", self.herald.url().trim_start_matches("http")),
                credential: self.herald.credential().map(str::to_owned),
                positions,
                subscribed_at: HashMap::new(),
                pending: HashMap::new(),
                next_ref: 0,
                items: VecDeque::new(),
                socket: None,
                failures: 0,
                closed: false,
                settings: self.settings,
            };
            subscription.connected().await?;
            Ok(subscription)
        })
    }
}

/// Each channel's starting position from a `since` (see [`Subscribe::since`]).
fn positions(channels: &[String], since: &str) -> Result<Vec<(String, Option<String>)>, Error> {
    let mut positions: Vec<(String, Option<String>)> = Vec::new();
    for channel in channels {
        if !positions.iter().any(|(c, _)| c == channel) {
            positions.push((channel.clone(), None));
        }
    }
    let pairs: Vec<(String, String)> = if since.is_empty() {
        Vec::new()
    } else if since.contains('=') {
        since
            .split(',')
            .filter_map(|part| part.split_once('='))
            .map(|(c, p)| (c.to_owned(), p.to_owned()))
            .collect()
    } else if since == "0" || positions.len() == 1 {
        positions
            .iter()
            .map(|(c, _)| (c.clone(), since.to_owned()))
            .collect()
    } else {
        return Err(Error::Usage(
            "a bare id resumes one channel; pass a cursor (news=ID,alerts=ID) for several".into(),
        ));
    };
    for (channel, position) in pairs {
        // As herald does: a channel named but not subscribed is ignored.
        if let Some(slot) = positions.iter_mut().find(|(c, _)| *c == channel) {
            slot.1 = Some(position);
        }
    }
    Ok(positions)
}

/// Whether `new` follows `last` on one channel. herald documents ids as
/// `EPOCH-SEQ`; ids of different epochs cannot be ordered, so they pass.
fn is_after(new: &str, last: Option<&str>) -> bool {
    let Some(last) = last else { return true };
    let split = |id: &str| {
        id.rsplit_once('-')
            .and_then(|(epoch, seq)| Some((epoch.to_owned(), seq.parse::<u64>().ok()?)))
    };
    match (split(new), split(last)) {
        (Some((epoch, seq)), Some((last_epoch, last_seq))) if epoch == last_epoch => seq > last_seq,
        _ => true,
    }
}

/// Why opening a socket failed.
enum Failure {
    /// Worth another attempt: the network, a 5xx, a 429, a timeout.
    Retry,
    /// herald refused (a bad channel, a bad token...): retrying cannot help.
    Fatal(Error),
}

/// What the caller must do after a frame was handled.
enum Then {
    Nothing,
    /// The channel was deleted: follow its next life (the resume then
    /// reports the lost history as a gap).
    Resubscribe(String),
}

/// Channels followed over herald's `/ws` protocol; [`next`](Self::next)
/// yields their messages and gaps in order, across reconnections.
pub struct Subscription {
    url: String,
    credential: Option<String>,
    positions: Vec<(String, Option<String>)>,
    /// `last_id` of each channel's `ok`, where it started this connection.
    subscribed_at: HashMap<String, Option<String>>,
    /// `ref` of each `sub` not answered yet, and its channel.
    pending: HashMap<u64, String>,
    next_ref: u64,
    items: VecDeque<Item>,
    socket: Option<Socket>,
    failures: u32,
    closed: bool,
    settings: Settings,
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("url", &self.url)
            .field("cursor", &self.cursor())
            .field("connected", &self.socket.is_some())
            .field("closed", &self.closed)
            .finish_non_exhaustive()
    }
}

impl Subscription {
    /// The channels followed.
    pub fn channels(&self) -> impl Iterator<Item = &str> {
        self.positions.iter().map(|(c, _)| c.as_str())
    }

    /// Where every channel stands (`news=ID,alerts=ID`): keep it and pass
    /// it to [`Subscribe::since`] to resume after a restart.
    pub fn cursor(&self) -> String {
        self.positions
            .iter()
            .filter_map(|(c, p)| p.as_ref().map(|p| format!("{c}={p}")))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The next message or gap, waiting for one; `Ok(None)` once
    /// [closed](Self::close). A dropped socket is reconnected and resumed
    /// without a word; an error means herald refused the subscription (a
    /// bad channel, a token that no longer allows it...), which ends it.
    pub async fn next(&mut self) -> Result<Option<Item>, Error> {
        loop {
            if let Some(item) = self.items.pop_front() {
                return Ok(Some(item));
            }
            if self.closed {
                return Ok(None);
            }
            self.connected().await?;
            let Some(socket) = self.socket.as_mut() else {
                continue;
            };
            let frame =
                match tokio::time::timeout(self.settings.silence_timeout, socket.next()).await {
                    Ok(Some(Ok(frame))) => frame,
                    // Closed, failed, or silent for too long: resume on a new one.
                    Ok(Some(Err(_)) | None) | Err(_) => {
                        self.drop_socket().await;
                        continue;
                    }
                };
            let Frame::Text(text) = frame else {
                if matches!(frame, Frame::Close(_)) {
                    self.drop_socket().await;
                }
                continue;
            };
            let handled = match serde_json::from_str::<Value>(text.as_str()) {
                Ok(value) => self.frame(&value),
                Err(e) => Err(Error::Protocol(format!("bad frame from herald: {e}"))),
            };
            match handled {
                Ok(Then::Nothing) => {}
                Ok(Then::Resubscribe(channel)) => {
                    if let Some(mut socket) = self.socket.take() {
                        let sent = self.send_sub_on(&mut socket, &channel).await;
                        self.socket = Some(socket);
                        if sent.is_err() {
                            self.drop_socket().await;
                        }
                    }
                }
                Err(error) => {
                    self.drop_socket().await;
                    return Err(error);
                }
            }
        }
    }

    /// Closes the socket; [`next`](Self::next) then answers `Ok(None)`.
    pub async fn close(&mut self) {
        self.closed = true;
        self.drop_socket().await;
    }

    async fn drop_socket(&mut self) {
        self.pending.clear();
        self.failures = self.failures.max(1);
        if let Some(mut socket) = self.socket.take() {
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
        }
    }

    /// Connects (after a backoff if the last attempt failed) until a socket
    /// is up with every channel subscribed, or herald refuses.
    async fn connected(&mut self) -> Result<(), Error> {
        while self.socket.is_none() && !self.closed {
            if self.failures > 0 {
                tokio::time::sleep(self.backoff()).await;
            }
            match self.open().await {
                Ok(socket) => {
                    self.socket = Some(socket);
                    self.failures = 0;
                }
                Err(Failure::Retry) => self.failures = self.failures.saturating_add(1),
                Err(Failure::Fatal(error)) => {
                    self.closed = true;
                    return Err(error);
                }
            }
        }
        Ok(())
    }

    /// Half to all of a ceiling that doubles with each failure.
    fn backoff(&self) -> Duration {
        let doublings = self.failures.saturating_sub(1).min(30);
        let ceiling = self
            .settings
            .min_backoff
            .saturating_mul(1 << doublings)
            .min(self.settings.max_backoff);
        // Jitter without a random-number dependency: std's hasher keys are random.
        let random = std::collections::hash_map::RandomState::new().hash_one(self.failures);
        let fraction = (random % 1_000) as f64 / 1_000.0;
        ceiling.div_f64(2.0) + ceiling.div_f64(2.0).mul_f64(fraction)
    }

    async fn open(&mut self) -> Result<Socket, Failure> {
        let mut request =
            self.url.as_str().into_client_request().map_err(|e| {
                Failure::Fatal(Error::Usage(format!("bad /ws URL {}: {e}", self.url)))
            })?;
        if let Some(credential) = &self.credential {
            let value = HeaderValue::from_str(&format!("Bearer {credential}")).map_err(|_| {
                Failure::Fatal(Error::Usage("the credential is not a valid header".into()))
            })?;
            request.headers_mut().insert("authorization", value);
        }
        let timeout = self.settings.open_timeout;
        let connect = tokio_tungstenite::connect_async(request);
        let mut socket = match tokio::time::timeout(timeout, connect).await {
            Err(_) => return Err(Failure::Retry),
            Ok(Ok((socket, _))) => socket,
            Ok(Err(tungstenite::Error::Http(response))) => {
                let status = response.status().as_u16();
                if status == 429 || status >= 500 {
                    return Err(Failure::Retry);
                }
                let body = response.body().as_deref().unwrap_or_default();
                return Err(Failure::Fatal(Error::from_body(status, body)));
            }
            Ok(Err(tungstenite::Error::Url(e))) => {
                return Err(Failure::Fatal(Error::Usage(format!(
                    "cannot open {}: {e}",
                    self.url
                ))))
            }
            Ok(Err(_)) => return Err(Failure::Retry),
        };
        match tokio::time::timeout(timeout, self.subscribe_all(&mut socket)).await {
            Ok(Ok(())) => Ok(socket),
            Ok(Err(failure)) => {
                let _ = socket.close(None).await;
                Err(failure)
            }
            Err(_) => Err(Failure::Retry),
        }
    }

    /// Sends every `sub` and handles frames until all are answered
    /// (replayed messages of one channel may come before another's `ok`).
    async fn subscribe_all(&mut self, socket: &mut Socket) -> Result<(), Failure> {
        self.pending.clear();
        let channels: Vec<String> = self.positions.iter().map(|(c, _)| c.clone()).collect();
        for channel in &channels {
            self.send_sub_on(socket, channel)
                .await
                .map_err(|_| Failure::Retry)?;
        }
        while !self.pending.is_empty() {
            let frame = match socket.next().await {
                Some(Ok(Frame::Text(text))) => text,
                Some(Ok(Frame::Close(_)) | Err(_)) | None => return Err(Failure::Retry),
                Some(Ok(_)) => continue,
            };
            let value: Value = serde_json::from_str(frame.as_str()).map_err(|e| {
                Failure::Fatal(Error::Protocol(format!("bad frame from herald: {e}")))
            })?;
            match self.frame(&value).map_err(Failure::Fatal)? {
                Then::Nothing => {}
                Then::Resubscribe(channel) => self
                    .send_sub_on(socket, &channel)
                    .await
                    .map_err(|_| Failure::Retry)?,
            }
        }
        Ok(())
    }

    async fn send_sub_on(&mut self, socket: &mut Socket, channel: &str) -> Result<(), Error> {
        self.next_ref += 1;
        self.pending.insert(self.next_ref, channel.to_owned());
        let mut frame = json!({ "op": "sub", "channel": channel, "ref": self.next_ref });
        if let Some(Some(since)) = self
            .positions
            .iter()
            .find(|(c, _)| c == channel)
            .map(|(_, p)| p)
        {
            frame["since"] = since.as_str().into();
        }
        socket.send(Frame::text(frame.to_string())).await?;
        Ok(())
    }

    fn position_mut(&mut self, channel: &str) -> Option<&mut Option<String>> {
        self.positions
            .iter_mut()
            .find(|(c, _)| c == channel)
            .map(|(_, p)| p)
    }

    /// Applies one server frame: queues items, moves positions.
    fn frame(&mut self, frame: &Value) -> Result<Then, Error> {
        let text = |key: &str| frame.get(key).and_then(Value::as_str).map(str::to_owned);
        match frame.get("op").and_then(Value::as_str) {
            Some("msg") => {
                let (Some(channel), Some(id)) = (text("channel"), text("id")) else {
                    return Err(Error::Protocol(format!(
                        "msg without channel or id: {frame}"
                    )));
                };
                let Some(position) = self.position_mut(&channel) else {
                    return Ok(Then::Nothing);
                };
                if !is_after(&id, position.as_deref()) {
                    return Ok(Then::Nothing); // already handed out before a reconnect
                }
                *position = Some(id.clone());
                let raw = text("data").unwrap_or_default();
                let data = if frame.get("encoding").and_then(Value::as_str) == Some("base64") {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(raw.as_bytes())
                        .map_err(|e| Error::Protocol(format!("bad base64 data: {e}")))?;
                    Data::Binary(bytes)
                } else {
                    Data::Text(raw)
                };
                self.items.push_back(Item::Message(Message {
                    id,
                    channel,
                    event: text("event"),
                    data,
                }));
            }
            Some("gap") => {
                let Some(channel) = text("channel") else {
                    return Err(Error::Protocol(format!("gap without channel: {frame}")));
                };
                let first_id = text("first_id");
                if first_id.is_none() {
                    // Nothing to replay: resume from where the sub started,
                    // not from the stale id again.
                    let started = self.subscribed_at.get(&channel).cloned().flatten();
                    if let (Some(position), Some(started)) = (self.position_mut(&channel), started)
                    {
                        *position = Some(started);
                    }
                }
                self.items.push_back(Item::Gap(Gap {
                    channel,
                    reason: text("reason").unwrap_or_default(),
                    since: text("since"),
                    missed: frame.get("missed").and_then(Value::as_u64),
                    first_id,
                }));
            }
            Some("ok") => {
                let answered = frame
                    .get("ref")
                    .and_then(Value::as_u64)
                    .and_then(|r| self.pending.remove(&r));
                if let Some(channel) = answered {
                    let last_id = text("last_id");
                    self.subscribed_at.insert(channel.clone(), last_id.clone());
                    if let Some(position @ None) = self.position_mut(&channel) {
                        *position = last_id;
                    }
                }
            }
            Some("error") => {
                let error = frame.get("error").cloned().unwrap_or(Value::Null);
                let field = |key: &str| error.get(key).and_then(Value::as_str).map(str::to_owned);
                let code = field("code").unwrap_or_else(|| "error".into());
                let channel = text("channel").or_else(|| field("channel"));
                if code == "channel_deleted" {
                    if let Some(channel) = channel.filter(|c| self.position_mut(c).is_some()) {
                        return Ok(Then::Resubscribe(channel));
                    }
                }
                if let Some(r) = frame.get("ref").and_then(Value::as_u64) {
                    self.pending.remove(&r);
                }
                self.closed = true;
                return Err(Error::Herald {
                    status: None,
                    code,
                    message: field("message").unwrap_or_default(),
                });
            }
            _ => {}
        }
        Ok(Then::Nothing)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn since_is_an_id_a_cursor_or_zero() {
        let two = names(&["news", "alerts"]);
        assert_eq!(
            positions(&two, "").unwrap(),
            vec![("news".into(), None), ("alerts".into(), None)]
        );
        assert_eq!(
            positions(&two, "news=a-1,other=b-2").unwrap(),
            vec![("news".into(), Some("a-1".into())), ("alerts".into(), None)]
        );
        assert_eq!(
            positions(&two, "0").unwrap(),
            vec![
                ("news".into(), Some("0".into())),
                ("alerts".into(), Some("0".into()))
            ]
        );
        assert_eq!(
            positions(&names(&["news"]), "a-7").unwrap(),
            vec![("news".into(), Some("a-7".into()))]
        );
        assert!(positions(&two, "a-7").is_err());
    }

    #[test]
    fn ids_of_one_epoch_are_ordered_and_others_pass() {
        assert!(is_after("a-2", None));
        assert!(is_after("a-10", Some("a-9")));
        assert!(!is_after("a-9", Some("a-9")));
        assert!(!is_after("a-3", Some("a-9")));
        assert!(is_after("b-1", Some("a-9")));
        assert!(is_after("a-1", Some("0")));
    }
}
