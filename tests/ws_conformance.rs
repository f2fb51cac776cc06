//! RFC 6455 conformance in raw frames over a plain TCP socket, in the spirit
//! of Autobahn's sections 1-7, against herald's raw WebSocket on
//! `/sub/{channel}`: a lone raw subscriber gets its own frames back, so it
//! acts as an echo server.

mod common;

use std::net::SocketAddr;

use common::within;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TEXT: u8 = 0x1;
const BINARY: u8 = 0x2;
const CONTINUATION: u8 = 0x0;
const CLOSE: u8 = 0x8;
const PING: u8 = 0x9;
const PONG: u8 = 0xA;

/// A frame as the client sends it: masked unless told otherwise.
struct Out {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
    masked: bool,
}

impl Out {
    fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Self {
        Self {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            masked: true,
        }
    }

    fn fin(mut self, fin: bool) -> Self {
        self.fin = fin;
        self
    }

    fn bytes(&self) -> Vec<u8> {
        let mut out = vec![(u8::from(self.fin) << 7) | (self.rsv << 4) | self.opcode];
        let mask_bit = if self.masked { 0x80 } else { 0 };
        let n = self.payload.len();
        if n < 126 {
            out.push(mask_bit | n as u8);
        } else if n < 65536 {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
        if self.masked {
            let key = [0x37u8, 0xfa, 0x21, 0x3d];
            out.extend_from_slice(&key);
            out.extend(self.payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        } else {
            out.extend_from_slice(&self.payload);
        }
        out
    }
}

/// A frame as the server sent it.
#[derive(Debug, PartialEq)]
struct In {
    fin: bool,
    opcode: u8,
    payload: Vec<u8>,
}

struct Peer {
    stream: TcpStream,
}

impl Peer {
    async fn connect(addr: SocketAddr, channel: &str) -> Self {
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET /sub/{channel} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        );
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut head = Vec::new();
        while !head.ends_with(b"\r\n\r\n") {
            let mut byte = [0u8; 1];
            within("the handshake", stream.read_exact(&mut byte))
                .await
                .unwrap();
            head.push(byte[0]);
        }
        let head = String::from_utf8_lossy(&head);
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        // RFC 6455 §1.3's example key has this accept value.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        Self { stream }
    }

    async fn send(&mut self, frame: Out) {
        self.stream.write_all(&frame.bytes()).await.unwrap();
    }

    /// The next frame, or `None` if the server closed the TCP connection.
    async fn recv(&mut self) -> Option<In> {
        let mut head = [0u8; 2];
        if within("a frame", self.stream.read_exact(&mut head))
            .await
            .is_err()
        {
            return None;
        }
        assert_eq!(head[1] & 0x80, 0, "server frames must not be masked");
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            self.stream.read_exact(&mut ext).await.unwrap();
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            self.stream.read_exact(&mut ext).await.unwrap();
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; len as usize];
        self.stream.read_exact(&mut payload).await.unwrap();
        Some(In {
            fin: head[0] & 0x80 != 0,
            opcode: head[0] & 0x0f,
            payload,
        })
    }

    /// The next data or control frame other than a server ping.
    async fn recv_skipping_pings(&mut self) -> Option<In> {
        loop {
            let frame = self.recv().await?;
            if frame.opcode != PING {
                return Some(frame);
            }
        }
    }

    /// Expects a close frame with `code`, the server failing the connection.
    async fn expect_close(&mut self, code: u16, case: &str) {
        let frame = self
            .recv_skipping_pings()
            .await
            .unwrap_or_else(|| panic!("{case}: closed without a close frame"));
        assert_eq!(
            frame.opcode, CLOSE,
            "{case}: expected a close frame, got {frame:?}"
        );
        assert!(
            frame.payload.len() >= 2,
            "{case}: close frame without a code"
        );
        assert_eq!(
            u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
            code,
            "{case}"
        );
    }

    /// Expects the echo of a whole message.
    async fn expect_message(&mut self, opcode: u8, payload: &[u8], case: &str) {
        let mut got = Vec::new();
        let first = self
            .recv_skipping_pings()
            .await
            .unwrap_or_else(|| panic!("{case}: connection closed"));
        assert_eq!(first.opcode, opcode, "{case}");
        got.extend_from_slice(&first.payload);
        let mut fin = first.fin;
        while !fin {
            let next = self.recv_skipping_pings().await.unwrap();
            assert_eq!(next.opcode, CONTINUATION, "{case}");
            got.extend_from_slice(&next.payload);
            fin = next.fin;
        }
        assert_eq!(got.len(), payload.len(), "{case}: length");
        assert!(got == payload, "{case}: payload differs");
    }
}

/// The endpoint under test: herald, or (to validate this test itself) any
/// WebSocket echo server named by `WS_CONFORMANCE_TARGET=host:port`.
struct Target {
    addr: SocketAddr,
    herald: bool,
    _server: Option<herald::http::RunningServer>,
}

