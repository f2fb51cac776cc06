//! Channel options by pattern (DESIGN.md §8) against real herald processes
//! started with a TOML file: the first matching `[[channels]]` table sets a
//! channel's options and the global flags fill in the rest; `GET
//! /pub/{channel}` reports them; history limits hold on the memory, durable
//! (across kill -9) and Redis engines (trimmed in Redis, seen from another
//! node); `max_message_size` per channel; `anonymous` channels need no
//! token where every other channel does; `client_publish = false` refuses
//! publishes from WebSocket and `/ws` clients while the HTTP API still
//! publishes; `herald config check` names the line of each mistake.

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::path::PathBuf;

use cluster::{Node, RedisServer};
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{json, Value};
use tokio_tungstenite::tungstenite::Message;

const FILE: &str = r#"
history_size = 50
max_message_size = "1KiB"
jwt_secret = "channel-options-secret"
publish_key = "channel-options-key"

[[channels]]
pattern = "room.vip.*"
history_size = 3

[[channels]]
pattern = "room.*"
history_size = 2
max_message_size = 8
presence = true
join_leave = true
client_publish = false

[[channels]]
pattern = "lobby.*"
anonymous = true
history_ttl = "10m"
"#;

const KEY: &str = "channel-options-key";

/// A private directory with the configuration file (and room for data).
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("herald.toml"), FILE).unwrap();
        Self(dir)
    }

    fn config(&self) -> String {
        self.0.join("herald.toml").to_str().unwrap().to_owned()
    }

    fn data(&self) -> String {
        self.0.join("data").to_str().unwrap().to_owned()
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

async fn publish_n(node: &Node, channel: &str, count: usize) {
    let http = reqwest::Client::new();
    for n in 0..count {
        let response = within(
            "a publish",
            http.post(url(node.addr, &format!("/pub/{channel}")))
                .bearer_auth(KEY)
                .body(format!("m{n}"))
                .send(),
        )
        .await
        .unwrap();
        assert_eq!(response.status(), 200, "publish to {channel}");
    }
}

async fn info(node: &Node, channel: &str) -> Value {
    let response = within(
        "channel info",
        reqwest::Client::new()
            .get(url(node.addr, &format!("/pub/{channel}")))
            .bearer_auth(KEY)
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200, "info of {channel}");
    response.json().await.unwrap()
}

/// Each channel keeps what its first matching table (or the flags) says.
async fn check_history_limits(node: &Node) {
    for (channel, kept) in [
        ("room.vip.1", 3),
        ("room.a", 2),
        ("lobby.x", 6),
        ("news", 6),
    ] {
        let info = info(node, channel).await;
        assert_eq!(info["messages"], kept, "{channel}: {info}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn options_are_reported_and_history_limits_hold_across_kill_9() {
    let scratch = Scratch::new("options-durable");
    let args = ["--config", &scratch.config(), "--data-dir", &scratch.data()];
    let mut node = Node::serve("durable", &args).await;
    for channel in ["room.vip.1", "room.a", "lobby.x", "news"] {
        publish_n(&node, channel, 6).await;
    }
    check_history_limits(&node).await;
    let room = info(&node, "room.a").await;
    assert_eq!(
        room["options"],
        json!({
            "history_size": 2, "history_ttl": "1h", "history_bytes": 64 << 20,
            "max_message_size": 8, "presence": true, "join_leave": true,
            "client_publish": false, "anonymous": false,
        }),
        "{room}"
    );
    // The first match wins: room.vip.* sets only history_size, and the rest
    // comes from the flags, not from the room.* table below it.
    let vip = info(&node, "room.vip.1").await;
    assert_eq!(vip["options"]["history_size"], 3);
    assert_eq!(vip["options"]["presence"], false);
    assert_eq!(vip["options"]["max_message_size"], 1024);
    let lobby = info(&node, "lobby.x").await;
    assert_eq!(lobby["options"]["history_ttl"], "10m");
    assert_eq!(lobby["options"]["anonymous"], true);
    node.kill().await;
    let again = Node::serve("durable again", &args).await;
    check_history_limits(&again).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_redis_engine_trims_each_channel_to_its_own_limit() {
    let scratch = Scratch::new("options-redis");
    let redis = RedisServer::start().await;
    let args = ["--redis", &redis.url(), "--config", &scratch.config()];
    let a = Node::serve("a", &args).await;
    for channel in ["room.vip.1", "room.a", "lobby.x", "news"] {
        publish_n(&a, channel, 6).await;
    }
    check_history_limits(&a).await;
    // A node that never saw the channels reads them from Redis, trimmed there.
    let b = Node::serve("b", &args).await;
    check_history_limits(&b).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn message_size_anonymity_and_client_publishing_follow_each_channel() {
    let scratch = Scratch::new("options-memory");
    let node = Node::serve("memory", &["--config", &scratch.config()]).await;
    check_history_limits_after_publishing(&node).await;
    let http = reqwest::Client::new();
    let post = |channel: &str, body: &'static str| {
        http.post(url(node.addr, &format!("/pub/{channel}")))
            .bearer_auth(KEY)
            .body(body)
            .send()
    };
    // max_message_size: 8 bytes on room.*, 1 KiB elsewhere.
    let refused = within("a publish", post("room.a", "123456789"))
        .await
        .unwrap();
    assert_eq!(refused.status(), 413);
    let taken = within("a publish", post("news", "123456789"))
        .await
        .unwrap();
    assert_eq!(taken.status(), 200);

    // anonymous: lobby.* needs no token; news does.
    let lobby = reqwest::get(url(node.addr, "/sub/lobby.x?since=0&timeout=0"))
        .await
        .unwrap();
    assert_eq!(lobby.status(), 200);
    let news = reqwest::get(url(node.addr, "/sub/news?since=0&timeout=0"))
        .await
        .unwrap();
    assert_eq!(news.status(), 401);
    let (sse, _) = (
        reqwest::Client::new()
            .get(url(node.addr, "/sub/lobby.x"))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap(),
        (),
    );
    assert_eq!(sse.status(), 200);
    let mut ws = websocket(node.addr, "/ws").await;
    let ok = ws_sub(&mut ws, "lobby.x", None).await;
    assert_eq!(ok["op"], "ok");
    send_json(&mut ws, json!({"op": "sub", "channel": "news", "ref": "n"})).await;
    let refused = next_json(&mut ws).await;
    assert_eq!(refused["op"], "error", "{refused}");

    // client_publish = false: a /ws pub to room.a is refused with
    // `forbidden` and stores nothing, while the publish key may publish
    // over /ws to a channel that takes client publishes.
    let mut ws = websocket(node.addr, &format!("/ws?token={KEY}")).await;
    send_json(
        &mut ws,
        json!({"op": "pub", "channel": "room.a", "data": "x", "ref": 1}),
    )
    .await;
    let answer = next_json(&mut ws).await;
    assert_eq!(
        (&answer["op"], &answer["error"]["code"]),
        (&json!("error"), &json!("forbidden")),
        "{answer}"
    );
    send_json(
        &mut ws,
        json!({"op": "pub", "channel": "news", "data": "x", "ref": 2}),
    )
    .await;
    assert_eq!(next_json(&mut ws).await["op"], "ok");
    // A raw WebSocket publishing to room.a is closed with 1008.
    let mut raw = websocket(node.addr, &format!("/sub/room.a?token={KEY}")).await;
    raw.send(Message::text("from a client")).await.unwrap();
    let closed = within("the raw socket to close", async {
        loop {
            match raw.next().await {
                Some(Ok(Message::Close(Some(frame)))) => return u16::from(frame.code),
                Some(Ok(_)) => continue,
                other => panic!("expected a close frame, got {other:?}"),
            }
        }
    })
    .await;
    assert_eq!(closed, 1008);
    assert_eq!(info(&node, "room.a").await["messages"], 2, "nothing stored");
}

async fn check_history_limits_after_publishing(node: &Node) {
    for channel in ["room.vip.1", "room.a", "lobby.x", "news"] {
        publish_n(node, channel, 6).await;
    }
    check_history_limits(node).await;
}

#[tokio::test]
async fn config_check_names_the_line_of_each_mistake_and_show_prints_the_tables() {
    let scratch = Scratch::new("options-check");
    let herald = env!("CARGO_BIN_EXE_herald");
    let check = |text: &str| {
        std::fs::write(scratch.0.join("check.toml"), text).unwrap();
        std::process::Command::new(herald)
            .args(["config", "check"])
            .arg(scratch.0.join("check.toml"))
            .output()
            .unwrap()
    };
    let ok = check(FILE);
    assert!(
        ok.status.success(),
        "{}",
        String::from_utf8_lossy(&ok.stderr)
    );
    for (text, says) in [
        (
            "[[channels]]\npattern = \"a.*\"\npresense = true\n",
            "line 3",
        ),
        (
            "[[channels]]\npattern = \"a.*\"\npresense = true\n",
            "did you mean presence?",
        ),
        (
            "[[channels]]\npattern = \"a.*\"\nhistory_size = \"many\"\n",
            "line 3",
        ),
        ("\n\n[[channels]]\npattern = \"no spaces *\"\n", "line 4"),
        ("[[channels]]\nhistory_size = 3\n", "pattern"),
        ("channels = \"room.*\"\n", "[[channels]]"),
    ] {
        let refused = check(text);
        let stderr = String::from_utf8_lossy(&refused.stderr);
        assert!(!refused.status.success(), "{text:?} was accepted");
        assert!(stderr.contains(says), "{text:?}: {stderr:?} lacks {says:?}");
    }
    let shown = std::process::Command::new(herald)
        .args(["config", "show", "--config", &scratch.config()])
        .env_remove("HERALD_CONFIG")
        .output()
        .unwrap();
    let shown = String::from_utf8_lossy(&shown.stdout);
    assert!(
        shown.contains("[[channels]]\npattern = \"room.*\"\nhistory_size = 2\n"),
        "{shown}"
    );
    assert!(shown.contains("history_ttl = \"10m\""), "{shown}");
    // A pattern that matches nothing is not an error: the channels it does
    // not match keep the flags' options.
    let unmatched = check("[[channels]]\npattern = \"never.used.*\"\nhistory_size = 1\n");
    assert!(unmatched.status.success());
}
