//! RFC 6455 framing for the server end of a WebSocket, without I/O.
//!
//! herald writes the same message to thousands of connections, so the
//! write side is built for that: server frames are not masked, so one frame
//! (a 2–10 byte header and the payload) serves every subscriber and is
//! built once per message. The read side reassembles the few frames clients
//! send and enforces the rules that keep a hostile client from costing more
//! than its size limit.

use bytes::{Buf, Bytes, BytesMut};

/// RFC 6455 §7.4.1 close codes herald uses.
pub mod close_code {
    pub const NORMAL: u16 = 1000;
    pub const GOING_AWAY: u16 = 1001;
    pub const PROTOCOL: u16 = 1002;
    pub const UNSUPPORTED: u16 = 1003;
    pub const INVALID_DATA: u16 = 1007;
    pub const POLICY: u16 = 1008;
    pub const TOO_BIG: u16 = 1009;
    pub const INTERNAL: u16 = 1011;
    pub const SERVICE_RESTART: u16 = 1012;
    pub const TRY_AGAIN_LATER: u16 = 1013;
}

/// Frame opcodes (RFC 6455 §5.2).
pub mod opcode {
    pub const CONTINUATION: u8 = 0x0;
    pub const TEXT: u8 = 0x1;
    pub const BINARY: u8 = 0x2;
    pub const CLOSE: u8 = 0x8;
    pub const PING: u8 = 0x9;
    pub const PONG: u8 = 0xA;
}

/// The longest frame header: 2 bytes plus a 64-bit length (server frames carry no mask).
pub const MAX_HEADER: usize = 10;

/// Appends a frame as a client sends it (RFC 6455 §5.3: masked with `mask`),
/// `first` being its first byte (FIN, RSV and opcode bits as given) and its
/// length in the shortest encoding. The server never masks; this is the
/// other side, for the tests and fuzz targets that speak to the decoder.
pub fn push_client_frame(out: &mut Vec<u8>, first: u8, payload: &[u8], mask: [u8; 4]) {
    out.push(first);
    match payload.len() {
        n if n < 126 => out.push(0x80 | n as u8),
        n if n <= 0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().zip(mask.iter().cycle()).map(|(b, m)| b ^ m));
}

/// The header of an unmasked, final frame of `opcode` carrying `len` bytes.
pub fn header(opcode: u8, len: usize) -> ([u8; MAX_HEADER], usize) {
    let mut out = [0u8; MAX_HEADER];
    out[0] = 0x80 | opcode;
    let used = if len < 126 {
        out[1] = len as u8;
        2
    } else if len <= usize::from(u16::MAX) {
        out[1] = 126;
        out[2..4].copy_from_slice(&(len as u16).to_be_bytes());
        4
    } else {
        out[1] = 127;
        out[2..10].copy_from_slice(&(len as u64).to_be_bytes());
        10
    };
    (out, used)
}

/// A final, unmasked frame of `opcode` whose payload `write` appends to the
/// buffer it is given (about `capacity` bytes). The header goes into room
/// kept in front, so the payload is written once and never moved.
pub fn build(opcode: u8, capacity: usize, write: impl FnOnce(&mut Vec<u8>)) -> Bytes {
    let mut out = Vec::with_capacity(MAX_HEADER + capacity);
    out.resize(MAX_HEADER, 0);
    write(&mut out);
    let (head, used) = header(opcode, out.len() - MAX_HEADER);
    let start = MAX_HEADER - used;
    out[start..MAX_HEADER].copy_from_slice(&head[..used]);
    Bytes::from(out).slice(start..)
}

/// A whole control frame (`payload` at most 125 bytes, truncated beyond).
pub fn control(opcode: u8, payload: &[u8]) -> Vec<u8> {
    let payload = &payload[..payload.len().min(125)];
    let (head, used) = header(opcode, payload.len());
    let mut out = Vec::with_capacity(used + payload.len());
    out.extend_from_slice(&head[..used]);
    out.extend_from_slice(payload);
    out
}

/// A close frame with `code` and as much of `reason` as fits (on a character boundary).
pub fn close(code: u16, reason: &str) -> Vec<u8> {
    let mut end = reason.len().min(123);
    while !reason.is_char_boundary(end) {
        end -= 1;
    }
    let mut payload = Vec::with_capacity(2 + end);
    payload.extend_from_slice(&code.to_be_bytes());
    payload.extend_from_slice(&reason.as_bytes()[..end]);
    control(opcode::CLOSE, &payload)
}

