//! Cluster-wide presence and occupancy in Redis.
//!
//! Each node writes its own members into the channel's presence hash
//! (`PREFIX:{channel}:presence`, client → entry with the node's name) and
//! announces joins and leaves on the channel's Pub/Sub topic, so every node
//! lists every node's clients and tells its own subscribers. Occupancy is
//! the set of nodes with members (`PREFIX:{channel}:occupied`); a script
//! adds and removes a node and says whether the channel just became
//! occupied or vacant, so exactly one node reports each.
//!
//! A node proves it is alive with a key that expires (`PREFIX:node:NAME`,
//! refreshed every few seconds). Entries of a node whose key is gone are
//! left out of listings at once and removed by whichever node sweeps next,
//! which also announces their leaves: a killed node needs nobody's help to
//! drop out of presence.

use std::collections::HashMap;
use std::time::Duration;

use redis::{Script, Value};

use super::store::{unavailable, Connection, CALL_TIMEOUT};
use super::wire::{self, StoredEntry};
use crate::engine::EngineError;
use crate::hub::{ChannelName, Movement, PresenceEntry};

/// How long a node counts as alive after its last heartbeat.
pub const NODE_TTL: Duration = Duration::from_secs(15);

/// How often a node renews its heartbeat and sweeps dead nodes' members.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(5);

/// How long a presence hash outlives its last write (a safety net: members
/// are removed one by one).
const HASH_KEEP_MS: u64 = 24 * 3600 * 1000;

