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
            &format!("/sub/chaos?since={since}&limit={limit}&timeout=3"),
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
    tokio::time::timeout(std::time::Duration::from_secs(30), publisher)
        .await
        .expect("publishing finished")
        .unwrap();
    for client in clients {
        let got = tokio::time::timeout(std::time::Duration::from_secs(30), client)
            .await
            .expect("a client finished")
            .unwrap();
        assert_eq!(got, (0..COUNT).collect::<Vec<_>>());
    }
}

/// The second chaos run: two channels, three kinds of publisher, and
/// subscribers that drop at random moments of the publisher's progress (not
/// only between messages: mid-read, mid-held-poll), resuming from a
/// multi-channel cursor or per-channel ids.
mod progress {
    use std::collections::HashMap;
    use std::net::SocketAddr;

    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::{json, Value};
    use tokio::sync::watch;

    use super::common::*;

    const COUNT: u64 = 2000;
    const CHANNELS: [&str; 2] = ["ca", "cb"];

    /// Which channel each message goes to, from a seed: both publisher and
    /// subscribers know the plan, so each knows exactly what it must receive.
    fn plan() -> Vec<&'static str> {
        let mut rng = StdRng::seed_from_u64(99);
        (0..COUNT)
            .map(|_| CHANNELS[rng.random_range(0..2)])
            .collect()
    }

    /// What one subscriber still expects on each channel.
    struct Tally {
        expected: HashMap<String, Vec<u64>>,
        got: HashMap<String, usize>,
        remaining: usize,
    }

    impl Tally {
        fn new(channels: &[&str]) -> Self {
            let mut expected: HashMap<String, Vec<u64>> = HashMap::new();
            for (i, channel) in plan().into_iter().enumerate() {
                if channels.contains(&channel) {
                    expected
                        .entry(channel.to_owned())
                        .or_default()
                        .push(i as u64);
                }
            }
            let remaining = expected.values().map(Vec::len).sum();
            Self {
                expected,
                got: HashMap::new(),
                remaining,
            }
        }

        /// Checks one message; returns true once everything has arrived.
        fn take(&mut self, who: &str, channel: &str, data: &str) -> bool {
            let n: u64 = data.parse().expect("numeric data");
            let got = self.got.entry(channel.to_owned()).or_default();
            let want = self.expected[channel].get(*got).copied();
            assert_eq!(
                Some(n),
                want,
                "{who} on {channel}: got {n} after {got} messages (lost, duplicated or reordered)"
            );
            *got += 1;
            self.remaining -= 1;
            self.remaining == 0
        }
    }

    /// Publishes the plan through HTTP, batches and a `/ws` socket, reporting progress.
    async fn publisher(addr: SocketAddr, progress: watch::Sender<u64>) {
        let mut rng = StdRng::seed_from_u64(7);
        let plan = plan();
        let http = reqwest::Client::new();
        let mut socket = websocket(addr, "/ws").await;
        let mut i = 0usize;
        while i < plan.len() {
            match rng.random_range(0..3) {
                0 => {
                    publish(addr, plan[i], i.to_string()).await;
                    i += 1;
                }
                1 => {
                    let end = (i + rng.random_range(1..6)).min(plan.len());
                    let batch: Vec<Value> = (i..end)
                        .map(|n| json!({"channel": plan[n], "data": n.to_string()}))
                        .collect();
                    let response = within(
                        "a batch publish",
                        http.post(url(addr, "/pub")).json(&batch).send(),
                    )
                    .await
                    .unwrap();
                    assert_eq!(response.status(), 200);
                    i = end;
                }
                _ => {
                    send_json(
                        &mut socket,
                        json!({"op": "pub", "channel": plan[i], "data": i.to_string(), "ref": i}),
                    )
                    .await;
                    let ok = next_json(&mut socket).await;
                    assert_eq!(
                        (ok["op"].as_str(), ok["ref"].as_u64()),
                        (Some("ok"), Some(i as u64)),
                        "{ok}"
                    );
                    i += 1;
                }
            }
            progress.send_replace(i as u64);
        }
    }

    /// A moment a little ahead in the publisher's progress.
    fn a_bit_later(rng: &mut StdRng, progress: &watch::Receiver<u64>) -> u64 {
        *progress.borrow() + rng.random_range(1..150)
    }

    async fn sse_client(
        addr: SocketAddr,
        path: &'static str,
        mut since: String,
        seed: u64,
        mut progress: watch::Receiver<u64>,
    ) -> usize {
        let channels: Vec<&str> = path.trim_start_matches("/sub/").split(',').collect();
        let mut tally = Tally::new(&channels);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut reconnects = 0;
        loop {
            let mut sse = Sse::open(addr, path, &[("last-event-id", &since)]).await;
            let drop_at = a_bit_later(&mut rng, &progress);
            let budget = rng.random_range(1..300);
            for _ in 0..budget {
                let event = tokio::select! {
                    event = sse.next() => event.expect("the stream stays open"),
                    _ = progress.wait_for(|n| *n >= drop_at) => break,
                };
                assert_eq!(
                    event.event, "message",
                    "{path}: {} {}",
                    event.event, event.data
                );
                since = event.id.clone();
                // A multi-channel stream carries the channel only in its cursor:
                // the channel whose id moved is the one this message is on.
                let channel = channels
                    .iter()
                    .find(|c| tally.expected[**c].contains(&event.data.parse().unwrap()))
                    .expect("a planned message");
                if tally.take(path, channel, &event.data) {
                    return reconnects;
                }
            }
            reconnects += 1;
        }
    }

    async fn poll_client(
        addr: SocketAddr,
        start: String,
        seed: u64,
        mut progress: watch::Receiver<u64>,
    ) -> usize {
        let mut tally = Tally::new(&CHANNELS);
        let mut rng = StdRng::seed_from_u64(seed);
        let mut since = start;
        let mut abandoned = 0;
        loop {
            let limit = rng.random_range(1..40);
            let path = format!(
                "/sub/ca,cb?since={}&limit={limit}&timeout=3",
                since.replace('=', "%3D").replace(',', "%2C")
            );
            let page = if rng.random_bool(0.3) {
                // Give up on this poll at a random moment; resume from the same cursor.
                let give_up_at = a_bit_later(&mut rng, &progress);
                tokio::select! {
                    page = poll(addr, &path) => page,
                    _ = progress.wait_for(|n| *n >= give_up_at) => {
                        abandoned += 1;
                        continue;
                    }
                }
            } else {
                poll(addr, &path).await
            };
            assert!(page.get("gap").is_none(), "{page}");
            for m in page["messages"].as_array().unwrap() {
                if tally.take(
                    "poll",
                    m["channel"].as_str().unwrap(),
                    m["data"].as_str().unwrap(),
                ) {
                    return abandoned;
                }
            }
            since = page["next"].as_str().unwrap().to_owned();
        }
    }

    /// A `/ws` client's state: what it has and the last id on each channel.
    struct SocketClient {
        tally: Tally,
        last: HashMap<String, String>,
    }

    impl SocketClient {
        /// Records a `msg` frame; true once everything has arrived.
        fn take(&mut self, frame: &Value) -> bool {
            assert_eq!(frame["op"], "msg", "unexpected /ws frame {frame}");
            let channel = frame["channel"].as_str().unwrap();
            self.last
                .insert(channel.to_owned(), frame["id"].as_str().unwrap().to_owned());
            self.tally
                .take("/ws", channel, frame["data"].as_str().unwrap())
        }

        /// Sends `request` and reads until its answer, taking the messages
        /// of other channels that arrive meanwhile. `skip` names a channel
        /// whose messages in flight are ignored (it was just unsubscribed;
        /// the resume repeats them). True once everything has arrived.
        async fn request(
            &mut self,
            socket: &mut Socket,
            request: Value,
            skip: Option<&str>,
        ) -> bool {
            let reference = request["ref"].clone();
            let channel = request["channel"].as_str().unwrap().to_owned();
            send_json(socket, request).await;
            loop {
                let frame = next_json(socket).await;
                if frame["ref"] == reference {
                    assert_eq!(frame["op"], "ok", "{frame}");
                    return false;
                }
                let on = frame["channel"].as_str().unwrap_or_default();
                if skip == Some(on) {
                    continue;
                }
                assert_ne!(
                    on, channel,
                    "a message before the answer to {reference}: {frame}"
                );
                if self.take(&frame) {
                    return true;
                }
            }
        }

        async fn subscribe(&mut self, socket: &mut Socket, channel: &str) -> bool {
            let since = self.last[channel].clone();
            let sub = json!({"op": "sub", "channel": channel, "since": since, "ref": format!("sub {channel}")});
            self.request(socket, sub, None).await
        }
    }

    async fn socket_client(
        addr: SocketAddr,
        start: HashMap<String, String>,
        seed: u64,
        mut progress: watch::Receiver<u64>,
    ) -> usize {
        let mut client = SocketClient {
            tally: Tally::new(&CHANNELS),
            last: start,
        };
        let mut rng = StdRng::seed_from_u64(seed);
        let mut resubscribes = 0;
        loop {
            let mut socket = websocket(addr, "/ws").await;
            for channel in CHANNELS {
                if client.subscribe(&mut socket, channel).await {
                    return resubscribes;
                }
            }
            let drop_at = a_bit_later(&mut rng, &progress);
            loop {
                let frame = tokio::select! {
                    frame = next_json(&mut socket) => frame,
                    _ = progress.wait_for(|n| *n >= drop_at) => break,
                };
                if client.take(&frame) {
                    return resubscribes;
                }
                if rng.random_bool(0.02) {
                    // Unsubscribe and resubscribe one channel on the same socket.
                    let channel = CHANNELS[rng.random_range(0..2)];
                    let unsub = json!({"op": "unsub", "channel": channel, "ref": "unsub"});
                    if client.request(&mut socket, unsub, Some(channel)).await
                        || client.subscribe(&mut socket, channel).await
                    {
                        return resubscribes;
                    }
                    resubscribes += 1;
                }
            }
            // Drop mid-stream, possibly with frames in flight.
            drop(socket);
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn drops_at_random_moments_on_two_channels_lose_duplicate_and_reorder_nothing() {
        // Small queues: subscribers that fall behind catch up from history,
        // so the seam between queue and history is crossed again and again.
        let server = start(|c| {
            c.history.max_messages = COUNT as usize + 10;
            c.subscriber_queue = 4;
        })
        .await;
        let addr = server.addr;
        let mut start = HashMap::new();
        for channel in CHANNELS {
            let next = poll(addr, &format!("/sub/{channel}?timeout=0")).await["next"]
                .as_str()
                .unwrap()
                .to_owned();
            start.insert(channel.to_owned(), next);
        }
        let cursor = format!("ca={},cb={}", start["ca"], start["cb"]);
        let (progress, watching) = watch::channel(0u64);
        let sse_both = tokio::spawn(sse_client(
            addr,
            "/sub/ca,cb",
            cursor.clone(),
            11,
            watching.clone(),
        ));
        let sse_one = tokio::spawn(sse_client(
            addr,
            "/sub/cb",
            start["cb"].clone(),
            12,
            watching.clone(),
        ));
        let poller = tokio::spawn(poll_client(addr, cursor.clone(), 13, watching.clone()));
        let socket = tokio::spawn(socket_client(addr, start.clone(), 14, watching.clone()));
        let publisher = tokio::spawn(publisher(addr, progress));

        let bound = std::time::Duration::from_secs(30);
        tokio::time::timeout(bound, publisher)
            .await
            .expect("publishing finished")
            .unwrap();
        let sse_both = tokio::time::timeout(bound, sse_both)
            .await
            .expect("SSE a,b finished")
            .unwrap();
        let sse_one = tokio::time::timeout(bound, sse_one)
            .await
            .expect("SSE b finished")
            .unwrap();
        let abandoned = tokio::time::timeout(bound, poller)
            .await
            .expect("the poller finished")
            .unwrap();
        let resubscribes = tokio::time::timeout(bound, socket)
            .await
            .expect("/ws finished")
            .unwrap();
        // The run exercised what it claims to.
        assert!(
            sse_both > 3 && sse_one > 3,
            "SSE reconnects: {sse_both}, {sse_one}"
        );
        assert!(abandoned > 0, "no poll was abandoned mid-hold");
        assert!(resubscribes > 0, "no /ws channel was resubscribed");
        let metrics = reqwest::get(url(addr, "/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let lagged: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("herald_subscriber_lag_total "))
            .map_or(0.0, |v| v.trim().parse().unwrap());
        assert!(
            lagged > 0.0,
            "no subscriber fell behind its queue:\n{metrics}"
        );
    }
}
