//! Engines: where history lives and how messages get their ids.
//!
//! Transports and the HTTP layer talk to one [`Engine`] trait object and never
//! know which engine is running. The memory engine is the hub alone; the
//! durable and Redis engines keep the hub for local fan-out and put a store
//! behind it.

pub mod durable;
pub mod memory;
pub mod presence;
pub mod redis;
pub mod subscription;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use thiserror::Error;

use crate::hub::{
    ChannelActivity, ChannelInfo, ChannelName, ChannelPolicy, Draft, PresenceEntry, Published,
    Replay, Since, SubscriberHandle, SubscriberId,
};

pub use memory::MemoryEngine;
pub use presence::{ChannelEvent, ChannelEventKind};
pub use subscription::{Event, QueueLimits, Subscription};

/// Why an engine could not do what was asked.
#[derive(Debug, Clone, Error)]
pub enum EngineError {
    /// The backing store cannot be reached; the caller should retry later.
    #[error("the message store is unavailable: {0}")]
    Unavailable(String),
    /// The store's disk is full: nothing new can be stored until space is
    /// freed (what is stored stays readable).
    #[error("the message store's disk is full ({0}); free space and retry")]
    StorageFull(String),
    /// The primary stored the message but fewer replicas than required
    /// confirmed it in time: it may not survive a failover. A retry with
    /// the same idempotency key publishes it at most once.
    #[error(
        "the message reached the Redis primary but only {confirmed} of {wanted} replicas \
         confirmed it within {waited:?}; retry with the same Idempotency-Key"
    )]
    NotReplicated {
        wanted: usize,
        confirmed: usize,
        waited: std::time::Duration,
    },
}

/// What an engine holds, sampled for metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EngineTotals {
    pub channels: usize,
    pub history_messages: usize,
    pub history_bytes: usize,
}

/// What opening an engine needs, and nothing of the rest of the server's
/// configuration: which store (memory unless one is named) and each
/// channel's history limits.
#[derive(Debug, Clone, Default)]
pub struct EngineSettings {
    /// Channel options; the engine reads each channel's history limits.
    pub channels: Arc<ChannelPolicy>,
    /// Keep history on disk in this directory (the durable engine).
    pub data_dir: Option<std::path::PathBuf>,
    /// Share channels and history through Redis (the Redis engine).
    pub redis: Option<redis::RedisConfig>,
    /// Track every channel's occupancy for [`Engine::channel_events`]
    /// (someone listens: webhooks), not only presence channels'.
    pub track_occupancy: bool,
}

/// Opens the engine `settings` ask for (memory unless a store is named).
pub async fn open(settings: &EngineSettings) -> Result<Arc<dyn Engine>, EngineError> {
    if let Some(redis) = &settings.redis {
        let engine =
            redis::RedisEngine::open(redis, settings.channels.clone(), settings.track_occupancy)
                .await?;
        return Ok(Arc::new(engine));
    }
    match &settings.data_dir {
        Some(dir) => {
            let dir = dir.clone();
            let policy = settings.channels.clone();
            let track_occupancy = settings.track_occupancy;
            // Loading history reads the whole store: keep it off the async workers.
            let engine = tokio::task::spawn_blocking(move || {
                durable::DurableEngine::open(&dir, policy, track_occupancy)
            })
            .await
            .map_err(|e| EngineError::Unavailable(format!("opening the data store: {e}")))??;
            Ok(Arc::new(engine))
        }
        None => Ok(Arc::new(MemoryEngine::open(
            settings.channels.clone(),
            settings.track_occupancy,
        ))),
    }
}

/// History, sequencing and fan-out behind one interface.
#[async_trait]
pub trait Engine: Send + Sync + 'static {
    /// Appends a message to its channel's history, returning once it is
    /// stored (committed, for the durable engines), and fans it out.
    async fn publish(&self, draft: Draft) -> Result<Published, EngineError>;

    /// Replays history after `since` and subscribes to what follows, with no
    /// message lost or repeated at the seam.
    async fn attach(
        &self,
        channel: &ChannelName,
        subscriber: &SubscriberHandle,
        since: Since,
    ) -> Result<Replay, EngineError>;

    /// Stops delivering `channel` to the subscriber (cheap; never fails).
    fn detach(&self, channel: &ChannelName, subscriber: SubscriberId);

    /// A snapshot of the channel, or `None` if it was never used (or is forgotten).
    async fn info(&self, channel: &ChannelName) -> Result<Option<ChannelInfo>, EngineError>;

    /// Drops the channel and its history, telling its subscribers.
    async fn delete(&self, channel: &ChannelName) -> Result<bool, EngineError>;

    /// Whether the engine can serve publishes now (for `/readyz`).
    async fn is_ready(&self) -> bool;

    /// Why the engine is not ready, when it knows better than
    /// `engine_unavailable` (for `/readyz`).
    fn unready_reason(&self) -> Option<&'static str> {
        None
    }

    /// Periodic upkeep: age trimming, forgetting idle channels.
    fn sweep(&self);

    /// Number of channels this node knows.
    fn channel_count(&self) -> usize;

    /// Each channel's newest sequence number and local subscriber count, for
    /// the status page's busiest channels (empty if the engine cannot tell).
    fn activity(&self) -> Vec<ChannelActivity> {
        Vec::new()
    }

    /// Channels and history held by this node, for metrics.
    fn totals(&self) -> EngineTotals {
        EngineTotals {
            channels: self.channel_count(),
            ..EngineTotals::default()
        }
    }

    /// Marks `entry` present on `channel` while a subscription holds it
    /// (presence channels, and every channel while occupancy is tracked).
    async fn hold(
        &self,
        channel: &ChannelName,
        entry: &Arc<PresenceEntry>,
    ) -> Result<(), EngineError>;

    /// A subscription lets go of `channel`. With `linger` (a long poller
    /// between polls) the client stays present that long unless it comes
    /// back. Cheap; never fails.
    fn release(&self, channel: &ChannelName, client: &Arc<str>, linger: Option<Duration>);

    /// Who is on `channel` (every node's clients with a shared store), or
    /// `None` when the channel has no presence.
    async fn presence(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Vec<Arc<PresenceEntry>>>, EngineError>;

    /// Occupied, vacated, join and leave events from now on (for webhooks).
    fn channel_events(&self) -> tokio::sync::broadcast::Receiver<ChannelEvent>;

    /// Short name for logs and `/readyz`.
    fn name(&self) -> &'static str;
}
