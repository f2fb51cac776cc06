//! RFC 6455 conformance in raw frames over a plain TCP socket, in the spirit
//! of Autobahn's sections 1-7, against each of herald's WebSocket endpoints
//! (one implementation, `src/transport/websocket/`, serves them all):
//!
//! - the raw WebSocket on `/sub/{channel}`: a lone raw subscriber gets its
//!   own frames back, so it acts as an echo server;
//! - the `/ws` JSON protocol: a message is a `ping` op whose `ref` carries
//!   the payload, answered by a `pong` with the same `ref`;
//! - the demo echo on `/demo/ws`: a message comes back as text, prefixed.

mod common;

use std::net::SocketAddr;

use common::within;
use serde_json::{json, Value};
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
    endpoint: Endpoint,
}

impl Peer {
    async fn connect(target: &Target, channel: &str) -> Self {
        let addr = target.addr;
        let path = target.endpoint.path(channel);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        let request = format!(
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
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
        assert!(head.starts_with("HTTP/1.1 101"), "{path}: {head}");
        // RFC 6455 §1.3's example key has this accept value.
        assert!(head.contains("s3pPLMBiTxaQ9kYGzzhZRbK+xOo="), "{head}");
        Self {
            stream,
            endpoint: target.endpoint,
        }
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

    /// Sends `body` as one message the endpoint answers.
    async fn send_message(&mut self, opcode: u8, body: &[u8]) {
        let payload = self.endpoint.message(opcode, body);
        self.send(Out::new(opcode, payload)).await;
    }

    /// Expects the endpoint's answer to a message carrying `body`.
    async fn expect_answer(&mut self, opcode: u8, body: &[u8], case: &str) {
        let case = &format!("{case} ({})", self.endpoint.name());
        match self.endpoint {
            Endpoint::Raw => {
                // A message keeps the kind it was published with: a binary
                // frame comes back binary, even empty or valid UTF-8.
                self.expect_message(opcode, body, case).await
            }
            Endpoint::Echo => {
                let reply = format!("{ECHO_PREFIX}{}", String::from_utf8_lossy(body));
                self.expect_message(TEXT, reply.as_bytes(), case).await
            }
            Endpoint::Protocol => {
                let answer = self.recv_message(case).await;
                assert_eq!(answer.0, TEXT, "{case}");
                let answer: Value = serde_json::from_slice(&answer.1).expect("a JSON answer");
                if opcode == BINARY {
                    assert_eq!(answer["op"], "error", "{case}");
                    assert_eq!(answer["error"]["code"], "bad_frame", "{case}");
                } else {
                    let body = std::str::from_utf8(body).expect("a text body");
                    assert_eq!(answer, json!({"op": "pong", "ref": body}), "{case}");
                }
            }
        }
    }

    /// The next whole message (reassembled), skipping server pings.
    async fn recv_message(&mut self, case: &str) -> (u8, Vec<u8>) {
        let mut got = Vec::new();
        let first = self
            .recv_skipping_pings()
            .await
            .unwrap_or_else(|| panic!("{case}: connection closed"));
        got.extend_from_slice(&first.payload);
        let mut fin = first.fin;
        while !fin {
            let next = self.recv_skipping_pings().await.unwrap();
            assert_eq!(next.opcode, CONTINUATION, "{case}");
            got.extend_from_slice(&next.payload);
            fin = next.fin;
        }
        (first.opcode, got)
    }

    /// Expects a whole message exactly.
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

/// One of herald's WebSocket endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Endpoint {
    /// `/sub/{channel}`, which echoes what a lone subscriber sends.
    Raw,
    /// `/ws`, answering a `ping` op with a `pong` carrying its `ref`.
    Protocol,
    /// `/demo/ws`, answering with `服务器回应:` and the message.
    Echo,
}

const ECHO_PREFIX: &str = "服务器回应:";

impl Endpoint {
    fn name(self) -> &'static str {
        match self {
            Endpoint::Raw => "/sub",
            Endpoint::Protocol => "/ws",
            Endpoint::Echo => "/demo/ws",
        }
    }

    fn path(self, channel: &str) -> String {
        match self {
            Endpoint::Raw => format!("/sub/{channel}"),
            Endpoint::Protocol => "/ws".into(),
            Endpoint::Echo => "/demo/ws".into(),
        }
    }

    /// The exact text answer to a text message carrying `body` (not for `/sub`,
    /// whose answer is `body` itself).
    fn answer(self, body: &[u8]) -> Vec<u8> {
        let body = std::str::from_utf8(body).expect("a text body");
        match self {
            Endpoint::Raw => body.as_bytes().to_vec(),
            Endpoint::Protocol => json!({"op": "pong", "ref": body}).to_string().into_bytes(),
            Endpoint::Echo => format!("{ECHO_PREFIX}{body}").into_bytes(),
        }
    }

    /// The payload of a message carrying `body`: the body itself, or for
    /// `/ws` text a `ping` op with the body as its `ref`.
    fn message(self, opcode: u8, body: &[u8]) -> Vec<u8> {
        match (self, opcode) {
            (Endpoint::Protocol, TEXT) => {
                let body = std::str::from_utf8(body).expect("a text body");
                json!({"op": "ping", "ref": body}).to_string().into_bytes()
            }
            _ => body.to_vec(),
        }
    }
}

/// The endpoint under test: herald, or (to validate this test itself) any
/// WebSocket echo server named by `WS_CONFORMANCE_TARGET=host:port`.
struct Target {
    addr: SocketAddr,
    endpoint: Endpoint,
    herald: bool,
}

/// A server and the endpoints to run each case against.
struct Targets {
    targets: Vec<Target>,
    _server: Option<herald::http::RunningServer>,
}

async fn echo_servers() -> Targets {
    if let Ok(other) = std::env::var("WS_CONFORMANCE_TARGET") {
        let target = Target {
            addr: other.parse().expect("host:port"),
            endpoint: Endpoint::Raw,
            herald: false,
        };
        return Targets {
            targets: vec![target],
            _server: None,
        };
    }
    let server = common::start(|c| {
        c.max_message_size = 2 * 1024 * 1024;
        c.demo = true;
    })
    .await;
    let targets = [Endpoint::Raw, Endpoint::Protocol, Endpoint::Echo]
        .into_iter()
        .map(|endpoint| Target {
            addr: server.addr,
            endpoint,
            herald: true,
        })
        .collect();
    Targets {
        targets,
        _server: Some(server),
    }
}

#[tokio::test]
async fn section_1_text_and_binary_echo_at_every_length_class() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        for (i, len) in [0usize, 125, 126, 127, 65535, 65536, 1 << 20]
            .into_iter()
            .enumerate()
        {
            let mut peer = Peer::connect(target, &format!("s1-{i}")).await;
            let text = "*".repeat(len);
            peer.send_message(TEXT, text.as_bytes()).await;
            peer.expect_answer(TEXT, text.as_bytes(), &format!("1.1 text of {len}"))
                .await;
            let binary: Vec<u8> = (0..len).map(|n| (n % 251) as u8 | 0x80).collect();
            peer.send_message(BINARY, &binary).await;
            peer.expect_answer(BINARY, &binary, &format!("1.2 binary of {len}"))
                .await;
        }
    }
}

