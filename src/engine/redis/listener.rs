//! The node's one Pub/Sub connection to Redis.
//!
//! It subscribes only to the topics of channels this node has subscribers
//! for, hands every note to the engine, and when the connection drops it
//! tells the engine (so cached channels stop trusting themselves), reconnects
//! with backoff, subscribes again to everything it had, and tells the engine
//! to resynchronise from the Streams: nothing published meanwhile is lost.

use std::collections::HashSet;
use std::sync::Weak;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::sync::{mpsc, oneshot};

use super::sentinel::Failover;
use super::store::{channel_of_topic, unavailable, CALL_TIMEOUT};
use super::Shared;
use crate::engine::EngineError;

/// What the engine asks of the listener.
pub enum Request {
    /// Subscribe to a topic; answered once Redis confirmed it.
    Listen(String, oneshot::Sender<Result<(), EngineError>>),
    /// Stop receiving a topic.
    Forget(String),
}

const MIN_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// Where the Pub/Sub connection goes.
pub enum Target {
    /// The configured URLs (one server, or a cluster's nodes), in turn.
    Urls(Vec<String>),
    /// Whichever server the sentinels name primary at each (re)connection.
    Sentinel(Failover),
}

/// Runs until the engine is dropped.
pub async fn run(shared: Weak<Shared>, target: Target, mut requests: mpsc::Receiver<Request>) {
    let (clients, failover): (Vec<redis::Client>, Option<Failover>) = match target {
        Target::Urls(urls) => (
            urls.iter()
                .filter_map(|url| redis::Client::open(url.as_str()).ok())
                .collect(),
            None,
        ),
        Target::Sentinel(failover) => (Vec::new(), Some(failover)),
    };
    let mut topics: HashSet<String> = HashSet::new();
    let mut backoff = MIN_BACKOFF;
    let mut next = 0usize;
    loop {
        let connected = match &failover {
            Some(failover) => connect_primary(failover).await,
            None => connect(&clients, &mut next).await,
        };
        let pubsub = match connected {
            Ok(pubsub) => pubsub,
            Err(error) => {
                tracing::debug!(%error, "Redis Pub/Sub connection failed; retrying");
                // Keep answering while Redis is away, so callers fail fast.
                let wait = tokio::time::sleep(backoff);
                tokio::pin!(wait);
                loop {
                    tokio::select! {
                        _ = &mut wait => break,
                        request = requests.recv() => match request {
                            None => return,
                            Some(Request::Listen(topic, reply)) => {
                                topics.insert(topic);
                                let _ = reply.send(Err(unavailable("not connected")));
                            }
                            Some(Request::Forget(topic)) => {
                                if !shared.upgrade().is_some_and(|engine| engine.wants(&topic)) {
                                    topics.remove(&topic);
                                }
                            }
                        },
                    }
                }
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        let (mut sink, mut stream) = pubsub.split();
        if !topics.is_empty() {
            let all: Vec<&String> = topics.iter().collect();
            let subscribed = tokio::time::timeout(CALL_TIMEOUT, sink.subscribe(all)).await;
            if !matches!(subscribed, Ok(Ok(()))) {
                continue;
            }
        }
        backoff = MIN_BACKOFF;
        let Some(engine) = shared.upgrade() else {
            return;
        };
        engine.connected();
        drop(engine);
        tracing::info!("Redis Pub/Sub connected");
        loop {
            tokio::select! {
                message = stream.next() => {
                    let Some(message) = message else { break };
                    let Some(engine) = shared.upgrade() else { return };
                    if let Some(channel) = channel_of_topic(message.get_channel_name()) {
                        engine.note(&channel, message.get_payload_bytes());
                    }
                }
                request = requests.recv() => match request {
                    None => return,
                    Some(Request::Listen(topic, reply)) => {
                        if topics.contains(&topic) {
                            let _ = reply.send(Ok(()));
                            continue;
                        }
                        match tokio::time::timeout(CALL_TIMEOUT, sink.subscribe(&topic)).await {
                            Ok(Ok(())) => {
                                topics.insert(topic);
                                let _ = reply.send(Ok(()));
                            }
                            _ => {
                                topics.insert(topic);
                                let _ = reply.send(Err(unavailable("could not subscribe")));
                                break;
                            }
                        }
                    }
                    Some(Request::Forget(topic)) => {
                        // A copy made since the request was sent needs the topic still.
                        let wanted = shared.upgrade().is_some_and(|engine| engine.wants(&topic));
                        if !wanted && topics.remove(&topic) {
                            let _ = tokio::time::timeout(CALL_TIMEOUT, sink.unsubscribe(&topic)).await;
                        }
                    }
                },
            }
        }
        tracing::warn!("Redis Pub/Sub connection lost; reconnecting");
        let Some(engine) = shared.upgrade() else {
            return;
        };
        engine.disconnected();
    }
}

/// Opens a Pub/Sub connection to the first server that answers, starting
/// after the one that failed last (a cluster's nodes all carry every topic).
async fn connect(
    clients: &[redis::Client],
    next: &mut usize,
) -> Result<redis::aio::PubSub, EngineError> {
    let mut last_error = unavailable("no Redis URL given");
    for _ in 0..clients.len() {
        let client = &clients[*next % clients.len()];
        match tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub()).await {
            Ok(Ok(pubsub)) => return Ok(pubsub),
            Ok(Err(error)) => last_error = unavailable(error),
            Err(_) => last_error = unavailable("connecting timed out"),
        }
        *next += 1;
    }
    Err(last_error)
}

/// Opens a Pub/Sub connection to the server the sentinels name primary
/// (notes are published there, and a demoted server's clients are dropped).
async fn connect_primary(failover: &Failover) -> Result<redis::aio::PubSub, EngineError> {
    let client = failover.sentinels().primary().await?;
    match tokio::time::timeout(Duration::from_secs(1), client.get_async_pubsub()).await {
        Ok(Ok(pubsub)) => Ok(pubsub),
        Ok(Err(error)) => Err(unavailable(error)),
        Err(_) => Err(unavailable("connecting timed out")),
    }
}
