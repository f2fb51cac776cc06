//! A minimal WebSocket subscriber that offers permessage-deflate (RFC 7692),
//! for `herald bench fanout --ws-deflate`: tungstenite, which the other
//! WebSocket subscribers use, has no compression. It handshakes over plain
//! TCP, reads server frames (never masked), inflates those marked RSV1 with
//! flate2, answers pings, and hands each message's data to the tally.

use bytes::{Buf, BytesMut};
use flate2::{Decompress, FlushDecompress};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;

/// The offer a browser makes.
const OFFER: &str = "permessage-deflate; client_max_window_bits";

/// A connected, upgraded subscriber.
pub struct DeflateSocket {
    tcp: TcpStream,
    buf: BytesMut,
    /// The server accepted the offer.
    pub negotiated: bool,
    /// Bytes read off the socket since the last [`DeflateSocket::take_read_bytes`].
    read_bytes: u64,
}

impl DeflateSocket {
    /// Connects to `url` (ws://, loopback) and upgrades, offering deflate
    /// when `offer`.
    pub async fn connect(url: &str, offer: bool) -> Result<Self, BenchError> {
        let addr = super::target::socket_addr(url)?;
        let parsed = super::target::check_loopback(url)?;
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path = format!("{path}?{query}");
        }
        let mut tcp = TcpStream::connect(addr)
            .await
            .map_err(|e| BenchError::connect(url, e))?;
        let _ = tcp.set_nodelay(true);
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{}\r\n",
            if offer {
                format!("Sec-WebSocket-Extensions: {OFFER}\r\n")
            } else {
                String::new()
            }
        );
        tcp.write_all(request.as_bytes())
            .await
            .map_err(|e| BenchError::connect(url, e))?;
        let mut buf = BytesMut::with_capacity(4096);
        let end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end;
            }
            if buf.len() > 16 * 1024
                || tcp
                    .read_buf(&mut buf)
                    .await
                    .map_err(|e| BenchError::connect(url, e))?
                    == 0
            {
                return Err(BenchError::connect(url, "no handshake answer"));
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        if !head.starts_with("http/1.1 101") {
            return Err(BenchError::connect(
                url,
                head.lines().next().unwrap_or("").to_owned(),
            ));
        }
        let negotiated = head.lines().any(|l| {
            l.starts_with("sec-websocket-extensions:") && l.contains("permessage-deflate")
        });
        buf.advance(end + 4);
        Ok(Self {
            tcp,
            buf,
            negotiated,
            read_bytes: 0,
        })
    }

    /// Bytes read off the socket since the last call.
    pub fn take_read_bytes(&mut self) -> u64 {
        std::mem::take(&mut self.read_bytes)
    }

    /// Reads once (unless whole frames are already buffered) and hands every
    /// whole data message in the buffer to `each`, in order, without copying
    /// uncompressed payloads; answers pings. Returns `false` once the server
    /// closed. Taking all a read brought at once is what keeps the generator
    /// light at saturation: one wake-up and one clock reading per batch.
    pub async fn read_batch(&mut self, mut each: impl FnMut(&[u8])) -> std::io::Result<bool> {
        if self.frame_len().is_none() {
            if self.buf.capacity() - self.buf.len() < MIN_READ_SPACE {
                self.buf.reserve(READ_BUFFER);
            }
            let n = self.tcp.read_buf(&mut self.buf).await?;
            if n == 0 {
                return Ok(false);
            }
            self.read_bytes += n as u64;
        }
        let mut pongs = Vec::new();
        let mut open = true;
        while let Some((offset, len)) = self.frame_len() {
            let first = self.buf[0];
            let payload = &self.buf[offset..offset + len];
            match first & 0x0f {
                0x1 | 0x2 if first & 0x40 != 0 => each(&inflate(payload)?),
                0x1 | 0x2 => each(payload),
                0x8 => open = false,
                0x9 => {
                    // A pong, masked as a client must (a zero mask).
                    let echoed = &payload[..len.min(125)];
                    pongs.extend_from_slice(&[0x8A, 0x80 | echoed.len() as u8, 0, 0, 0, 0]);
                    pongs.extend_from_slice(echoed);
                }
                _ => {}
            }
            self.buf.advance(offset + len);
            if !open {
                break;
            }
        }
        if !pongs.is_empty() {
            self.tcp.write_all(&pongs).await?;
        }
        Ok(open)
    }

    /// Where the payload of the first buffered frame starts and how long it
    /// is, once the whole frame is in the buffer.
    fn frame_len(&self) -> Option<(usize, usize)> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        let (len, offset): (usize, usize) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => {
                let mut raw = [0u8; 8];
                raw.copy_from_slice(&b[2..10]);
                (usize::try_from(u64::from_be_bytes(raw)).ok()?, 10)
            }
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        (b.len() >= offset.checked_add(len)?).then_some((offset, len))
    }
}

/// Read buffer growth: a saturated subscriber finds tens of messages waiting.
const READ_BUFFER: usize = 64 * 1024;
/// Below this much free space the buffer grows before the next read.
const MIN_READ_SPACE: usize = 16 * 1024;

/// A compressed message's data (no context takeover: a fresh decompressor each).
fn inflate(payload: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut input = Vec::with_capacity(payload.len() + 4);
    input.extend_from_slice(payload);
    input.extend_from_slice(&[0, 0, 0xff, 0xff]);
    let mut out = Vec::with_capacity(payload.len() * 8 + 256);
    let mut decompressor = Decompress::new(false);
    loop {
        let consumed = decompressor.total_in() as usize;
        decompressor
            .decompress_vec(&input[consumed..], &mut out, FlushDecompress::Sync)
            .map_err(std::io::Error::other)?;
        if decompressor.total_in() as usize == input.len() && out.len() < out.capacity() {
            return Ok(out);
        }
        out.reserve(out.capacity());
    }
}
