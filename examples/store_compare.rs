//! Compares embedded stores on herald's durable write pattern: one writer
//! appends 256-byte messages round-robin over 100 channels, commits every
//! `batch` messages (group commit; each commit is durable), and trims each
//! channel to its last 1,000 messages. Then it measures reading everything
//! back, as a restart does.
//!
//! cargo run --release --example store_compare -- DIR [MESSAGES]

use std::path::Path;
use std::time::Instant;

const CHANNELS: u64 = 100;
const KEEP: u64 = 1000;

fn channel(i: u64) -> String {
    format!("channel-{}", i % CHANNELS)
}

fn redb_run(dir: &Path, total: u64, batch: u64) -> (f64, f64) {
    use redb::{Database, ReadableTable, TableDefinition};
    const T: TableDefinition<(&str, u64), &[u8]> = TableDefinition::new("m");
    let path = dir.join(format!("redb-{batch}.redb"));
    let _ = std::fs::remove_file(&path);
    let db = Database::create(&path).unwrap();
    let data = vec![b'x'; 256];
    let start = Instant::now();
    let mut i = 0;
    while i < total {
        let tx = db.begin_write().unwrap();
        {
            let mut table = tx.open_table(T).unwrap();
            for _ in 0..batch {
                let seq = i / CHANNELS + 1;
                let ch = channel(i);
                table.insert((ch.as_str(), seq), data.as_slice()).unwrap();
                if seq > KEEP {
                    table.remove((ch.as_str(), seq - KEEP)).unwrap();
                }
                i += 1;
            }
        }
        tx.commit().unwrap();
    }
    let write_rate = total as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let read = db.begin_read().unwrap();
    let table = read.open_table(T).unwrap();
    let count = table.iter().unwrap().count();
    assert!(count > 0);
    (write_rate, start.elapsed().as_secs_f64())
}

fn sqlite_run(dir: &Path, total: u64, batch: u64) -> (f64, f64) {
    let path = dir.join(format!("sqlite-{batch}.db"));
    let _ = std::fs::remove_file(&path);
    let mut db = rusqlite::Connection::open(&path).unwrap();
    db.pragma_update(None, "journal_mode", "WAL").unwrap();
    // FULL: every commit is fsynced, as herald's acknowledgement requires.
    db.pragma_update(None, "synchronous", "FULL").unwrap();
    db.execute(
        "CREATE TABLE m (ch TEXT, seq INTEGER, data BLOB, PRIMARY KEY (ch, seq)) WITHOUT ROWID",
        [],
    )
    .unwrap();
    let data = vec![b'x'; 256];
    let start = Instant::now();
    let mut i = 0;
    while i < total {
        let tx = db.transaction().unwrap();
        {
            let mut insert = tx
                .prepare_cached("INSERT INTO m VALUES (?1, ?2, ?3)")
                .unwrap();
            let mut delete = tx
                .prepare_cached("DELETE FROM m WHERE ch = ?1 AND seq = ?2")
                .unwrap();
            for _ in 0..batch {
                let seq = i / CHANNELS + 1;
                let ch = channel(i);
                insert
                    .execute(rusqlite::params![ch, seq as i64, data])
                    .unwrap();
                if seq > KEEP {
                    delete
                        .execute(rusqlite::params![ch, (seq - KEEP) as i64])
                        .unwrap();
                }
                i += 1;
            }
        }
        tx.commit().unwrap();
    }
    let write_rate = total as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let mut query = db
        .prepare("SELECT ch, seq, data FROM m ORDER BY ch, seq")
        .unwrap();
    let count = query.query_map([], |_| Ok(())).unwrap().count();
    assert!(count > 0);
    (write_rate, start.elapsed().as_secs_f64())
}

fn fjall_run(dir: &Path, total: u64, batch: u64) -> (f64, f64) {
    use fjall::{Database, KeyspaceCreateOptions, PersistMode};
    // Key: `channel/` then the sequence number big-endian, so a channel's
    // messages are contiguous and in order.
    fn key(ch: &str, seq: u64) -> Vec<u8> {
        let mut k = Vec::with_capacity(ch.len() + 9);
        k.extend_from_slice(ch.as_bytes());
        k.push(b'/');
        k.extend_from_slice(&seq.to_be_bytes());
        k
    }
    let path = dir.join(format!("fjall-{batch}"));
    let _ = std::fs::remove_dir_all(&path);
    let db = Database::builder(&path).open().unwrap();
    let m = db.keyspace("m", KeyspaceCreateOptions::default).unwrap();
    let data = vec![b'x'; 256];
    let start = Instant::now();
    let mut i = 0;
    while i < total {
        let mut wb = db.batch();
        for _ in 0..batch {
            let seq = i / CHANNELS + 1;
            let ch = channel(i);
            wb.insert(&m, key(&ch, seq), data.as_slice());
            if seq > KEEP {
                // fjall has no range delete: drop the one message that fell
                // out of the window, as the other stores do.
                wb.remove(&m, key(&ch, seq - KEEP));
            }
            i += 1;
        }
        wb.commit().unwrap();
        // A commit only reaches the OS buffers; fsync the journal (data and
        // metadata) before the batch counts as acknowledged.
        db.persist(PersistMode::SyncAll).unwrap();
    }
    let write_rate = total as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let count = m
        .iter()
        .try_fold(0, |n, kv| kv.into_inner().map(|_| n + 1))
        .unwrap();
    assert!(count > 0);
    (write_rate, start.elapsed().as_secs_f64())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = Path::new(
        args.get(1)
            .map(String::as_str)
            .unwrap_or("/tmp/herald-store-compare"),
    );
    let total: u64 = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20_000);
    std::fs::create_dir_all(dir).unwrap();
    println!(
        "| store | batch | messages/s | read back {}k kept (s) |",
        CHANNELS * KEEP / 1000
    );
    println!("| --- | --- | --- | --- |");
    for batch in [1, 16, 256] {
        let n = if batch == 1 { total / 10 } else { total };
        let (w, r) = redb_run(dir, n, batch);
        println!("| redb | {batch} | {w:.0} | {r:.3} |");
        let (w, r) = sqlite_run(dir, n, batch);
        println!("| SQLite (WAL, synchronous=FULL) | {batch} | {w:.0} | {r:.3} |");
        let (w, r) = fjall_run(dir, n, batch);
        println!("| fjall (persist SyncAll) | {batch} | {w:.0} | {r:.3} |");
    }
    let _ = std::fs::remove_dir_all(dir);
}
