//! Redis as the shared store: key names, the Lua scripts and typed calls.
//!
//! Every change to a channel is one script, so it is atomic inside Redis:
//! the sequence number is taken, the message appended to the channel's
//! Stream, history trimmed and the message published to the channel's
//! Pub/Sub topic in one step, and ids are gap-free and the same on every
//! node. A channel's keys share the hash tag `{channel}`, so in a Redis
//! Cluster they live in one slot and the scripts may touch them together.

use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, Pipeline, RedisFuture, Script, Value};

use super::sentinel::Failover;
use super::wire::{self, Entry};
use crate::engine::EngineError;
use crate::hub::{ChannelName, ChannelPolicy, DataKind, Draft, HistoryLimits};

/// How long one Redis call may take before the caller is told Redis is unavailable.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(3);

const PRELUDE: &str = include_str!("trim.lua");

/// How long a node's reported subscriber count stays valid without a refresh.
pub const REPORT_VALIDITY: Duration = Duration::from_secs(30);

/// Where herald's keys for one channel live.
#[derive(Debug, Clone)]
pub struct Keys {
    pub meta: String,
    pub log: String,
    pub topic: String,
    /// Subscriber counts reported by each node.
    pub nodes: String,
    idempotency_prefix: String,
}

impl Keys {
    pub fn new(prefix: &str, channel: &ChannelName) -> Self {
        let base = format!("{prefix}:{{{}}}", channel.as_str());
        Self {
            meta: format!("{base}:meta"),
            log: format!("{base}:log"),
            topic: format!("{base}:live"),
            nodes: format!("{base}:nodes"),
            idempotency_prefix: format!("{base}:idem:"),
        }
    }

    fn idempotency(&self, key: Option<&str>) -> String {
        format!("{}{}", self.idempotency_prefix, key.unwrap_or(""))
    }
}

/// The channel named by a Pub/Sub topic (`PREFIX:{channel}:live`).
pub fn channel_of_topic(topic: &str) -> Option<ChannelName> {
    let start = topic.find('{')? + 1;
    let end = start + topic[start..].find('}')?;
    ChannelName::parse(&topic[start..end]).ok()
}

/// A command connection: one multiplexed connection to a Redis server, a
/// cluster client that routes each call by its keys' slot, or a connection
/// to whichever server the sentinels name primary. All pipeline concurrent
/// calls over few sockets, so a publish costs one round trip.
#[derive(Clone)]
pub enum Connection {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
    Sentinel(Failover),
}

impl ConnectionLike for Connection {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Self::Single(c) => c.req_packed_command(cmd),
            Self::Cluster(c) => c.req_packed_command(cmd),
            Self::Sentinel(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Self::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
            Self::Sentinel(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Self::Single(c) => c.get_db(),
            Self::Cluster(c) => c.get_db(),
            Self::Sentinel(c) => c.get_db(),
        }
    }
}

pub fn unavailable(error: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("redis: {error}"))
}

/// How many replicas must hold a publish before it is acknowledged.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durability {
    /// 0: the primary's answer is enough (what Redis replication gives by default).
    pub replicas: usize,
    /// The longest `WAIT` for them.
    pub timeout: Duration,
}

/// The outcome of the publish script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Appended {
    pub epoch: u64,
    pub seq: u64,
    pub published_at_ms: u64,
    /// An earlier publish with the same idempotency key answered instead.
    pub repeated: bool,
    /// Subscribers on the other nodes, as they last reported.
    pub remote_subscribers: usize,
}

/// What a synchronisation read found.
#[derive(Debug)]
pub struct Snapshot {
    pub epoch: u64,
    pub seq: u64,
    /// Oldest first; only those after the node's seq when its epoch matched.
    pub entries: Vec<Entry>,
}

/// A channel as Redis holds it, for `GET /pub/{channel}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stored {
    pub epoch: u64,
    pub seq: u64,
    pub messages: usize,
    pub bytes: usize,
    /// Seq of the oldest message kept, if any.
    pub first_seq: Option<u64>,
    /// Subscribers on the other nodes, as they last reported.
    pub remote_subscribers: usize,
}

