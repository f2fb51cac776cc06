//! The `/ws` JSON protocol, as pure encoding and decoding (no sockets).
//!
//! client → server: `sub {channel, since?}`, `unsub {channel}`,
//! `pub {channel, data, event?, encoding?}`, `presence {channel}`, `ping`,
//! `refresh {token}`; each with an optional `ref` echoed in the answer.
//! server → client: `ok`, `error`, `msg`, `gap`, `pong`, `join`, `leave`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};

use super::write_message_fields;
use crate::hub::{Gap, Message};

/// A request from a `/ws` client.
#[derive(Debug, Clone, PartialEq)]
pub enum Request {
    Sub {
        channel: String,
        since: Option<String>,
    },
    Unsub {
        channel: String,
    },
    Pub {
        channel: String,
        data: Value,
        event: Option<String>,
        encoding: Option<String>,
    },
    Ping,
    /// A fresh token before the current one expires.
    Refresh {
        token: String,
    },
    /// Who is on a channel with presence.
    Presence {
        channel: String,
    },
}

/// A frame that could not be understood, and the `ref` to answer it with.
#[derive(Debug, Clone, PartialEq)]
pub struct DecodeError {
    pub reference: Value,
    pub code: &'static str,
    pub message: String,
}

#[derive(Deserialize)]
struct Envelope {
    op: Option<Value>,
    #[serde(rename = "ref", default)]
    reference: Value,
}

#[derive(Deserialize)]
struct SubFields {
    channel: String,
    #[serde(default)]
    since: Option<String>,
}

#[derive(Deserialize)]
struct RefreshFields {
    token: String,
}

#[derive(Deserialize)]
struct UnsubFields {
    channel: String,
}

#[derive(Deserialize)]
struct PubFields {
    channel: String,
    data: Value,
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    encoding: Option<String>,
}

/// Decodes one text frame into a request and its `ref`.
pub fn decode(text: &str) -> Result<(Request, Value), DecodeError> {
    let value: Value = serde_json::from_str(text).map_err(|e| DecodeError {
        reference: Value::Null,
        code: "bad_json",
        message: format!("frame is not valid JSON: {e}"),
    })?;
    let envelope: Envelope = serde_json::from_value(value.clone()).map_err(|_| DecodeError {
        reference: Value::Null,
        code: "bad_frame",
        message: "a frame must be a JSON object with an \"op\"".into(),
    })?;
    let reference = envelope.reference;
    let fields_error = |op: &str, e: serde_json::Error| DecodeError {
        reference: reference.clone(),
        code: "bad_frame",
        message: format!("bad {op} frame: {e}"),
    };
    let request = match envelope.op.as_ref().and_then(Value::as_str) {
        Some("sub") => {
            let f: SubFields = serde_json::from_value(value).map_err(|e| fields_error("sub", e))?;
            Request::Sub {
                channel: f.channel,
                since: f.since,
            }
        }
        Some("unsub") => {
            let f: UnsubFields =
                serde_json::from_value(value).map_err(|e| fields_error("unsub", e))?;
            Request::Unsub { channel: f.channel }
        }
        Some("pub") => {
            let f: PubFields = serde_json::from_value(value).map_err(|e| fields_error("pub", e))?;
            Request::Pub {
                channel: f.channel,
                data: f.data,
                event: f.event,
                encoding: f.encoding,
            }
        }
        Some("ping") => Request::Ping,
        Some("presence") => {
            let f: UnsubFields =
                serde_json::from_value(value).map_err(|e| fields_error("presence", e))?;
            Request::Presence { channel: f.channel }
        }
        Some("refresh") => {
            let f: RefreshFields =
                serde_json::from_value(value).map_err(|e| fields_error("refresh", e))?;
            Request::Refresh { token: f.token }
        }
        Some(other) => {
            return Err(DecodeError {
                reference,
                code: "unknown_op",
                message: format!(
                    "unknown op {other:?}; use sub, unsub, pub, presence, ping or refresh"
                ),
            })
        }
        None => {
            return Err(DecodeError {
                reference,
                code: "bad_frame",
                message: "a frame must have a string \"op\"".into(),
            })
        }
    };
    Ok((request, reference))
}

