//! The one thread that changes the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rusqlite::{params, Connection, Transaction};
use tokio::sync::mpsc;

use super::collector::{Collector, Rows};
use super::heads::{Head, Heads};
use super::load::Loaded;
use super::{kind_column, store_error, unavailable, Reply, Write, MAX_BATCH};
use crate::engine::EngineError;
use crate::hub::{now_ms, ChannelName, Hub, Message, MessageId, Published};

/// Rows a sweep may reclaim at once (a batch reclaims about twice what it
/// adds).
const SWEEP_BUDGET: u64 = 16 * 1024;

/// Times the writer steps aside for publishes still arriving before it
/// commits a batch.
const GATHER_YIELDS: usize = 8;

pub(super) struct Writer {
    db: Connection,
    hub: Arc<Hub>,
    full: Arc<AtomicBool>,
    heads: Heads,
    rows: Rows,
    collector: Collector,
    /// Held while the writer lives: one process per data directory.
    _lock: std::fs::File,
}

/// A publish that has its id and waits for the commit.
struct Pending {
    message: Arc<Message>,
    key: Option<String>,
    reply: Reply<Published>,
}

/// A channel a batch publishes to.
struct Touched {
    /// The channel's own name, shared by its whole history.
    name: ChannelName,
    /// The last id handed out, in this batch or before.
    last: MessageId,
    /// The channel's last seq before this batch.
    before: u64,
    /// Its row in `channels`.
    head: Head,
    /// The row is written by this batch (a new channel, or a new epoch).
    new_head: bool,
}

impl Writer {
    pub fn new(
        db: Connection,
        hub: Arc<Hub>,
        full: Arc<AtomicBool>,
        lock: std::fs::File,
        loaded: Loaded,
    ) -> Self {
        Self {
            db,
            hub,
            full,
            heads: loaded.heads,
            rows: Rows {
                first: loaded.first_row,
                next: loaded.next_row,
            },
            collector: Collector::default(),
            _lock: lock,
        }
    }

    pub fn run(mut self, mut queue: mpsc::Receiver<Write>) {
        while let Some(first) = queue.blocking_recv() {
            let mut batch = vec![first];
            let mut yields = 0;
            while batch.len() < MAX_BATCH {
                match queue.try_recv() {
                    Ok(write) => batch.push(write),
                    Err(_) if yields < GATHER_YIELDS => {
                        // While publishes keep coming, let the threads
                        // taking them in run before committing: a larger
                        // batch shares one fsync among more of them.
                        std::thread::yield_now();
                        yields += 1;
                        match queue.try_recv() {
                            Ok(write) => batch.push(write),
                            Err(_) => break,
                        }
                    }
                    Err(_) => break,
                }
            }
            self.apply(batch);
        }
    }

