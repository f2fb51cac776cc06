//! herald's publish API (`/pub`): publish one message or a batch, read a
//! channel's info, delete a channel.

use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::time::Duration;

use base64::Engine as _;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::subscribe::Subscribe;
use crate::Error;

/// Message data, text or bytes: herald keeps the kind a message was
/// published with and delivers it as such on every transport.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Data {
    /// UTF-8 text (JSON included).
    Text(String),
    /// Bytes (a WebSocket binary frame, base64 in JSON transports).
    Binary(Vec<u8>),
}

impl Data {
    /// The text, if this is text.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Self::Text(text) => Some(text),
            Self::Binary(_) => None,
        }
    }

    /// The raw bytes, text or not.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Text(text) => text.as_bytes(),
            Self::Binary(bytes) => bytes,
        }
    }

    /// Whether the message was published as bytes rather than text.
    pub fn is_binary(&self) -> bool {
        matches!(self, Self::Binary(_))
    }
}

impl From<&str> for Data {
    fn from(text: &str) -> Self {
        Self::Text(text.to_owned())
    }
}

impl From<String> for Data {
    fn from(text: String) -> Self {
        Self::Text(text)
    }
}

impl From<Vec<u8>> for Data {
    fn from(bytes: Vec<u8>) -> Self {
        Self::Binary(bytes)
    }
}

impl From<&[u8]> for Data {
    fn from(bytes: &[u8]) -> Self {
        Self::Binary(bytes.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for Data {
    fn from(bytes: &[u8; N]) -> Self {
        Self::Binary(bytes.to_vec())
    }
}

/// JSON is published as its compact text.
impl From<serde_json::Value> for Data {
    fn from(value: serde_json::Value) -> Self {
        Self::Text(value.to_string())
    }
}

/// herald's answer to a publish.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Published {
    /// The message's id: hand it back as `since` to resume after it.
    pub id: String,
    pub channel: String,
    /// Subscribers the message was handed to (on this node).
    pub subscribers: u64,
}

/// A channel's state (`GET /pub/{channel}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct ChannelInfo {
    pub channel: String,
    pub subscribers: u64,
    /// Messages in history.
    pub messages: u64,
    /// Bytes of history.
    #[serde(default)]
    pub bytes: u64,
    pub first_id: Option<String>,
    pub last_id: Option<String>,
}

/// herald's answer to a delete.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[non_exhaustive]
pub struct Deleted {
    pub channel: String,
    pub deleted: bool,
}

/// One message of [`Herald::publish_batch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchItem {
    pub channel: String,
    pub data: Data,
    pub event: Option<String>,
}

impl BatchItem {
    /// `data` for `channel`, with no event name.
    pub fn new(channel: impl Into<String>, data: impl Into<Data>) -> Self {
        Self {
            channel: channel.into(),
            data: data.into(),
            event: None,
        }
    }

    /// Sets the event name (SSE `event:`).
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }
}

/// A batch item as herald reads it: JSON carries bytes as base64.
#[derive(Serialize)]
struct WireItem<'a> {
    channel: &'a str,
    data: std::borrow::Cow<'a, str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    encoding: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event: Option<&'a str>,
}

impl<'a> From<&'a BatchItem> for WireItem<'a> {
    fn from(item: &'a BatchItem) -> Self {
        let (data, encoding) = match &item.data {
            Data::Text(text) => (text.as_str().into(), None),
            Data::Binary(bytes) => (
                base64::engine::general_purpose::STANDARD
                    .encode(bytes)
                    .into(),
                Some("base64"),
            ),
        };
        Self {
            channel: &item.channel,
            data,
            encoding,
            event: item.event.as_deref(),
        }
    }
}

/// A herald server, as a publisher (and the source of subscriptions).
///
/// Cheap to clone: clones share one connection pool.
#[derive(Debug, Clone)]
pub struct Herald {
    base: String,
    http: reqwest::Client,
    credential: Option<String>,
}

impl Herald {
    /// A client for the herald at `url` (`http://host:port`), with a 10 s
    /// timeout per request.
    pub fn new(url: &str) -> Result<Self, Error> {
        let base = url.trim_end_matches('/');
        if !base.starts_with("http://") {
            return Err(Error::Usage(format!(
                "bad herald URL {url:?}: use http://host:port (https needs a TLS-terminating proxy in front of this client's plain connections)"
            )));
        }
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()?;
        Ok(Self {
            base: base.to_owned(),
            http,
            credential: None,
        })
    }

