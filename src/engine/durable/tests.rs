//! The store against real SQLite files: upgrades of older layouts, the
//! log's bound, and what a restart reads back after reclaiming.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;
use rusqlite::Connection;

use super::collector::SLACK_ROWS;
use super::*;
use crate::hub::{ChannelInfo, HistoryLimits, MessageId};

/// A fresh directory for one test, removed when dropped.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir =
            std::env::temp_dir().join(format!("herald-durable-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    fn db(&self) -> Connection {
        Connection::open(self.0.join("herald.sqlite3")).unwrap()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn keeping(messages: usize) -> Arc<ChannelPolicy> {
    Arc::new(ChannelPolicy::uniform(HistoryLimits {
        max_messages: messages,
        ..HistoryLimits::default()
    }))
}

/// Opens the store, waiting (5 s at most) for a dropped engine's writer
/// to let go of the directory.
fn open(dir: &Path, policy: Arc<ChannelPolicy>) -> DurableEngine {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match DurableEngine::open(dir, policy.clone(), false) {
            Ok(engine) => return engine,
            Err(error) if Instant::now() < deadline && error.to_string().contains("in use") => {
                std::thread::yield_now();
            }
            Err(error) => panic!("the store does not open: {error}"),
        }
    }
}

fn name(channel: &str) -> ChannelName {
    ChannelName::parse(channel).unwrap()
}

fn info(engine: &DurableEngine, channel: &str) -> ChannelInfo {
    engine
        .hub
        .info(&name(channel), now_ms())
        .unwrap_or_else(|| panic!("{channel} is not loaded"))
}

/// Every message of the channel's history: (seq, data).
fn history(engine: &DurableEngine, channel: &str) -> Vec<(u64, String)> {
    engine
        .hub
        .with_existing(&name(channel), |state| {
            state
                .history
                .iter()
                .map(|m| (m.id.seq, String::from_utf8_lossy(&m.data).into_owned()))
                .collect()
        })
        .unwrap_or_default()
}

async fn publish(engine: &DurableEngine, channel: &str, data: String) -> MessageId {
    engine
        .publish(Draft {
            channel: name(channel),
            event: None,
            data: Bytes::from(data),
            kind: DataKind::Text,
            idempotency_key: None,
        })
        .await
        .unwrap()
        .id
}

/// `count` messages `0..count` to each channel, several in flight at once
/// so that batches form; every channel's in order.
async fn publish_many(engine: &Arc<DurableEngine>, channels: &[&str], count: usize) {
    let mut tasks = tokio::task::JoinSet::new();
    for channel in channels {
        let (engine, channel) = (engine.clone(), channel.to_string());
        tasks.spawn(async move {
            for i in 0..count {
                publish(&engine, &channel, i.to_string()).await;
            }
        });
    }
    while let Some(done) = tasks.join_next().await {
        done.unwrap();
    }
}

fn log_rows(scratch: &Scratch) -> u64 {
    scratch
        .db()
        .query_row("SELECT COUNT(*) FROM log", [], |r| r.get::<_, i64>(0))
        .unwrap() as u64
}

#[test]
fn a_store_from_before_message_kinds_opens_with_its_messages_as_text() {
    let scratch = Scratch::new("kinds");
    scratch
        .db()
        .execute_batch(&format!(
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
    let engine = open(&scratch.0, Arc::default());
    assert_eq!(info(&engine, "old").messages, 1);
    drop(engine);
    let kind: i64 = scratch
        .db()
        .query_row("SELECT kind FROM log WHERE seq = 1", [], |r| r.get(0))
        .unwrap();
    assert_eq!(kind_of_column(kind), DataKind::Text);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_of_the_clustered_layout_moves_into_the_log_and_its_ids_continue() {
    let scratch = Scratch::new("upgrade");
    let now = now_ms();
    scratch
        .db()
        .execute_batch(&format!(
            "CREATE TABLE messages (channel TEXT NOT NULL, seq INTEGER NOT NULL, \
             published_at INTEGER NOT NULL, event TEXT, data BLOB NOT NULL, \
             kind INTEGER NOT NULL DEFAULT 0, PRIMARY KEY (channel, seq)) WITHOUT ROWID;
             CREATE TABLE channels (channel TEXT PRIMARY KEY, epoch INTEGER NOT NULL, \
             last_seq INTEGER NOT NULL) WITHOUT ROWID;
             CREATE TABLE idempotency (channel TEXT NOT NULL, key TEXT NOT NULL, \
             seq INTEGER NOT NULL, expires_at INTEGER NOT NULL, PRIMARY KEY (channel, key)) WITHOUT ROWID;
             INSERT INTO channels VALUES ('b', 500000, 12), ('a', 400000, 3), ('empty', 300000, 9);
             INSERT INTO messages VALUES ('b', 11, {now}, 'tick', X'00ff', 1), ('b', 12, {now}, NULL, 'b12', 0),
                 ('a', 1, {now}, NULL, 'a1', 0), ('a', 2, {now}, NULL, 'a2', 0), ('a', 3, {now}, NULL, 'a3', 0),
                 ('orphan', 1, {now}, NULL, 'x', 0);"
        ))
        .unwrap();
    let engine = Arc::new(open(&scratch.0, Arc::default()));
    assert_eq!(
        history(&engine, "a"),
        [(1, "a1".into()), (2, "a2".into()), (3, "a3".into())]
    );
    let b = info(&engine, "b");
    assert_eq!(
        (b.messages, b.first_id, b.last_id),
        (
            2,
            Some(MessageId::new(500000, 11)),
            Some(MessageId::new(500000, 12))
        )
    );
    let binary = engine
        .hub
        .with_existing(&name("b"), |s| s.history.oldest().cloned())
        .flatten()
        .unwrap();
    assert_eq!(
        (
            binary.kind(),
            &binary.data[..],
            binary.event.as_deref().map(|e| e.as_str())
        ),
        (DataKind::Binary, &[0u8, 0xff][..], Some("tick"))
    );
    assert_eq!(
        info(&engine, "empty").last_id,
        Some(MessageId::new(300000, 9))
    );
    assert!(engine.hub.info(&name("orphan"), now_ms()).is_none());
    assert_eq!(
        publish(&engine, "a", "a4".into()).await,
        MessageId::new(400000, 4)
    );
    assert_eq!(
        publish(&engine, "empty", "e10".into()).await,
        MessageId::new(300000, 10)
    );
    drop(engine);
    let engine = open(&scratch.0, Arc::default());
    assert_eq!(history(&engine, "a").last(), Some(&(4, "a4".into())));
    assert_eq!(history(&engine, "empty"), [(10, "e10".into())]);
    let tables: i64 = scratch
        .db()
        .query_row(
            "SELECT COUNT(*) FROM sqlite_master WHERE name IN ('messages', 'channels_v1', 'messages_v1')",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(tables, 0, "the old tables are gone");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_stays_bounded_and_a_restart_reads_back_each_history() {
    let scratch = Scratch::new("bounded");
    let engine = Arc::new(open(&scratch.0, keeping(10)));
    let channels = ["one", "two", "three"];
    publish_many(&engine, &channels, 1500).await;
    let rows = log_rows(&scratch);
    // 30 messages kept: a pass starts above 1.5× that plus the slack, and
    // a batch adds at most MAX_BATCH before the next pass catches up.
    let bound = 45 + SLACK_ROWS + MAX_BATCH as u64;
    assert!(
        rows <= bound,
        "the log holds {rows} rows, more than {bound}"
    );
    assert!(rows >= 30, "the log lost kept messages: {rows} rows");
    drop(engine);
    let engine = Arc::new(open(&scratch.0, keeping(10)));
    for channel in channels {
        let expected: Vec<(u64, String)> = (1491..=1500)
            .map(|seq| (seq, (seq - 1).to_string()))
            .collect();
        assert_eq!(history(&engine, channel), expected, "{channel}");
    }
    assert_eq!(publish(&engine, "one", "next".into()).await.seq, 1501);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_channels_messages_are_kept_while_a_busy_one_is_reclaimed() {
    let scratch = Scratch::new("quiet");
    let engine = Arc::new(open(&scratch.0, keeping(10)));
    for i in 0..5 {
        publish(&engine, "quiet", format!("q{i}")).await;
    }
    publish_many(&engine, &["busy"], 4000).await;
    let rows = log_rows(&scratch);
    assert!(rows < 4000, "nothing was reclaimed: {rows} rows");
    // The quiet channel's rows were the log's oldest: they were copied on.
    let quiet_rows: i64 = scratch
        .db()
        .query_row(
            "SELECT COUNT(*) FROM log JOIN channels c ON c.id = log.channel WHERE c.channel = 'quiet'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(quiet_rows, 5);
    drop(engine);
    let engine = open(&scratch.0, keeping(10));
    let expected: Vec<(u64, String)> = (1..=5).map(|seq| (seq, format!("q{}", seq - 1))).collect();
    assert_eq!(history(&engine, "quiet"), expected);
    assert_eq!(history(&engine, "busy").len(), 10);
    assert_eq!(info(&engine, "busy").last_id.map(|id| id.seq), Some(4000));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_channel_comes_back_without_its_old_messages() {
    let scratch = Scratch::new("deleted");
    let engine = open(&scratch.0, Arc::default());
    let first = publish(&engine, "x", "old 1".into()).await;
    publish(&engine, "x", "old 2".into()).await;
    assert!(engine.delete(&name("x")).await.unwrap());
    let again = publish(&engine, "x", "new".into()).await;
    assert_ne!(again.epoch, first.epoch);
    assert_eq!(again.seq, 1);
    drop(engine);
    let engine = open(&scratch.0, Arc::default());
    assert_eq!(history(&engine, "x"), [(1, "new".into())]);
    assert_eq!(info(&engine, "x").last_id, Some(again));
}
