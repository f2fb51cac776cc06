//! permessage-deflate (RFC 7692) on herald's WebSockets, checked by hand
//! from the client's side: the handshake answer, compressed frames (RSV1)
//! inflated here with flate2 independently of herald's code, a compressed
//! message from the client published and delivered, the `/ws` protocol
//! compressed too, a deflate bomb closed with 1009, and the flag that turns
//! compression off. (tokio-tungstenite has no permessage-deflate; Chromium
//! negotiates it in clients/js's browser tests.)

mod common;

use std::net::SocketAddr;

use common::within;
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const OFFER: &str = "permessage-deflate; client_max_window_bits";
const ANSWER: &str = "permessage-deflate; server_no_context_takeover; client_no_context_takeover";

/// A WebSocket client written out by hand, to see every header and bit.
struct Client {
    tcp: TcpStream,
    buf: Vec<u8>,
    extensions: Option<String>,
}

/// One frame as the server sent it.
#[derive(Debug)]
struct Frame {
    first: u8,
    payload: Vec<u8>,
}

impl Frame {
    fn opcode(&self) -> u8 {
        self.first & 0x0f
    }

    fn compressed(&self) -> bool {
        self.first & 0x40 != 0
    }

    /// The message's data: inflated here (flate2, raw deflate plus the
    /// 00 00 ff ff tail of RFC 7692 §7.2.2) if RSV1 says it is compressed.
    fn data(&self) -> Vec<u8> {
        if !self.compressed() {
            return self.payload.clone();
        }
        let mut input = self.payload.clone();
        input.extend_from_slice(&[0, 0, 0xff, 0xff]);
        let mut out = Vec::with_capacity(1 << 20);
        Decompress::new(false)
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .expect("a valid deflate stream");
        out
    }
}

/// Raw deflate of `data` with the sync-flush tail removed (§7.2.1).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len() + 1024);
    Compress::new(Compression::best(), false)
        .compress_vec(data, &mut out, FlushCompress::Sync)
        .unwrap();
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