#[tokio::test]
async fn section_2_pings_and_pongs() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        let case = |c: &str| format!("{c} ({})", target.endpoint.name());
        let mut peer = Peer::connect(target, "s2").await;
        peer.send(Out::new(PING, b"hello ping".to_vec())).await;
        let pong = peer.recv_skipping_pings().await.unwrap();
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (PONG, &b"hello ping"[..]),
            "{}",
            case("2.2")
        );
        peer.send(Out::new(PING, vec![0xfe; 125])).await;
        let pong = peer.recv_skipping_pings().await.unwrap();
        assert_eq!(
            (pong.opcode, pong.payload.len()),
            (PONG, 125),
            "{}",
            case("2.4")
        );
        peer.send(Out::new(PONG, b"unsolicited".to_vec())).await;
        peer.send_message(TEXT, b"after pong").await;
        peer.expect_answer(TEXT, b"after pong", "2.7 an unsolicited pong is ignored")
            .await;

        let mut peer = Peer::connect(target, "s2b").await;
        peer.send(Out::new(PING, vec![0; 126])).await;
        peer.expect_close(1002, &case("2.5 a ping over 125 bytes"))
            .await;
    }
}

#[tokio::test]
async fn section_3_reserved_bits_fail_the_connection() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        for rsv in 1..=7u8 {
            let mut peer = Peer::connect(target, &format!("s3-{rsv}")).await;
            let mut frame = Out::new(TEXT, target.endpoint.message(TEXT, b"reserved"));
            frame.rsv = rsv;
            peer.send(frame).await;
            peer.expect_close(1002, &format!("3 rsv={rsv} ({})", target.endpoint.name()))
                .await;
        }
    }
}

