//! The Redis engine (`--redis URL`): several herald nodes share channels
//! and history through Redis, and any node can serve any client.
//!
//! Redis holds the truth: each channel's epoch and sequence in a hash, its
//! history in a Stream, and a Pub/Sub topic that carries every new message
//! to the nodes subscribed to it (`store` and `wire`). Each node keeps a
//! copy of the channels its own clients use in the local hub, which does
//! the fan-out, the replay and the seam between them exactly as for the
//! memory engine. A copy is *ready* while it is known to be in step with
//! Redis; notes that arrive while it is not (loading, or a hole after a lost
//! connection) wait in `early` until a read of the Stream has filled in what
//! was missed. When Redis has moved on without this node (a new epoch after
//! a flush, messages trimmed before the node saw them) the copy is rebased
//! and its subscribers catch up from their cursors, so each is told of its
//! gap rather than left to guess.

mod listener;
mod presence;
pub mod sentinel;
mod store;
pub mod wire;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use dashmap::DashMap;
use parking_lot::Mutex;
use tokio::sync::{mpsc, oneshot};

use self::listener::Request;
use self::presence::{ClusterPresence, Swept};
use self::store::{unavailable, Connection, Snapshot, Store};
use self::wire::{Entry, Note};
use super::presence::{ChannelEvent, ChannelEventKind, Presence};
use super::{Engine, EngineError, EngineTotals};
use crate::hub::{
    new_epoch, now_ms, ChannelActivity, ChannelInfo, ChannelName, ChannelPolicy, ChannelState,
    Draft, HistoryLimits, Hub, Message, MessageId, Mirrored, Movement, PresenceEntry, Published,
    Replay, RosterChange, Since, SubscriberHandle, SubscriberId,
};

/// How to reach Redis.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisConfig {
    /// One URL (`redis://host:port/db`), or a cluster's seed nodes; unused
    /// when the sentinels name the primary.
    pub urls: Vec<String>,
    /// The URLs are seed nodes of a Redis Cluster.
    pub cluster: bool,
    /// Prefix of every key and topic, so several deployments can share a Redis.
    pub prefix: String,
    /// Find the primary through Redis Sentinel and follow its failovers.
    pub sentinel: Option<SentinelConfig>,
    /// Replicas that must confirm a publish (`WAIT`) before it is
    /// acknowledged; 0 acknowledges once the primary has it.
    pub wait_replicas: usize,
    /// How long a publish waits for those replicas before it is answered `503`.
    pub wait_timeout: Duration,
}

/// The sentinels that know which server is the primary.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentinelConfig {
    /// `HOST:PORT` of each sentinel.
    pub addrs: Vec<String>,
    /// The name the sentinels monitor the primary by.
    pub master: String,
}

/// A cached channel unused for this long, with no local subscriber, is dropped
/// (and its topic unsubscribed).
const IDLE_COPY: Duration = Duration::from_secs(30);

/// How many times an attach retries when the copy changes under it.
const ATTACH_ATTEMPTS: usize = 4;

/// This node's copy of one channel.
#[derive(Default)]
struct Copy {
    state: Mutex<CopyState>,
    /// One synchronisation at a time; attaches wait on it for a ready copy.
    sync: tokio::sync::Mutex<()>,
    last_used_ms: AtomicU64,
}

#[derive(Default)]
struct CopyState {
    ready: bool,
    /// Notes that arrived while the copy was not ready, applied after the next read.
    early: Vec<Arc<Message>>,
}

/// A roster change of this node on its way to Redis.
enum Change {
    Roster(ChannelName, RosterChange),
    /// Redis is back: write this node's members and occupancy again.
    Restore,
}

/// Roster changes waiting for Redis before new ones are dropped (and logged).
const PENDING_CHANGES: usize = 65_536;

/// State shared by the engine and its Pub/Sub listener.
pub struct Shared {
    hub: Hub,
    store: Store,
    copies: DashMap<ChannelName, Arc<Copy>>,
    listener: mpsc::Sender<Request>,
    listening: AtomicBool,
    /// Subscriber counts last reported to Redis, and when.
    reported: Mutex<HashMap<ChannelName, (usize, u64)>>,
    reporting: AtomicBool,
    /// This node's members, and the cluster's in Redis.
    presence: Presence,
    cluster: ClusterPresence,
    /// This node's roster changes, written to Redis in order by one task.
    changes: mpsc::Sender<Change>,
    /// A heartbeat and sweep of dead nodes is under way.
    heartbeating: AtomicBool,
    /// When the last heartbeat started (ms).
    last_heartbeat_ms: AtomicU64,
}

