//! Binary fidelity: a message keeps the kind its publisher gave it (a
//! WebSocket frame's opcode, a POST's `Content-Type`, a batch item's
//! `encoding`) through history, on every engine (memory, durable, Redis; the
//! durable one across a restart, Redis through another node), and on every
//! transport: a binary frame on a raw WebSocket, `"encoding": "base64"` on
//! long poll, `/ws` and enveloped SSE, an `encoding: base64` line on plain
//! SSE. Bytes that happen to be valid UTF-8 stay binary, and so does the
//! empty payload.

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::net::SocketAddr;

use base64::Engine as _;
use common::*;
use futures_util::SinkExt;
use herald::engine::redis::RedisConfig;
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

/// What every subscriber must see, in order: `(binary, bytes)`.
fn expected() -> Vec<(bool, Vec<u8>)> {
    vec![
        (true, b"abc".to_vec()),        // binary frame on a raw WebSocket
        (true, Vec::new()),             // empty binary frame
        (false, b"typed".to_vec()),     // text frame
        (true, b"hello".to_vec()),      // POST application/octet-stream, UTF-8 bytes
        (true, vec![0, 1, 255]),        // POST application/x-protobuf
        (false, b"plain".to_vec()),     // POST text/plain
        (false, b"curl -d".to_vec()),   // POST form (what curl -d sends)
        (false, b"bare".to_vec()),      // POST with no Content-Type
        (true, b"batch".to_vec()),      // batch item with "encoding": "base64"
        (false, b"{\"a\":1}".to_vec()), // batch item with JSON data
        (true, b"ws-op".to_vec()),      // /ws pub op with "encoding": "base64"
    ]
}

fn b64(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// Publishes the [`expected`] messages to `channel` through every way in.
async fn publish_every_kind(addr: SocketAddr, channel: &str, raw: &mut Socket, ws: &mut Socket) {
    raw.send(Message::binary(b"abc".to_vec())).await.unwrap();
    raw.send(Message::binary(Vec::new())).await.unwrap();
    raw.send(Message::text("typed")).await.unwrap();
    // The raw publisher hears its own messages: read them before the HTTP
    // publishes so that the order of arrival is the order of publishing.
    for (binary, bytes) in &expected()[..3] {
        check_raw_frame(next_frame(raw).await, *binary, bytes, "raw publisher's own");
    }
    let http = reqwest::Client::new();
    let post = |content_type: Option<&'static str>, body: Vec<u8>| {
        let mut request = http.post(url(addr, &format!("/pub/{channel}"))).body(body);
        if let Some(content_type) = content_type {
            request = request.header("content-type", content_type);
        }
        request.send()
    };
    for (content_type, body) in [
        (Some("application/octet-stream"), b"hello".to_vec()),
        (Some("application/x-protobuf"), vec![0, 1, 255]),
        (Some("text/plain; charset=utf-8"), b"plain".to_vec()),
        (
            Some("application/x-www-form-urlencoded"),
            b"curl -d".to_vec(),
        ),
        (None, b"bare".to_vec()),
    ] {
        let response = within("a publish", post(content_type, body)).await.unwrap();
        assert_eq!(response.status(), 200, "{content_type:?}");
    }
    let batch = json!([
        {"channel": channel, "data": b64(b"batch"), "encoding": "base64"},
        {"channel": channel, "data": {"a": 1}},
    ]);
    let response = within(
        "a batch publish",
        http.post(url(addr, "/pub")).json(&batch).send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    send_json(
        ws,
        json!({"op": "pub", "channel": channel, "data": b64(b"ws-op"), "encoding": "base64", "ref": "p"}),
    )
    .await;
}

fn check_raw_frame(frame: Message, binary: bool, bytes: &[u8], what: &str) {
    match (frame, binary) {
        (Message::Binary(got), true) => assert_eq!(&got[..], bytes, "{what}"),
        (Message::Text(got), false) => assert_eq!(got.as_bytes(), bytes, "{what}"),
        (other, _) => panic!("{what}: expected binary={binary} {bytes:?}, got {other:?}"),
    }
}

/// A JSON message object (poll, `/ws`, envelope) against one expected message.
fn check_json(m: &Value, binary: bool, bytes: &[u8], what: &str) {
    if binary {
        assert_eq!(m["encoding"], "base64", "{what}: {m}");
        assert_eq!(m["data"], json!(b64(bytes)), "{what}: {m}");
    } else {
        assert!(m.get("encoding").is_none(), "{what}: {m}");
        assert_eq!(m["data"].as_str().unwrap().as_bytes(), bytes, "{what}: {m}");
    }
}

/// The `/ws` socket's next `count` `msg` frames, skipping the `ok` answer to
/// its own publish.
async fn ws_messages(socket: &mut Socket, count: usize) -> Vec<Value> {
    let mut out = Vec::new();
    while out.len() < count {
        let frame = next_json(socket).await;
        match frame["op"].as_str() {
            Some("msg") => out.push(frame),
            Some("ok") => {}
            _ => panic!("unexpected /ws frame {frame}"),
        }
    }
    out
}

/// The events of a plain SSE body read raw (an SSE parser would hide the
/// `encoding:` field): `(data, marked base64)` per event with data.
fn plain_events(body: &str) -> Vec<(String, bool)> {
    body.split("\n\n")
        .filter(|event| event.lines().any(|l| l.starts_with("data:")))
        .map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:")))
                .collect();
            let marked = event.lines().any(|l| l == "encoding: base64");
            (data.join("\n"), marked)
        })
        .collect()
}