async fn echo_server() -> Target {
    if let Ok(other) = std::env::var("WS_CONFORMANCE_TARGET") {
        return Target {
            addr: other.parse().expect("host:port"),
            herald: false,
            _server: None,
        };
    }
    let server = common::start(|c| c.max_message_size = 2 * 1024 * 1024).await;
    Target {
        addr: server.addr,
        herald: true,
        _server: Some(server),
    }
}

#[tokio::test]
async fn section_1_text_and_binary_echo_at_every_length_class() {
    let server = echo_server().await;
    for (i, len) in [0usize, 125, 126, 127, 65535, 65536, 1 << 20]
        .into_iter()
        .enumerate()
    {
        let mut peer = Peer::connect(server.addr, &format!("s1-{i}")).await;
        let text = "*".repeat(len);
        peer.send(Out::new(TEXT, text.as_bytes())).await;
        peer.expect_message(TEXT, text.as_bytes(), &format!("1.1 text of {len}"))
            .await;
        let binary: Vec<u8> = (0..len).map(|n| (n % 251) as u8 | 0x80).collect();
        peer.send(Out::new(BINARY, binary.clone())).await;
        // herald frames data by content (text when it is UTF-8): an empty
        // payload is valid UTF-8, so it comes back as an empty text frame.
        let opcode = if len == 0 && server.herald {
            TEXT
        } else {
            BINARY
        };
        peer.expect_message(opcode, &binary, &format!("1.2 binary of {len}"))
            .await;
    }
}

#[tokio::test]
async fn section_2_pings_and_pongs() {
    let server = echo_server().await;
    let mut peer = Peer::connect(server.addr, "s2").await;
    peer.send(Out::new(PING, b"hello ping".to_vec())).await;
    let pong = peer.recv_skipping_pings().await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"hello ping"[..]),
        "2.2"
    );
    peer.send(Out::new(PING, vec![0xfe; 125])).await;
    let pong = peer.recv_skipping_pings().await.unwrap();
    assert_eq!((pong.opcode, pong.payload.len()), (PONG, 125), "2.4");
    peer.send(Out::new(PONG, b"unsolicited".to_vec())).await;
    peer.send(Out::new(TEXT, b"after pong".to_vec())).await;
    peer.expect_message(TEXT, b"after pong", "2.7 an unsolicited pong is ignored")
        .await;

    let mut peer = Peer::connect(server.addr, "s2b").await;
    peer.send(Out::new(PING, vec![0; 126])).await;
    peer.expect_close(1002, "2.5 a ping over 125 bytes").await;
}

#[tokio::test]
async fn section_3_reserved_bits_fail_the_connection() {
    let server = echo_server().await;
    for rsv in 1..=7u8 {
        let mut peer = Peer::connect(server.addr, &format!("s3-{rsv}")).await;
        let mut frame = Out::new(TEXT, b"reserved".to_vec());
        frame.rsv = rsv;
        peer.send(frame).await;
        peer.expect_close(1002, &format!("3 rsv={rsv}")).await;
    }
}

#[tokio::test]
async fn section_4_reserved_opcodes_fail_the_connection() {
    let server = echo_server().await;
    for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
        let mut peer = Peer::connect(server.addr, &format!("s4-{opcode}")).await;
        peer.send(Out::new(opcode, b"x".to_vec())).await;
        peer.expect_close(1002, &format!("4 opcode {opcode}")).await;
    }
}

#[tokio::test]
async fn section_5_fragmentation() {
    let server = echo_server().await;
    let mut peer = Peer::connect(server.addr, "s5-ok").await;
    peer.send(Out::new(TEXT, b"frag".to_vec()).fin(false)).await;
    peer.send(Out::new(CONTINUATION, b"ment".to_vec()).fin(false))
        .await;
    peer.send(Out::new(PING, b"between".to_vec())).await;
    peer.send(Out::new(CONTINUATION, b"ed".to_vec())).await;
    let pong = peer.recv_skipping_pings().await.unwrap();
    assert_eq!(
        (pong.opcode, pong.payload.as_slice()),
        (PONG, &b"between"[..]),
        "5.6 ping between fragments"
    );
    peer.expect_message(TEXT, b"fragmented", "5.3 reassembly")
        .await;

    let cases: Vec<(&str, Vec<Out>)> = vec![
        (
            "5.1 a fragmented ping",
            vec![
                Out::new(PING, b"a".to_vec()).fin(false),
                Out::new(CONTINUATION, b"b".to_vec()),
            ],
        ),
        (
            "5.2 a fragmented pong",
            vec![
                Out::new(PONG, b"a".to_vec()).fin(false),
                Out::new(CONTINUATION, b"b".to_vec()),
            ],
        ),
        (
            "5.9 continuation without a start",
            vec![Out::new(CONTINUATION, b"orphan".to_vec())],
        ),
        (
            "5.18 a new message inside a fragmented one",
            vec![
                Out::new(TEXT, b"one".to_vec()).fin(false),
                Out::new(TEXT, b"two".to_vec()),
            ],
        ),
    ];
    for (i, (case, frames)) in cases.into_iter().enumerate() {
        let mut peer = Peer::connect(server.addr, &format!("s5-{i}")).await;
        for frame in frames {
            peer.send(frame).await;
        }
        peer.expect_close(1002, case).await;
    }
}

