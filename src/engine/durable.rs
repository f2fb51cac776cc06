//! The durable engine (`--data-dir DIR`): history in an embedded store on
//! local disk (redb: pure Rust, ACID, copy-on-write B-trees with a checksummed
//! commit, so a `kill -9` at any moment leaves the last commit intact).
//!
//! One writer thread owns every change. It takes publishes in batches, gives
//! each the next id of its channel, writes the whole batch in one transaction
//! (group commit: one fsync for many publishes), and only after the commit
//! appends the messages to the hub, which fans them out and answers the
//! publishers. So a subscriber never sees a message that is not on disk, ids
//! stay gap-free and in order, and an acknowledged message survives a crash.

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use async_trait::async_trait;
use bytes::Bytes;
use redb::{Database, ReadableTable, TableDefinition};
use tokio::sync::{mpsc, oneshot};

use super::{Engine, EngineError, EngineTotals};
use crate::hub::{
    now_ms, ChannelActivity, ChannelInfo, ChannelName, ChannelState, Draft, EventName,
    HistoryLimits, Hub, Message, MessageId, Published, Replay, Since, SubscriberHandle,
    SubscriberId,
};

/// (channel, seq) → published_at (8 bytes LE), event length (1 byte), event, data.
const MESSAGES: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("messages");
/// channel → (epoch, last seq).
const CHANNELS: TableDefinition<&str, (u64, u64)> = TableDefinition::new("channels");

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 1024;

type Reply<T> = oneshot::Sender<Result<T, EngineError>>;

enum Write {
    Publish(Draft, Reply<Published>),
    Delete(ChannelName, Reply<bool>),
    /// Drop from disk what the hub has trimmed or forgotten.
    Trim,
}

/// History on local disk, fan-out in process.
pub struct DurableEngine {
    hub: Arc<Hub>,
    writes: mpsc::Sender<Write>,
    alive: Arc<AtomicBool>,
}

fn unavailable(error: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("data store: {error}"))
}

fn encode(message: &Message) -> Vec<u8> {
    let event = message.event.as_ref().map_or("", |e| e.as_str());
    let mut out = Vec::with_capacity(9 + event.len() + message.data.len());
    out.extend_from_slice(&message.published_at_ms.to_le_bytes());
    out.push(event.len() as u8);
    out.extend_from_slice(event.as_bytes());
    out.extend_from_slice(&message.data);
    out
}

fn decode(channel: &ChannelName, id: MessageId, raw: &[u8]) -> Option<Message> {
    let published_at = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
    let event_len = usize::from(*raw.get(8)?);
    let event = std::str::from_utf8(raw.get(9..9 + event_len)?).ok()?;
    let event = (!event.is_empty())
        .then(|| EventName::parse(event).ok())
        .flatten();
    let data = Bytes::copy_from_slice(raw.get(9 + event_len..)?);
    Some(Message::new(channel.clone(), id, event, data, published_at))
}

impl DurableEngine {
    /// Opens (or creates) the store in `dir` and loads every channel's history.
    pub fn open(dir: &Path, limits: HistoryLimits) -> Result<Self, EngineError> {
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let db = Database::create(dir.join("herald.redb")).map_err(unavailable)?;
        let hub = Arc::new(Hub::new(limits));
        load(&db, &hub)?;
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        let alive = Arc::new(AtomicBool::new(true));
        let writer = Writer {
            db,
            hub: hub.clone(),
        };
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || {
                writer.run(queue);
                flag.store(false, Ordering::SeqCst);
            })
            .map_err(unavailable)?;
        Ok(Self { hub, writes, alive })
    }

    async fn submit<T>(&self, make: impl FnOnce(Reply<T>) -> Write) -> Result<T, EngineError> {
        let (reply, answer) = oneshot::channel();
        self.writes
            .send(make(reply))
            .await
            .map_err(|_| unavailable("the writer has stopped"))?;
        answer
            .await
            .map_err(|_| unavailable("the writer has stopped"))?
    }
}

