//! The durable engine (`--data-dir DIR`): history in SQLite on local disk, in
//! WAL mode with `synchronous=FULL`, so every commit is on disk before it is
//! acknowledged and a `kill -9` at any moment leaves the last commit intact.
//! SQLite was chosen over redb by measurement on this write pattern
//! (docs/BENCHMARKS.md, "Durable store").
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
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use rusqlite::{params, Connection};
use tokio::sync::{mpsc, oneshot};

use super::presence::{ChannelEvent, Presence};
use super::{Engine, EngineError, EngineTotals};
use crate::hub::{
    now_ms, ChannelActivity, ChannelInfo, ChannelName, ChannelPolicy, ChannelState, DataKind,
    Draft, EventName, Hub, Message, MessageId, PresenceEntry, Published, Replay, Since,
    SubscriberHandle, SubscriberId,
};

const SCHEMA: &str = "
    CREATE TABLE IF NOT EXISTS messages (
        channel TEXT NOT NULL, seq INTEGER NOT NULL, published_at INTEGER NOT NULL,
        event TEXT, data BLOB NOT NULL, kind INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (channel, seq)) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS channels (
        channel TEXT PRIMARY KEY, epoch INTEGER NOT NULL, last_seq INTEGER NOT NULL) WITHOUT ROWID;
    CREATE TABLE IF NOT EXISTS idempotency (
        channel TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, expires_at INTEGER NOT NULL,
        PRIMARY KEY (channel, key)) WITHOUT ROWID;
";

/// Idempotency keys restored per channel at start, newest first (as many as
/// the hub remembers).
const RESTORED_KEYS: usize = 1024;

/// WAL pages between automatic checkpoints (4 KiB each).
const WAL_CHECKPOINT_PAGES: i64 = 8_000;

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
    /// The last commit failed for lack of disk space (cleared by the next
    /// one that succeeds).
    full: Arc<AtomicBool>,
    dir: std::path::PathBuf,
    /// Presence and occupancy (kept in memory: it describes live connections).
    presence: Presence,
}

fn unavailable(error: impl std::fmt::Display) -> EngineError {
    EngineError::Unavailable(format!("data store: {error}"))
}

/// A failed write, told apart when it failed for lack of disk space: the
/// client is then told `storage_full` (507), not that the store is down.
fn store_error(error: rusqlite::Error) -> EngineError {
    if error.sqlite_error_code() == Some(rusqlite::ErrorCode::DiskFull) {
        EngineError::StorageFull(format!("data store: {error}"))
    } else {
        unavailable(error)
    }
}

/// Whether the file system holding `dir` has at least `bytes` free for
/// this process (statvfs; false if it cannot tell).
fn has_free_space(dir: &Path, bytes: u64) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `path` is a valid NUL-terminated string and `stats` a
    // properly sized, writable statvfs that libc fills in.
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(path.as_ptr(), &mut stats) } != 0 {
        return false;
    }
    (stats.f_bavail as u64).saturating_mul(stats.f_frsize as u64) >= bytes
}

/// Rebuilds a stored message.
fn restore_message(
    channel: &ChannelName,
    id: MessageId,
    published_at: i64,
    event: Option<String>,
    data: Vec<u8>,
    kind: i64,
) -> Message {
    let event = event
        .filter(|e| !e.is_empty())
        .and_then(|e| EventName::parse(&e).ok());
    Message::new(
        channel.clone(),
        id,
        event,
        Bytes::from(data),
        kind_of_column(kind),
        published_at as u64,
    )
}

/// The `messages.kind` column: 0 text, 1 binary.
fn kind_column(kind: DataKind) -> i64 {
    match kind {
        DataKind::Text => 0,
        DataKind::Binary => 1,
    }
}

fn kind_of_column(kind: i64) -> DataKind {
    if kind == 1 {
        DataKind::Binary
    } else {
        DataKind::Text
    }
}

/// Brings a store written by an earlier version up to the current schema:
/// the `kind` column came later, and every message before it was text.
fn migrate(db: &Connection) -> Result<(), EngineError> {
    let has_kind: bool = db
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'kind'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(unavailable)?
        > 0;
    if !has_kind {
        db.execute_batch("ALTER TABLE messages ADD COLUMN kind INTEGER NOT NULL DEFAULT 0")
            .map_err(unavailable)?;
    }
    Ok(())
}