    fn apply(&mut self, batch: Vec<Write>) {
        let now = now_ms();
        let mut publishes: Vec<Pending> = Vec::new();
        let mut repeats: Vec<(Published, Reply<Published>)> = Vec::new();
        let mut deletes: Vec<(ChannelName, Reply<bool>)> = Vec::new();
        let mut trim = false;
        let mut touched: HashMap<ChannelName, Touched> = HashMap::new();
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
                    let (hub, heads) = (&self.hub, &mut self.heads);
                    let channel = touched.entry(draft.channel.clone()).or_insert_with(|| {
                        let (name, last) =
                            hub.with_channel(&draft.channel, |s| (s.name.clone(), s.last_id()));
                        match heads.get(&name) {
                            Some(head) if head.epoch == last.epoch => Touched {
                                name,
                                last,
                                before: last.seq,
                                head,
                                new_head: false,
                            },
                            _ => Touched {
                                name,
                                last,
                                before: last.seq,
                                head: Head {
                                    id: heads.allocate(),
                                    epoch: last.epoch,
                                },
                                new_head: true,
                            },
                        }
                    });
                    channel.last = MessageId::new(channel.last.epoch, channel.last.seq + 1);
                    let message = Arc::new(Message::new(
                        channel.name.clone(),
                        channel.last,
                        draft.event,
                        draft.data,
                        draft.kind,
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
            self.publish(publishes, &touched, now);
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

    /// Commits a batch of publishes, then hands them to the hub and answers.
    fn publish(
        &mut self,
        publishes: Vec<Pending>,
        touched: &HashMap<ChannelName, Touched>,
        now: u64,
    ) {
        match self.commit_publishes(&publishes, touched) {
            Ok(rows) => {
                self.rows = rows;
                self.full.store(false, Ordering::SeqCst);
                for channel in touched.values().filter(|c| c.new_head) {
                    self.heads.insert(channel.name.clone(), channel.head);
                }
                for pending in publishes {
                    let limits = self.hub.limits(&pending.message.channel);
                    let published = self.hub.with_channel(&pending.message.channel, |state| {
                        let subscribers = state.append(pending.message.clone(), &limits, now);
                        let published = Published {
                            channel: pending.message.channel.clone(),
                            id: pending.message.id,
                            subscribers,
                        };
                        if let Some(key) = &pending.key {
                            state.remember(key, &published, now + limits.ttl.as_millis() as u64);
                        }
                        published
                    });
                    let _ = pending.reply.send(Ok(published));
                }
            }
            Err(error) => {
                if matches!(error, EngineError::StorageFull(_)) {
                    self.full.store(true, Ordering::SeqCst);
                }
                tracing::error!(%error, "could not commit publishes");
                for pending in publishes {
                    let _ = pending.reply.send(Err(error.clone()));
                }
            }
        }
    }

    /// Appends the batch to the log with the channels it starts and the
    /// idempotency keys it answers, and reclaims about twice as many old
    /// rows; returns the log's rows once committed.
    fn commit_publishes(
        &mut self,
        publishes: &[Pending],
        touched: &HashMap<ChannelName, Touched>,
    ) -> Result<Rows, EngineError> {
        let tx = self.db.transaction().map_err(store_error)?;
        let mut rows = self.rows;
        let batch_start = rows.next;
        {
            let mut start = tx
                .prepare_cached(
                    "INSERT OR REPLACE INTO channels (id, channel, epoch, last_seq) VALUES (?1, ?2, ?3, ?4)",
                )
                .map_err(store_error)?;
            for channel in touched.values().filter(|c| c.new_head) {
                // The row of an earlier epoch goes (the unique name), and
                // with it every message of that epoch still in the log.
                start
                    .execute(params![
                        channel.head.id,
                        channel.name.as_str(),
                        channel.head.epoch as i64,
                        channel.before as i64
                    ])
                    .map_err(store_error)?;
            }
            let mut append = tx
                .prepare_cached(
                    "INSERT INTO log (id, channel, seq, published_at, event, data, kind) \
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                )
                .map_err(store_error)?;
            for pending in publishes {
                let m = &pending.message;
                let channel = touched
                    .get(&m.channel)
                    .map(|c| c.head.id)
                    .ok_or_else(|| unavailable("a publish without its channel"))?;
                append
                    .execute(params![
                        rows.next,
                        channel,
                        m.id.seq as i64,
                        m.published_at_ms() as i64,
                        m.event.as_ref().map(|e| e.as_str()),
                        &m.data[..],
                        kind_column(m.kind())
                    ])
                    .map_err(store_error)?;
                rows.next += 1;
            }
            remember_keys(&tx, &self.hub, publishes)?;
        }
        let budget = (2 * publishes.len() as u64).max(512);
        self.collector
            .collect(&tx, &self.hub, &self.heads, &mut rows, budget, batch_start)?;
        tx.commit().map_err(store_error)?;
        Ok(rows)
    }

    fn delete(&mut self, channel: &ChannelName) -> Result<(), EngineError> {
        let tx = self.db.transaction().map_err(unavailable)?;
        tx.execute(
            "DELETE FROM channels WHERE channel = ?1",
            [channel.as_str()],
        )
        .map_err(unavailable)?;
        tx.execute(
            "DELETE FROM idempotency WHERE channel = ?1",
            [channel.as_str()],
        )
        .map_err(unavailable)?;
        tx.commit().map_err(unavailable)?;
        self.heads.remove(channel);
        Ok(())
    }

    /// Forgets on disk the channels the hub has forgotten, and expired
    /// idempotency keys, and reclaims what the hub has trimmed by age.
    fn trim(&mut self) -> Result<(), EngineError> {
        let now = now_ms();
        let gone: Vec<(ChannelName, i64)> = self
            .heads
            .iter()
            .filter(|(name, head)| self.hub.with_existing(name, |s| s.epoch) != Some(head.epoch))
            .map(|(name, head)| (name.clone(), head.id))
            .collect();
        let tx = self.db.transaction().map_err(unavailable)?;
        let mut rows = self.rows;
        {
            let mut forget = tx
                .prepare_cached("DELETE FROM channels WHERE id = ?1")
                .map_err(unavailable)?;
            for (_, id) in &gone {
                forget.execute([id]).map_err(unavailable)?;
            }
            tx.prepare_cached("DELETE FROM idempotency WHERE expires_at <= ?1")
                .map_err(unavailable)?
                .execute([now as i64])
                .map_err(unavailable)?;
        }
        self.collector.recount();
        let protect_from = rows.next;
        self.collector.collect(
            &tx,
            &self.hub,
            &self.heads,
            &mut rows,
            SWEEP_BUDGET,
            protect_from,
        )?;
        tx.commit().map_err(store_error)?;
        self.rows = rows;
        for (name, _) in &gone {
            self.heads.remove(name);
        }
        Ok(())
    }
}

/// Writes the idempotency keys of a batch, kept for the channel's TTL.
fn remember_keys(tx: &Transaction, hub: &Hub, publishes: &[Pending]) -> Result<(), EngineError> {
    let mut remember = tx
        .prepare_cached(
            "INSERT OR REPLACE INTO idempotency (channel, key, seq, expires_at) VALUES (?1, ?2, ?3, ?4)",
        )
        .map_err(store_error)?;
    let now = now_ms();
    for pending in publishes {
        if let Some(key) = &pending.key {
            let m = &pending.message;
            let expires_at = now + hub.limits(&m.channel).ttl.as_millis() as u64;
            remember
                .execute(params![
                    m.channel.as_str(),
                    key,
                    m.id.seq as i64,
                    expires_at as i64
                ])
                .map_err(store_error)?;
        }
    }
    Ok(())
}