/// What a client sent: a whole message or a control frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Incoming {
    Text(Bytes),
    Binary(Bytes),
    Ping(Bytes),
    Pong(Bytes),
    /// The client's close, with its code and reason if it gave them.
    Close(Option<(u16, String)>),
}

/// Why a connection must fail (RFC 6455 §7.1.7), with the close code to send.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FrameError {
    #[error("protocol error: {0}")]
    Protocol(&'static str),
    #[error("invalid UTF-8 in a text message")]
    InvalidUtf8,
    #[error("message larger than {0} bytes")]
    TooBig(usize),
}

impl FrameError {
    /// 1002, 1007 or 1009.
    pub fn close_code(&self) -> u16 {
        match self {
            Self::Protocol(_) => close_code::PROTOCOL,
            Self::InvalidUtf8 => close_code::INVALID_DATA,
            Self::TooBig(_) => close_code::TOO_BIG,
        }
    }
}

/// Reassembles client frames from bytes read off the socket.
#[derive(Debug)]
pub struct Decoder {
    /// Most bytes in one message (all its fragments), and so in one frame;
    /// for a compressed message, most bytes once inflated.
    max_message: usize,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    inflate: bool,
    /// A fragmented message in progress: its opcode, whether it is
    /// compressed, and the data so far.
    partial: Option<(u8, bool, BytesMut)>,
}

impl Decoder {
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            inflate: false,
            partial: None,
        }
    }

    /// A decoder for a socket that negotiated permessage-deflate.
    pub fn with_deflate(max_message: usize) -> Self {
        Self {
            inflate: true,
            ..Self::new(max_message)
        }
    }

    /// Most compressed bytes a message may arrive in: its inflated limit
    /// plus deflate's worst case for data that does not compress (a 5-byte
    /// stored-block header per 64 KiB).
    fn compressed_limit(&self) -> usize {
        self.max_message + self.max_message / 8192 * 5 + 64
    }

    /// Takes the next whole message or control frame out of `buf`, if `buf`
    /// holds it; `Ok(None)` means "read more". Fails as soon as a header
    /// breaks a rule, before its payload is buffered.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, FrameError> {
        loop {
            let Some(frame) = self.next_frame(buf)? else {
                return Ok(None);
            };
            if let Some(incoming) = self.assemble(frame)? {
                return Ok(Some(incoming));
            }
        }
    }

    /// One complete frame, unmasked.
    fn next_frame(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let code = b0 & 0x0f;
        // RFC 7692 §6: RSV1 marks the first frame of a compressed message,
        // and only once permessage-deflate was negotiated.
        let compressed = b0 & 0x40 != 0;
        let starts_message = code == opcode::TEXT || code == opcode::BINARY;
        if b0 & 0x30 != 0 || (compressed && !(self.inflate && starts_message)) {
            return Err(FrameError::Protocol("reserved bits set"));
        }
        let control = code >= 0x8;
        match code {
            opcode::CONTINUATION | opcode::TEXT | opcode::BINARY => {}
            opcode::CLOSE | opcode::PING | opcode::PONG => {}
            _ => return Err(FrameError::Protocol("reserved opcode")),
        }
        if b1 & 0x80 == 0 {
            return Err(FrameError::Protocol("client frames must be masked"));
        }
        let (len, offset) = match b1 & 0x7f {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&buf[2..10]);
                let len = u64::from_be_bytes(raw);
                if len >> 63 != 0 {
                    return Err(FrameError::Protocol("frame length's top bit set"));
                }
                (len, 10)
            }
            short => (u64::from(short), 2),
        };
        if control && (!fin || len > 125) {
            return Err(FrameError::Protocol(
                "control frames must be whole and at most 125 bytes",
            ));
        }
        let so_far = self.partial.as_ref().map_or(0, |(_, _, data)| data.len()) as u64;
        let in_compressed = compressed
            || (code == opcode::CONTINUATION && self.partial.as_ref().is_some_and(|p| p.1));
        let limit = if in_compressed {
            self.compressed_limit()
        } else {
            self.max_message
        };
        if len.saturating_add(if control { 0 } else { so_far }) > limit as u64 {
            return Err(FrameError::TooBig(self.max_message));
        }
        let len = len as usize;
        let total = offset + 4 + len;
        if buf.len() < total {
            buf.reserve(total - buf.len());
            return Ok(None);
        }
        let mut mask = [0u8; 4];
        mask.copy_from_slice(&buf[offset..offset + 4]);
        buf.advance(offset + 4);
        let mut payload = buf.split_to(len);
        unmask(&mut payload, mask);
        Ok(Some(Frame {
            fin,
            code,
            compressed,
            payload,
        }))
    }

    /// Folds a frame into the message in progress; returns what is complete.
    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, FrameError> {
        let Frame {
            fin,
            code,
            compressed,
            payload,
        } = frame;
        match code {
            opcode::PING => return Ok(Some(Incoming::Ping(payload.freeze()))),
            opcode::PONG => return Ok(Some(Incoming::Pong(payload.freeze()))),
            opcode::CLOSE => return close_payload(&payload).map(|c| Some(Incoming::Close(c))),
            opcode::CONTINUATION => {
                let Some((_, _, data)) = self.partial.as_mut() else {
                    return Err(FrameError::Protocol("continuation without a message"));
                };
                data.extend_from_slice(&payload);
            }
            _ => {
                if self.partial.is_some() {
                    return Err(FrameError::Protocol("new message inside a fragmented one"));
                }
                self.partial = Some((code, compressed, payload));
            }
        }
        if !fin {
            return Ok(None);
        }
        let Some((code, compressed, data)) = self.partial.take() else {
            return Ok(None);
        };
        let data = if compressed {
            // The limit applies to what the message inflates to: a deflate
            // bomb stops at it (1009) instead of growing memory.
            match super::deflate::inflate(&data, self.max_message) {
                Ok(inflated) => Bytes::from(inflated),
                Err(super::deflate::InflateError::TooBig) => {
                    return Err(FrameError::TooBig(self.max_message))
                }
                Err(super::deflate::InflateError::Corrupt) => {
                    return Err(FrameError::Protocol(
                        "compressed data that does not inflate",
                    ))
                }
            }
        } else {
            data.freeze()
        };
        if code == opcode::TEXT {
            if std::str::from_utf8(&data).is_err() {
                return Err(FrameError::InvalidUtf8);
            }
            return Ok(Some(Incoming::Text(data)));
        }
        Ok(Some(Incoming::Binary(data)))
    }
}

