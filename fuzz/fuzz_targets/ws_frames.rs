//! The raw WebSocket frame decoder (RFC 6455): however the bytes are split
//! across reads, the same messages and the same error come out; no message
//! breaks a size, UTF-8 or close-code rule; and masked client frames built
//! here decode to exactly the messages they carry, or fail where the rules
//! say they must.
//!
//! The input is a first byte, up to 15 read sizes (as many as its low four
//! bits say; none, or all zero, means one byte per read) and a body. With the
//! first byte's top bit clear the body is what the client sent; with it set
//! the body is a script for the encoder below.
#![no_main]
use bytes::BytesMut;
use herald::transport::websocket::frame::{opcode, Decoder, FrameError, Incoming};
use libfuzzer_sys::fuzz_target;

/// Small, so that fragments and 16-bit lengths reach the limit.
const MAX_MESSAGE: usize = 4096;
/// The longest client frame header: 2 bytes, a 64-bit length and the mask.
const MAX_CLIENT_HEADER: usize = 14;

/// What a connection read before its input ran out or it failed.
#[derive(Debug, Default, PartialEq)]
struct Outcome {
    messages: Vec<Incoming>,
    error: Option<FrameError>,
}

fn valid_close_code(code: u16) -> bool {
    matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999)
}

/// The rules every message keeps, whatever the client sent.
fn check(message: &Incoming) {
    match message {
        Incoming::Text(data) => {
            assert!(
                std::str::from_utf8(data).is_ok(),
                "text not UTF-8: {data:?}"
            );
            assert!(data.len() <= MAX_MESSAGE, "text of {} bytes", data.len());
        }
        Incoming::Binary(data) => {
            assert!(data.len() <= MAX_MESSAGE, "binary of {} bytes", data.len());
        }
        Incoming::Ping(data) | Incoming::Pong(data) => {
            assert!(data.len() <= 125, "control payload of {} bytes", data.len());
        }
        Incoming::Close(Some((code, reason))) => {
            assert!(valid_close_code(*code), "close code {code}");
            assert!(
                reason.len() <= 123,
                "close reason of {} bytes",
                reason.len()
            );
        }
        Incoming::Close(None) => {}
    }
}

/// Reads `stream` in chunks of `sizes` bytes (cycled; a 0 is a read that
/// brought nothing), taking out every message after each read. The first
/// error fails the connection: nothing more is fed or decoded. Also returns
/// the bytes left buffered.
fn read(stream: &[u8], sizes: &[usize]) -> (Outcome, BytesMut) {
    let mut decoder = Decoder::new(MAX_MESSAGE);
    let mut buf = BytesMut::new();
    let mut outcome = Outcome::default();
    let mut sizes = sizes.iter().cycle();
    let mut fed = 0;
    loop {
        let n = (*sizes.next().unwrap()).min(stream.len() - fed);
        buf.extend_from_slice(&stream[fed..fed + n]);
        fed += n;
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(message)) => {
                    check(&message);
                    outcome.messages.push(message);
                }
                Ok(None) => break,
                Err(error) => {
                    outcome.error = Some(error);
                    return (outcome, buf);
                }
            }
        }
        // What waits for more is one unfinished frame, which is under the limit.
        assert!(
            buf.len() < MAX_CLIENT_HEADER + MAX_MESSAGE,
            "{} bytes buffered",
            buf.len()
        );
        if fed == stream.len() {
            return (outcome, buf);
        }
    }
}

/// The encoder's input; past its end every byte reads as zero.
struct Script<'a>(&'a [u8]);

impl Script<'_> {
    fn next(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }

    fn byte(&mut self) -> u8 {
        self.next().unwrap_or(0)
    }

    /// `n` bytes: as many as the script has, repeated to fill (zeros if none).
    fn take(&mut self, n: usize) -> Vec<u8> {
        let got = &self.0[..n.min(self.0.len())];
        self.0 = &self.0[got.len()..];
        if got.is_empty() {
            return vec![0; n];
        }
        got.iter().copied().cycle().take(n).collect()
    }

    fn mask(&mut self) -> [u8; 4] {
        [self.byte(), self.byte(), self.byte(), self.byte()]
    }
}

/// A masked client frame with the shortest length encoding.
fn frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    herald::transport::websocket::frame::push_client_frame(out, first, payload, mask);
}