    /// Authenticates as a publisher with herald's `--publish-key` (sent as
    /// `Authorization: Bearer KEY`), which may do anything.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.credential = Some(key.into());
        self
    }

    /// Authenticates with a JWT instead: only what its claims grant (see [`crate::Token`]).
    pub fn with_token(self, token: impl Into<String>) -> Self {
        self.with_key(token)
    }

    /// Uses `client` for HTTP (its timeouts, pool and proxy settings).
    pub fn with_http_client(mut self, client: reqwest::Client) -> Self {
        self.http = client;
        self
    }

    /// The base URL, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.base
    }

    pub(crate) fn credential(&self) -> Option<&str> {
        self.credential.as_deref()
    }

    /// Publishes `data` to `channel`: await it (after `.event(..)` or
    /// `.idempotency_key(..)` if wanted) for herald's answer, given once the
    /// message is in the channel's history.
    pub fn publish(&self, channel: &str, data: impl Into<Data>) -> Publish<'_> {
        Publish {
            herald: self,
            channel: channel.to_owned(),
            data: data.into(),
            event: None,
            idempotency_key: None,
        }
    }

    /// Publishes several messages at once, all or nothing (herald checks
    /// the whole batch first); the answers come in the same order.
    pub async fn publish_batch(
        &self,
        items: impl IntoIterator<Item = BatchItem>,
    ) -> Result<Vec<Published>, Error> {
        let items: Vec<BatchItem> = items.into_iter().collect();
        let wire: Vec<WireItem<'_>> = items.iter().map(WireItem::from).collect();
        let request = self.http.post(format!("{}/pub", self.base)).json(&wire);
        self.send(request).await
    }

    /// Subscribers, message count, first and last id; `404 not_found` if
    /// the channel has never been used.
    pub async fn info(&self, channel: &str) -> Result<ChannelInfo, Error> {
        self.send(self.http.get(self.channel_url(channel))).await
    }

    /// Drops the channel and its history; its subscribers are told.
    pub async fn delete(&self, channel: &str) -> Result<Deleted, Error> {
        self.send(self.http.delete(self.channel_url(channel))).await
    }

    /// Follows `channels` over one `/ws` socket; await the returned
    /// [`Subscribe`] (after `.since(..)` to resume) for a connected
    /// [`crate::Subscription`].
    pub fn subscribe<I, S>(&self, channels: I) -> Subscribe<'_>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Subscribe::new(self, channels.into_iter().map(Into::into).collect())
    }

    /// Percent-encodes the whole name, so a bad one reaches herald (and
    /// gets its `bad_channel` answer) instead of becoming another path.
    fn channel_url(&self, channel: &str) -> String {
        let mut url = format!("{}/pub/", self.base);
        for byte in channel.bytes() {
            match byte {
                b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                    url.push(byte as char)
                }
                _ => url.push_str(&format!("%{byte:02X}")),
            }
        }
        url
    }

    async fn send<T: DeserializeOwned>(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> Result<T, Error> {
        if let Some(credential) = &self.credential {
            request = request.bearer_auth(credential);
        }
        let response = request.send().await?;
        let status = response.status();
        let body = response.bytes().await?;
        if !status.is_success() {
            return Err(Error::from_body(status.as_u16(), &body));
        }
        serde_json::from_slice(&body).map_err(|e| {
            Error::Protocol(format!(
                "{e} in {:?}",
                String::from_utf8_lossy(&body[..body.len().min(200)])
            ))
        })
    }
}

/// A publish being prepared; `.await` sends it.
#[must_use = "a publish does nothing until awaited"]
pub struct Publish<'a> {
    herald: &'a Herald,
    channel: String,
    data: Data,
    event: Option<String>,
    idempotency_key: Option<String>,
}

impl Publish<'_> {
    /// The SSE event type (`event:`) subscribers see.
    pub fn event(mut self, event: impl Into<String>) -> Self {
        self.event = Some(event.into());
        self
    }

    /// Makes a retry with the same key return the first answer instead of
    /// publishing twice.
    pub fn idempotency_key(mut self, key: impl Into<String>) -> Self {
        self.idempotency_key = Some(key.into());
        self
    }
}

impl<'a> IntoFuture for Publish<'a> {
    type Output = Result<Published, Error>;
    type IntoFuture = Pin<Box<dyn Future<Output = Self::Output> + Send + 'a>>;

    fn into_future(self) -> Self::IntoFuture {
        Box::pin(async move {
            let herald = self.herald;
            let (body, content_type) = match self.data {
                Data::Text(text) => (text.into_bytes(), "text/plain; charset=utf-8"),
                Data::Binary(bytes) => (bytes, "application/octet-stream"),
            };
            let mut request = herald
                .http
                .post(herald.channel_url(&self.channel))
                .header(reqwest::header::CONTENT_TYPE, content_type)
                .body(body);
            if let Some(event) = &self.event {
                request = request.query(&[("event", event)]);
            }
            if let Some(key) = &self.idempotency_key {
                request = request.header("idempotency-key", key);
            }
            herald.send(request).await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn channel_names_are_percent_encoded_whole() {
        let herald = Herald::new("http://127.0.0.1:8080/").unwrap();
        assert_eq!(herald.url(), "http://127.0.0.1:8080");
        assert_eq!(
            herald.channel_url("chat.room-1:a@b"),
            "http://127.0.0.1:8080/pub/chat.room-1%3Aa%40b"
        );
        assert_eq!(
            herald.channel_url("../x y"),
            "http://127.0.0.1:8080/pub/..%2Fx%20y"
        );
        assert!(Herald::new("127.0.0.1:8080").is_err());
    }

    #[test]
    fn batch_items_carry_bytes_as_base64() {
        let items = [
            BatchItem::new("news", "one").event("update"),
            BatchItem::new("alerts", vec![0u8, 1]),
        ];
        let wire: Vec<WireItem<'_>> = items.iter().map(WireItem::from).collect();
        assert_eq!(
            serde_json::to_string(&wire).unwrap(),
            r#"[{"channel":"news","data":"one","event":"update"},{"channel":"alerts","data":"AAE=","encoding":"base64"}]"#
        );
    }

    #[test]
    fn json_is_published_as_compact_text() {
        let data = Data::from(serde_json::json!({"title": "hello"}));
        assert_eq!(data, Data::Text(r#"{"title":"hello"}"#.into()));
        assert!(Data::from(&[0u8, 1]).is_binary());
        assert_eq!(Data::from("é").as_bytes(), "é".as_bytes());
    }
}
