//! Subscribers on every resumable transport drop their connections at random
//! points and resume from their last id while publishing goes on; in the end
//! each has every message exactly once, in order.

mod common;

use std::net::SocketAddr;

use common::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const COUNT: u64 = 2000;

/// Checks and records one received message; returns false once all are in.
fn take(got: &mut Vec<u64>, data: &str) -> bool {
    let n: u64 = data.parse().expect("numeric data");
    assert_eq!(
        n,
        got.len() as u64,
        "lost, duplicated or reordered after {got:?}",
        got = got.last()
    );
    got.push(n);
    got.len() < COUNT as usize
}

async fn sse_client(addr: SocketAddr, mut since: String, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut got = Vec::new();
    let mut reconnects = 0;
    loop {
        let mut sse = Sse::open(addr, "/sub/chaos", &[("last-event-id", &since)]).await;
        let budget = rng.random_range(1..200);
        for _ in 0..budget {
            let event = sse.next().await.expect("stream open");
            assert_eq!(
                event.event, "message",
                "unexpected {} {}",
                event.event, event.data
            );
            since = event.id.clone();
            if !take(&mut got, &event.data) {
                assert!(reconnects > 3, "the SSE client hardly reconnected");
                return got;
            }
        }
        reconnects += 1;
    }
}

async fn socket_client(addr: SocketAddr, mut since: String, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut got = Vec::new();
    loop {
        let mut socket = websocket(addr, "/ws").await;
        ws_sub(&mut socket, "chaos", Some(&since)).await;
        let budget = rng.random_range(1..200);
        for _ in 0..budget {
            let m = next_json(&mut socket).await;
            assert_eq!(m["op"], "msg", "{m}");
            since = m["id"].as_str().unwrap().to_owned();
            if !take(&mut got, m["data"].as_str().unwrap()) {
                return got;
            }
        }
    }
}

async fn poll_client(addr: SocketAddr, mut since: String, seed: u64) -> Vec<u64> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut got = Vec::new();
    loop {
        let limit = rng.random_range(1..50);
        let page = poll(
            addr,
            &format!("/sub/chaos?since={since}&limit={limit}&timeout=10"),
        )
        .await;
        assert!(page.get("gap").is_none(), "{page}");
        for m in page["messages"].as_array().unwrap() {
            if !take(&mut got, m["data"].as_str().unwrap()) {
                return got;
            }
        }
        since = page["next"].as_str().unwrap().to_owned();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn random_disconnects_lose_duplicate_and_reorder_nothing() {
    let server = start(|c| c.history.max_messages = COUNT as usize + 10).await;
    let addr = server.addr;
    let start = poll(addr, "/sub/chaos?timeout=0").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let clients = vec![
        tokio::spawn(sse_client(addr, start.clone(), 1)),
        tokio::spawn(sse_client(addr, start.clone(), 2)),
        tokio::spawn(socket_client(addr, start.clone(), 3)),
        tokio::spawn(socket_client(addr, start.clone(), 4)),
        tokio::spawn(poll_client(addr, start.clone(), 5)),
    ];
    let publisher = tokio::spawn(async move {
        for i in 0..COUNT {
            publish(addr, "chaos", i.to_string()).await;
        }
    });
    tokio::time::timeout(std::time::Duration::from_secs(60), publisher)
        .await
        .expect("publishing finished")
        .unwrap();
    for client in clients {
        let got = tokio::time::timeout(std::time::Duration::from_secs(60), client)
            .await
            .expect("a client finished")
            .unwrap();
        assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    }
}
