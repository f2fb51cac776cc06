//! Webhooks (`--webhook URL`): the engine's channel events (occupied,
//! vacated, join, leave) sent to the application's backend.
//!
//! One task listens to the engine's event stream, so a slow or dead
//! webhook never slows publishing or delivery. Events are batched (at most
//! [`MAX_BATCH`] per request, sent within [`BATCH_WINDOW`] of the first),
//! signed with `X-Herald-Signature: sha256=<hex HMAC-SHA256(secret, body)>`,
//! and a failed batch is retried with backoff for `--webhook-retry` before
//! its events are dropped and counted. Batches go one at a time, in order;
//! events that arrive meanwhile wait, up to [`MAX_WAITING`].

use std::collections::VecDeque;
use std::time::Duration;

use hmac::{Hmac, Mac};
use sha2::Sha256;
use tokio::sync::broadcast::{self, error::RecvError};
use tokio_util::sync::CancellationToken;

use crate::engine::ChannelEvent;

/// Most events in one request.
pub const MAX_BATCH: usize = 100;

/// How long the first event of a batch waits for company.
pub const BATCH_WINDOW: Duration = Duration::from_secs(1);

/// Most events waiting while a batch is retried; more are dropped.
pub const MAX_WAITING: usize = 10_000;

/// Time allowed for one request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// `sha256=<hex HMAC-SHA256(secret, body)>`, the `X-Herald-Signature` value.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256=");
    for byte in digest {
        out.push_str(&format!("{byte:02x}"));
    }
    out
}

/// A configured webhook.
#[derive(Debug, Clone)]
pub struct Webhook {
    pub url: String,
    pub secret: Option<String>,
    /// How long a batch is retried before its events are dropped.
    pub retry_for: Duration,
}

impl Webhook {
    /// Sends `events` until `shutdown`.
    pub async fn run(
        self,
        mut events: broadcast::Receiver<ChannelEvent>,
        shutdown: CancellationToken,
    ) {
        let client = reqwest::Client::builder()
            .timeout(REQUEST_TIMEOUT)
            .build()
            .unwrap_or_default();
        let mut waiting: VecDeque<ChannelEvent> = VecDeque::new();
        loop {
            // Wait for a first event, then gather for the batch window.
            if waiting.is_empty() {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    event = events.recv() => match event {
                        Ok(event) => waiting.push_back(event),
                        Err(RecvError::Lagged(missed)) => dropped("lagged", missed),
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            let window = tokio::time::sleep(BATCH_WINDOW);
            tokio::pin!(window);
            while waiting.len() < MAX_BATCH {
                tokio::select! {
                    _ = &mut window => break,
                    _ = shutdown.cancelled() => return,
                    event = events.recv() => match event {
                        Ok(event) => waiting.push_back(event),
                        Err(RecvError::Lagged(missed)) => dropped("lagged", missed),
                        Err(RecvError::Closed) => return,
                    },
                }
            }
            let take = waiting.len().min(MAX_BATCH);
            let batch: Vec<ChannelEvent> = waiting.drain(..take).collect();
            if !self
                .deliver(&client, &batch, &mut events, &mut waiting, &shutdown)
                .await
            {
                return;
            }
        }
    }

    /// Sends one batch, retrying with backoff for `retry_for` while keeping
    /// up with new events. False when shutting down.
    async fn deliver(
        &self,
        client: &reqwest::Client,
        batch: &[ChannelEvent],
        events: &mut broadcast::Receiver<ChannelEvent>,
        waiting: &mut VecDeque<ChannelEvent>,
        shutdown: &CancellationToken,
    ) -> bool {
        let body = serde_json::to_vec(&serde_json::json!({ "events": batch }))
            .expect("events serialize to JSON");
        let signature = self.secret.as_ref().map(|s| sign(s.as_bytes(), &body));
        let give_up = tokio::time::Instant::now() + self.retry_for;
        let mut backoff = Duration::from_millis(250);
        loop {
            let mut request = client
                .post(&self.url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .body(body.clone());
            if let Some(signature) = &signature {
                request = request.header("x-herald-signature", signature);
            }
            let sent = tokio::select! {
                _ = shutdown.cancelled() => return false,
                sent = request.send() => sent,
            };
            match sent {
                Ok(response) if response.status().is_success() => {
                    crate::telemetry::webhook_request("ok");
                    crate::telemetry::webhook_sent(batch.len() as u64);
                    return true;
                }
                Ok(response) => {
                    tracing::warn!(status = %response.status(), url = %self.url, "webhook refused a batch");
                }
                Err(error) => {
                    tracing::warn!(%error, url = %self.url, "webhook failed");
                }
            }
            crate::telemetry::webhook_request("failed");
            let now = tokio::time::Instant::now();
            if now + backoff > give_up {
                dropped("retries_exhausted", batch.len() as u64);
                return true;
            }
            let pause = tokio::time::sleep(backoff);
            tokio::pin!(pause);
            // Keep reading events while waiting, so the stream does not lag.
            loop {
                tokio::select! {
                    _ = &mut pause => break,
                    _ = shutdown.cancelled() => return false,
                    event = events.recv() => match event {
                        Ok(event) if waiting.len() < MAX_WAITING => waiting.push_back(event),
                        Ok(_) => dropped("overflow", 1),
                        Err(RecvError::Lagged(missed)) => dropped("lagged", missed),
                        Err(RecvError::Closed) => return false,
                    },
                }
            }
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
    }
}

fn dropped(reason: &'static str, count: u64) {
    tracing::warn!(reason, count, "webhook events dropped");
    crate::telemetry::webhook_dropped(reason, count);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_are_hex_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