/// Client frames from `script`, and what reading them must give. Once a
/// frame must fail the connection the rest of the script follows as is:
/// it must make no difference.
fn encode(script: &[u8]) -> (Vec<u8>, Outcome) {
    let mut script = Script(script);
    let mut out = Vec::new();
    let mut want = Outcome::default();
    while let Some(op) = script.next() {
        if let Err(error) = step(op, &mut script, &mut out, &mut want.messages) {
            want.error = Some(error);
            out.extend_from_slice(script.0);
            break;
        }
    }
    (out, want)
}

/// Low three bits of `op`: 0, 1, 6, 7 a data message (text when even),
/// 2 a ping, 3 a pong, 4 a close, 5 a frame that breaks a rule.
fn step(
    op: u8,
    s: &mut Script,
    out: &mut Vec<u8>,
    messages: &mut Vec<Incoming>,
) -> Result<(), FrameError> {
    let protocol = Err(FrameError::Protocol("(any)"));
    match op & 0x07 {
        kind @ (0 | 1 | 6 | 7) => data_message(op, kind % 2 == 0, s, out, messages),
        kind @ (2 | 3) => {
            let code = if kind == 2 {
                opcode::PING
            } else {
                opcode::PONG
            };
            let len = usize::from(s.byte() & 0x7f);
            let payload = s.take(len);
            let mask = s.mask();
            frame(out, 0x80 | code, &payload, mask);
            if len > 125 {
                return protocol;
            }
            messages.push(if kind == 2 {
                Incoming::Ping(payload.into())
            } else {
                Incoming::Pong(payload.into())
            });
            Ok(())
        }
        4 => {
            let shape = op >> 3;
            let mut payload = Vec::new();
            if shape % 4 == 1 {
                payload.push(s.byte());
            } else if shape % 4 >= 2 {
                let code = if shape & 0x04 != 0 {
                    const CODES: [u16; 18] = [
                        999, 1000, 1001, 1002, 1003, 1004, 1005, 1006, 1007, 1011, 1014, 1015,
                        1016, 2999, 3000, 4999, 5000, 65535,
                    ];
                    CODES[usize::from(s.byte()) % CODES.len()]
                } else {
                    u16::from_be_bytes([s.byte(), s.byte()])
                };
                payload.extend_from_slice(&code.to_be_bytes());
                let len = usize::from(s.byte() % 124);
                let mut reason = s.take(len);
                if shape % 4 == 3 {
                    reason = String::from_utf8_lossy(&reason).into_owned().into_bytes();
                }
                payload.extend_from_slice(&reason);
            }
            let mask = s.mask();
            frame(out, 0x80 | opcode::CLOSE, &payload, mask);
            if payload.len() > 125 || payload.len() == 1 {
                return protocol;
            }
            if payload.is_empty() {
                messages.push(Incoming::Close(None));
                return Ok(());
            }
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            if !valid_close_code(code) {
                return protocol;
            }
            let reason =
                String::from_utf8(payload[2..].to_vec()).map_err(|_| FrameError::InvalidUtf8)?;
            messages.push(Incoming::Close(Some((code, reason))));
            Ok(())
        }
        _ => {
            broken_frame(op >> 3, s, out);
            if (op >> 3) % 8 == 7 {
                return Err(FrameError::TooBig(MAX_MESSAGE));
            }
            protocol
        }
    }
}

/// A text or binary message in 1 to 4 fragments (bits 3–4), with a ping
/// between fragments (bit 5), text made valid UTF-8 (bit 6), a length of up
/// to 8191 bytes rather than 255 (bit 7).
fn data_message(
    op: u8,
    text: bool,
    s: &mut Script,
    out: &mut Vec<u8>,
    messages: &mut Vec<Incoming>,
) -> Result<(), FrameError> {
    let fragments = usize::from((op >> 3) & 0x03) + 1;
    let pings = op & 0x20 != 0;
    let len = if op & 0x80 != 0 {
        usize::from(u16::from_be_bytes([s.byte(), s.byte()]) & 0x1fff)
    } else {
        usize::from(s.byte())
    };
    let mut data = s.take(len);
    if text && op & 0x40 != 0 {
        data = String::from_utf8_lossy(&data).into_owned().into_bytes();
    }
    let mut rest = &data[..];
    let mut so_far = 0;
    for i in 0..fragments {
        let last = i + 1 == fragments;
        let n = if last {
            rest.len()
        } else {
            rest.len() * usize::from(s.byte()) / 255
        };
        let (part, tail) = rest.split_at(n);
        rest = tail;
        if i > 0 && pings {
            let len = usize::from(s.byte() % 126);
            let payload = s.take(len);
            let mask = s.mask();
            frame(out, 0x80 | opcode::PING, &payload, mask);
            messages.push(Incoming::Ping(payload.into()));
        }
        let code = match (i, text) {
            (0, true) => opcode::TEXT,
            (0, false) => opcode::BINARY,
            _ => opcode::CONTINUATION,
        };
        let mask = s.mask();
        let fin = if last { 0x80 } else { 0 };
        frame(out, fin | code, part, mask);
        so_far += part.len();
        if so_far > MAX_MESSAGE {
            return Err(FrameError::TooBig(MAX_MESSAGE));
        }
    }
    if text && std::str::from_utf8(&data).is_err() {
        return Err(FrameError::InvalidUtf8);
    }
    messages.push(if text {
        Incoming::Text(data.into())
    } else {
        Incoming::Binary(data.into())
    });
    Ok(())
}

