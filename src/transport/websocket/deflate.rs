//! permessage-deflate (RFC 7692): the offer a client makes and the answer
//! herald gives, the compressed frames it sends and the inflating of what
//! a client compressed, without I/O.
//!
//! herald answers every acceptable offer the same way:
//! `permessage-deflate; server_no_context_takeover; client_no_context_takeover`.
//! With no context taken over, a message compresses to the same bytes
//! whichever socket it goes to, so its compressed frame is built once and
//! shared by every subscriber that negotiated deflate (as the plain frame is
//! by the others); and a connection keeps no compressor or decompressor
//! between messages: an idle compressed socket costs what a plain one does,
//! and inflating one message needs its output (bounded by the message size
//! limit) and one decompressor for as long as that takes.

use bytes::Bytes;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

/// The extension's name in `Sec-WebSocket-Extensions`.
pub const EXTENSION: &str = "permessage-deflate";

/// herald's answer to an acceptable offer.
pub const RESPONSE: &str =
    "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// Messages shorter than this go out uncompressed (RFC 7692 §6: a frame
/// without RSV1 is an uncompressed message): the header and the deflate
/// block would outweigh what is saved.
pub const MIN_COMPRESSED: usize = 32;

/// The empty stored block every sync flush ends with, which the sender
/// drops and the receiver appends (RFC 7692 §7.2.1, §7.2.2).
const TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];

/// Whether the `Sec-WebSocket-Extensions` values offer permessage-deflate
/// with parameters herald can honour. The deflate backend always uses a
/// 32 KiB window, so an offer limiting the server's window below 15 bits is
/// declined (the client then gets an uncompressed socket, as RFC 7692 §5
/// allows); the client's own window needs no limit, as herald takes over no
/// context and inflates each message with a fresh decompressor.
pub fn offered<'a>(values: impl IntoIterator<Item = &'a str>) -> bool {
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .any(acceptable)
}

fn acceptable(offer: &str) -> bool {
    let mut parts = offer.split(';').map(str::trim);
    if !parts
        .next()
        .is_some_and(|name| name.eq_ignore_ascii_case(EXTENSION))
    {
        return false;
    }
    let mut seen: Vec<String> = Vec::new();
    for param in parts {
        let (name, value) = match param.split_once('=') {
            Some((name, value)) => (name.trim(), Some(value.trim().trim_matches('"'))),
            None => (param, None),
        };
        let name = name.to_ascii_lowercase();
        // RFC 7692 §7.1: a parameter twice declines the offer.
        if seen.contains(&name) {
            return false;
        }
        let fine = match (name.as_str(), value) {
            ("server_no_context_takeover" | "client_no_context_takeover", None) => true,
            ("server_max_window_bits", Some(bits)) => bits == "15",
            ("client_max_window_bits", None) => true,
            ("client_max_window_bits", Some(bits)) => {
                matches!(bits.parse::<u8>(), Ok(8..=15)) && !bits.starts_with('0')
            }
            _ => false,
        };
        if !fine {
            return false;
        }
        seen.push(name);
    }
    true
}

/// The compressed twin of a whole, final, unmasked data frame built by
/// [`super::frame::build`]: RSV1 set, the payload deflated. A payload too
/// short to gain, or one that does not shrink, is the same frame (the same
/// bytes, shared).
pub fn compress_frame(plain: &Bytes) -> Bytes {
    let Some((first, offset)) = frame_head(plain) else {
        return plain.clone();
    };
    let payload = &plain[offset..];
    if payload.len() < MIN_COMPRESSED {
        return plain.clone();
    }
    let compressed = compress(payload);
    if compressed.len() >= payload.len() {
        return plain.clone();
    }
    let (mut head, used) = super::frame::header(first & 0x0f, compressed.len());
    head[0] |= 0x40;
    let mut out = Vec::with_capacity(used + compressed.len());
    out.extend_from_slice(&head[..used]);
    out.extend_from_slice(&compressed);
    Bytes::from(out)
}

/// The first byte and the payload's offset of a server frame.
fn frame_head(frame: &[u8]) -> Option<(u8, usize)> {
    let first = *frame.first()?;
    let offset = match frame.get(1)? & 0x7f {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    (frame.len() >= offset).then_some((first, offset))
}

/// `data` as one raw deflate message, its trailing empty block removed.
pub fn compress(data: &[u8]) -> Vec<u8> {
    let mut compressor = Compress::new(Compression::default(), false);
    let mut out = Vec::with_capacity(data.len() / 2 + 64);
    loop {
        let consumed = compressor.total_in() as usize;
        if compressor
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .is_err()
        {
            // Only a misused stream fails; send the message uncompressed.
            return data.to_vec();
        }
        // Done once every byte is in and the flush left room to spare.
        if compressor.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TAIL) {
        out.truncate(out.len() - TAIL.len());
    }
    out
}

/// Why a compressed message could not be inflated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InflateError {
    /// It inflates to more than the limit (a deflate bomb, or just big).
    TooBig,
    /// It is not a deflate stream.
    Corrupt,
}

