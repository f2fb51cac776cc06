//! What herald writes into Redis and reads back, as pure functions: the
//! Pub/Sub notes nodes send each other and the Stream entries of a
//! channel's history.
//!
//! A note is `m\nEPOCH\nSEQ\nPUBLISHED_AT\nEVENT\nDATA` for a new text
//! message (`b\n...` for a binary one; EPOCH in base 36 as in ids, EVENT
//! empty when there is none, DATA the raw bytes) or `d\n` when the channel
//! was deleted. Event names cannot hold a newline, so the first five
//! newlines are always separators. A Stream entry holds `d` (data), `e`
//! (event), `t` (publish time), `w` (weight) and, for binary data only,
//! `k` = `b`.
//!
//! A join or leave is `p\nj\nNODE\nENTRY` or `p\nl\nNODE\nENTRY`: the node
//! it happened on (which told its own subscribers already) and the presence
//! entry as JSON, also what the channel's presence hash holds per client.

use bytes::Bytes;
use redis::Value;
use thiserror::Error;

use crate::hub::{DataKind, EventName, Movement, PresenceEntry};

/// A Pub/Sub note or Stream entry that herald did not write.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("unexpected data from Redis: {0}")]
pub struct WireError(&'static str);

/// One message of a channel's Stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub seq: u64,
    pub published_at_ms: u64,
    pub event: Option<EventName>,
    pub data: Bytes,
    pub kind: DataKind,
}

/// A note from the node that changed a channel.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    Message {
        epoch: u64,
        entry: Entry,
    },
    Deleted,
    /// Someone joined or left on `node`.
    Presence {
        movement: Movement,
        node: String,
        entry: PresenceEntry,
    },
}

/// A presence entry as stored in Redis: the entry and the node holding it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StoredEntry {
    pub client: String,
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub info: Option<serde_json::Value>,
    pub transport: String,
    pub node: String,
}

impl StoredEntry {
    pub fn new(entry: &PresenceEntry, node: &str) -> Self {
        Self {
            client: entry.client.to_string(),
            user: entry.user.clone(),
            info: entry.info.clone(),
            transport: entry.transport.to_owned(),
            node: node.to_owned(),
        }
    }

    pub fn entry(&self) -> PresenceEntry {
        PresenceEntry {
            client: self.client.as_str().into(),
            user: self.user.clone(),
            info: self.info.clone(),
            transport: transport_name(&self.transport),
        }
    }
}

/// The transport names an entry may carry (anything else reads as `ws`).
fn transport_name(name: &str) -> &'static str {
    match name {
        "ws-protocol" => "ws-protocol",
        "sse" => "sse",
        "poll" => "poll",
        _ => "ws",
    }
}

/// Parses a stored presence entry (a hash value or a note's body).
pub fn stored_entry(raw: &[u8]) -> Result<StoredEntry, WireError> {
    serde_json::from_slice(raw).map_err(|_| WireError("a presence entry"))
}

/// Encodes a join or leave note.
pub fn presence_note(movement: Movement, stored: &StoredEntry) -> Vec<u8> {
    let kind = match movement {
        Movement::Join => "j",
        Movement::Leave => "l",
    };
    let mut out = format!("p\n{kind}\n{}\n", stored.node).into_bytes();
    serde_json::to_writer(&mut out, stored).expect("writing JSON to a Vec cannot fail");
    out
}

fn number(raw: &[u8], radix: u32) -> Result<u64, WireError> {
    std::str::from_utf8(raw)
        .ok()
        .and_then(|s| u64::from_str_radix(s, radix).ok())
        .ok_or(WireError("a number"))
}

fn event(raw: &[u8]) -> Result<Option<EventName>, WireError> {
    if raw.is_empty() {
        return Ok(None);
    }
    let text = std::str::from_utf8(raw).map_err(|_| WireError("an event name"))?;
    EventName::parse(text)
        .map(Some)
        .map_err(|_| WireError("an event name"))
}

/// Parses a Pub/Sub payload.
pub fn note(payload: &[u8]) -> Result<Note, WireError> {
    if payload.starts_with(b"d\n") {
        return Ok(Note::Deleted);
    }
    if let Some(body) = payload.strip_prefix(b"p\n") {
        let mut parts = body.splitn(3, |b| *b == b'\n');
        let mut next = || parts.next().ok_or(WireError("a complete presence note"));
        let movement = match next()? {
            b"j" => Movement::Join,
            b"l" => Movement::Leave,
            _ => return Err(WireError("a presence movement")),
        };
        let node = String::from_utf8(next()?.to_vec()).map_err(|_| WireError("a node"))?;
        let entry = stored_entry(next()?)?.entry();
        return Ok(Note::Presence {
            movement,
            node,
            entry,
        });
    }
    let (body, kind) = if let Some(body) = payload.strip_prefix(b"m\n") {
        (body, DataKind::Text)
    } else if let Some(body) = payload.strip_prefix(b"b\n") {
        (body, DataKind::Binary)
    } else {
        return Err(WireError("a note kind"));
    };
    let mut parts = body.splitn(5, |b| *b == b'\n');
    let mut next = || parts.next().ok_or(WireError("a complete note"));
    let epoch = number(next()?, 36)?;
    let seq = number(next()?, 10)?;
    let published_at_ms = number(next()?, 10)?;
    let event = event(next()?)?;
    let data = Bytes::copy_from_slice(next()?);
    Ok(Note::Message {
        epoch,
        entry: Entry {
            seq,
            published_at_ms,
            event,
            data,
            kind,
        },
    })
}

