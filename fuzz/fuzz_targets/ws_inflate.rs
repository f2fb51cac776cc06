//! permessage-deflate on the read and write paths (RFC 7692): whatever
//! compressed bytes a client sends, inflating never yields more than the
//! message limit (a deflate bomb is `TooBig`, a 1009 close) and never
//! panics; a message compressed by the client (herald's own compressor or
//! flate2 at any level, in one or two fragments with RSV1 on the first)
//! decodes to exactly its data, or to `TooBig` when it inflates past the
//! limit; and a server frame compressed by `compress_frame` inflates back
//! to the plain frame's payload.
//!
//! The input is a byte (bit 0: the body is raw compressed bytes from a
//! client rather than data to compress; bit 1: text rather than binary;
//! bits 2-3: the flate2 level, 0 for herald's compressor; bits 4-7: where
//! to split into fragments) and the body.
#![no_main]
use bytes::BytesMut;
use flate2::{Compress, Compression, FlushCompress};
use herald::transport::websocket::deflate;
use herald::transport::websocket::frame::{self, opcode, Decoder, FrameError, Incoming};
use libfuzzer_sys::fuzz_target;

/// Small, so that bombs and big messages reach it quickly.
const MAX_MESSAGE: usize = 4096;

fn client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8]) {
    frame::push_client_frame(out, first, payload, [0x11, 0x22, 0x33, 0x44]);
}

fn flate2(data: &[u8], level: u32) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() * 2 + 64);
    compressor
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    if out.ends_with(&[0, 0, 0xff, 0xff]) {
        out.truncate(out.len() - 4);
    }
    out
}

/// Decodes `stream` with a deflate decoder: the message or the failure.
fn decode(stream: &[u8]) -> Result<Option<Incoming>, FrameError> {
    let mut decoder = Decoder::with_deflate(MAX_MESSAGE);
    let mut buf = BytesMut::from(stream);
    decoder.decode(&mut buf)
}

fuzz_target!(|input: &[u8]| {
    let Some((&head, body)) = input.split_first() else {
        return;
    };
    let text = head & 0x02 != 0;
    let code = if text { opcode::TEXT } else { opcode::BINARY };
    // Inflating under a limit never passes it.
    match deflate::inflate(body, MAX_MESSAGE) {
        Ok(out) => assert!(out.len() <= MAX_MESSAGE),
        Err(deflate::InflateError::TooBig | deflate::InflateError::Corrupt) => {}
    }
    let compressed = if head & 0x01 != 0 {
        body.to_vec()
    } else {
        match (head >> 2) & 0x03 {
            0 => deflate::compress(body),
            level => flate2(body, u32::from(level) * 3),
        }
    };
    let split = compressed.len() * usize::from(head >> 4) / 15;
    let mut stream = Vec::new();
    if split == 0 || split == compressed.len() {
        client_frame(&mut stream, 0x80 | 0x40 | code, &compressed);
    } else {
        client_frame(&mut stream, 0x40 | code, &compressed[..split]);
        client_frame(&mut stream, 0x80 | opcode::CONTINUATION, &compressed[split..]);
    }
    let decoded = decode(&stream);
    match &decoded {
        Ok(Some(Incoming::Text(data))) => {
            assert!(data.len() <= MAX_MESSAGE);
            assert!(std::str::from_utf8(data).is_ok());
        }
        Ok(Some(Incoming::Binary(data))) => assert!(data.len() <= MAX_MESSAGE),
        Ok(other) => panic!("a data message or a failure, not {other:?}"),
        Err(FrameError::TooBig(_) | FrameError::Protocol(_) | FrameError::InvalidUtf8) => {}
    }
    if head & 0x01 == 0 {
        // Compressed by a real compressor: exactly the data, or too big.
        let utf8 = std::str::from_utf8(body).is_ok();
        match decoded {
            Ok(Some(Incoming::Text(data) | Incoming::Binary(data))) => assert_eq!(&data[..], body),
            Err(FrameError::TooBig(_)) => assert!(body.len() > MAX_MESSAGE),
            Err(FrameError::InvalidUtf8) => assert!(text && !utf8),
            other => panic!("{} bytes compressed decoded to {other:?}", body.len()),
        }
        // The server's shared compressed frame inflates back to its payload.
        let plain = frame::build(code, body.len(), |out| out.extend_from_slice(body));
        let shared = deflate::compress_frame(&plain);
        if shared[0] & 0x40 != 0 {
            let offset = match shared[1] & 0x7f {
                126 => 4,
                127 => 10,
                _ => 2,
            };
            let inflated = deflate::inflate(&shared[offset..], body.len()).unwrap();
            assert_eq!(inflated, body);
        } else {
            assert_eq!(shared, plain);
        }
    }
});