/// Channels and history shared through Redis; fan-out through its Pub/Sub.
pub struct RedisEngine {
    shared: Arc<Shared>,
}

impl RedisEngine {
    /// Connects to Redis (lazily for a single server: a node may start
    /// before Redis and become ready when it answers).
    pub async fn open(
        config: &RedisConfig,
        policy: Arc<ChannelPolicy>,
        track_occupancy: bool,
    ) -> Result<Self, EngineError> {
        let (connection, target) = match &config.sentinel {
            Some(sentinel) => {
                let failover = sentinel::Failover::new(sentinel::Sentinels::new(
                    &sentinel.addrs,
                    &sentinel.master,
                )?);
                (
                    Connection::Sentinel(failover.clone()),
                    listener::Target::Sentinel(failover),
                )
            }
            None => (
                store::connect(&config.urls, config.cluster).await?,
                listener::Target::Urls(config.urls.clone()),
            ),
        };
        let (requests, queue) = mpsc::channel(1024);
        let (changes, pending) = mpsc::channel(PENDING_CHANGES);
        let durability = store::Durability {
            replicas: config.wait_replicas,
            timeout: config.wait_timeout,
        };
        let store = Store::new(
            connection,
            config.prefix.clone(),
            policy.clone(),
            durability,
        );
        let cluster = ClusterPresence::new(
            store.connection(),
            store.prefix().to_owned(),
            store.node().to_owned(),
        );
        let shared = Arc::new(Shared {
            hub: Hub::with_policy(policy.clone()),
            presence: Presence::new(policy, track_occupancy),
            cluster,
            changes,
            heartbeating: AtomicBool::new(false),
            last_heartbeat_ms: AtomicU64::new(0),
            store,
            copies: DashMap::new(),
            listener: requests,
            listening: AtomicBool::new(false),
            reported: Mutex::new(HashMap::new()),
            reporting: AtomicBool::new(false),
        });
        tokio::spawn(listener::run(Arc::downgrade(&shared), target, queue));
        tokio::spawn(share_changes(Arc::downgrade(&shared), pending));
        if !shared.store.ping().await {
            tracing::warn!("Redis does not answer yet; publishes fail with 503 until it does");
        }
        Ok(Self { shared })
    }
}

fn message_of(channel: &ChannelName, epoch: u64, entry: Entry) -> Arc<Message> {
    Arc::new(Message::new(
        channel.clone(),
        MessageId::new(epoch, entry.seq),
        entry.event,
        entry.data,
        entry.kind,
        entry.published_at_ms,
    ))
}

/// Writes this node's roster changes to Redis in the order they happened,
/// retrying while Redis is away, and reports the events Redis says are
/// this node's to report.
async fn share_changes(shared: std::sync::Weak<Shared>, mut pending: mpsc::Receiver<Change>) {
    while let Some(change) = pending.recv().await {
        let mut delay = Duration::from_millis(100);
        loop {
            let Some(shared) = shared.upgrade() else {
                return;
            };
            match shared.share(&change).await {
                Ok(()) => break,
                Err(error) => {
                    tracing::debug!(%error, "could not share a presence change; retrying");
                }
            }
            drop(shared);
            tokio::time::sleep(delay).await;
            delay = (delay * 2).min(Duration::from_secs(2));
        }
    }
}

/// The seq after which a copy rebuilt from `snapshot` continues.
fn base_of(snapshot: &Snapshot) -> u64 {
    snapshot
        .entries
        .first()
        .map_or(snapshot.seq, |e| e.seq.saturating_sub(1))
}

