//! The durable engine (`--data-dir DIR`): history in SQLite on local disk, in
//! WAL mode with `synchronous=FULL`, so every commit is on disk before it is
//! acknowledged and a `kill -9` at any moment leaves the last commit intact.
//! SQLite was chosen over redb by measurement on this write pattern
//! (docs/BENCHMARKS.md, "Durable store").
//!
//! One writer thread owns every change. It takes publishes in batches, gives
//! each the next id of its channel, appends the whole batch to the log in
//! one transaction (group commit: one fsync for many publishes), and only
//! after the commit appends the messages to the hub, which fans them out and
//! answers the publishers. So a subscriber never sees a message that is not
//! on disk, ids stay gap-free and in order, and an acknowledged message
//! survives a crash. The log's layout is in [`schema`], how it is reclaimed
//! in [`collector`].

mod collector;
mod heads;
mod load;
mod schema;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::Connection;
use tokio::sync::{mpsc, oneshot};

use super::presence::{ChannelEvent, Presence};
use super::{Engine, EngineError, EngineTotals};
use crate::hub::{
    now_ms, ChannelActivity, ChannelInfo, ChannelName, ChannelPolicy, DataKind, Draft, Hub,
    PresenceEntry, Published, Replay, Since, SubscriberHandle, SubscriberId,
};
use writer::Writer;

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

/// The `log.kind` column: 0 text, 1 binary.
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
        let mut db = Connection::open(dir.join("herald.sqlite3")).map_err(unavailable)?;
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
        schema::prepare(&mut db)?;
        let hub = Arc::new(Hub::with_policy(policy));
        let loaded = load::load(&db, &hub)?;
        let (writes, queue) = mpsc::channel(4 * MAX_BATCH);
        let alive = Arc::new(AtomicBool::new(true));
        let full = Arc::new(AtomicBool::new(false));
        let writer = Writer::new(db, hub.clone(), full.clone(), lock, loaded);
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
mod tests;
