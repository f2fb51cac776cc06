//! The store's tables, and the upgrade of a store written by an earlier
//! version.
//!
//! Messages live in one append-only table, `log`, in the order they were
//! committed: a batch of publishes to many channels is a few consecutive
//! pages, where a table clustered by channel rewrote one page per channel
//! touched (about 4 KiB of WAL per 256-byte message at 256 channels).
//! Each channel has a row in `channels` with a numeric id that the log
//! refers to; a channel that is deleted or forgotten loses that row, and its
//! messages in the log are from then on garbage that the writer reclaims.

use rusqlite::Connection;

use super::unavailable;
use crate::engine::EngineError;

/// `PRAGMA user_version` of the log layout.
const VERSION: i64 = 2;

const TABLES: &str = "
    CREATE TABLE IF NOT EXISTS channels (
        id INTEGER PRIMARY KEY, channel TEXT NOT NULL UNIQUE,
        epoch INTEGER NOT NULL, last_seq INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS log (
        id INTEGER PRIMARY KEY, channel INTEGER NOT NULL, seq INTEGER NOT NULL,
        published_at INTEGER NOT NULL, event TEXT, data BLOB NOT NULL, kind INTEGER NOT NULL);
    CREATE TABLE IF NOT EXISTS idempotency (
        channel TEXT NOT NULL, key TEXT NOT NULL, seq INTEGER NOT NULL, expires_at INTEGER NOT NULL,
        PRIMARY KEY (channel, key)) WITHOUT ROWID;
";

/// Creates the tables of a new store, or brings an older one up to date.
pub(super) fn prepare(db: &mut Connection) -> Result<(), EngineError> {
    let version: i64 = db
        .pragma_query_value(None, "user_version", |r| r.get(0))
        .map_err(unavailable)?;
    if version >= VERSION {
        return Ok(());
    }
    let tx = db.transaction().map_err(unavailable)?;
    if has_table(&tx, "messages")? {
        upgrade_clustered(&tx)?;
    } else {
        tx.execute_batch(TABLES).map_err(unavailable)?;
    }
    tx.pragma_update(None, "user_version", VERSION)
        .map_err(unavailable)?;
    tx.commit().map_err(unavailable)
}

fn has_table(db: &Connection, name: &str) -> Result<bool, EngineError> {
    db.query_row(
        "SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .map_err(unavailable)
}

/// Moves a store of the first layout (messages clustered by channel and
/// seq, channels keyed by name) into the log, channel by channel in seq
/// order. Messages of a channel without a `channels` row were unreachable
/// and are dropped.
fn upgrade_clustered(db: &Connection) -> Result<(), EngineError> {
    // The `kind` column came later: every message before it was text.
    let has_kind: bool = db
        .query_row(
            "SELECT COUNT(*) FROM pragma_table_info('messages') WHERE name = 'kind'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .map_err(unavailable)?
        > 0;
    let kind = if has_kind { "m.kind" } else { "0" };
    db.execute_batch(&format!(
        "ALTER TABLE channels RENAME TO channels_v1;
         ALTER TABLE messages RENAME TO messages_v1;
         {TABLES}
         INSERT INTO channels (id, channel, epoch, last_seq)
             SELECT row_number() OVER (ORDER BY channel), channel, epoch, last_seq FROM channels_v1;
         INSERT INTO log (channel, seq, published_at, event, data, kind)
             SELECT c.id, m.seq, m.published_at, m.event, m.data, {kind}
             FROM messages_v1 m JOIN channels c ON c.channel = m.channel
             ORDER BY m.channel, m.seq;
         DROP TABLE messages_v1;
         DROP TABLE channels_v1;"
    ))
    .map_err(unavailable)
}