impl DurableEngine {
    /// Opens (or creates) the store in `dir` and loads every channel's history.
    pub fn open(
        dir: &Path,
        policy: Arc<ChannelPolicy>,
        track_occupancy: bool,
    ) -> Result<Self, EngineError> {
        let presence = Presence::new(policy.clone(), track_occupancy);
        std::fs::create_dir_all(dir).map_err(unavailable)?;
        let lock = lock_dir(dir)?;
        let db = Connection::open(dir.join("herald.sqlite3")).map_err(unavailable)?;
        db.pragma_update(None, "journal_mode", "WAL")
            .map_err(unavailable)?;
        db.pragma_update(None, "synchronous", "FULL")
            .map_err(unavailable)?;
        // Checkpoint every 8,000 WAL pages (32 MiB) rather than SQLite's
        // 1,000: a page rewritten by many batches is copied into the
        // database once per checkpoint, which under many publishers was
        // the larger part of the store's writes (+35 % publishes/s at 256
        // publishers, docs/BENCHMARKS.md).
        db.pragma_update(None, "wal_autocheckpoint", WAL_CHECKPOINT_PAGES)
            .map_err(unavailable)?;
        db.execute_batch(SCHEMA).map_err(unavailable)?;
        migrate(&db)?;
        let hub = Arc::new(Hub::with_policy(policy));
        load(&db, &hub)?;
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        let alive = Arc::new(AtomicBool::new(true));
        let full = Arc::new(AtomicBool::new(false));
        let writer = Writer {
            db,
            hub: hub.clone(),
            full: full.clone(),
            _lock: lock,
        };
        let flag = alive.clone();
        std::thread::Builder::new()
            .name("herald-store".into())
            .spawn(move || {
                writer.run(queue);
                flag.store(false, Ordering::SeqCst);
            })
            .map_err(unavailable)?;
        Ok(Self {
            hub,
            writes,
            alive,
            full,
            dir: dir.to_owned(),
            presence,
        })
    }

    /// Full, and still without room for a publish: once space is freed the
    /// node reports ready again and the next commit clears the flag.
    fn out_of_space(&self) -> bool {
        let room = (2 * self.hub.policy().largest_message_size() as u64).max(64 * 1024);
        self.full.load(Ordering::SeqCst) && !has_free_space(&self.dir, room)
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
fn load(db: &Connection, hub: &Hub) -> Result<(), EngineError> {
    let now = now_ms();
    let mut loaded = 0usize;
    let mut channels = db
        .prepare("SELECT channel, epoch, last_seq FROM channels")
        .map_err(unavailable)?;
    let mut messages = db
        .prepare(
            "SELECT seq, published_at, event, data, kind FROM messages WHERE channel = ?1 ORDER BY seq",
        )
        .map_err(unavailable)?;
    let rows = channels
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        })
        .map_err(unavailable)?;
    for row in rows {
        let (name, epoch, last_seq) = row.map_err(unavailable)?;
        let Ok(channel) = ChannelName::parse(&name) else {
            continue;
        };
        let (epoch, last_seq) = (epoch as u64, last_seq as u64);
        let mut state = ChannelState::resume(channel.clone(), epoch, last_seq);
        let stored = messages
            .query_map([&name], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Option<String>>(2)?,
                    r.get::<_, Vec<u8>>(3)?,
                    r.get::<_, i64>(4)?,
                ))
            })
            .map_err(unavailable)?;
        let mut keys = db
            .prepare_cached(
                "SELECT key, seq, expires_at FROM idempotency WHERE channel = ?1 AND expires_at > ?2 \
                 ORDER BY expires_at DESC LIMIT ?3",
            )
            .map_err(unavailable)?;
        let remembered = keys
            .query_map(params![&name, now as i64, RESTORED_KEYS as i64], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .map_err(unavailable)?
            .collect::<Result<Vec<_>, _>>()
            .map_err(unavailable)?;
        // Oldest first, so the newest are the last to be evicted.
        for (key, seq, expires_at) in remembered.into_iter().rev() {
            let published = Published {
                channel: channel.clone(),
                id: MessageId::new(epoch, seq as u64),
                subscribers: 0,
            };
            state.remember(&key, &published, expires_at as u64);
        }
        for message in stored {
            let (seq, published_at, event, data, kind) = message.map_err(unavailable)?;
            let seq = seq as u64;
            // History keeps contiguous seqs; a hole (never expected) restarts it.
            if state.history.newest().is_some_and(|m| m.id.seq + 1 != seq) {
                state.history = crate::hub::History::new();
            }
            let message = restore_message(
                &channel,
                MessageId::new(epoch, seq),
                published_at,
                event,
                data,
                kind,
            );
            state
                .history
                .push(Arc::new(message), &hub.limits(&channel), now);
            loaded += 1;
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
    db: Connection,
    hub: Arc<Hub>,
    full: Arc<AtomicBool>,
    /// Held while the writer lives: one process per data directory.
    _lock: std::fs::File,
}

/// Locks `dir` for this process. Two processes writing one store would hand
/// out the same ids; the second is refused at start instead.
fn lock_dir(dir: &Path) -> Result<std::fs::File, EngineError> {
    let path = dir.join("herald.lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(unavailable)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(EngineError::Unavailable(format!(
            "{} is in use by another herald process (one process per --data-dir)",
            dir.display()
        ))),
        Err(std::fs::TryLockError::Error(error)) => Err(unavailable(error)),
    }
}