/// The scripts and the connection that runs them.
pub struct Store {
    connection: Connection,
    prefix: String,
    /// Each channel's history limits, applied in Redis by the scripts.
    policy: Arc<ChannelPolicy>,
    /// This node's name in the channels' nodes hashes.
    node: String,
    publish: Script,
    read: Script,
    info: Script,
    delete: Script,
    renew: Script,
    durability: Durability,
}

fn with_prelude(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

fn epoch_text(epoch: u64) -> String {
    crate::hub::MessageId::new(epoch, 0)
        .to_string()
        .trim_end_matches("-0")
        .to_owned()
}

fn parse_epoch(text: &str) -> Result<u64, EngineError> {
    u64::from_str_radix(text, 36).map_err(|_| unavailable(format!("bad epoch {text:?} in Redis")))
}

async fn bounded<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    bounded_for(CALL_TIMEOUT, future).await
}

async fn bounded_for<T>(
    limit: Duration,
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(limit, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(unavailable("no answer in time")),
    }
}

impl Store {
    pub fn new(
        connection: Connection,
        prefix: String,
        policy: Arc<ChannelPolicy>,
        durability: Durability,
    ) -> Self {
        Self {
            durability,
            connection,
            prefix,
            policy,
            node: format!("{:016x}", rand::random::<u64>()),
            publish: with_prelude(include_str!("publish.lua")),
            read: with_prelude(include_str!("read.lua")),
            info: with_prelude(include_str!("info.lua")),
            delete: Script::new(include_str!("delete.lua")),
            renew: Script::new(include_str!("renew.lua")),
        }
    }