#[tokio::test]
async fn section_6_utf8_handling() {
    let server = echo_server().await;
    let mut peer = Peer::connect(server.addr, "s6-ok").await;
    let valid = "κόσμε 服务器 🚀".as_bytes().to_vec();
    peer.send(Out::new(TEXT, valid.clone())).await;
    peer.expect_message(TEXT, &valid, "6.2 valid multi-byte text")
        .await;
    // A valid code point split across fragments is still valid.
    let (a, b) = valid.split_at(8);
    peer.send(Out::new(TEXT, a.to_vec()).fin(false)).await;
    peer.send(Out::new(CONTINUATION, b.to_vec())).await;
    peer.expect_message(TEXT, &valid, "6.3 a code point split across fragments")
        .await;

    let invalid: Vec<(&str, Vec<Out>)> = vec![
        (
            "6.3 invalid bytes",
            vec![Out::new(
                TEXT,
                vec![
                    0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed, 0xa0,
                    0x80, 0x65,
                ],
            )],
        ),
        (
            "6.4 invalid in a later fragment",
            vec![
                Out::new(TEXT, b"fine".to_vec()).fin(false),
                Out::new(CONTINUATION, vec![0xff, 0xfe]),
            ],
        ),
        (
            "6.6 truncated sequence",
            vec![Out::new(TEXT, vec![0x61, 0xe2, 0x82])],
        ),
    ];
    for (i, (case, frames)) in invalid.into_iter().enumerate() {
        let mut peer = Peer::connect(server.addr, &format!("s6-{i}")).await;
        for frame in frames {
            peer.send(frame).await;
        }
        peer.expect_close(1007, case).await;
    }
}

#[tokio::test]
async fn section_7_close_handling() {
    let server = echo_server().await;
    let mut peer = Peer::connect(server.addr, "s7-ok").await;
    peer.send(Out::new(CLOSE, 1000u16.to_be_bytes().to_vec()))
        .await;
    peer.expect_close(1000, "7.1 a normal close is answered")
        .await;

    let mut peer = Peer::connect(server.addr, "s7-empty").await;
    peer.send(Out::new(CLOSE, Vec::new())).await;
    let frame = peer.recv().await.expect("7.3 an empty close is answered");
    assert_eq!(frame.opcode, CLOSE);

    let mut peer = Peer::connect(server.addr, "s7-one").await;
    peer.send(Out::new(CLOSE, vec![0x03])).await;
    peer.expect_close(1002, "7.3.2 a 1-byte close payload")
        .await;

    for code in [0u16, 999, 1004, 1005, 1006, 1016, 2999, 5000] {
        let mut peer = Peer::connect(server.addr, &format!("s7-{code}")).await;
        peer.send(Out::new(CLOSE, code.to_be_bytes().to_vec()))
            .await;
        peer.expect_close(1002, &format!("7.9 invalid close code {code}"))
            .await;
    }

    let mut peer = Peer::connect(server.addr, "s7-utf8").await;
    let mut payload = 1000u16.to_be_bytes().to_vec();
    payload.extend_from_slice(&[0xff, 0xfe]);
    peer.send(Out::new(CLOSE, payload)).await;
    let frame = peer.recv().await.expect("a close frame");
    assert_eq!(frame.opcode, CLOSE);
    let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
    assert!(
        code == 1002 || code == 1007,
        "7.5 invalid UTF-8 in the reason fails, got {code}"
    );
}

#[tokio::test]
async fn an_unmasked_client_frame_fails_the_connection() {
    let server = echo_server().await;
    let mut peer = Peer::connect(server.addr, "unmasked").await;
    let mut frame = Out::new(TEXT, b"naked".to_vec());
    frame.masked = false;
    peer.send(frame).await;
    peer.expect_close(1002, "unmasked").await;
}

#[tokio::test]
async fn the_server_pings_and_closes_a_client_that_stops_answering() {
    let server = common::start(|c| {
        c.ws_ping_interval = std::time::Duration::from_millis(100);
        c.ws_pong_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    let mut peer = Peer::connect(server.addr, "heartbeat").await;
    // Answered pings keep the connection open, and data still flows between them.
    let (mut pings, mut echoes) = (0, 0);
    peer.send(Out::new(TEXT, b"echo 0".to_vec())).await;
    while pings < 3 || echoes < 3 {
        let frame = peer.recv().await.expect("the connection to stay open");
        match frame.opcode {
            PING => {
                pings += 1;
                peer.send(Out::new(PONG, frame.payload)).await;
            }
            TEXT => {
                assert_eq!(frame.payload, format!("echo {echoes}").into_bytes());
                echoes += 1;
                if echoes < 3 {
                    peer.send(Out::new(TEXT, format!("echo {echoes}").into_bytes()))
                        .await;
                }
            }
            _ => panic!("unexpected {frame:?}"),
        }
    }
    // Then silence: the next ping goes unanswered and the server gives up.
    let close = peer.recv_skipping_pings().await.expect("a close frame");
    assert_eq!(close.opcode, CLOSE, "{close:?}");
    assert_eq!(
        u16::from_be_bytes([close.payload[0], close.payload[1]]),
        1001
    );
}