/// Encodes a message note as the publish script does (for tests and tools).
pub fn message_note(epoch_text: &str, entry: &Entry) -> Vec<u8> {
    let prefix = match entry.kind {
        DataKind::Text => 'm',
        DataKind::Binary => 'b',
    };
    let mut out = format!(
        "{prefix}\n{epoch_text}\n{}\n{}\n{}\n",
        entry.seq,
        entry.published_at_ms,
        entry.event.as_ref().map_or("", |e| e.as_str())
    )
    .into_bytes();
    out.extend_from_slice(&entry.data);
    out
}

fn bulk(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

/// Parses an `XRANGE` reply of entries `SEQ-0 {d, e, t, w}`.
pub fn entries(reply: Value) -> Result<Vec<Entry>, WireError> {
    let items = match reply {
        Value::Array(items) => items,
        Value::Nil => return Ok(Vec::new()),
        _ => return Err(WireError("a list of entries")),
    };
    items.iter().map(entry).collect()
}

fn entry(item: &Value) -> Result<Entry, WireError> {
    let Value::Array(pair) = item else {
        return Err(WireError("an entry"));
    };
    let [id, Value::Array(fields)] = pair.as_slice() else {
        return Err(WireError("an entry"));
    };
    let id = bulk(id).ok_or(WireError("an entry id"))?;
    let seq_text = id.split(|b| *b == b'-').next().unwrap_or(id);
    let mut entry = Entry {
        seq: number(seq_text, 10)?,
        published_at_ms: 0,
        event: None,
        data: Bytes::new(),
        kind: DataKind::Text,
    };
    for pair in fields.chunks(2) {
        let [name, value] = pair else {
            return Err(WireError("entry fields in pairs"));
        };
        let value = bulk(value).ok_or(WireError("an entry field"))?;
        match bulk(name) {
            Some(b"d") => entry.data = Bytes::copy_from_slice(value),
            Some(b"e") => entry.event = event(value)?,
            Some(b"t") => entry.published_at_ms = number(value, 10)?,
            Some(b"k") if value == b"b" => entry.kind = DataKind::Binary,
            _ => {}
        }
    }
    Ok(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_presence_note_round_trips() {
        let entry = PresenceEntry {
            client: "c1\n".into(),
            user: Some("ann".into()),
            info: Some(serde_json::json!({"name": "Ann\nB"})),
            transport: "sse",
        };
        let stored = StoredEntry::new(&entry, "node1");
        let note = note(&presence_note(Movement::Leave, &stored)).unwrap();
        assert_eq!(
            note,
            Note::Presence {
                movement: Movement::Leave,
                node: "node1".into(),
                entry
            }
        );
        assert!(super::note(b"p\nx\nn\n{}").is_err());
    }

    fn sample(data: &[u8], event: Option<&str>, kind: DataKind) -> Entry {
        Entry {
            seq: 42,
            published_at_ms: 1_700_000_000_123,
            event: event.map(|e| EventName::parse(e).unwrap()),
            data: Bytes::copy_from_slice(data),
            kind,
        }
    }

    #[test]
    fn notes_round_trip_any_data() {
        for (data, event) in [
            (&b"hello"[..], None),
            (&b"line one\nline two\n\n"[..], Some("update")),
            (&[0u8, 255, 10, 13, 10][..], None),
            (&b""[..], Some("x")),
        ] {
            for kind in [DataKind::Text, DataKind::Binary] {
                let entry = sample(data, event, kind);
                let epoch = 36u64.pow(7) + 5;
                let text = crate::hub::MessageId::new(epoch, 0).to_string();
                let payload = message_note(text.trim_end_matches("-0"), &entry);
                assert_eq!(note(&payload), Ok(Note::Message { epoch, entry }));
            }
        }
        assert_eq!(note(b"d\n"), Ok(Note::Deleted));
    }

    #[test]
    fn foreign_notes_are_refused() {
        for payload in [
            &b""[..],
            b"x\n1",
            b"m\n",
            b"m\nzz\nnotanumber\n1\n\n",
            b"m\n1\n2\n3\nbad event!\n",
        ] {
            assert!(note(payload).is_err(), "{payload:?}");
        }
    }

    #[test]
    fn stream_entries_are_read_in_order() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::BulkString(b"7-0".to_vec()),
                Value::Array(
                    [("d", &b"a\nb"[..]), ("e", b""), ("t", b"100"), ("w", b"70")]
                        .iter()
                        .flat_map(|(k, v)| {
                            [
                                Value::BulkString(k.as_bytes().to_vec()),
                                Value::BulkString(v.to_vec()),
                            ]
                        })
                        .collect(),
                ),
            ]),
            Value::Array(vec![
                Value::BulkString(b"8-0".to_vec()),
                Value::Array(vec![
                    Value::BulkString(b"d".to_vec()),
                    Value::BulkString(vec![0, 1]),
                    Value::BulkString(b"e".to_vec()),
                    Value::BulkString(b"tick".to_vec()),
                    Value::BulkString(b"t".to_vec()),
                    Value::BulkString(b"200".to_vec()),
                    Value::BulkString(b"k".to_vec()),
                    Value::BulkString(b"b".to_vec()),
                ]),
            ]),
        ]);
        let parsed = entries(reply).unwrap();
        assert_eq!(parsed.len(), 2);
        assert_eq!((parsed[0].seq, parsed[0].published_at_ms), (7, 100));
        assert_eq!(&parsed[0].data[..], b"a\nb");
        assert_eq!(parsed[0].event, None);
        assert_eq!(parsed[1].seq, 8);
        assert_eq!(parsed[1].event.as_ref().map(|e| e.as_str()), Some("tick"));
        assert_eq!(
            (parsed[0].kind, parsed[1].kind),
            (DataKind::Text, DataKind::Binary)
        );
        assert!(entries(Value::Int(3)).is_err());
    }
}