    /// The command connection (cheap to clone: calls share its sockets).
    pub fn connection(&self) -> Connection {
        self.connection.clone()
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// This node's name in Redis.
    pub fn node(&self) -> &str {
        &self.node
    }

    pub fn keys(&self, channel: &ChannelName) -> Keys {
        Keys::new(&self.prefix, channel)
    }

    fn ttl_ms(limits: &HistoryLimits) -> u64 {
        (limits.ttl.as_millis() as u64).max(1)
    }

    /// Appends `draft` with the next id of its channel and publishes it to every node.
    pub async fn publish(
        &self,
        draft: &Draft,
        candidate_epoch: u64,
        now_ms: u64,
    ) -> Result<Appended, EngineError> {
        let keys = self.keys(&draft.channel);
        let limits = self.policy.history(&draft.channel);
        let weight = draft.data.len() + draft.channel.as_str().len() + 64;
        let mut call = self.publish.prepare_invoke();
        call.key(&keys.meta)
            .key(&keys.log)
            .key(keys.idempotency(draft.idempotency_key.as_deref()))
            .key(&keys.nodes)
            .arg(&draft.data[..])
            .arg(draft.event.as_ref().map_or("", |e| e.as_str()))
            .arg(now_ms)
            .arg(epoch_text(candidate_epoch))
            .arg(limits.max_messages)
            .arg(limits.max_bytes)
            .arg(Self::ttl_ms(&limits))
            .arg(if draft.idempotency_key.is_some() {
                "1"
            } else {
                "0"
            })
            .arg(&keys.topic)
            .arg(weight)
            .arg(&self.node)
            .arg(match draft.kind {
                DataKind::Binary => "b",
                DataKind::Text => "",
            });
        let mut connection = self.connection.clone();
        type Answer = (String, u64, u64, u8, usize);
        let (epoch, seq, published_at_ms, repeated, remote_subscribers): Answer =
            if self.durability.replicas == 0 {
                bounded(call.invoke_async(&mut connection)).await?
            } else {
                // WAIT counts the replicas that hold every write made so far
                // on the connection that asks, so it must follow the script
                // on the same socket: one pipeline, which also loads the
                // script (a primary just promoted may not have it).
                let wait_ms = (self.durability.timeout.as_millis() as u64).max(1);
                let mut pipeline = redis::pipe();
                pipeline
                    .load_script(&self.publish)
                    .ignore()
                    .invoke_script(&call)
                    .cmd("WAIT")
                    .arg(self.durability.replicas)
                    .arg(wait_ms);
                let (answer, confirmed): (Answer, usize) = bounded_for(
                    CALL_TIMEOUT + self.durability.timeout,
                    pipeline.query_async(&mut connection),
                )
                .await?;
                if confirmed < self.durability.replicas {
                    return Err(EngineError::NotReplicated {
                        wanted: self.durability.replicas,
                        confirmed,
                        waited: self.durability.timeout,
                    });
                }
                answer
            };
        Ok(Appended {
            epoch: parse_epoch(&epoch)?,
            seq,
            published_at_ms,
            repeated: repeated == 1,
            remote_subscribers,
        })
    }

    /// Reads what a node holding `local` (its epoch and newest seq) lacks.
    pub async fn read(
        &self,
        channel: &ChannelName,
        local: Option<(u64, u64)>,
        candidate_epoch: u64,
        now_ms: u64,
    ) -> Result<Snapshot, EngineError> {
        let keys = self.keys(channel);
        let limits = self.policy.history(channel);
        let (local_epoch, local_seq) = match local {
            Some((epoch, seq)) => (epoch_text(epoch), seq),
            None => (String::new(), 0),
        };
        let mut call = self.read.prepare_invoke();
        call.key(&keys.meta)
            .key(&keys.log)
            .arg(epoch_text(candidate_epoch))
            .arg(local_epoch)
            .arg(local_seq)
            .arg(now_ms)
            .arg(limits.max_messages)
            .arg(limits.max_bytes)
            .arg(Self::ttl_ms(&limits));
        let mut connection = self.connection.clone();
        let (epoch, seq, entries): (String, u64, Value) =
            bounded(call.invoke_async(&mut connection)).await?;
        Ok(Snapshot {
            epoch: parse_epoch(&epoch)?,
            seq,
            entries: wire::entries(entries).map_err(unavailable)?,
        })
    }

    /// The channel as Redis holds it, or `None` if Redis does not know it.
    pub async fn info(
        &self,
        channel: &ChannelName,
        now_ms: u64,
    ) -> Result<Option<Stored>, EngineError> {
        let keys = self.keys(channel);
        let limits = self.policy.history(channel);
        let mut call = self.info.prepare_invoke();
        call.key(&keys.meta)
            .key(&keys.log)
            .key(&keys.nodes)
            .arg(now_ms)
            .arg(limits.max_messages)
            .arg(limits.max_bytes)
            .arg(Self::ttl_ms(&limits))
            .arg(&self.node);
        let mut connection = self.connection.clone();
        let found: Option<(String, u64, usize, usize, u64, usize)> =
            bounded(call.invoke_async(&mut connection)).await?;
        found
            .map(|(epoch, seq, messages, bytes, first, remote_subscribers)| {
                Ok(Stored {
                    epoch: parse_epoch(&epoch)?,
                    seq,
                    messages,
                    bytes,
                    first_seq: (first > 0).then_some(first),
                    remote_subscribers,
                })
            })
            .transpose()
    }

    /// Drops the channel's keys and tells every node; true if Redis had it.
    pub async fn delete(&self, channel: &ChannelName) -> Result<bool, EngineError> {
        let keys = self.keys(channel);
        let mut call = self.delete.prepare_invoke();
        call.key(&keys.meta)
            .key(&keys.log)
            .key(&keys.nodes)
            .arg(&keys.topic);
        let mut connection = self.connection.clone();
        let existed: u64 = bounded(call.invoke_async(&mut connection)).await?;
        Ok(existed > 0)
    }

    /// Starts a new epoch if Redis still holds `epoch` at `seq` (it went back in time).
    pub async fn renew(
        &self,
        channel: &ChannelName,
        epoch: u64,
        seq: u64,
        new_epoch: u64,
    ) -> Result<(), EngineError> {
        let keys = self.keys(channel);
        let ttl_ms = Self::ttl_ms(&self.policy.history(channel));
        let mut call = self.renew.prepare_invoke();
        call.key(&keys.meta)
            .key(&keys.log)
            .arg(epoch_text(epoch))
            .arg(seq)
            .arg(epoch_text(new_epoch))
            .arg((2 * ttl_ms).max(60_000));
        let mut connection = self.connection.clone();
        let _: u64 = bounded(call.invoke_async(&mut connection)).await?;
        Ok(())
    }

    /// Reports this node's subscriber count on each channel, valid until
    /// `expires_ms` (a node that stops reporting stops being counted).
    pub async fn report(
        &self,
        counts: &[(ChannelName, usize)],
        expires_ms: u64,
    ) -> Result<(), EngineError> {
        let keep_ms = 2 * REPORT_VALIDITY.as_millis() as u64;
        // As the scripts' keep_ms: a channel someone listens to keeps its epoch.
        // The longest any channel keeps history, so no channel's epoch is
        // dropped from under a shorter-lived one's listeners.
        let meta_keep_ms = (2 * self.policy.longest_ttl().as_millis() as u64).max(60_000);
        let mut connection = self.connection.clone();
        // One call per channel: in a cluster each may live on another node.
        for chunk in counts.chunks(256) {
            let mut pipeline = redis::pipe();
            for (channel, count) in chunk {
                let nodes = self.keys(channel).nodes;
                if *count == 0 {
                    pipeline.hdel(&nodes, &self.node).ignore();
                } else {
                    pipeline
                        .hset(&nodes, &self.node, format!("{count} {expires_ms}"))
                        .ignore()
                        .pexpire(&nodes, keep_ms as i64)
                        .ignore()
                        .pexpire(self.keys(channel).meta, meta_keep_ms as i64)
                        .ignore();
                }
            }
            let _: () = bounded(pipeline.query_async(&mut connection)).await?;
        }
        Ok(())
    }

    /// Whether Redis answers now.
    pub async fn ping(&self) -> bool {
        let mut connection = self.connection.clone();
        let answer: Result<String, _> =
            bounded(redis::cmd("PING").query_async(&mut connection)).await;
        answer.is_ok()
    }
}

/// Opens the command connection without waiting for Redis (it connects on first use).
pub async fn connect(urls: &[String], cluster: bool) -> Result<Connection, EngineError> {
    if cluster {
        let client = redis::cluster::ClusterClientBuilder::new(urls.to_vec())
            .connection_timeout(Duration::from_secs(1))
            .response_timeout(CALL_TIMEOUT)
            .retries(2)
            .build()
            .map_err(unavailable)?;
        let connection = bounded(client.get_async_connection()).await?;
        return Ok(Connection::Cluster(connection));
    }
    let url = urls
        .first()
        .ok_or_else(|| unavailable("no Redis URL given"))?;
    let client = redis::Client::open(url.as_str()).map_err(unavailable)?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(1)))
        .set_response_timeout(Some(CALL_TIMEOUT))
        .set_number_of_retries(1)
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_millis(500));
    let manager = ConnectionManager::new_lazy_with_config(client, config).map_err(unavailable)?;
    Ok(Connection::Single(manager))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_share_the_channel_hash_tag() {
        let channel = ChannelName::parse("chat.room-1").unwrap();
        let keys = Keys::new("herald", &channel);
        for key in [
            &keys.meta,
            &keys.log,
            &keys.topic,
            &keys.idempotency(Some("k")),
        ] {
            assert!(key.starts_with("herald:{chat.room-1}:"), "{key}");
        }
        assert_eq!(channel_of_topic(&keys.topic), Some(channel));
        assert_eq!(channel_of_topic("herald:nothing"), None);
    }

    #[test]
    fn epochs_round_trip_through_their_text() {
        for epoch in [1, 35, 36, 36u64.pow(8) - 1] {
            assert_eq!(parse_epoch(&epoch_text(epoch)).unwrap(), epoch);
        }
    }
}