/// Restores every stored channel into the hub.
fn load(db: &Database, hub: &Hub) -> Result<(), EngineError> {
    let read = db.begin_read().map_err(unavailable)?;
    let channels = match read.open_table(CHANNELS) {
        Ok(table) => table,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(()),
        Err(error) => return Err(unavailable(error)),
    };
    let messages = read.open_table(MESSAGES).map_err(unavailable)?;
    let now = now_ms();
    let mut loaded = 0usize;
    for entry in channels.iter().map_err(unavailable)? {
        let (name, meta) = entry.map_err(unavailable)?;
        let Ok(channel) = ChannelName::parse(name.value()) else {
            continue;
        };
        let (epoch, last_seq) = meta.value();
        let mut state = ChannelState::resume(channel.clone(), epoch, last_seq);
        let rows = messages
            .range((channel.as_str(), 0)..=(channel.as_str(), last_seq))
            .map_err(unavailable)?;
        for row in rows {
            let (key, value) = row.map_err(unavailable)?;
            let seq = key.value().1;
            if let Some(message) = decode(&channel, MessageId::new(epoch, seq), value.value()) {
                // History keeps contiguous seqs; a hole (never expected) restarts it.
                if state.history.newest().is_some_and(|m| m.id.seq + 1 != seq) {
                    state.history = crate::hub::History::new();
                }
                state.history.push(Arc::new(message), hub.limits(), now);
                loaded += 1;
            }
        }
        hub.restore(state);
    }
    tracing::info!(
        channels = hub.channel_count(),
        messages = loaded,
        "history loaded from disk"
    );
    Ok(())
}

/// The one thread that changes the store.
struct Writer {
    db: Database,
    hub: Arc<Hub>,
}

/// A publish that has its id and waits for the commit.
struct Pending {
    message: Arc<Message>,
    key: Option<String>,
    reply: Reply<Published>,
}

impl Writer {
    fn run(self, mut queue: mpsc::Receiver<Write>) {
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
    }

    fn apply(&self, batch: Vec<Write>) {
        let now = now_ms();
        let limits = *self.hub.limits();
        let mut publishes: Vec<Pending> = Vec::new();
        let mut repeats: Vec<(Published, Reply<Published>)> = Vec::new();
        let mut deletes: Vec<(ChannelName, Reply<bool>)> = Vec::new();
        let mut trim = false;
        // Ids handed out in this batch, per channel.
        let mut last: HashMap<ChannelName, MessageId> = HashMap::new();
        for write in batch {
            match write {
                Write::Publish(draft, reply) => {
                    if let Some(key) = &draft.idempotency_key {
                        let earlier = self
                            .hub
                            .with_existing(&draft.channel, |s| s.idempotent_result(key, now))
                            .flatten();
                        if let Some(earlier) = earlier {
                            repeats.push((earlier, reply));
                            continue;
                        }
                    }
                    let previous = *last
                        .entry(draft.channel.clone())
                        .or_insert_with(|| self.hub.with_channel(&draft.channel, |s| s.last_id()));
                    let id = MessageId::new(previous.epoch, previous.seq + 1);
                    last.insert(draft.channel.clone(), id);
                    let message = Arc::new(Message::new(
                        draft.channel,
                        id,
                        draft.event,
                        draft.data,
                        now,
                    ));
                    publishes.push(Pending {
                        message,
                        key: draft.idempotency_key,
                        reply,
                    });
                }
                Write::Delete(channel, reply) => deletes.push((channel, reply)),
                Write::Trim => trim = true,
            }
        }
        for (earlier, reply) in repeats {
            let _ = reply.send(Ok(earlier));
        }
        // Publishes and deletes of one batch never share a channel's fate:
        // deletes run in their own transaction after the publishes.
        if !publishes.is_empty() {
            match self.commit_publishes(&publishes, &last, &limits) {
                Ok(()) => {
                    for pending in publishes {
                        let published = self.hub.with_channel(&pending.message.channel, |state| {
                            let subscribers = state.append(pending.message.clone(), &limits, now);
                            let published = Published {
                                channel: pending.message.channel.clone(),
                                id: pending.message.id,
                                subscribers,
                            };
                            if let Some(key) = &pending.key {
                                state.remember(
                                    key,
                                    &published,
                                    now + limits.ttl.as_millis() as u64,
                                );
                            }
                            published
                        });
                        let _ = pending.reply.send(Ok(published));
                    }
                }
                Err(error) => {
                    tracing::error!(%error, "could not commit publishes");
                    for pending in publishes {
                        let _ = pending.reply.send(Err(unavailable(&error)));
                    }
                }
            }
        }
        for (channel, reply) in deletes {
            let result = self.delete(&channel).map(|()| self.hub.delete(&channel));
            let _ = reply.send(result);
        }
        if trim {
            if let Err(error) = self.trim() {
                tracing::warn!(%error, "could not trim the data store");
            }
        }
    }