/// `{"op":"ok","ref":...}` plus `fields`.
pub fn ok(reference: &Value, fields: Value) -> String {
    let mut frame = json!({ "op": "ok", "ref": reference });
    if let (Some(frame), Value::Object(fields)) = (frame.as_object_mut(), fields) {
        frame.extend(fields);
    }
    frame.to_string()
}

/// `{"op":"error","ref":...,"error":{code,message}}`.
pub fn error(reference: &Value, error: Value) -> String {
    json!({ "op": "error", "ref": reference, "error": error }).to_string()
}

pub fn pong(reference: &Value) -> String {
    json!({ "op": "pong", "ref": reference }).to_string()
}

/// `{"op":"gap", "channel", "reason", ...}`.
pub fn gap(gap: &Gap) -> String {
    let mut frame = gap.to_json();
    if let Some(object) = frame.as_object_mut() {
        object.insert("op".into(), "gap".into());
    }
    frame.to_string()
}

/// `{"op":"msg","id","channel","event"?,"data","encoding"?}`.
pub fn message(message: &Message) -> Bytes {
    let mut out = Vec::with_capacity(message_capacity(message));
    write_message(&mut out, message);
    out.into()
}

/// Appends the `msg` object for `message` to `out`.
pub fn write_message(out: &mut Vec<u8>, message: &Message) {
    out.extend_from_slice(b"{\"op\":\"msg\",");
    write_message_fields(out, message);
    out.push(b'}');
}

/// About how many bytes the `msg` object for `message` takes.
pub fn message_capacity(message: &Message) -> usize {
    message.data.len() + 96
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hub::{ChannelName, DataKind, MessageId};

    #[test]
    fn decodes_every_op_and_keeps_the_ref() {
        let (req, r) = decode(r#"{"op":"sub","channel":"a","since":"k-1","ref":7}"#).unwrap();
        assert_eq!(
            req,
            Request::Sub {
                channel: "a".into(),
                since: Some("k-1".into())
            }
        );
        assert_eq!(r, json!(7));
        let (req, _) = decode(r#"{"op":"pub","channel":"a","data":"hi","ref":"x"}"#).unwrap();
        assert!(matches!(req, Request::Pub { .. }));
        assert_eq!(decode(r#"{"op":"ping"}"#).unwrap().0, Request::Ping);
        assert_eq!(
            decode(r#"{"op":"unsub","channel":"a"}"#).unwrap().0,
            Request::Unsub {
                channel: "a".into()
            }
        );
    }

    #[test]
    fn bad_frames_are_errors_with_the_ref() {
        assert_eq!(decode("{nope").unwrap_err().code, "bad_json");
        assert_eq!(decode("[1]").unwrap_err().code, "bad_frame");
        let e = decode(r#"{"op":"dance","ref":3}"#).unwrap_err();
        assert_eq!((e.code, e.reference), ("unknown_op", json!(3)));
        assert_eq!(
            decode(r#"{"op":"sub","ref":1}"#).unwrap_err().code,
            "bad_frame"
        );
    }

    #[test]
    fn message_frames_escape_data_and_base64_binary() {
        let channel = ChannelName::parse("c").unwrap();
        let m = Message::new(
            channel.clone(),
            MessageId::new(1, 2),
            None,
            Bytes::from_static(b"say \"hi\"\n"),
            DataKind::Text,
            0,
        );
        let v: Value = serde_json::from_slice(&message(&m)).unwrap();
        assert_eq!(
            v,
            json!({"op":"msg","id":"1-2","channel":"c","data":"say \"hi\"\n"})
        );
        let b = Message::new(
            channel,
            MessageId::new(1, 3),
            None,
            Bytes::from_static(&[0xff, 0]),
            DataKind::Text,
            0,
        );
        let v: Value = serde_json::from_slice(&message(&b)).unwrap();
        assert_eq!(v["encoding"], "base64");
        assert_eq!(v["data"], "/wA=");
        // Declared binary, the bytes stay base64 even when they are UTF-8.
        let c = Message::new(
            ChannelName::parse("c").unwrap(),
            MessageId::new(1, 4),
            None,
            Bytes::from_static(b"abc"),
            DataKind::Binary,
            0,
        );
        let v: Value = serde_json::from_slice(&message(&c)).unwrap();
        assert_eq!(
            (&v["data"], &v["encoding"]),
            (&json!("YWJj"), &json!("base64"))
        );
    }
}