#[tokio::test]
async fn section_4_reserved_opcodes_fail_the_connection() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        for opcode in [3u8, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF] {
            let mut peer = Peer::connect(target, &format!("s4-{opcode}")).await;
            peer.send(Out::new(opcode, b"x".to_vec())).await;
            let case = format!("4 opcode {opcode} ({})", target.endpoint.name());
            peer.expect_close(1002, &case).await;
        }
    }
}

#[tokio::test]
async fn section_5_fragmentation() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        let name = target.endpoint.name();
        let mut peer = Peer::connect(target, "s5-ok").await;
        // The message split in three, whatever the endpoint wraps around it.
        let whole = target.endpoint.message(TEXT, b"fragmented");
        let (a, rest) = whole.split_at(whole.len() / 3);
        let (b, c) = rest.split_at(rest.len() / 2);
        peer.send(Out::new(TEXT, a.to_vec()).fin(false)).await;
        peer.send(Out::new(CONTINUATION, b.to_vec()).fin(false))
            .await;
        peer.send(Out::new(PING, b"between".to_vec())).await;
        peer.send(Out::new(CONTINUATION, c.to_vec())).await;
        let pong = peer.recv_skipping_pings().await.unwrap();
        assert_eq!(
            (pong.opcode, pong.payload.as_slice()),
            (PONG, &b"between"[..]),
            "5.6 ping between fragments ({name})"
        );
        peer.expect_answer(TEXT, b"fragmented", "5.3 reassembly")
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
            let mut peer = Peer::connect(target, &format!("s5-{i}")).await;
            for frame in frames {
                peer.send(frame).await;
            }
            peer.expect_close(1002, &format!("{case} ({name})")).await;
        }
    }
}

#[tokio::test]
async fn section_6_utf8_handling() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        let name = target.endpoint.name();
        let mut peer = Peer::connect(target, "s6-ok").await;
        let valid = "κόσμε 服务器 🚀";
        peer.send_message(TEXT, valid.as_bytes()).await;
        peer.expect_answer(TEXT, valid.as_bytes(), "6.2 valid multi-byte text")
            .await;
        // A valid code point split across fragments is still valid: split
        // inside the second byte of "ό", wherever it is in the message.
        let message = target.endpoint.message(TEXT, valid.as_bytes());
        let at = message
            .windows(2)
            .position(|w| w == "ό".as_bytes())
            .expect("the body is in the message")
            + 1;
        let (a, b) = message.split_at(at);
        peer.send(Out::new(TEXT, a.to_vec()).fin(false)).await;
        peer.send(Out::new(CONTINUATION, b.to_vec())).await;
        peer.expect_answer(
            TEXT,
            valid.as_bytes(),
            "6.3 a code point split across fragments",
        )
        .await;

        let invalid: Vec<(&str, Vec<Out>)> = vec![
            (
                "6.3 invalid bytes",
                vec![Out::new(
                    TEXT,
                    vec![
                        0xce, 0xba, 0xe1, 0xbd, 0xb9, 0xcf, 0x83, 0xce, 0xbc, 0xce, 0xb5, 0xed,
                        0xa0, 0x80, 0x65,
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
            let mut peer = Peer::connect(target, &format!("s6-{i}")).await;
            for frame in frames {
                peer.send(frame).await;
            }
            peer.expect_close(1007, &format!("{case} ({name})")).await;
        }
    }
}

#[tokio::test]
async fn section_7_close_handling() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        let name = target.endpoint.name();
        let mut peer = Peer::connect(target, "s7-ok").await;
        peer.send(Out::new(CLOSE, 1000u16.to_be_bytes().to_vec()))
            .await;
        peer.expect_close(1000, &format!("7.1 a normal close is answered ({name})"))
            .await;

        let mut peer = Peer::connect(target, "s7-empty").await;
        peer.send(Out::new(CLOSE, Vec::new())).await;
        let frame = peer
            .recv()
            .await
            .unwrap_or_else(|| panic!("7.3 an empty close is answered ({name})"));
        assert_eq!(frame.opcode, CLOSE, "{name}");

        let mut peer = Peer::connect(target, "s7-one").await;
        peer.send(Out::new(CLOSE, vec![0x03])).await;
        peer.expect_close(1002, &format!("7.3.2 a 1-byte close payload ({name})"))
            .await;

        for code in [0u16, 999, 1004, 1005, 1006, 1016, 2999, 5000] {
            let mut peer = Peer::connect(target, &format!("s7-{code}")).await;
            peer.send(Out::new(CLOSE, code.to_be_bytes().to_vec()))
                .await;
            peer.expect_close(1002, &format!("7.9 invalid close code {code} ({name})"))
                .await;
        }

        let mut peer = Peer::connect(target, "s7-utf8").await;
        let mut payload = 1000u16.to_be_bytes().to_vec();
        payload.extend_from_slice(&[0xff, 0xfe]);
        peer.send(Out::new(CLOSE, payload)).await;
        let frame = peer.recv().await.expect("a close frame");
        assert_eq!(frame.opcode, CLOSE, "{name}");
        let code = u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
        assert!(
            code == 1002 || code == 1007,
            "7.5 invalid UTF-8 in the reason fails, got {code} ({name})"
        );
    }
}