impl Client {
    async fn connect(addr: SocketAddr, path: &str, offer: Option<&str>) -> Self {
        let mut tcp = within("a connection", TcpStream::connect(addr))
            .await
            .unwrap();
        let mut request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n"
        );
        if let Some(offer) = offer {
            request.push_str(&format!("Sec-WebSocket-Extensions: {offer}\r\n"));
        }
        request.push_str("\r\n");
        tcp.write_all(request.as_bytes()).await.unwrap();
        let mut client = Self {
            tcp,
            buf: Vec::new(),
            extensions: None,
        };
        let head = within("the handshake answer", client.read_head()).await;
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        client.extensions = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.eq_ignore_ascii_case("sec-websocket-extensions")
                .then(|| value.trim().to_owned())
        });
        client
    }

    async fn read_head(&mut self) -> String {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8(self.buf[..end].to_vec()).unwrap();
                self.buf.drain(..end + 4);
                return head;
            }
            self.fill().await;
        }
    }

    async fn fill(&mut self) {
        let mut chunk = [0u8; 8192];
        let n = self.tcp.read(&mut chunk).await.unwrap();
        assert!(n > 0, "the server closed the connection");
        self.buf.extend_from_slice(&chunk[..n]);
    }

    /// The next frame that is not a ping.
    async fn frame(&mut self) -> Frame {
        within("a frame", async {
            loop {
                if let Some(frame) = self.parse() {
                    if frame.opcode() != 0x9 {
                        return frame;
                    }
                    continue;
                }
                self.fill().await;
            }
        })
        .await
    }

    fn parse(&mut self) -> Option<Frame> {
        let b = &self.buf;
        if b.len() < 2 {
            return None;
        }
        assert_eq!(b[1] & 0x80, 0, "server frames are not masked");
        let (len, offset) = match b[1] & 0x7f {
            126 if b.len() >= 4 => (usize::from(u16::from_be_bytes([b[2], b[3]])), 4),
            127 if b.len() >= 10 => (
                u64::from_be_bytes(b[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (usize::from(n), 2),
        };
        if b.len() < offset + len {
            return None;
        }
        let frame = Frame {
            first: b[0],
            payload: b[offset..offset + len].to_vec(),
        };
        self.buf.drain(..offset + len);
        Some(frame)
    }

    /// Sends one masked frame with first byte `first`.
    async fn send(&mut self, first: u8, payload: &[u8]) {
        let mut out = Vec::new();
        herald::transport::websocket::frame::push_client_frame(
            &mut out,
            first,
            payload,
            [1, 2, 3, 4],
        );
        self.tcp.write_all(&out).await.unwrap();
    }
}

fn json_payload(n: usize) -> String {
    json!({
        "type": "price",
        "items": (0..n).map(|i| json!({"symbol": format!("SYM{i}"), "bid": 100 + i, "ask": 101 + i, "venue": "example"})).collect::<Vec<_>>(),
    })
    .to_string()
}

#[tokio::test]
async fn raw_sockets_negotiate_and_share_compressed_frames() {
    let server = common::server().await;
    let mut compressed = Client::connect(server.addr, "/sub/deflated", Some(OFFER)).await;
    assert_eq!(compressed.extensions.as_deref(), Some(ANSWER));
    let mut plain = Client::connect(server.addr, "/sub/deflated", None).await;
    assert_eq!(plain.extensions, None);
    common::wait_for_subscribers(server.addr, "deflated", 2).await;

    let data = json_payload(20);
    common::publish(server.addr, "deflated", data.clone()).await;
    let frame = compressed.frame().await;
    assert_eq!(frame.first, 0x80 | 0x40 | 0x1, "final, compressed, text");
    assert!(
        frame.payload.len() * 3 < data.len(),
        "{} bytes for {}",
        frame.payload.len(),
        data.len()
    );
    assert_eq!(frame.data(), data.as_bytes());
    let frame = plain.frame().await;
    assert_eq!(frame.first, 0x81, "no RSV1 without the extension");
    assert_eq!(frame.payload, data.as_bytes());

    // A short message goes out uncompressed (RSV1 clear) even when negotiated.
    common::publish(server.addr, "deflated", "tiny").await;
    let frame = compressed.frame().await;
    assert_eq!((frame.first, frame.data()), (0x81, b"tiny".to_vec()));
    let _ = plain.frame().await;

    // A compressed message from the client, in two fragments (RSV1 on the
    // first only), is inflated, published, and comes back to both.
    let sent = json_payload(5);
    let deflated = deflate(sent.as_bytes());
    let (head, tail) = deflated.split_at(deflated.len() / 2);
    compressed.send(0x40 | 0x1, head).await;
    compressed.send(0x80, tail).await;
    assert_eq!(compressed.frame().await.data(), sent.as_bytes());
    assert_eq!(plain.frame().await.payload, sent.as_bytes());

    let metrics = reqwest::get(common::url(server.addr, "/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let counted = metrics
        .lines()
        .find_map(|l| l.strip_prefix("herald_ws_compressed_total "))
        .and_then(|v| v.parse::<f64>().ok());
    assert!(counted.is_some_and(|n| n >= 1.0), "{metrics}");
}

#[tokio::test]
async fn the_ws_protocol_compresses_its_msg_frames() {
    let server = common::server().await;
    let mut socket = Client::connect(server.addr, "/ws", Some("permessage-deflate")).await;
    assert_eq!(socket.extensions.as_deref(), Some(ANSWER));
    let sub = json!({"op": "sub", "channel": "proto", "ref": 1}).to_string();
    socket.send(0x81, sub.as_bytes()).await;
    let ok: Value = serde_json::from_slice(&socket.frame().await.data()).unwrap();
    assert_eq!(ok["op"], "ok", "{ok}");
    let data = json_payload(10);
    common::publish(server.addr, "proto", data.clone()).await;
    let frame = socket.frame().await;
    assert!(frame.compressed());
    let msg: Value = serde_json::from_slice(&frame.data()).unwrap();
    assert_eq!(
        (msg["op"].as_str(), msg["data"].as_str()),
        (Some("msg"), Some(data.as_str()))
    );
    // A compressed op from the client is understood.
    let ping = json!({"op": "ping", "ref": "p", "pad": "x".repeat(100)}).to_string();
    socket
        .send(0x80 | 0x40 | 0x1, &deflate(ping.as_bytes()))
        .await;
    let pong: Value = serde_json::from_slice(&socket.frame().await.data()).unwrap();
    assert_eq!(pong["op"], "pong", "{pong}");
}

#[tokio::test]
async fn a_deflate_bomb_is_closed_with_1009() {
    let server = common::server().await;
    let mut socket = Client::connect(server.addr, "/sub/bombed", Some(OFFER)).await;
    common::wait_for_subscribers(server.addr, "bombed", 1).await;
    // 16 MiB of zeros in a few KiB: far under the limit on the wire, far
    // over it inflated.
    let bomb = deflate(&vec![0u8; 16 << 20]);
    assert!(bomb.len() < 64 * 1024, "{} bytes", bomb.len());
    socket.send(0x80 | 0x40 | 0x2, &bomb).await;
    let close = socket.frame().await;
    assert_eq!(close.opcode(), 0x8, "a close frame: {close:?}");
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1009
    );
    // Nothing was published, and the server still serves.
    let (status, info) = common::get_json(server.addr, "/pub/bombed").await;
    assert_eq!(status, 200);
    assert_eq!(info["messages"], 0, "{info}");
    // RSV1 without the extension is a protocol error (1002).
    let mut plain = Client::connect(server.addr, "/sub/bombed", None).await;
    plain.send(0x80 | 0x40 | 0x1, &deflate(b"hello")).await;
    let close = plain.frame().await;
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1002
    );
}

#[tokio::test]
async fn compression_can_be_turned_off() {
    let server = common::start(|config| config.ws_compression = false).await;
    let mut socket = Client::connect(server.addr, "/sub/off", Some(OFFER)).await;
    assert_eq!(socket.extensions, None);
    common::wait_for_subscribers(server.addr, "off", 1).await;
    let data = json_payload(20);
    common::publish(server.addr, "off", data.clone()).await;
    let frame = socket.frame().await;
    assert_eq!((frame.first, frame.payload), (0x81, data.into_bytes()));
}