/// Brings a channel's copy in step with what Redis returned, then applies the
/// notes that arrived meanwhile. False if another read is needed: a note is
/// ahead of the read (it waits in `early`), or notes of another epoch were
/// dropped (stale ones from before a reset, or a reset newer than the read).
fn apply(
    state: &mut ChannelState,
    snapshot: &Snapshot,
    early: &mut Vec<Arc<Message>>,
    limits: &HistoryLimits,
    now: u64,
) -> bool {
    let channel = state.name.clone();
    let epoch = snapshot.epoch;
    if state.epoch != epoch {
        state.rebase(epoch, base_of(snapshot));
    }
    for entry in &snapshot.entries {
        place(
            state,
            message_of(&channel, epoch, entry.clone()),
            limits,
            now,
        );
    }
    if state.last_seq < snapshot.seq {
        // Redis has newer ids than it kept messages for (trimmed by age).
        state.rebase(epoch, snapshot.seq);
    }
    early.sort_by_key(|m| m.id.seq);
    let mut in_step = true;
    for message in std::mem::take(early) {
        if message.id.epoch != epoch {
            in_step = false;
        } else if message.id.seq > state.last_seq + 1 {
            in_step = false;
            early.push(message);
        } else {
            let _ = state.mirror(message, limits, now);
        }
    }
    in_step
}

/// Appends a message read from the Stream, jumping over a hole (messages
/// Redis trimmed before this node saw them).
fn place(state: &mut ChannelState, message: Arc<Message>, limits: &HistoryLimits, now: u64) {
    if state.mirror(message.clone(), limits, now) == Mirrored::OutOfStep {
        state.rebase(message.id.epoch, message.id.seq - 1);
        let _ = state.mirror(message, limits, now);
    }
}

impl Shared {
    fn limits(&self, channel: &ChannelName) -> HistoryLimits {
        self.hub.limits(channel)
    }

    fn copy(&self, channel: &ChannelName) -> Arc<Copy> {
        self.copies
            .entry(channel.clone())
            .or_insert_with(|| {
                let copy = Copy::default();
                copy.last_used_ms.store(now_ms(), Ordering::Relaxed);
                Arc::new(copy)
            })
            .clone()
    }

    fn is_current(&self, channel: &ChannelName, copy: &Arc<Copy>) -> bool {
        self.copies
            .get(channel)
            .is_some_and(|c| Arc::ptr_eq(c.value(), copy))
    }

    /// Whether this node has a copy of the channel of `topic`.
    fn wants(&self, topic: &str) -> bool {
        store::channel_of_topic(topic).is_some_and(|channel| self.copies.contains_key(&channel))
    }

    /// Asks the listener to carry the channel's topic, once Redis confirms.
    async fn listen(&self, channel: &ChannelName) -> Result<(), EngineError> {
        let (reply, answer) = oneshot::channel();
        let topic = self.store.keys(channel).topic;
        self.listener
            .send(Request::Listen(topic, reply))
            .await
            .map_err(|_| unavailable("the Pub/Sub listener stopped"))?;
        match tokio::time::timeout(store::CALL_TIMEOUT, answer).await {
            Ok(Ok(result)) => result,
            _ => Err(unavailable("no Pub/Sub confirmation in time")),
        }
    }

    /// A ready copy of `channel`, loading it from Redis if needed.
    async fn ready_copy(&self, channel: &ChannelName) -> Result<Arc<Copy>, EngineError> {
        loop {
            let copy = self.copy(channel);
            if copy.state.lock().ready {
                return Ok(copy);
            }
            {
                let _sync = copy.sync.lock().await;
                if !self.is_current(channel, &copy) {
                    continue;
                }
                if !copy.state.lock().ready {
                    self.listen(channel).await?;
                    self.resync(channel, &copy).await?;
                }
            }
            return Ok(copy);
        }
    }

    /// Reads from Redis what the copy lacks and applies it; the caller holds `copy.sync`.
    async fn resync(&self, channel: &ChannelName, copy: &Copy) -> Result<(), EngineError> {
        copy.state.lock().ready = false;
        for _ in 0..ATTACH_ATTEMPTS {
            let local = self.hub.with_existing(channel, |s| (s.epoch, s.last_seq));
            let snapshot = self
                .store
                .read(channel, local, new_epoch(), now_ms())
                .await?;
            if let Some((epoch, seq)) = local {
                if epoch == snapshot.epoch && seq > snapshot.seq {
                    // Redis went back in time (an older snapshot): reusing
                    // these ids would repeat them, so start a new epoch.
                    tracing::warn!(%channel, "Redis is behind this node; starting a new epoch");
                    self.store
                        .renew(channel, snapshot.epoch, snapshot.seq, new_epoch())
                        .await?;
                    continue;
                }
            }
            let limits = self.limits(channel);
            let now = now_ms();
            let mut state = copy.state.lock();
            let early = &mut state.early;
            let in_step = match self
                .hub
                .with_existing(channel, |s| apply(s, &snapshot, early, &limits, now))
            {
                Some(in_step) => in_step,
                None => {
                    let mut fresh =
                        ChannelState::resume(channel.clone(), snapshot.epoch, base_of(&snapshot));
                    let in_step = apply(&mut fresh, &snapshot, early, &limits, now);
                    self.hub.restore(fresh);
                    in_step
                }
            };
            if in_step {
                state.ready = true;
                return Ok(());
            }
        }
        Err(unavailable("the channel kept changing while it was read"))
    }