#[tokio::test]
async fn an_unmasked_client_frame_fails_the_connection() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        let mut peer = Peer::connect(target, "unmasked").await;
        let mut frame = Out::new(TEXT, target.endpoint.message(TEXT, b"naked"));
        frame.masked = false;
        peer.send(frame).await;
        peer.expect_close(1002, &format!("unmasked ({})", target.endpoint.name()))
            .await;
    }
}

#[tokio::test]
async fn a_message_over_the_size_limit_fails_with_1009_before_it_arrives() {
    let servers = echo_servers().await;
    for target in &servers.targets {
        let name = target.endpoint.name();
        if !target.herald {
            continue;
        }
        // A header announcing 3 MiB (the limit is 2 MiB and some room): the
        // payload is never sent, so the close can only answer the header.
        let mut peer = Peer::connect(target, "too-big").await;
        let mut header = vec![0x81, 0x80 | 127];
        header.extend_from_slice(&(3u64 << 20).to_be_bytes());
        header.extend_from_slice(&[1, 2, 3, 4]);
        peer.stream.write_all(&header).await.unwrap();
        peer.expect_close(1009, &format!("one frame over the limit ({name})"))
            .await;

        // The same size in fragments, each under the limit.
        let mut peer = Peer::connect(target, "too-big-fragments").await;
        let chunk = vec![b'x'; 1 << 20];
        peer.send(Out::new(TEXT, chunk.clone()).fin(false)).await;
        peer.send(Out::new(CONTINUATION, chunk.clone()).fin(false))
            .await;
        peer.send(Out::new(CONTINUATION, chunk)).await;
        peer.expect_close(1009, &format!("fragments over the limit ({name})"))
            .await;
    }
}

#[tokio::test]
async fn the_server_pings_and_closes_a_client_that_stops_answering() {
    let server = common::start(|c| {
        c.ws_ping_interval = std::time::Duration::from_millis(100);
        c.ws_pong_timeout = std::time::Duration::from_millis(300);
    })
    .await;
    // The demo echo sends no pings, like the seed's; the other two do.
    for endpoint in [Endpoint::Raw, Endpoint::Protocol] {
        let target = Target {
            addr: server.addr,
            endpoint,
            herald: true,
        };
        let name = endpoint.name();
        let mut peer = Peer::connect(&target, "heartbeat").await;
        // Answered pings keep the connection open, and data still flows between them.
        let (mut pings, mut echoes) = (0, 0);
        peer.send_message(TEXT, b"echo 0").await;
        while pings < 3 || echoes < 3 {
            let frame = peer.recv().await.expect("the connection to stay open");
            match frame.opcode {
                PING => {
                    pings += 1;
                    peer.send(Out::new(PONG, frame.payload)).await;
                }
                TEXT => {
                    let want = endpoint.answer(format!("echo {echoes}").as_bytes());
                    assert_eq!(frame.payload, want, "{name}");
                    echoes += 1;
                    if echoes < 3 {
                        peer.send_message(TEXT, format!("echo {echoes}").as_bytes())
                            .await;
                    }
                }
                _ => panic!("unexpected {frame:?} ({name})"),
            }
        }
        // Then silence: the next ping goes unanswered and the server gives up.
        let close = peer.recv_skipping_pings().await.expect("a close frame");
        assert_eq!(close.opcode, CLOSE, "{close:?} ({name})");
        assert_eq!(
            u16::from_be_bytes([close.payload[0], close.payload[1]]),
            1001,
            "{name}"
        );
    }
}