/// A frame that fails the connection: 0–6 break a protocol rule, 7 announces
/// more than the limit.
fn broken_frame(which: u8, s: &mut Script, out: &mut Vec<u8>) {
    let len = usize::from(s.byte() % 126);
    let payload = s.take(len);
    let mask = s.mask();
    match which % 8 {
        0 => {
            let reserved = 0x10 << (s.byte() % 3);
            frame(out, 0x80 | reserved | opcode::TEXT, b"", mask);
        }
        1 => {
            const RESERVED: [u8; 10] = [0x3, 0x4, 0x5, 0x6, 0x7, 0xB, 0xC, 0xD, 0xE, 0xF];
            let code = RESERVED[usize::from(s.byte()) % RESERVED.len()];
            frame(out, 0x80 | code, &payload, mask);
        }
        2 => {
            out.extend_from_slice(&[0x80 | opcode::BINARY, len as u8]);
            out.extend_from_slice(&payload);
        }
        3 => {
            const CONTROL: [u8; 3] = [opcode::CLOSE, opcode::PING, opcode::PONG];
            let code = CONTROL[usize::from(s.byte()) % CONTROL.len()];
            frame(out, code, &payload, mask);
        }
        4 => {
            let fin = s.byte() & 0x80;
            frame(out, fin | opcode::CONTINUATION, &payload, mask);
        }
        5 => {
            let b = s.byte();
            frame(out, opcode::TEXT + (b & 1), &payload, mask);
            let mask = s.mask();
            frame(out, (b & 0x80) | (opcode::TEXT + ((b >> 1) & 1)), b"", mask);
        }
        6 | 7 => {
            let raw = u64::from_be_bytes(std::array::from_fn(|_| s.byte()));
            let len = if which % 8 == 6 {
                raw | 1 << 63
            } else {
                (raw >> 1).max(MAX_MESSAGE as u64 + 1)
            };
            out.extend_from_slice(&[0x80 | opcode::BINARY, 0x80 | 127]);
            out.extend_from_slice(&len.to_be_bytes());
            out.extend_from_slice(&mask);
        }
        _ => unreachable!(),
    }
}

/// The same kind of failure; which protocol rule broke is the decoder's wording.
fn same_failure(got: &FrameError, want: &FrameError) -> bool {
    match (got, want) {
        (FrameError::Protocol(_), FrameError::Protocol(_)) => true,
        _ => got == want,
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&head, rest)) = data.split_first() else {
        return;
    };
    let (sizes, body) = rest.split_at(usize::from(head & 0x0f).min(rest.len()));
    let mut sizes: Vec<usize> = sizes.iter().map(|&n| usize::from(n)).collect();
    if sizes.iter().all(|&n| n == 0) {
        sizes = vec![1];
    }
    let (stream, want) = if head & 0x80 == 0 {
        (body.to_vec(), None)
    } else {
        let (stream, want) = encode(body);
        (stream, Some(want))
    };

    let (whole, left) = read(&stream, &[stream.len()]);
    let (split, split_left) = read(&stream, &sizes);
    assert_eq!(whole, split, "read whole vs in reads of {sizes:?}");
    if whole.error.is_none() {
        assert_eq!(left, split_left, "bytes left buffered");
    }

    if let Some(want) = want {
        assert_eq!(whole.messages, want.messages, "messages encoded");
        match (&whole.error, &want.error) {
            (None, None) => assert!(left.is_empty(), "{} bytes of whole frames left", left.len()),
            (Some(got), Some(want)) => assert!(same_failure(got, want), "{got:?}, not {want:?}"),
            (got, want) => panic!("failure {got:?}, expected {want:?}"),
        }
    }
});
