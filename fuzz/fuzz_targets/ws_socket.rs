//! The `/ws` socket's steps without a socket, on any text: the text sent by
//! a client as masked frames (whole, or in two fragments split at any byte)
//! comes out of the frame decoder, under the `/ws` size limit, as exactly
//! that text; its op decodes to a request or an error; the answer the
//! server would send is one well-formed text frame of JSON; and the `msg`
//! frame for the text as a message's data (shared by every `/ws`
//! subscriber) is one text frame of JSON that carries the data back.
//!
//! The input is a byte (the fragment split point, and whether the message
//! has an event name) and the text.
#![no_main]
use bytes::{Bytes, BytesMut};
use herald::hub::{ChannelName, DataKind, EventName, Message, MessageId};
use herald::transport::protocol;
use herald::transport::websocket::frame::{self, opcode, Decoder, FrameError, Incoming};
use libfuzzer_sys::fuzz_target;
use serde_json::Value;

/// Small, so that the size limit is reached (the server's is 64 KiB + 1 KiB).
const MAX_MESSAGE: usize = 2048;

/// A masked client frame with the shortest length encoding.
fn client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    frame::push_client_frame(out, first, payload, [0x5a, 0x01, 0xc3, 0x7e]);
}

/// A server frame: final, unmasked, of `code`; returns its payload.
fn server_payload(frame: &[u8], code: u8) -> &[u8] {
    assert_eq!(frame[0], 0x80 | code, "first byte {:#x}", frame[0]);
    assert_eq!(frame[1] & 0x80, 0, "server frames are not masked");
    let (len, at) = match frame[1] {
        126 => (usize::from(u16::from_be_bytes([frame[2], frame[3]])), 4),
        127 => {
            let len = u64::from_be_bytes(frame[2..10].try_into().unwrap());
            assert!(len > 0xffff, "a 64-bit length for {len} bytes");
            (len as usize, 10)
        }
        short => (usize::from(short), 2),
    };
    if at == 4 {
        assert!(len >= 126, "a 16-bit length for {len} bytes");
    }
    assert_eq!(
        frame.len(),
        at + len,
        "the header's length is the payload's"
    );
    &frame[at..]
}

fn json(payload: &[u8]) -> Value {
    serde_json::from_slice(payload).expect("an answer is JSON")
}

fuzz_target!(|input: (u8, &str)| {
    let (shape, text) = input;
    // The client's bytes: the text whole, or in two fragments.
    let mut stream = Vec::new();
    let split = usize::from(shape >> 1) % (text.len() + 1);
    if shape & 1 == 0 {
        client_frame(&mut stream, 0x80 | opcode::TEXT, text.as_bytes());
    } else {
        client_frame(&mut stream, opcode::TEXT, &text.as_bytes()[..split]);
        client_frame(
            &mut stream,
            0x80 | opcode::CONTINUATION,
            &text.as_bytes()[split..],
        );
    }
    let mut buf = BytesMut::from(&stream[..]);
    let mut decoder = Decoder::new(MAX_MESSAGE);
    match decoder.decode(&mut buf) {
        Ok(Some(Incoming::Text(got))) => {
            assert!(text.len() <= MAX_MESSAGE);
            assert_eq!(&got[..], text.as_bytes());
            assert!(buf.is_empty(), "{} bytes left", buf.len());
        }
        Err(FrameError::TooBig(_)) => assert!(text.len() > MAX_MESSAGE),
        other => panic!("{} bytes of text gave {other:?}", text.len()),
    }

    // The answer to the op, framed as the socket sends it.
    let answer = match protocol::decode(text) {
        Ok((_request, reference)) => protocol::pong(&reference),
        Err(error) => protocol::error(
            &error.reference,
            serde_json::json!({"code": error.code, "message": error.message}),
        ),
    };
    let framed = frame::build(opcode::TEXT, answer.len(), |out| {
        out.extend_from_slice(answer.as_bytes())
    });
    let value = json(server_payload(&framed, opcode::TEXT));
    assert!(
        matches!(value["op"].as_str(), Some("pong" | "error")),
        "{value}"
    );

    // The text (or its bytes reversed, mostly not UTF-8) as a message's data.
    let reversed: Vec<u8> = text.bytes().rev().collect();
    for data in [
        Bytes::copy_from_slice(text.as_bytes()),
        Bytes::from(reversed),
    ] {
        let event = (shape & 2 != 0).then(|| EventName::parse("update").unwrap());
        let message = Message::new(
            ChannelName::parse("news").unwrap(),
            MessageId::new(7, 42),
            event.clone(),
            data.clone(),
            if shape & 4 != 0 {
                DataKind::Binary
            } else {
                DataKind::Text
            },
            0,
        );
        let framed = frame::build(opcode::TEXT, protocol::message_capacity(&message), |out| {
            protocol::write_message(out, &message)
        });
        let value = json(server_payload(&framed, opcode::TEXT));
        assert_eq!(value["op"], "msg");
        assert_eq!(value["id"], message.id_text());
        assert_eq!(value["channel"], "news");
        assert_eq!(value["event"].as_str(), event.as_ref().map(|e| e.as_str()));
        let sent = value["data"].as_str().expect("data is a string");
        match std::str::from_utf8(&data).ok().filter(|_| message.is_text()) {
            Some(text) => {
                assert_eq!(sent, text);
                assert!(value.get("encoding").is_none());
            }
            None => {
                assert_eq!(value["encoding"], "base64");
                assert_eq!(sent.len(), data.len().div_ceil(3) * 4);
            }
        }
    }
});