/// A publish that has its id and waits for the commit.
struct Pending {
    message: Arc<Message>,
    key: Option<String>,
    reply: Reply<Published>,
}

impl Writer {
    fn run(mut self, mut queue: mpsc::Receiver<Write>) {
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

    fn apply(&mut self, batch: Vec<Write>) {
        let now = now_ms();
        let mut publishes: Vec<Pending> = Vec::new();
        let mut repeats: Vec<(Published, Reply<Published>)> = Vec::new();
        let mut deletes: Vec<(ChannelName, Reply<bool>)> = Vec::new();
        let mut trim = false;
        // The channel's name and the last id handed out in this batch, per channel.
        let mut names_and_last: HashMap<ChannelName, (ChannelName, MessageId)> = HashMap::new();
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
                    // The channel's own name, shared by its whole history,
                    // rather than the one parsed from this request.
                    let (name, previous) = names_and_last
                        .entry(draft.channel.clone())
                        .or_insert_with(|| {
                            self.hub
                                .with_channel(&draft.channel, |s| (s.name.clone(), s.last_id()))
                        })
                        .clone();
                    let id = MessageId::new(previous.epoch, previous.seq + 1);
                    names_and_last.insert(draft.channel.clone(), (name.clone(), id));
                    let message = Arc::new(Message::new(
                        name,
                        id,
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
            match self.commit_publishes(&publishes, &names_and_last) {
                Ok(()) => {
                    self.full.store(false, Ordering::SeqCst);
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
        &mut self,
        publishes: &[Pending],
        last: &HashMap<ChannelName, (ChannelName, MessageId)>,
    ) -> Result<(), EngineError> {
        let tx = self.db.transaction().map_err(store_error)?;
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO messages (channel, seq, published_at, event, data, kind) VALUES (?1, ?2, ?3, ?4, ?5, ?6)")
                .map_err(store_error)?;
            for pending in publishes {
                let m = &pending.message;
                insert
                    .execute(params![
                        m.channel.as_str(),
                        m.id.seq as i64,
                        m.published_at_ms() as i64,
                        m.event.as_ref().map(|e| e.as_str()),
                        &m.data[..],
                        kind_column(m.kind())
                    ])
                    .map_err(store_error)?;
            }
            let mut remember = tx
                .prepare_cached("INSERT OR REPLACE INTO idempotency (channel, key, seq, expires_at) VALUES (?1, ?2, ?3, ?4)")
                .map_err(store_error)?;
            let now = now_ms();
            for pending in publishes {
                if let Some(key) = &pending.key {
                    let m = &pending.message;
                    let ttl = self.hub.limits(&m.channel).ttl;
                    let expires_at = now + ttl.as_millis() as u64;
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
            let mut meta = tx
                .prepare_cached("INSERT OR REPLACE INTO channels (channel, epoch, last_seq) VALUES (?1, ?2, ?3)")
                .map_err(store_error)?;
            let mut trim = tx
                .prepare_cached("DELETE FROM messages WHERE channel = ?1 AND seq <= ?2")
                .map_err(store_error)?;
            for (channel, (_, id)) in last {
                meta.execute(params![channel.as_str(), id.epoch as i64, id.seq as i64])
                    .map_err(store_error)?;
                // Keep disk use bounded by the count limit at once; age and
                // byte limits follow at the next trim.
                let keep = self.hub.limits(channel).max_messages as u64;
                if id.seq > keep {
                    trim.execute(params![channel.as_str(), (id.seq - keep) as i64])
                        .map_err(store_error)?;
                }
            }
        }
        tx.commit().map_err(store_error)
    }

    fn delete(&mut self, channel: &ChannelName) -> Result<(), EngineError> {
        let tx = self.db.transaction().map_err(unavailable)?;
        tx.execute(
            "DELETE FROM messages WHERE channel = ?1",
            [channel.as_str()],
        )
        .map_err(unavailable)?;
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
        tx.commit().map_err(unavailable)
    }

    /// Removes from disk every message the hub no longer keeps, and every
    /// channel the hub has forgotten.
    fn trim(&mut self) -> Result<(), EngineError> {
        let now = now_ms();
        let tx = self.db.transaction().map_err(unavailable)?;
        {
            let stored: Vec<(String, i64)> = {
                let mut query = tx
                    .prepare_cached("SELECT channel, last_seq FROM channels")
                    .map_err(unavailable)?;
                let rows = query
                    .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
                    .map_err(unavailable)?;
                rows.collect::<Result<_, _>>().map_err(unavailable)?
            };
            let mut trim = tx
                .prepare_cached("DELETE FROM messages WHERE channel = ?1 AND seq < ?2")
                .map_err(unavailable)?;
            let mut forget = tx
                .prepare_cached("DELETE FROM channels WHERE channel = ?1")
                .map_err(unavailable)?;
            for (name, last_seq) in stored {
                let Ok(channel) = ChannelName::parse(&name) else {
                    continue;
                };
                let kept_from = match self.hub.info(&channel, now) {
                    Some(info) => info.first_id.map_or(last_seq + 1, |id| id.seq as i64),
                    None => {
                        forget.execute([&name]).map_err(unavailable)?;
                        i64::MAX
                    }
                };
                trim.execute(params![name, kept_from])
                    .map_err(unavailable)?;
            }
            tx.prepare_cached("DELETE FROM idempotency WHERE expires_at <= ?1")
                .map_err(unavailable)?
                .execute([now as i64])
                .map_err(unavailable)?;
        }
        tx.commit().map_err(unavailable)
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
        self.alive.load(Ordering::SeqCst) && !self.out_of_space()
    }

    fn unready_reason(&self) -> Option<&'static str> {
        self.out_of_space().then_some("storage_full")
    }

    fn sweep(&self) {
        self.hub.sweep(now_ms());
        self.presence.sweep(&self.hub);
        let _ = self.writes.try_send(Write::Trim);
    }

    async fn hold(
        &self,
        channel: &ChannelName,
        entry: &Arc<PresenceEntry>,
    ) -> Result<(), EngineError> {
        self.presence.hold_here(&self.hub, channel, entry);
        Ok(())
    }

    fn release(&self, channel: &ChannelName, client: &Arc<str>, linger: Option<Duration>) {
        self.presence
            .release_here(&self.hub, channel, client, linger);
    }

    async fn presence(
        &self,
        channel: &ChannelName,
    ) -> Result<Option<Vec<Arc<PresenceEntry>>>, EngineError> {
        Ok(self.presence.listing(channel))
    }

    fn channel_events(&self) -> tokio::sync::broadcast::Receiver<ChannelEvent> {
        self.presence.subscribe()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_store_from_before_message_kinds_opens_with_its_messages_as_text() {
        let dir = std::env::temp_dir().join(format!("herald-migrate-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        {
            let db = Connection::open(dir.join("herald.sqlite3")).unwrap();
            db.execute_batch(&format!(
                "CREATE TABLE messages (channel TEXT NOT NULL, seq INTEGER NOT NULL, \
                 published_at INTEGER NOT NULL, event TEXT, data BLOB NOT NULL, \
                 PRIMARY KEY (channel, seq)) WITHOUT ROWID;
                 CREATE TABLE channels (channel TEXT PRIMARY KEY, epoch INTEGER NOT NULL, \
                 last_seq INTEGER NOT NULL) WITHOUT ROWID;
                 INSERT INTO channels VALUES ('old', 7, 1);
                 INSERT INTO messages VALUES ('old', 1, {}, NULL, X'6265666f7265');",
                now_ms()
            ))
            .unwrap();
        }
        let engine = DurableEngine::open(&dir, Arc::default(), false).unwrap();
        let info = engine
            .hub
            .info(&ChannelName::parse("old").unwrap(), now_ms())
            .expect("the old channel is loaded");
        assert_eq!(info.messages, 1);
        drop(engine);
        let db = Connection::open(dir.join("herald.sqlite3")).unwrap();
        let kind: i64 = db
            .query_row("SELECT kind FROM messages WHERE seq = 1", [], |r| r.get(0))
            .unwrap();
        assert_eq!(kind_of_column(kind), DataKind::Text);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
