//! Cluster-wide presence with the Redis engine (DESIGN.md §8): three herald
//! processes on one real `redis-server`. Each node lists every node's
//! clients; joins and leaves reach subscribers on the other nodes; webhooks
//! report a channel occupied once for the whole cluster; a node killed with
//! `kill -9` drops out of presence within 30 s (its heartbeat expires and a
//! surviving node announces its members' leaves).

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::routing::post;
use axum::Router;
use cluster::{Node, RedisServer};
use common::*;
use parking_lot::Mutex;
use serde_json::Value;

const FILE: &str = r#"
[[channels]]
pattern = "room.*"
presence = true
join_leave = true
"#;

/// The test's configuration file, in a scratch directory removed with it.
fn config_file() -> (common::Scratch, std::path::PathBuf) {
    let dir = common::Scratch::new("presence-cluster");
    let path = dir.join("herald.toml");
    std::fs::write(&path, FILE).unwrap();
    (dir, path)
}

async fn presence(addr: SocketAddr, channel: &str) -> Value {
    let (status, body) = get_json(addr, &format!("/pub/{channel}/presence")).await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Waits (up to `limit`) until `addr` lists `count` clients on `channel`.
async fn listed(addr: SocketAddr, channel: &str, count: u64, limit: Duration) -> Value {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let body = presence(addr, channel).await;
        if body["count"] == count {
            return body;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{addr} never listed {count} on {channel}: {body}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The next `/ws` frame with `op`, waiting up to `limit`.
async fn op_within(socket: &mut Socket, op: &str, limit: Duration) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let frame = tokio::time::timeout_at(deadline, socket.next())
            .await
            .unwrap_or_else(|_| panic!("no {op} in {limit:?}"))
            .expect("the socket is open")
            .unwrap();
        let Message::Text(text) = frame else { continue };
        let frame: Value = serde_json::from_str(&text).unwrap();
        if frame["op"] == op {
            return frame;
        }
    }
}

#[tokio::test]
async fn every_node_lists_every_clients_and_a_killed_node_drops_out() {
    let redis = RedisServer::start().await;
    // A webhook receiver shared by the nodes.
    let events: Arc<Mutex<Vec<Value>>> = Arc::default();
    let keep = events.clone();
    let app = Router::new().route(
        "/events",
        post(move |body: axum::Json<Value>| {
            let keep = keep.clone();
            async move {
                keep.lock()
                    .extend(body["events"].as_array().cloned().unwrap_or_default());
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hook = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let (_dir, file) = config_file();
    let webhook = format!("http://{hook}/events");
    let args = [
        "--config",
        file.to_str().unwrap(),
        "--webhook",
        webhook.as_str(),
    ];
    let one = Node::start_with("one", &redis, &args).await;
    let two = Node::start_with("two", &redis, &args).await;
    let mut three = Node::start_with("three", &redis, &args).await;

    // A /ws subscriber on node one.
    let mut watcher = websocket(one.addr, "/ws").await;
    let ok = ws_sub(&mut watcher, "room.x", None).await;
    assert_eq!(ok["op"], "ok");
    // An SSE subscriber on node two: listed on node one, and its join
    // reaches the watcher on node one.
    let _sse = Sse::open(two.addr, "/sub/room.x", &[]).await;
    let join = op_within(&mut watcher, "join", Duration::from_secs(10)).await;
    assert_eq!(join["channel"], "room.x");
    let listing = listed(one.addr, "room.x", 2, Duration::from_secs(10)).await;
    let transports: Vec<&str> = listing["clients"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["transport"].as_str().unwrap())
        .collect();
    assert!(
        transports.contains(&"sse") && transports.contains(&"ws-protocol"),
        "{listing}"
    );
    listed(two.addr, "room.x", 2, Duration::from_secs(10)).await;

    // Two raw WebSockets on node three, then node three is killed.
    let _a = websocket(three.addr, "/sub/room.x").await;
    let _b = websocket(three.addr, "/sub/room.x").await;
    op_within(&mut watcher, "join", Duration::from_secs(10)).await;
    op_within(&mut watcher, "join", Duration::from_secs(10)).await;
    listed(two.addr, "room.x", 4, Duration::from_secs(10)).await;
    // (A node's webhook batch waits up to a second: let node three's go out
    // before it dies, or its joins die with it.)
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while events
        .lock()
        .iter()
        .filter(|e| e["type"] == "presence.join")
        .count()
        < 4
    {
        assert!(
            tokio::time::Instant::now() < deadline,
            "joins never reported"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    three.kill().await;
    let killed = std::time::Instant::now();
    // Its members leave everywhere within 30 s, announced to the watcher.
    op_within(&mut watcher, "leave", Duration::from_secs(30)).await;
    op_within(&mut watcher, "leave", Duration::from_secs(30)).await;
    listed(one.addr, "room.x", 2, Duration::from_secs(5)).await;
    listed(two.addr, "room.x", 2, Duration::from_secs(5)).await;
    assert!(
        killed.elapsed() < Duration::from_secs(30),
        "{:?}",
        killed.elapsed()
    );

    // Webhooks: the channel was occupied once for the cluster, four joins
    // and the two leaves of the dead node (each reported once).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let seen = events.lock().clone();
        let count = |kind: &str| {
            seen.iter()
                .filter(|e| e["type"] == kind && e["channel"] == "room.x")
                .count()
        };
        if count("presence.leave") >= 2 && count("presence.join") >= 4 {
            assert_eq!(count("channel.occupied"), 1, "{seen:?}");
            assert_eq!(count("presence.join"), 4, "{seen:?}");
            assert_eq!(count("presence.leave"), 2, "{seen:?}");
            assert_eq!(count("channel.vacated"), 0, "{seen:?}");
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "webhook events: {seen:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
