//! Reading a store back into the hub at start.

use std::collections::HashMap;
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection};

use super::heads::{Head, Heads};
use super::{kind_of_column, unavailable};
use crate::engine::EngineError;
use crate::hub::{
    now_ms, ChannelName, ChannelState, EventName, History, Hub, Message, MessageId, Published,
};

/// Idempotency keys restored per channel at start, newest first (as many as
/// the hub remembers).
const RESTORED_KEYS: usize = 1024;

/// What the writer needs to know about the store it continues.
pub(super) struct Loaded {
    pub heads: Heads,
    /// Row ids in the log are exactly `first_row..next_row`.
    pub first_row: i64,
    pub next_row: i64,
}

/// A channel being read back: its history so far, and the rows that came
/// out of seq order (moved to the log's end by the collector).
struct Reading {
    state: ChannelState,
    late: Vec<Arc<Message>>,
}

/// Restores every stored channel into the hub.
pub(super) fn load(db: &Connection, hub: &Hub) -> Result<Loaded, EngineError> {
    let now = now_ms();
    let mut heads = Heads::default();
    let mut reading: HashMap<i64, Reading> = HashMap::new();
    {
        let mut channels = db
            .prepare("SELECT id, channel, epoch, last_seq FROM channels")
            .map_err(unavailable)?;
        let rows = channels
            .query_map([], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?,
                    r.get::<_, i64>(3)?,
                ))
            })
            .map_err(unavailable)?;
        for row in rows {
            let (id, name, epoch, last_seq) = row.map_err(unavailable)?;
            heads.note_id(id);
            let Ok(channel) = ChannelName::parse(&name) else {
                continue;
            };
            let epoch = epoch as u64;
            heads.insert(channel.clone(), Head { id, epoch });
            let state = ChannelState::resume(channel, epoch, last_seq as u64);
            reading.insert(
                id,
                Reading {
                    state,
                    late: Vec::new(),
                },
            );
        }
    }
    let (mut first_row, mut last_row, mut stored) = (i64::MAX, 0i64, 0usize);
    {
        let mut log = db
            .prepare(
                "SELECT id, channel, seq, published_at, event, data, kind FROM log ORDER BY id",
            )
            .map_err(unavailable)?;
        let mut rows = log.query([]).map_err(unavailable)?;
        while let Some(row) = rows.next().map_err(unavailable)? {
            let id: i64 = row.get(0).map_err(unavailable)?;
            first_row = first_row.min(id);
            last_row = last_row.max(id);
            stored += 1;
            let channel: i64 = row.get(1).map_err(unavailable)?;
            let Some(reading) = reading.get_mut(&channel) else {
                continue; // a deleted or forgotten channel's leftover
            };
            let seq = row.get::<_, i64>(2).map_err(unavailable)? as u64;
            let event: Option<String> = row.get(4).map_err(unavailable)?;
            let message = Arc::new(Message::new(
                reading.state.name.clone(),
                MessageId::new(reading.state.epoch, seq),
                event
                    .filter(|e| !e.is_empty())
                    .and_then(|e| EventName::parse(&e).ok()),
                Bytes::copy_from_slice(
                    row.get_ref(5)
                        .and_then(|data| Ok(data.as_bytes()?))
                        .map_err(unavailable)?,
                ),
                kind_of_column(row.get(6).map_err(unavailable)?),
                row.get::<_, i64>(3).map_err(unavailable)? as u64,
            ));
            let state = &mut reading.state;
            state.last_seq = state.last_seq.max(seq);
            match state.history.newest().map(|m| m.id.seq) {
                Some(newest) if seq <= newest => reading.late.push(message),
                newest => {
                    // History keeps contiguous seqs: after a hole (messages
                    // the hub had already dropped) it starts again.
                    if newest.is_some_and(|n| n + 1 != seq) {
                        state.history = History::new();
                    }
                    state.history.push(message, &hub.limits(&state.name), now);
                }
            }
        }
    }
    let mut kept = 0usize;
    for (_, mut reading) in reading {
        if !reading.late.is_empty() {
            reorder(&mut reading, hub, now);
        }
        restore_keys(db, &mut reading.state, now)?;
        kept += reading.state.history.len();
        hub.restore(reading.state);
    }
    tracing::info!(
        channels = hub.channel_count(),
        messages = kept,
        stored,
        "history loaded from disk"
    );
    let (first_row, next_row) = if stored == 0 {
        (1, 1)
    } else {
        (first_row, last_row + 1)
    };
    Ok(Loaded {
        heads,
        first_row,
        next_row,
    })
}

/// Rebuilds a history that had rows out of seq order: sorted, the newest
/// contiguous run kept.
fn reorder(reading: &mut Reading, hub: &Hub, now: u64) {
    let mut all: Vec<Arc<Message>> = reading.state.history.iter().cloned().collect();
    all.append(&mut reading.late);
    all.sort_by_key(|m| m.id.seq);
    all.dedup_by_key(|m| m.id.seq);
    let limits = hub.limits(&reading.state.name);
    let mut history = History::new();
    for message in all {
        if history
            .newest()
            .is_some_and(|n| n.id.seq + 1 != message.id.seq)
        {
            history = History::new();
        }
        history.push(message, &limits, now);
    }
    reading.state.history = history;
}

/// The channel's idempotency keys still in force, oldest first so the
/// newest are the last the hub evicts.
fn restore_keys(db: &Connection, state: &mut ChannelState, now: u64) -> Result<(), EngineError> {
    let mut keys = db
        .prepare_cached(
            "SELECT key, seq, expires_at FROM idempotency WHERE channel = ?1 AND expires_at > ?2 \
             ORDER BY expires_at DESC LIMIT ?3",
        )
        .map_err(unavailable)?;
    let remembered = keys
        .query_map(
            params![state.name.as_str(), now as i64, RESTORED_KEYS as i64],
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            },
        )
        .map_err(unavailable)?
        .collect::<Result<Vec<_>, _>>()
        .map_err(unavailable)?;
    for (key, seq, expires_at) in remembered.into_iter().rev() {
        let published = Published {
            channel: state.name.clone(),
            id: MessageId::new(state.epoch, seq as u64),
            subscribers: 0,
        };
        state.remember(&key, &published, expires_at as u64);
    }
    Ok(())
}
