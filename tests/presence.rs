//! Presence with join/leave (DESIGN.md §8) on one node, every transport:
//! `GET /pub/{channel}/presence` lists each subscription with its client,
//! user (JWT `sub`), info (claim `herald.info`) and transport; a channel
//! without presence answers 404 `presence_off`; `/ws` and SSE subscribers
//! get `join`/`leave` (never their own, never in history, no id), raw
//! WebSocket and long-poll subscribers get none; a long poller stays
//! present while it keeps polling and leaves after its poll timeout plus
//! 5 s; the `/ws` `presence` op answers to a client allowed to subscribe.

mod common;

use std::time::Duration;

use common::*;
use herald::hub::ChannelRule;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "presence-test-secret";
const KEY: &str = "presence-test-key";

fn token(sub: &str, info: Value) -> String {
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 3600;
    encode(
        &Header::default(),
        &json!({"sub": sub, "exp": exp, "herald": {"subscribe": ["*"], "publish": ["*"], "info": info}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn rules() -> Vec<ChannelRule> {
    vec![
        ChannelRule {
            pattern: "room.*".into(),
            presence: Some(true),
            join_leave: Some(true),
            ..ChannelRule::default()
        },
        ChannelRule {
            pattern: "quiet.*".into(),
            presence: Some(true),
            ..ChannelRule::default()
        },
    ]
}

async fn presence_of(addr: std::net::SocketAddr, channel: &str) -> (u16, Value) {
    let response = reqwest::Client::new()
        .get(url(addr, &format!("/pub/{channel}/presence")))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    (response.status().as_u16(), response.json().await.unwrap())
}

/// Waits until the channel's presence has `count` clients, and returns it.
async fn presence_count(addr: std::net::SocketAddr, channel: &str, count: u64) -> Value {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (status, body) = presence_of(addr, channel).await;
        assert_eq!(status, 200, "{body}");
        if body["count"] == count {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "presence of {channel} never reached {count}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The next `/ws` frame that is not a message (`msg`), as JSON.
async fn next_op(socket: &mut Socket, op: &str) -> Value {
    loop {
        let frame = next_json(socket).await;
        if frame["op"] == op {
            return frame;
        }
    }
}

#[tokio::test]
async fn presence_lists_every_transport_and_tells_joins_and_leaves() {
    let server = start(|c| {
        c.channel_rules = rules();
        c.auth.jwt = Some(herald::auth::JwtKey::secret(SECRET));
        c.auth.publish_key = Some(KEY.into());
        c.poll_timeout = Duration::from_millis(500);
    })
    .await;
    let addr = server.addr;

    // No presence: 404 with its own code; an unused presence channel is empty.
    let (status, body) = presence_of(addr, "news").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "presence_off");
    let (status, body) = presence_of(addr, "room.a").await;
    assert_eq!((status, body["count"].clone()), (200, json!(0)));
    // Guarded like /pub.
    let anonymous = reqwest::get(url(addr, "/pub/room.a/presence"))
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);

    // 1. SSE as ann, with info.
    let ann = token("ann", json!({"name": "Ann"}));
    let mut sse = Sse::open(addr, &format!("/sub/room.a?token={ann}"), &[]).await;
    let first = presence_count(addr, "room.a", 1).await;
    assert_eq!(first["clients"][0]["user"], "ann");
    assert_eq!(first["clients"][0]["info"], json!({"name": "Ann"}));
    assert_eq!(first["clients"][0]["transport"], "sse");
    let ann_client = first["clients"][0]["client"].as_str().unwrap().to_owned();

    // 2. /ws as bob: ann hears the join; bob does not hear his own.
    let bob = token("bob", Value::Null);
    let mut ws = websocket(addr, &format!("/ws?token={bob}")).await;
    let ok = ws_sub(&mut ws, "room.a", None).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let join = loop {
        let event = sse.next().await.expect("the stream is open");
        if event.event == "herald.join" {
            break event;
        }
    };
    // (No `id:` line: the parser reports the stream's last id, unchanged.)
    assert!(
        join.id.ends_with("-0"),
        "the last event id is still the start: {}",
        join.id
    );
    let join: Value = serde_json::from_str(&join.data).unwrap();
    assert_eq!(join["op"], "join");
    assert_eq!(join["channel"], "room.a");
    assert_eq!(join["user"], "bob");
    let bob_client = join["client"].as_str().unwrap().to_owned();
    assert_ne!(bob_client, ann_client);

    // The /ws presence op.
    send_json(
        &mut ws,
        json!({"op": "presence", "channel": "room.a", "ref": 9}),
    )
    .await;
    let answer = next_op(&mut ws, "ok").await;
    assert_eq!(answer["ref"], 9);
    assert_eq!(answer["presence"]["count"], 2);
    assert_eq!(answer["presence"]["users"], 2);
    send_json(
        &mut ws,
        json!({"op": "presence", "channel": "news", "ref": 10}),
    )
    .await;
    let refused = next_op(&mut ws, "error").await;
    assert_eq!(refused["error"]["code"], "presence_off");

    // 3. A raw WebSocket as carl: both hear the join; its own stream carries messages only.
    let carl = token("carl", Value::Null);
    let mut raw = websocket(addr, &format!("/sub/room.a?token={carl}")).await;
    let join = next_op(&mut ws, "join").await;
    assert_eq!(join["user"], "carl");
    let carl_client = join["client"].as_str().unwrap().to_owned();
    let event = sse.next().await.unwrap();
    assert_eq!(event.event, "herald.join");
    let listing = presence_count(addr, "room.a", 3).await;
    let transports: Vec<&str> = listing["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["transport"].as_str().unwrap())
        .collect();
    for transport in ["sse", "ws-protocol", "ws"] {
        assert!(transports.contains(&transport), "{listing}");
    }

    // A message after the joins: every subscriber gets it, and history holds
    // only the message (joins are not stored).
    let published = reqwest::Client::new()
        .post(url(addr, "/pub/room.a"))
        .bearer_auth(KEY)
        .body("hello")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    assert_eq!(next_frame(&mut raw).await, Message::text("hello"));
    let msg = next_op(&mut ws, "msg").await;
    assert_eq!(msg["data"], "hello");
    let (_, info) = get_json(addr, &format!("/pub/room.a?token={KEY}")).await;
    assert_eq!(info["messages"], 1, "{info}");

    // 4. carl leaves: ann and bob hear it, and presence drops to 2.
    raw.close(None).await.unwrap();
    drop(raw);
    let leave = next_op(&mut ws, "leave").await;
    assert_eq!(leave["client"], carl_client.as_str());
    assert_eq!(leave["user"], "carl");
    let leave = loop {
        let event = sse.next().await.unwrap();
        if event.event == "herald.leave" {
            break event;
        }
        assert_eq!(event.event, "message", "only messages and presence events");
    };
    let leave: Value = serde_json::from_str(&leave.data).unwrap();
    assert_eq!(leave["client"], carl_client.as_str());
    presence_count(addr, "room.a", 2).await;

    // 5. A long poller with its own client id stays present between polls
    // and leaves after its poll timeout plus 5 s.
    let dora = token("dora", Value::Null);
    let path = format!("/sub/room.a?client=dora-1&timeout=200ms&token={dora}");
    poll(addr, &path).await;
    let join = next_op(&mut ws, "join").await;
    assert_eq!(join["client"], "p.dora-1");
    assert_eq!(join["user"], "dora");
    poll(addr, &path).await;
    poll(addr, &path).await;
    let listing = presence_count(addr, "room.a", 3).await;
    assert!(
        listing["clients"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["client"] == "p.dora-1" && c["transport"] == "poll"),
        "{listing}"
    );
    // No second join for the same poller.
    let started = std::time::Instant::now();
    let leave = loop {
        use futures_util::StreamExt;
        let frame = tokio::time::timeout(Duration::from_secs(15), ws.next())
            .await
            .expect("the poller leaves in time")
            .expect("the socket is open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        assert_ne!(frame["op"], "join", "one join per poller: {frame}");
        if frame["op"] == "leave" {
            break frame;
        }
    };
    assert_eq!(leave["client"], "p.dora-1");
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "a poller lingers for its poll timeout plus 5 s, left after {:?}",
        started.elapsed()
    );
    presence_count(addr, "room.a", 2).await;

    // 6. Channels with presence but no join_leave: listed, no events.
    let quiet = websocket(addr, &format!("/sub/quiet.x?token={carl}")).await;
    send_json(
        &mut ws,
        json!({"op": "sub", "channel": "quiet.x", "ref": 20}),
    )
    .await;
    next_op(&mut ws, "ok").await;
    presence_count(addr, "quiet.x", 2).await;
    drop(quiet);
    presence_count(addr, "quiet.x", 1).await;
    // The next /ws frame is the answer to a ping: no join or leave came.
    send_json(&mut ws, json!({"op": "ping", "ref": 21})).await;
    let pong = next_json(&mut ws).await;
    assert_eq!(pong["op"], "pong", "no join/leave on quiet.x: {pong}");

    server.shutdown();
}

#[tokio::test]
async fn anonymous_subscribers_have_a_null_user_and_count_once_per_connection() {
    let server = start(|c| c.channel_rules = rules()).await;
    let addr = server.addr;
    let _a = websocket(addr, "/sub/room.b").await;
    let _b = Sse::open(addr, "/sub/room.b", &[]).await;
    let listing = presence_count(addr, "room.b", 2).await;
    assert_eq!(listing["users"], 0);
    for client in listing["clients"].as_array().unwrap() {
        assert_eq!(client["user"], Value::Null);
        assert!(client.get("info").is_none(), "no info: {client}");
    }
    server.shutdown();
}