struct Frame {
    fin: bool,
    code: u8,
    /// RSV1: the first frame of a compressed message.
    compressed: bool,
    payload: BytesMut,
}

fn unmask(payload: &mut [u8], mask: [u8; 4]) {
    let word = u32::from_ne_bytes(mask);
    let mut chunks = payload.chunks_exact_mut(4);
    for chunk in &mut chunks {
        let value = u32::from_ne_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]) ^ word;
        chunk.copy_from_slice(&value.to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i];
    }
}

/// A close frame's code and reason, checked (RFC 6455 §5.5.1, §7.4).
fn close_payload(payload: &[u8]) -> Result<Option<(u16, String)>, FrameError> {
    match payload.len() {
        0 => return Ok(None),
        1 => return Err(FrameError::Protocol("a close payload of one byte")),
        _ => {}
    }
    let code = u16::from_be_bytes([payload[0], payload[1]]);
    let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
    if !valid {
        return Err(FrameError::Protocol("invalid close code"));
    }
    let reason = std::str::from_utf8(&payload[2..]).map_err(|_| FrameError::InvalidUtf8)?;
    Ok(Some((code, reason.to_owned())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(first: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        push_client_frame(&mut out, first, payload, [0x37, 0xfa, 0x21, 0x3d]);
        out
    }

    fn decode_all(decoder: &mut Decoder, bytes: &[u8]) -> Result<Vec<Incoming>, FrameError> {
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(incoming) = decoder.decode(&mut buf)? {
            out.push(incoming);
        }
        Ok(out)
    }

    #[test]
    fn rfc_example_masked_hello() {
        // RFC 6455 §5.7: a single-frame masked text message "Hello".
        let bytes = [
            0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58,
        ];
        let got = decode_all(&mut Decoder::new(1024), &bytes).unwrap();
        assert_eq!(got, vec![Incoming::Text(Bytes::from_static(b"Hello"))]);
    }

    #[test]
    fn headers_for_every_length_class() {
        for (len, used, second) in [(0, 2, 0), (125, 2, 125), (126, 4, 126), (65535, 4, 126)] {
            let (head, n) = header(opcode::TEXT, len);
            assert_eq!((n, head[0], head[1]), (used, 0x81, second));
        }
        let (head, n) = header(opcode::BINARY, 65536);
        assert_eq!((n, head[0], head[1]), (10, 0x82, 127));
        assert_eq!(u64::from_be_bytes(head[2..10].try_into().unwrap()), 65536);
    }

    #[test]
    fn built_frames_carry_their_payload_after_the_shortest_header() {
        for len in [0usize, 125, 126, 65535, 65536] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let built = build(opcode::BINARY, 0, |out| out.extend_from_slice(&payload));
            let (head, used) = header(opcode::BINARY, len);
            assert_eq!(&built[..used], &head[..used], "{len}");
            assert_eq!(&built[used..], &payload[..], "{len}");
        }
    }

    #[test]
    fn byte_at_a_time_gives_the_same_messages() {
        let mut bytes = masked(0x01, b"frag");
        bytes.extend(masked(0x89, b"ping"));
        bytes.extend(masked(0x80, "ment 服务器".as_bytes()));
        bytes.extend(masked(0x82, &[7u8; 300]));
        bytes.extend(masked(0x82, &[9u8; 70_000]));
        let whole = decode_all(&mut Decoder::new(1 << 20), &bytes).unwrap();
        let mut decoder = Decoder::new(1 << 20);
        let mut buf = BytesMut::new();
        let mut trickled = Vec::new();
        for byte in bytes {
            buf.extend_from_slice(&[byte]);
            while let Some(incoming) = decoder.decode(&mut buf).unwrap() {
                trickled.push(incoming);
            }
        }
        assert_eq!(whole, trickled);
        assert_eq!(whole.len(), 4);
        assert_eq!(whole[0], Incoming::Ping(Bytes::from_static(b"ping")));
        assert_eq!(
            whole[1],
            Incoming::Text(Bytes::from("fragment 服务器".as_bytes()))
        );
        assert_eq!(whole[3], Incoming::Binary(Bytes::from(vec![9u8; 70_000])));
    }

    #[test]
    fn broken_rules_fail_with_their_close_codes() {
        let cases: Vec<(&str, Vec<u8>, u16)> = vec![
            ("reserved bit", masked(0xC1, b"x"), 1002),
            ("reserved opcode", masked(0x83, b"x"), 1002),
            ("unmasked", vec![0x81, 0x01, b'x'], 1002),
            ("fragmented ping", masked(0x09, b"x"), 1002),
            ("long ping", masked(0x89, &[0u8; 126]), 1002),
            ("orphan continuation", masked(0x80, b"x"), 1002),
            (
                "message inside message",
                [masked(0x01, b"a"), masked(0x81, b"b")].concat(),
                1002,
            ),
            ("bad utf-8", masked(0x81, &[0x61, 0xe2, 0x82]), 1007),
            ("one-byte close", masked(0x88, &[3]), 1002),
            (
                "close code 1005",
                masked(0x88, &1005u16.to_be_bytes()),
                1002,
            ),
            (
                "close code 5000",
                masked(0x88, &5000u16.to_be_bytes()),
                1002,
            ),
            (
                "close reason not utf-8",
                masked(0x88, &[0x03, 0xe8, 0xff]),
                1007,
            ),
            ("too big", masked(0x82, &[0u8; 2000]), 1009),
            (
                "too big in fragments",
                [masked(0x02, &[0u8; 600]), masked(0x80, &[0u8; 600])].concat(),
                1009,
            ),
        ];
        for (case, bytes, code) in cases {
            let error = decode_all(&mut Decoder::new(1024), &bytes).expect_err(case);
            assert_eq!(error.close_code(), code, "{case}");
        }
    }

    #[test]
    fn an_oversized_header_fails_before_its_payload_arrives() {
        let mut buf = BytesMut::from(&[0x82u8, 0x80 | 127, 0, 0, 0, 1, 0, 0, 0, 0][..]);
        let error = Decoder::new(1 << 20).decode(&mut buf).unwrap_err();
        assert_eq!(error, FrameError::TooBig(1 << 20));
    }

    #[test]
    fn close_frames_carry_code_and_trimmed_reason() {
        let frame = close(1000, &"é".repeat(100));
        assert_eq!(frame[0], 0x88);
        let len = usize::from(frame[1]);
        assert!(len <= 125);
        assert_eq!(&frame[2..4], &1000u16.to_be_bytes());
        assert!(std::str::from_utf8(&frame[4..]).is_ok());
        let got = decode_all(
            &mut Decoder::new(1024),
            &masked(0x88, &[&1001u16.to_be_bytes()[..], b"bye"].concat()),
        )
        .unwrap();
        assert_eq!(got, vec![Incoming::Close(Some((1001, "bye".into())))]);
    }
}