/// Adds node ARGV[1] to KEYS[1]; 1 if that made the channel occupied.
const OCCUPY: &str = r"
local added = redis.call('SADD', KEYS[1], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
if added == 1 and redis.call('SCARD', KEYS[1]) == 1 then return 1 end
return 0";

/// Removes node ARGV[1] from KEYS[1]; 1 if that left the channel vacant.
const VACATE: &str = r"
local removed = redis.call('SREM', KEYS[1], ARGV[1])
if removed == 1 and redis.call('SCARD', KEYS[1]) == 0 then return 1 end
return 0";

async fn bounded<T>(
    future: impl std::future::Future<Output = redis::RedisResult<T>>,
) -> Result<T, EngineError> {
    match tokio::time::timeout(CALL_TIMEOUT, future).await {
        Ok(result) => result.map_err(unavailable),
        Err(_) => Err(unavailable("no answer in time")),
    }
}

/// One node's view of presence in Redis.
pub struct ClusterPresence {
    connection: Connection,
    prefix: String,
    node: String,
    occupy: Script,
    vacate: Script,
}

impl ClusterPresence {
    pub fn new(connection: Connection, prefix: String, node: String) -> Self {
        Self {
            connection,
            prefix,
            node,
            occupy: Script::new(OCCUPY),
            vacate: Script::new(VACATE),
        }
    }

    pub fn node(&self) -> &str {
        &self.node
    }

    fn key(&self, channel: &ChannelName, what: &str) -> String {
        format!("{}:{{{}}}:{what}", self.prefix, channel.as_str())
    }

    fn topic(&self, channel: &ChannelName) -> String {
        self.key(channel, "live")
    }

    fn node_key(&self, node: &str) -> String {
        format!("{}:node:{node}", self.prefix)
    }

    /// Channels that may hold members or occupying nodes (for sweeping).
    fn index_key(&self) -> String {
        format!("{}:tracked", self.prefix)
    }

    /// Writes a member of this node again (after Redis lost it), without
    /// announcing it.
    pub async fn restore(
        &self,
        channel: &ChannelName,
        entry: &PresenceEntry,
    ) -> Result<(), EngineError> {
        let stored = StoredEntry::new(entry, &self.node);
        let json = serde_json::to_string(&stored).map_err(unavailable)?;
        let mut connection = self.connection.clone();
        let _: u64 = bounded(
            redis::cmd("HSET")
                .arg(self.key(channel, "presence"))
                .arg(&stored.client)
                .arg(json)
                .query_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    /// Records a member of this node and announces the join.
    pub async fn join(
        &self,
        channel: &ChannelName,
        entry: &PresenceEntry,
    ) -> Result<(), EngineError> {
        let stored = StoredEntry::new(entry, &self.node);
        let json = serde_json::to_string(&stored).map_err(unavailable)?;
        let hash = self.key(channel, "presence");
        let mut connection = self.connection.clone();
        let mut pipeline = redis::pipe();
        pipeline
            .hset(&hash, &stored.client, json)
            .ignore()
            .pexpire(&hash, HASH_KEEP_MS as i64)
            .ignore();
        let _: () = bounded(pipeline.query_async(&mut connection)).await?;
        self.index(channel).await?;
        self.announce(channel, Movement::Join, &stored).await
    }

    /// Removes a member of this node; true (and the leave announced) if it
    /// was there, so that each leave is reported once.
    pub async fn leave(
        &self,
        channel: &ChannelName,
        entry: &PresenceEntry,
    ) -> Result<bool, EngineError> {
        let stored = StoredEntry::new(entry, &self.node);
        self.remove(channel, &stored).await
    }

    async fn remove(
        &self,
        channel: &ChannelName,
        stored: &StoredEntry,
    ) -> Result<bool, EngineError> {
        let hash = self.key(channel, "presence");
        let mut connection = self.connection.clone();
        let removed: u64 = bounded(
            redis::cmd("HDEL")
                .arg(&hash)
                .arg(&stored.client)
                .query_async(&mut connection),
        )
        .await?;
        if removed == 0 {
            return Ok(false);
        }
        self.announce(channel, Movement::Leave, stored).await?;
        Ok(true)
    }

    async fn announce(
        &self,
        channel: &ChannelName,
        movement: Movement,
        stored: &StoredEntry,
    ) -> Result<(), EngineError> {
        let note = wire::presence_note(movement, stored);
        let mut connection = self.connection.clone();
        let _: u64 = bounded(
            redis::cmd("PUBLISH")
                .arg(self.topic(channel))
                .arg(note)
                .query_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    async fn index(&self, channel: &ChannelName) -> Result<(), EngineError> {
        let mut connection = self.connection.clone();
        let _: u64 = bounded(
            redis::cmd("SADD")
                .arg(self.index_key())
                .arg(channel.as_str())
                .query_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    /// This node has members on `channel`: true if it is the first node to.
    pub async fn occupy(&self, channel: &ChannelName) -> Result<bool, EngineError> {
        let mut call = self.occupy.prepare_invoke();
        call.key(self.key(channel, "occupied"))
            .arg(&self.node)
            .arg(HASH_KEEP_MS);
        let mut connection = self.connection.clone();
        let first: u64 = bounded(call.invoke_async(&mut connection)).await?;
        self.index(channel).await?;
        Ok(first == 1)
    }

    /// `node` has no members left on `channel`: true if it was the last node.
    pub async fn vacate(&self, channel: &ChannelName, node: &str) -> Result<bool, EngineError> {
        let mut call = self.vacate.prepare_invoke();
        call.key(self.key(channel, "occupied")).arg(node);
        let mut connection = self.connection.clone();
        let last: u64 = bounded(call.invoke_async(&mut connection)).await?;
        Ok(last == 1)
    }

    /// Every live node's members of `channel`.
    pub async fn list(&self, channel: &ChannelName) -> Result<Vec<PresenceEntry>, EngineError> {
        let stored = self.stored(channel).await?;
        let alive = self.alive(stored.iter().map(|s| s.node.as_str())).await?;
        Ok(stored
            .iter()
            .filter(|s| alive.get(s.node.as_str()).copied().unwrap_or(false))
            .map(StoredEntry::entry)
            .collect())
    }

    async fn stored(&self, channel: &ChannelName) -> Result<Vec<StoredEntry>, EngineError> {
        let mut connection = self.connection.clone();
        let raw: HashMap<String, Vec<u8>> = bounded(
            redis::cmd("HGETALL")
                .arg(self.key(channel, "presence"))
                .query_async(&mut connection),
        )
        .await?;
        Ok(raw
            .values()
            .filter_map(|v| wire::stored_entry(v).ok())
            .collect())
    }

    /// Which of `nodes` have a live heartbeat (this node always has).
    async fn alive<'a>(
        &self,
        nodes: impl Iterator<Item = &'a str>,
    ) -> Result<HashMap<&'a str, bool>, EngineError> {
        let mut found = HashMap::new();
        let mut connection = self.connection.clone();
        for node in nodes {
            if found.contains_key(node) {
                continue;
            }
            let alive = node == self.node || {
                let exists: u64 = bounded(
                    redis::cmd("EXISTS")
                        .arg(self.node_key(node))
                        .query_async(&mut connection),
                )
                .await?;
                exists == 1
            };
            found.insert(node, alive);
        }
        Ok(found)
    }

    /// Renews this node's heartbeat, and lists `channels` (where it has
    /// members) for sweeping again in case a sweep dropped one meanwhile.
    pub async fn heartbeat(&self, channels: &[ChannelName]) -> Result<(), EngineError> {
        for channel in channels {
            self.index(channel).await?;
        }
        let mut connection = self.connection.clone();
        let _: Value = bounded(
            redis::cmd("SET")
                .arg(self.node_key(&self.node))
                .arg(1)
                .arg("PX")
                .arg(NODE_TTL.as_millis() as u64)
                .query_async(&mut connection),
        )
        .await?;
        Ok(())
    }

    /// Removes dead nodes' members and occupancy everywhere; returns the
    /// leaves and vacancies this node reported (each is reported by exactly
    /// one node: the one whose removal took it out).
    pub async fn sweep_dead(&self) -> Result<Vec<(ChannelName, Swept)>, EngineError> {
        let mut connection = self.connection.clone();
        let channels: Vec<String> = bounded(
            redis::cmd("SMEMBERS")
                .arg(self.index_key())
                .query_async(&mut connection),
        )
        .await?;
        let mut swept = Vec::new();
        for name in channels {
            let Ok(channel) = ChannelName::parse(&name) else {
                continue;
            };
            let stored = self.stored(&channel).await?;
            let occupied: Vec<String> = bounded(
                redis::cmd("SMEMBERS")
                    .arg(self.key(&channel, "occupied"))
                    .query_async(&mut connection),
            )
            .await?;
            let nodes = stored
                .iter()
                .map(|s| s.node.as_str())
                .chain(occupied.iter().map(String::as_str));
            let alive = self.alive(nodes).await?;
            for entry in stored.iter().filter(|s| !alive[s.node.as_str()]) {
                if self.remove(&channel, entry).await? {
                    swept.push((channel.clone(), Swept::Left(entry.entry())));
                }
            }
            for node in occupied.iter().filter(|n| !alive[n.as_str()]) {
                if self.vacate(&channel, node).await? {
                    swept.push((channel.clone(), Swept::Vacated));
                }
            }
            if stored.iter().all(|s| !alive[s.node.as_str()])
                && occupied.iter().all(|n| !alive[n.as_str()])
            {
                // Nothing live here: drop it from the index (a node that
                // joins later adds it back).
                let _: u64 = bounded(
                    redis::cmd("SREM")
                        .arg(self.index_key())
                        .arg(channel.as_str())
                        .query_async(&mut connection),
                )
                .await?;
            }
        }
        Ok(swept)
    }
}

/// What sweeping a dead node's leftovers removed.
#[derive(Debug, Clone, PartialEq)]
pub enum Swept {
    Left(PresenceEntry),
    Vacated,
}