/// Subscribes on every transport of `sub` (which may be another node than
/// `publish`), publishes every kind on `publish`, and checks each transport.
async fn every_transport_keeps_the_kind(publish: SocketAddr, sub: SocketAddr, channel: &str) {
    let count = expected().len();
    let mut raw_publisher = websocket(publish, &format!("/sub/{channel}")).await;
    let mut raw = websocket(sub, &format!("/sub/{channel}")).await;
    let mut ws = websocket(sub, "/ws").await;
    ws_sub(&mut ws, channel, None).await;
    let mut envelope = Sse::open(sub, &format!("/sub/{channel}?envelope=1"), &[]).await;
    let mut plain = reqwest::Client::new()
        .get(url(sub, &format!("/sub/{channel}")))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    // The raw publisher, when on `sub`, is one more subscriber there.
    let on_sub = 4 + u64::from(publish == sub);
    wait_for_exact_subscribers(sub, channel, on_sub).await;
    if publish != sub {
        wait_for_exact_subscribers(publish, channel, 1).await;
    }
    let mut ws_publisher = websocket(publish, "/ws").await;
    publish_every_kind(publish, channel, &mut raw_publisher, &mut ws_publisher).await;

    let want = expected();
    for (n, (binary, bytes)) in want.iter().enumerate() {
        let what = format!("raw WebSocket, message {n}");
        check_raw_frame(next_frame(&mut raw).await, *binary, bytes, &what);
    }
    for (n, m) in ws_messages(&mut ws, count).await.iter().enumerate() {
        check_json(m, want[n].0, &want[n].1, &format!("/ws, message {n}"));
    }
    for (n, event) in envelope.messages(count).await.iter().enumerate() {
        let m: Value = serde_json::from_str(&event.data).unwrap();
        check_json(
            &m,
            want[n].0,
            &want[n].1,
            &format!("SSE envelope, message {n}"),
        );
    }
    // The last message's data, as plain SSE writes it, ends the read.
    let raw_body = read_until(&mut plain, &format!("data: {}\n\n", b64(b"ws-op"))).await;
    let events = plain_events(&raw_body);
    assert_eq!(events.len(), count, "{raw_body}");
    for (n, ((data, marked), (binary, bytes))) in events.iter().zip(&want).enumerate() {
        assert_eq!(marked, binary, "plain SSE message {n}: {raw_body}");
        let shown = if *binary {
            b64(bytes)
        } else {
            String::from_utf8(bytes.clone()).unwrap()
        };
        assert_eq!(data, &shown, "plain SSE message {n}");
    }
    check_history(sub, channel).await;
}

/// History (a long poll from the start) keeps every message's kind.
async fn check_history(addr: SocketAddr, channel: &str) {
    let want = expected();
    let page = poll(addr, &format!("/sub/{channel}?since=0")).await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), want.len(), "{page}");
    for (n, (m, (binary, bytes))) in messages.iter().zip(&want).enumerate() {
        check_json(
            m,
            *binary,
            bytes,
            &format!("long poll from history, message {n}"),
        );
    }
}

#[tokio::test]
async fn the_memory_engine_keeps_each_message_kind_on_every_transport() {
    let server = server().await;
    every_transport_keeps_the_kind(server.addr, server.addr, "bin").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_durable_engine_keeps_each_message_kind_across_kill_9() {
    let dir = std::env::temp_dir().join(format!("herald-binary-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let data_dir = dir.to_str().unwrap();
    let mut node = cluster::Node::serve("durable", &["--data-dir", data_dir]).await;
    every_transport_keeps_the_kind(node.addr, node.addr, "bin").await;
    node.kill().await;
    let again = cluster::Node::serve("durable again", &["--data-dir", data_dir]).await;
    check_history(again.addr, "bin").await;
    drop(again);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_engine_keeps_each_message_kind_across_nodes() {
    let redis = cluster::RedisServer::start().await;
    let node = || {
        let url = redis.url();
        start(move |c| {
            c.redis = Some(RedisConfig {
                urls: vec![url],
                cluster: false,
                prefix: "herald".into(),
                ..RedisConfig::default()
            })
        })
    };
    let (a, b) = (node().await, node().await);
    // Published on a, delivered live on b through Pub/Sub, read back from
    // the Stream by b's long poll.
    every_transport_keeps_the_kind(a.addr, b.addr, "bin").await;
    // A third node that never saw the channel reads it from the Stream.
    let c = node().await;
    check_history(c.addr, "bin").await;
}