    /// Tells this node's subscribers of its own joins and leaves at once,
    /// and queues every change for Redis.
    fn changed(&self, channel: &ChannelName, changes: Vec<RosterChange>) {
        for change in changes {
            match &change {
                RosterChange::Join(entry) => {
                    self.presence
                        .tell(&self.hub, channel, Movement::Join, entry)
                }
                RosterChange::Leave(entry) => {
                    self.presence
                        .tell(&self.hub, channel, Movement::Leave, entry)
                }
                _ => {}
            }
            if self
                .changes
                .try_send(Change::Roster(channel.clone(), change))
                .is_err()
            {
                tracing::warn!(%channel, "too many presence changes waiting for Redis; one dropped");
            }
        }
    }

    /// Writes one change to Redis and emits the events it turns out to be.
    async fn share(&self, change: &Change) -> Result<(), EngineError> {
        let cluster = &self.cluster;
        let emit = |kind, channel: &ChannelName, entry: Option<&PresenceEntry>| {
            self.presence.emit(ChannelEvent::new(kind, channel, entry));
        };
        match change {
            Change::Roster(channel, RosterChange::Occupied) => {
                if cluster.occupy(channel).await? {
                    emit(ChannelEventKind::Occupied, channel, None);
                }
            }
            Change::Roster(channel, RosterChange::Vacated) => {
                if cluster.vacate(channel, cluster.node()).await? {
                    emit(ChannelEventKind::Vacated, channel, None);
                }
            }
            Change::Roster(channel, RosterChange::Join(entry)) => {
                cluster.join(channel, entry).await?;
                emit(ChannelEventKind::Join, channel, Some(entry));
            }
            Change::Roster(channel, RosterChange::Leave(entry)) => {
                if cluster.leave(channel, entry).await? {
                    emit(ChannelEventKind::Leave, channel, Some(entry));
                }
            }
            Change::Restore => {
                for channel in self.presence.occupied() {
                    cluster.occupy(&channel).await?;
                    for entry in self.presence.members(&channel) {
                        cluster.restore(&channel, &entry).await?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Renews this node's heartbeat and removes dead nodes' members, every
    /// few seconds, one at a time.
    fn heartbeat(self: &Arc<Self>, now: u64) {
        let every = presence::HEARTBEAT_EVERY.as_millis() as u64;
        if now.saturating_sub(self.last_heartbeat_ms.load(Ordering::Relaxed)) < every
            || self.heartbeating.swap(true, Ordering::SeqCst)
        {
            return;
        }
        self.last_heartbeat_ms.store(now, Ordering::Relaxed);
        let shared = self.clone();
        tokio::spawn(async move {
            let channels = shared.presence.occupied();
            let swept = match shared.cluster.heartbeat(&channels).await {
                Ok(()) => shared.cluster.sweep_dead().await,
                Err(error) => Err(error),
            };
            match swept {
                Ok(swept) => {
                    for (channel, swept) in swept {
                        let event = match &swept {
                            Swept::Left(entry) => {
                                shared
                                    .presence
                                    .tell(&shared.hub, &channel, Movement::Leave, entry);
                                ChannelEvent::new(ChannelEventKind::Leave, &channel, Some(entry))
                            }
                            Swept::Vacated => {
                                ChannelEvent::new(ChannelEventKind::Vacated, &channel, None)
                            }
                        };
                        shared.presence.emit(event);
                    }
                }
                Err(error) => tracing::debug!(%error, "presence heartbeat failed"),
            }
            shared.heartbeating.store(false, Ordering::SeqCst);
        });
    }

    /// A note from the listener.
    fn note(self: &Arc<Self>, channel: &ChannelName, payload: &[u8]) {
        let note = match wire::note(payload) {
            Ok(note) => note,
            Err(error) => {
                tracing::warn!(%channel, %error, "ignoring a Pub/Sub note");
                return;
            }
        };
        match note {
            Note::Deleted => self.forget_deleted(channel),
            Note::Presence {
                movement,
                node,
                entry,
            } => {
                // The node it happened on told its own subscribers already.
                if node != self.cluster.node() {
                    self.presence.tell(&self.hub, channel, movement, &entry);
                }
            }
            Note::Message { epoch, entry } => {
                let Some(copy) = self.copies.get(channel).map(|c| c.value().clone()) else {
                    return;
                };
                let message = message_of(channel, epoch, entry);
                if !self.offer(channel, &copy, message) {
                    self.spawn_resync(channel.clone(), copy);
                }
            }
        }
    }

    /// Applies a new message to a ready copy. False if the copy needs a resync
    /// (the message then waits in `early`).
    fn offer(&self, channel: &ChannelName, copy: &Copy, message: Arc<Message>) -> bool {
        let limits = self.limits(channel);
        let mut state = copy.state.lock();
        if !state.ready {
            // Bounded: whatever is dropped here is read from the Stream.
            if state.early.len() >= limits.max_messages.max(1) {
                state.early.remove(0);
            }
            state.early.push(message);
            return true;
        }
        let outcome = self
            .hub
            .with_existing(channel, |s| s.mirror(message.clone(), &limits, now_ms()));
        match outcome {
            Some(Mirrored::Appended(_) | Mirrored::Duplicate) => true,
            _ => {
                state.ready = false;
                state.early.push(message);
                false
            }
        }
    }

    /// Resynchronises a copy in the background, retrying with backoff while
    /// the Pub/Sub connection is up (a reconnection starts a new one).
    fn spawn_resync(self: &Arc<Self>, channel: ChannelName, copy: Arc<Copy>) {
        let shared = self.clone();
        tokio::spawn(async move {
            let mut backoff = Duration::from_millis(50);
            loop {
                {
                    let _sync = copy.sync.lock().await;
                    if copy.state.lock().ready || !shared.is_current(&channel, &copy) {
                        return;
                    }
                    match shared.resync(&channel, &copy).await {
                        Ok(()) => return,
                        Err(error) => {
                            tracing::debug!(%channel, %error, "could not resynchronise a channel; retrying");
                        }
                    }
                }
                if !shared.listening.load(Ordering::SeqCst) {
                    return;
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(1));
            }
        });
    }

    fn forget_deleted(&self, channel: &ChannelName) {
        if let Some((_, copy)) = self.copies.remove(channel) {
            let mut state = copy.state.lock();
            state.ready = false;
            state.early.clear();
        }
        self.hub.delete(channel);
        let _ = self
            .listener
            .try_send(Request::Forget(self.store.keys(channel).topic));
    }

    /// The Pub/Sub connection is up (again): every copy reads what it missed.
    fn connected(self: &Arc<Self>) {
        self.listening.store(true, Ordering::SeqCst);
        if !self.presence.is_empty() {
            let _ = self.changes.try_send(Change::Restore);
        }
        let shared = self.clone();
        tokio::spawn(async move {
            // The command connection may still hold a socket to the Redis
            // that went away: a ping finds out and reconnects it, so the
            // first publishes after a Redis restart do not fail on it.
            for _ in 0..3 {
                if shared.store.ping().await {
                    break;
                }
            }
            let copies: Vec<(ChannelName, Arc<Copy>)> = shared
                .copies
                .iter()
                .map(|e| (e.key().clone(), e.value().clone()))
                .collect();
            for (channel, copy) in copies {
                shared.spawn_resync(channel, copy);
            }
        });
    }

    /// The Pub/Sub connection dropped: no copy can be trusted to be current.
    fn disconnected(self: &Arc<Self>) {
        self.listening.store(false, Ordering::SeqCst);
        let shared = self.clone();
        // Likewise: notice now that the command connection is gone too.
        tokio::spawn(async move { shared.store.ping().await });
        for copy in self.copies.iter() {
            copy.state.lock().ready = false;
        }
    }

    /// Tells Redis how many subscribers this node has on each channel whose
    /// count changed, and refreshes the others before their reports expire.
    fn report_subscribers(self: &Arc<Self>, now: u64) {
        if self.reporting.swap(true, Ordering::SeqCst) {
            return;
        }
        let refresh_ms = store::REPORT_VALIDITY.as_millis() as u64 / 3;
        let mut changed = Vec::new();
        {
            let mut reported = self.reported.lock();
            for entry in self.copies.iter() {
                let channel = entry.key();
                let count = self
                    .hub
                    .with_existing(channel, |s| s.live_subscribers())
                    .unwrap_or(0);
                let due = match reported.get(channel) {
                    Some(&(last, at)) => last != count || (count > 0 && now - at >= refresh_ms),
                    None => count > 0,
                };
                if due {
                    reported.insert(channel.clone(), (count, now));
                    changed.push((channel.clone(), count));
                }
            }
            // Channels whose copy was dropped count zero here now.
            let gone: Vec<ChannelName> = reported
                .keys()
                .filter(|c| !self.copies.contains_key(*c))
                .cloned()
                .collect();
            for channel in gone {
                if reported
                    .remove(&channel)
                    .is_some_and(|(count, _)| count > 0)
                {
                    changed.push((channel, 0));
                }
            }
        }
        if changed.is_empty() {
            self.reporting.store(false, Ordering::SeqCst);
            return;
        }
        let shared = self.clone();
        tokio::spawn(async move {
            let expires = now + store::REPORT_VALIDITY.as_millis() as u64;
            if let Err(error) = shared.store.report(&changed, expires).await {
                tracing::debug!(%error, "could not report subscriber counts");
                // Report them all again next time.
                let mut reported = shared.reported.lock();
                for (channel, _) in &changed {
                    reported.remove(channel);
                }
            }
            shared.reporting.store(false, Ordering::SeqCst);
        });
    }

    /// Drops copies nobody here has used for a while, and their topics.
    fn sweep(&self, now: u64) {
        self.hub.sweep(now);
        let idle_ms = IDLE_COPY.as_millis() as u64;
        let stale: Vec<(ChannelName, Arc<Copy>)> = self
            .copies
            .iter()
            .filter(|e| {
                now.saturating_sub(e.value().last_used_ms.load(Ordering::Relaxed)) >= idle_ms
            })
            .map(|e| (e.key().clone(), e.value().clone()))
            .collect();
        for (channel, copy) in stale {
            // A copy being loaded or resynchronised is in use.
            let Ok(_sync) = copy.sync.try_lock() else {
                continue;
            };
            let forgotten = {
                let mut state = copy.state.lock();
                let gone = self.hub.with_existing(&channel, |_| ()).is_none();
                let forgotten = gone || self.hub.forget_unsubscribed(&channel);
                if forgotten {
                    state.ready = false;
                    state.early.clear();
                }
                forgotten
            };
            if forgotten {
                // Attaches holding this copy see it is no longer current once
                // they get its sync lock, and load a new one.
                self.copies
                    .remove_if(&channel, |_, c| Arc::ptr_eq(c, &copy));
                let _ = self
                    .listener
                    .try_send(Request::Forget(self.store.keys(&channel).topic));
            }
        }
    }
}

#[async_trait]
impl Engine for RedisEngine {
    async fn publish(&self, draft: Draft) -> Result<Published, EngineError> {
        let shared = &self.shared;
        let appended = shared.store.publish(&draft, new_epoch(), now_ms()).await?;
        let id = MessageId::new(appended.epoch, appended.seq);
        if !appended.repeated {
            // Deliver here at once rather than after the Pub/Sub round trip;
            // the note that follows is then a duplicate and skipped.
            if let Some(copy) = shared.copies.get(&draft.channel).map(|c| c.value().clone()) {
                copy.last_used_ms.store(now_ms(), Ordering::Relaxed);
                let message = Arc::new(Message::new(
                    draft.channel.clone(),
                    id,
                    draft.event,
                    draft.data,
                    draft.kind,
                    appended.published_at_ms,
                ));
                let limits = shared.limits(&draft.channel);
                let state = copy.state.lock();
                if state.ready {
                    let _ = shared
                        .hub
                        .with_existing(&draft.channel, |s| s.mirror(message, &limits, now_ms()));
                }
            }
        }
        let subscribers = shared
            .hub
            .with_existing(&draft.channel, |s| s.subscriber_count())
            .unwrap_or(0)
            + appended.remote_subscribers;
        Ok(Published {
            channel: draft.channel,
            id,
            subscribers,
        })
    }

    async fn attach(
        &self,
        channel: &ChannelName,
        subscriber: &SubscriberHandle,
        since: Since,
    ) -> Result<Replay, EngineError> {
        let shared = &self.shared;
        let mut resynced = false;
        for _ in 0..ATTACH_ATTEMPTS {
            let copy = shared.ready_copy(channel).await?;
            copy.last_used_ms.store(now_ms(), Ordering::Relaxed);
            if let Since::After(id) = since {
                // An id from another node may be ahead of this copy: read
                // Redis before deciding it is stale.
                let ahead = shared
                    .hub
                    .with_existing(channel, |s| id.epoch != s.epoch || id.seq > s.last_seq)
                    .unwrap_or(true);
                if ahead && !resynced {
                    resynced = true;
                    let _sync = copy.sync.lock().await;
                    if shared.is_current(channel, &copy) {
                        shared.resync(channel, &copy).await?;
                    }
                    continue;
                }
            }
            let mut state = copy.state.lock();
            if !state.ready {
                continue;
            }
            match shared
                .hub
                .with_existing(channel, |s| s.attach(subscriber, since))
            {
                Some(replay) => return Ok(replay),
                // The hub forgot the channel (idle): load it again.
                None => state.ready = false,
            }
        }
        Err(unavailable("the channel kept changing while subscribing"))
    }

    fn detach(&self, channel: &ChannelName, subscriber: SubscriberId) {
        self.shared.hub.detach(channel, subscriber);
    }

    async fn info(&self, channel: &ChannelName) -> Result<Option<ChannelInfo>, EngineError> {
        let shared = &self.shared;
        let Some(stored) = shared.store.info(channel, now_ms()).await? else {
            return Ok(None);
        };
        let subscribers = shared
            .hub
            .with_existing(channel, |s| s.live_subscribers())
            .unwrap_or(0)
            + stored.remote_subscribers;
        Ok(Some(ChannelInfo {
            channel: channel.clone(),
            subscribers,
            messages: stored.messages,
            bytes: stored.bytes,
            first_id: stored
                .first_seq
                .map(|seq| MessageId::new(stored.epoch, seq)),
            last_id: (stored.seq > 0).then(|| MessageId::new(stored.epoch, stored.seq)),
        }))
    }

    async fn delete(&self, channel: &ChannelName) -> Result<bool, EngineError> {
        let existed = self.shared.store.delete(channel).await?;
        let known_here = self.shared.hub.with_existing(channel, |_| ()).is_some();
        self.shared.forget_deleted(channel);
        Ok(existed || known_here)
    }

    async fn is_ready(&self) -> bool {
        self.shared.listening.load(Ordering::SeqCst) && self.shared.store.ping().await
    }

    fn sweep(&self) {
        let now = now_ms();
        self.shared.sweep(now);
        self.shared.report_subscribers(now);
        for (channel, change) in self.shared.presence.expire() {
            self.shared.changed(&channel, vec![change]);
        }
        self.shared.heartbeat(now);
    }

    async fn hold(
        &self,
        channel: &ChannelName,
        entry: &Arc<PresenceEntry>,
    ) -> Result<(), EngineError> {
        let changes = self.shared.presence.hold(channel, entry);
        self.shared.changed(channel, changes);
        Ok(())
    }

    fn release(&self, channel: &ChannelName, client: &Arc<str>, linger: Option<Duration>) {
        let changes = self.shared.presence.release(channel, client, linger);
        self.shared.changed(channel, changes);
    }

    async fn presence(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Vec<Arc<PresenceEntry>>>, EngineError> {
        if !self.shared.presence.listed(channel) {
            return Ok(None);
        }
        let listed = self.shared.cluster.list(channel).await?;
        Ok(Some(listed.into_iter().map(Arc::new).collect()))
    }

    fn channel_events(&self) -> tokio::sync::broadcast::Receiver<ChannelEvent> {
        self.shared.presence.subscribe()
    }

    fn channel_count(&self) -> usize {
        self.shared.hub.channel_count()
    }

    fn activity(&self) -> Vec<ChannelActivity> {
        self.shared.hub.activity()
    }

    fn totals(&self) -> EngineTotals {
        let (history_messages, history_bytes) = self.shared.hub.history_totals();
        EngineTotals {
            channels: self.shared.hub.channel_count(),
            history_messages,
            history_bytes,
        }
    }

    fn name(&self) -> &'static str {
        "redis"
    }
}