/// Inflates one message compressed by a client, failing as soon as the
/// output would pass `limit`: memory never exceeds the limit, whatever
/// the ratio of the input.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    let mut input = Vec::with_capacity(compressed.len() + TAIL.len());
    input.extend_from_slice(compressed);
    input.extend_from_slice(&TAIL);
    let mut decompressor = Decompress::new(false);
    // (Not `clamp`: a limit under 255 would make its bounds cross, found by
    // fuzz/fuzz_targets/ws_inflate.rs.)
    let start = compressed
        .len()
        .saturating_mul(4)
        .max(256)
        .min(limit.saturating_add(1));
    let mut out: Vec<u8> = Vec::with_capacity(start);
    loop {
        if out.len() == out.capacity() {
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let room = out.len().max(4096).min(limit.saturating_add(1) - out.len());
            out.reserve_exact(room);
        }
        let (read, wrote) = (decompressor.total_in(), out.len());
        let consumed = read as usize;
        let status = decompressor
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        if out.len() > limit {
            return Err(InflateError::TooBig);
        }
        let done = decompressor.total_in() as usize == input.len();
        if status == Status::StreamEnd || (done && out.len() < out.capacity()) {
            return Ok(out);
        }
        if decompressor.total_in() == read && out.len() == wrote && out.len() < out.capacity() {
            // No progress with input and room left: the stream is broken.
            return Err(InflateError::Corrupt);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::websocket::frame::{build, opcode};

    #[test]
    fn offers_herald_can_honour() {
        assert!(offered(["permessage-deflate"]));
        assert!(offered([
            "permessage-deflate; client_max_window_bits",
            "x-webkit-deflate-frame"
        ]));
        assert!(offered([
            "foo, permessage-deflate; server_no_context_takeover; client_max_window_bits=10"
        ]));
        assert!(offered(["permessage-deflate; server_max_window_bits=15"]));
        assert!(!offered(["permessage-deflate; server_max_window_bits=10"]));
        assert!(!offered(["permessage-deflate; client_max_window_bits=16"]));
        assert!(!offered([
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover"
        ]));
        assert!(!offered(["permessage-deflate; mystery"]));
        assert!(!offered(["x-webkit-deflate-frame"]));
        assert!(!offered([]));
        // A declined offer followed by one herald can take.
        assert!(offered([
            "permessage-deflate; server_max_window_bits=9, permessage-deflate"
        ]));
    }

    #[test]
    fn a_compressed_frame_inflates_to_its_payload() {
        let json = br#"{"user":"ada","text":"hello hello hello hello hello hello"}"#.repeat(20);
        let plain = build(opcode::TEXT, json.len(), |out| out.extend_from_slice(&json));
        let compressed = compress_frame(&plain);
        assert_eq!(compressed[0], 0x80 | 0x40 | opcode::TEXT);
        assert!(
            compressed.len() < plain.len() / 4,
            "{} bytes",
            compressed.len()
        );
        let (_, offset) = frame_head(&compressed).unwrap();
        assert_eq!(inflate(&compressed[offset..], 1 << 20).unwrap(), json);
        // Too short to gain: the plain frame's own bytes.
        let short = build(opcode::TEXT, 3, |out| out.extend_from_slice(b"abc"));
        assert_eq!(compress_frame(&short).as_ptr(), short.as_ptr());
    }

    #[test]
    fn a_bomb_stops_at_the_limit() {
        let bomb = compress(&vec![0u8; 10 << 20]);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(inflate(&bomb, 64 * 1024), Err(InflateError::TooBig));
        assert_eq!(inflate(&bomb, 10 << 20).map(|v| v.len()), Ok(10 << 20));
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 1024),
            Err(InflateError::Corrupt)
        );
        assert_eq!(inflate(&compress(b""), 1024), Ok(Vec::new()));
        assert_eq!(inflate(&compress(b"abc"), 3), Ok(b"abc".to_vec()));
        assert_eq!(inflate(&compress(b"abcd"), 3), Err(InflateError::TooBig));
    }
}
