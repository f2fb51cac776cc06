//! Reclaiming the log: its oldest rows are deleted once the hub no longer
//! keeps them, and the few it still keeps are copied to the log's end first.
//!
//! The log holds every message the hub keeps, in commit order, plus
//! garbage: messages trimmed since (by count, bytes or age) and those of
//! deleted or forgotten channels. Rows are reclaimed from the oldest, which
//! under steady publishing are all garbage, so a pass mostly deletes a run
//! of consecutive rows. A pass starts once the log holds more than 1.5× the
//! messages the hub keeps (plus [`SLACK_ROWS`]) and stops at 1.25×, so disk
//! use stays within 1.5× the history limits plus a constant.

use std::collections::HashMap;

use rusqlite::{params, Transaction};

use super::heads::Heads;
use super::store_error;
use crate::engine::EngineError;
use crate::hub::Hub;

/// Rows the log may hold beyond 1.5× the kept history before it is
/// reclaimed (a small store never is).
pub(super) const SLACK_ROWS: u64 = 1024;

/// When the next pass runs, and the one under way.
#[derive(Debug, Default)]
pub(super) struct Collector {
    /// The log may grow to this many rows before the kept history is
    /// counted again.
    check_at: u64,
    pass: Option<Pass>,
}

#[derive(Debug, Clone, Copy)]
struct Pass {
    /// Rows to come down to.
    goal: u64,
    /// Where the next check starts once the goal is met.
    high: u64,
    /// The log's end when the pass began: rows copied there are not looked
    /// at again by the same pass.
    stop_at: i64,
}

/// The log's rows, `first..next`, as a transaction changes them.
#[derive(Debug, Clone, Copy)]
pub(super) struct Rows {
    pub first: i64,
    pub next: i64,
}

impl Rows {
    fn count(&self) -> u64 {
        (self.next - self.first) as u64
    }
}

/// A row being reclaimed.
struct Row {
    id: i64,
    channel: i64,
    seq: i64,
    published_at: i64,
    event: Option<String>,
    data: Vec<u8>,
    kind: i64,
}

impl Collector {
    /// Makes the next call count the kept history, whatever the log's size.
    pub fn recount(&mut self) {
        self.check_at = 0;
    }

    /// Reclaims at most `budget` of the oldest rows below `protect_from`
    /// (the rows the current batch added, which the hub has not seen yet).
    pub fn collect(
        &mut self,
        tx: &Transaction,
        hub: &Hub,
        heads: &Heads,
        rows: &mut Rows,
        budget: u64,
        protect_from: i64,
    ) -> Result<(), EngineError> {
        let pass = match self.pass {
            Some(pass) => pass,
            None => {
                if rows.count() <= self.check_at {
                    return Ok(());
                }
                let kept = hub.history_totals().0 as u64;
                let high = kept + kept / 2 + SLACK_ROWS;
                if rows.count() <= high {
                    self.check_at = high;
                    return Ok(());
                }
                let pass = Pass {
                    goal: kept + kept / 4 + SLACK_ROWS,
                    high,
                    stop_at: rows.next,
                };
                self.pass = Some(pass);
                pass
            }
        };
        let excess = rows.count().saturating_sub(pass.goal);
        let end = (rows.first + budget.min(excess) as i64)
            .min(pass.stop_at)
            .min(protect_from);
        if end > rows.first {
            reclaim(tx, hub, heads, rows, end)?;
        }
        if rows.first >= pass.stop_at || rows.count() <= pass.goal || end >= protect_from {
            self.pass = None;
            self.check_at = pass.high.max(rows.count());
        }
        Ok(())
    }
}

/// Deletes the rows `rows.first..end`, copying those the hub still keeps to
/// the log's end, and records each channel's newest seq among them so that
/// its ids continue even once none of its messages is left.
fn reclaim(
    tx: &Transaction,
    hub: &Hub,
    heads: &Heads,
    rows: &mut Rows,
    end: i64,
) -> Result<(), EngineError> {
    let chunk: Vec<Row> = {
        let mut select = tx
            .prepare_cached(
                "SELECT id, channel, seq, published_at, event, data, kind FROM log \
                 WHERE id >= ?1 AND id < ?2 ORDER BY id",
            )
            .map_err(store_error)?;
        let found = select
            .query_map(params![rows.first, end], |r| {
                Ok(Row {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    seq: r.get(2)?,
                    published_at: r.get(3)?,
                    event: r.get(4)?,
                    // A blob, or text put there by hand.
                    data: r.get_ref(5)?.as_bytes()?.to_vec(),
                    kind: r.get(6)?,
                })
            })
            .map_err(store_error)?;
        found.collect::<Result<_, _>>().map_err(store_error)?
    };
    // Per channel id: the oldest seq the hub keeps (None: it keeps nothing
    // of this incarnation), and the newest seq among the rows going.
    let mut kept_from: HashMap<i64, Option<u64>> = HashMap::new();
    let mut newest: HashMap<i64, i64> = HashMap::new();
    let mut copy = tx
        .prepare_cached(
            "INSERT INTO log (id, channel, seq, published_at, event, data, kind) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        )
        .map_err(store_error)?;
    for row in &chunk {
        debug_assert!(row.id >= rows.first && row.id < end);
        let first = *kept_from.entry(row.channel).or_insert_with(|| {
            let (name, head) = heads
                .name(row.channel)
                .and_then(|name| Some((name, heads.get(name)?)))?;
            hub.with_existing(name, |state| {
                (state.epoch == head.epoch)
                    .then(|| state.history.first_seq())
                    .flatten()
            })
            .flatten()
        });
        if heads.name(row.channel).is_some() {
            let seq = newest.entry(row.channel).or_insert(row.seq);
            *seq = (*seq).max(row.seq);
        }
        if first.is_some_and(|first| row.seq as u64 >= first) {
            copy.execute(params![
                rows.next,
                row.channel,
                row.seq,
                row.published_at,
                row.event,
                row.data,
                row.kind
            ])
            .map_err(store_error)?;
            rows.next += 1;
        }
    }
    tx.prepare_cached("DELETE FROM log WHERE id >= ?1 AND id < ?2")
        .map_err(store_error)?
        .execute(params![rows.first, end])
        .map_err(store_error)?;
    let mut advance = tx
        .prepare_cached("UPDATE channels SET last_seq = max(last_seq, ?2) WHERE id = ?1")
        .map_err(store_error)?;
    for (channel, seq) in newest {
        advance
            .execute(params![channel, seq])
            .map_err(store_error)?;
    }
    rows.first = end;
    Ok(())
}