    fn commit_publishes(
        &self,
        publishes: &[Pending],
        last: &HashMap<ChannelName, MessageId>,
        limits: &HistoryLimits,
    ) -> Result<(), EngineError> {
        let write = self.db.begin_write().map_err(unavailable)?;
        {
            let mut messages = write.open_table(MESSAGES).map_err(unavailable)?;
            for pending in publishes {
                let m = &pending.message;
                messages
                    .insert((m.channel.as_str(), m.id.seq), encode(m).as_slice())
                    .map_err(unavailable)?;
            }
            let mut channels = write.open_table(CHANNELS).map_err(unavailable)?;
            for (channel, id) in last {
                channels
                    .insert(channel.as_str(), (id.epoch, id.seq))
                    .map_err(unavailable)?;
                // Keep disk use bounded by the count limit at once; age and
                // byte limits follow at the next trim.
                let keep = limits.max_messages as u64;
                if id.seq > keep {
                    let cutoff = id.seq - keep;
                    messages
                        .retain_in(
                            (channel.as_str(), 0)..=(channel.as_str(), cutoff),
                            |_, _| false,
                        )
                        .map_err(unavailable)?;
                }
            }
        }
        write.commit().map_err(unavailable)
    }

    fn delete(&self, channel: &ChannelName) -> Result<(), EngineError> {
        let write = self.db.begin_write().map_err(unavailable)?;
        {
            let mut messages = write.open_table(MESSAGES).map_err(unavailable)?;
            messages
                .retain_in(
                    (channel.as_str(), 0)..=(channel.as_str(), u64::MAX),
                    |_, _| false,
                )
                .map_err(unavailable)?;
            let mut channels = write.open_table(CHANNELS).map_err(unavailable)?;
            channels.remove(channel.as_str()).map_err(unavailable)?;
        }
        write.commit().map_err(unavailable)
    }

    /// Removes from disk every message the hub no longer keeps, and every
    /// channel the hub has forgotten.
    fn trim(&self) -> Result<(), EngineError> {
        let write = self.db.begin_write().map_err(unavailable)?;
        {
            let mut channels = write.open_table(CHANNELS).map_err(unavailable)?;
            let mut messages = write.open_table(MESSAGES).map_err(unavailable)?;
            let stored: Vec<(String, u64)> = channels
                .iter()
                .map_err(unavailable)?
                .filter_map(|e| e.ok())
                .map(|(k, v)| (k.value().to_owned(), v.value().1))
                .collect();
            let now = now_ms();
            for (name, last_seq) in stored {
                let Ok(channel) = ChannelName::parse(&name) else {
                    continue;
                };
                let kept_from = match self.hub.info(&channel, now) {
                    Some(info) => info.first_id.map_or(last_seq + 1, |id| id.seq),
                    None => {
                        channels.remove(name.as_str()).map_err(unavailable)?;
                        u64::MAX
                    }
                };
                if kept_from > 0 {
                    let end = kept_from.saturating_sub(1);
                    messages
                        .retain_in((name.as_str(), 0)..=(name.as_str(), end), |_, _| false)
                        .map_err(unavailable)?;
                }
            }
        }
        write.commit().map_err(unavailable)
    }
}

#[async_trait]
impl Engine for DurableEngine {
    async fn publish(&self, draft: Draft) -> Result<Published, EngineError> {
        self.submit(|reply| Write::Publish(draft, reply)).await
    }

    async fn attach(
        &self,
        channel: &ChannelName,
        subscriber: &SubscriberHandle,
        since: Since,
    ) -> Result<Replay, EngineError> {
        Ok(self.hub.attach(channel, subscriber, since))
    }

    fn detach(&self, channel: &ChannelName, subscriber: SubscriberId) {
        self.hub.detach(channel, subscriber);
    }

    async fn info(&self, channel: &ChannelName) -> Result<Option<ChannelInfo>, EngineError> {
        Ok(self.hub.info(channel, now_ms()))
    }

    async fn delete(&self, channel: &ChannelName) -> Result<bool, EngineError> {
        self.submit(|reply| Write::Delete(channel.clone(), reply))
            .await
    }

    async fn is_ready(&self) -> bool {
        self.alive.load(Ordering::SeqCst)
    }

    fn sweep(&self) {
        self.hub.sweep(now_ms());
        let _ = self.writes.try_send(Write::Trim);
    }

    fn channel_count(&self) -> usize {
        self.hub.channel_count()
    }

    fn activity(&self) -> Vec<ChannelActivity> {
        self.hub.activity()
    }

    fn totals(&self) -> EngineTotals {
        let (history_messages, history_bytes) = self.hub.history_totals();
        EngineTotals {
            channels: self.hub.channel_count(),
            history_messages,
            history_bytes,
        }
    }

    fn name(&self) -> &'static str {
        "durable"
    }
}
