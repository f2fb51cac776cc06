//! The Redis engine against real processes: a private `redis-server` and
//! several `herald serve --redis` nodes on free loopback ports. A message
//! published on any node reaches every subscriber on every node and transport
//! in one order with the ids its publisher was answered; a client resumes on
//! any node; a dead node's subscribers resume elsewhere without loss; Redis
//! going away fails publishes with 503 and the nodes recover by themselves;
//! a flush starts a new epoch and every transport is told of the gap; a lost
//! Pub/Sub connection is filled in from the Stream; history is trimmed in
//! Redis and a late resume on another node is a trimmed gap; an idempotent
//! retry on another node is stored once; a delete reaches every node.

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use cluster::*;
use common::*;
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// A delivered message: its id (none on raw WebSocket) and its data.
type Got = (Option<String>, String);

/// Reads the next `count` messages of an SSE stream, failing on anything else.
async fn sse_messages(sse: &mut SseStream, count: usize, what: &str) -> Vec<Got> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let event = sse
            .next()
            .await
            .unwrap_or_else(|| panic!("{what}: the stream ended after {}", got.len()));
        assert_eq!(event.event, "message", "{what}: {event:?}");
        got.push((Some(event.id), event.data));
    }
    got
}

async fn read_sse(mut sse: SseStream, count: usize, what: String) -> Vec<Got> {
    sse_messages(&mut sse, count, &what).await
}

/// The next `count` raw WebSocket frames as [`Got`] (data only).
async fn raw_got(socket: &mut Socket, count: usize, what: &str) -> Vec<Got> {
    let data = raw_messages(socket, count, what).await;
    data.into_iter().map(|data| (None, data)).collect()
}

async fn read_raw(mut socket: Socket, count: usize, what: String) -> Vec<Got> {
    raw_got(&mut socket, count, &what).await
}

/// The next `count` `msg` frames of a `/ws` socket as [`Got`].
async fn ws_got(socket: &mut Socket, count: usize, what: &str) -> Vec<Got> {
    without_channel(ws_messages(socket, count, what).await)
}

async fn read_ws(mut socket: Socket, count: usize, what: String) -> Vec<Got> {
    ws_got(&mut socket, count, &what).await
}

/// Long-polls `channel` from `since` until `count` messages, failing on a gap.
async fn read_poll(
    addr: SocketAddr,
    channel: &str,
    since: &str,
    count: usize,
    what: String,
) -> Vec<Got> {
    without_channel(poll_messages(addr, channel, since, count, &what).await.0)
}

fn without_channel(got: Vec<Delivery>) -> Vec<Got> {
    got.into_iter().map(|(_, id, data)| (id, data)).collect()
}

/// `(id, data)` pairs as every subscriber with ids should see them.
fn with_ids(expected: &[(String, String)]) -> Vec<Got> {
    expected
        .iter()
        .map(|(id, data)| (Some(id.clone()), data.clone()))
        .collect()
}

/// What a raw WebSocket (data only) should see.
fn data_only(expected: &[(String, String)]) -> Vec<Got> {
    expected
        .iter()
        .map(|(_, data)| (None, data.clone()))
        .collect()
}

/// Checks that `acked` (seq → (id, data)) is one epoch with seqs 1..=total.
fn check_gap_free(acked: &std::collections::BTreeMap<u64, (String, String)>, total: usize) {
    assert_eq!(
        acked.keys().copied().collect::<Vec<_>>(),
        (1..=total as u64).collect::<Vec<_>>(),
        "the publishers' answers are seqs 1..={total}, each once"
    );
    let epochs: std::collections::BTreeSet<String> =
        acked.values().map(|(id, _)| epoch(id)).collect();
    assert_eq!(epochs.len(), 1, "one epoch: {epochs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_deliver_every_message_to_every_transport_in_one_order() {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 200;
    const TOTAL: usize = PUBLISHERS * EACH;
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 3).await;
    let addrs: Vec<SocketAddr> = nodes.iter().map(|n| n.addr).collect();

    // Every transport on every node, some live (subscribed once the handshake
    // is answered), some replaying from the start; all connected before the
    // first publish.
    let mut readers: Vec<(String, bool, JoinHandle<Vec<Got>>)> = Vec::new();
    for (i, &addr) in addrs.iter().enumerate() {
        for path in ["/sub/fan", "/sub/fan?since=0"] {
            let what = format!("raw WebSocket {path} on node {i}");
            let socket = websocket(addr, path).await;
            readers.push((
                what.clone(),
                false,
                tokio::spawn(read_raw(socket, TOTAL, what)),
            ));
        }
        for path in ["/sub/fan", "/sub/fan?since=0"] {
            let what = format!("SSE {path} on node {i}");
            let sse = SseStream::open(addr, path, &[]).await;
            readers.push((what.clone(), true, tokio::spawn(read_sse(sse, TOTAL, what))));
        }
        let what = format!("/ws on node {i}");
        let mut socket = websocket(addr, "/ws").await;
        ws_sub(&mut socket, "fan", None).await;
        readers.push((
            what.clone(),
            true,
            tokio::spawn(read_ws(socket, TOTAL, what)),
        ));
        let what = format!("long poll on node {i}");
        readers.push((
            what.clone(),
            true,
            tokio::spawn(read_poll(addr, "fan", "0", TOTAL, what)),
        ));
    }

    // Each publisher goes round the nodes, so every node publishes
    // concurrently with every other.
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        let addrs = addrs.clone();
        publishers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for i in 0..EACH {
                let data = format!("p{p}-{i}");
                let id = publish(addrs[(p + i) % addrs.len()], "fan", data.clone()).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                answered.push((id, data));
            }
            answered
        }));
    }
    let mut acked = std::collections::BTreeMap::new();
    for (p, publisher) in publishers.into_iter().enumerate() {
        let answered = within_for(
            std::time::Duration::from_secs(30),
            "the publishers",
            publisher,
        )
        .await
        .unwrap();
        let seqs: Vec<u64> = answered.iter().map(|(id, _)| seq(id)).collect();
        assert!(
            seqs.windows(2).all(|w| w[0] < w[1]),
            "publisher {p}'s later publishes got later ids: {seqs:?}"
        );
        for (id, data) in answered {
            assert!(
                acked.insert(seq(&id), (id, data)).is_none(),
                "id given twice"
            );
        }
    }
    check_gap_free(&acked, TOTAL);
    let expected: Vec<(String, String)> = acked.into_values().collect();

    for (what, has_ids, reader) in readers {
        let got = within_for(std::time::Duration::from_secs(30), &what, reader)
            .await
            .unwrap();
        let want = if has_ids {
            with_ids(&expected)
        } else {
            data_only(&expected)
        };
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            panic!(
                "{what}: {} messages, first difference at {first:?}: got {:?}, expected {:?}",
                got.len(),
                first.map(|i| &got[i]),
                first.map(|i| &want[i]),
            );
        }
    }
    drop(nodes);
}

/// How a subscriber is connected.
#[derive(Clone, Copy, Debug)]
enum Transport {
    Sse,
    Raw,
    Ws,
    Poll,
}

/// One subscriber of the node that will be killed.
struct Survivor {
    transport: Transport,
    /// The node it reads from until that node dies.
    first: SocketAddr,
    /// The node it resumes on.
    next: SocketAddr,
    total: usize,
    /// Counts the subscribers that are attached on `first`.
    attached: Arc<AtomicUsize>,
    /// How many messages it has read so far.
    progress: Arc<AtomicUsize>,
    /// Turns true when it may resume.
    go: watch::Receiver<bool>,
    /// Data → the id its publisher was answered.
    acked: Arc<Mutex<HashMap<String, String>>>,
}

/// What a subscriber on the doomed node does: read until its node dies, wait
/// for the go-ahead, then resume on `next` with its last id until `total`.
async fn survive(survivor: Survivor) -> Vec<Got> {
    let Survivor {
        transport,
        first,
        next,
        total,
        attached,
        progress,
        mut go,
        acked,
    } = survivor;
    let what = format!("{transport:?} subscriber");
    let mut got: Vec<Got> = Vec::new();
    let record = |got: &mut Vec<Got>, item: Got| {
        got.push(item);
        progress.store(got.len(), Ordering::SeqCst);
    };
    // Before the kill: read from `first` until the connection breaks. A
    // streaming subscriber is attached once its handshake is answered; the
    // poller replays from the start.
    let attach = || attached.fetch_add(1, Ordering::SeqCst);
    let mut poll_since = "0".to_owned();
    match transport {
        Transport::Sse => {
            let mut sse = SseStream::open(first, "/sub/doomed", &[]).await;
            attach();
            while let Some(event) = sse.next().await {
                assert_eq!(event.event, "message", "{what}: {event:?}");
                record(&mut got, (Some(event.id), event.data));
            }
        }
        Transport::Raw => {
            let mut socket = websocket(first, "/sub/doomed").await;
            attach();
            while let Some(frame) = try_frame(&mut socket).await {
                record(&mut got, (None, frame.to_text().unwrap().to_owned()));
            }
        }
        Transport::Ws => {
            let mut socket = websocket(first, "/ws").await;
            ws_sub(&mut socket, "doomed", None).await;
            attach();
            while let Some(frame) = try_json(&mut socket).await {
                assert_eq!(frame["op"], "msg", "{what}: {frame}");
                record(
                    &mut got,
                    (
                        Some(frame["id"].as_str().unwrap().to_owned()),
                        frame["data"].as_str().unwrap().to_owned(),
                    ),
                );
            }
        }
        Transport::Poll => {
            attach();
            while let Some(page) =
                try_poll(first, &format!("/sub/doomed?since={poll_since}&timeout=3")).await
            {
                assert!(page.get("gap").is_none(), "{what}: {page}");
                for m in page["messages"].as_array().unwrap() {
                    record(
                        &mut got,
                        (
                            Some(m["id"].as_str().unwrap().to_owned()),
                            m["data"].as_str().unwrap().to_owned(),
                        ),
                    );
                }
                poll_since = page["next"].as_str().unwrap().to_owned();
            }
        }
    }
    assert!(!got.is_empty(), "{what}: nothing read before the kill");
    within("the go-ahead to resume", go.wait_for(|go| *go))
        .await
        .unwrap();

    // Resume on another node from the last id this subscriber holds.
    let last = match &got.last().unwrap().0 {
        Some(id) => id.clone(),
        // Raw frames carry no id: the data names the message, and its
        // publisher was told the id.
        None => {
            let data = got.last().unwrap().1.clone();
            within("the id of the last raw frame", async {
                loop {
                    if let Some(id) = acked.lock().unwrap().get(&data) {
                        return id.clone();
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                }
            })
            .await
        }
    };
    let rest = total - got.len();
    let more = match transport {
        Transport::Sse => {
            let sse = SseStream::open(next, "/sub/doomed", &[("last-event-id", &last)]).await;
            read_sse(sse, rest, format!("{what} after resuming")).await
        }
        Transport::Raw => {
            let socket = websocket(next, &format!("/sub/doomed?since={last}")).await;
            read_raw(socket, rest, format!("{what} after resuming")).await
        }
        Transport::Ws => {
            let mut socket = websocket(next, "/ws").await;
            ws_sub(&mut socket, "doomed", Some(&last)).await;
            read_ws(socket, rest, format!("{what} after resuming")).await
        }
        Transport::Poll => {
            // The poll cursor is the last id delivered (`next` of the last page).
            read_poll(
                next,
                "doomed",
                &poll_since,
                rest,
                format!("{what} after resuming"),
            )
            .await
        }
    };
    got.extend(more);
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn subscribers_of_a_killed_node_resume_on_another_without_loss() {
    const BURST: usize = 3 * 100;
    const WHILE_AWAY: usize = 60;
    const AFTER: usize = 60;
    const TOTAL: usize = BURST + WHILE_AWAY + AFTER;
    let redis = RedisServer::start().await;
    let mut nodes = Node::cluster(&redis, 3).await;
    let (a, b, doomed) = (nodes[0].addr, nodes[1].addr, nodes[2].addr);
    let acked: Arc<Mutex<HashMap<String, String>>> = Arc::default();
    let (go, wait_go) = watch::channel(false);

    let attached = Arc::new(AtomicUsize::new(0));
    let mut subscribers = Vec::new();
    let plan = [
        (Transport::Sse, a),
        (Transport::Raw, b),
        (Transport::Ws, a),
        (Transport::Poll, b),
    ];
    for (transport, next) in plan {
        let progress = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn(survive(Survivor {
            transport,
            first: doomed,
            next,
            total: TOTAL,
            attached: attached.clone(),
            progress: progress.clone(),
            go: wait_go.clone(),
            acked: acked.clone(),
        }));
        subscribers.push((transport, progress, task));
    }
    within("the subscribers to attach", async {
        while attached.load(Ordering::SeqCst) < plan.len() {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;

    let publish_all = |prefix: &'static str, count: usize, on: Vec<SocketAddr>| {
        let acked = acked.clone();
        tokio::spawn(async move {
            for i in 0..count {
                let data = format!("{prefix}-{i}");
                let id = publish(on[i % on.len()], "doomed", data.clone()).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                acked.lock().unwrap().insert(data, id);
            }
        })
    };
    let burst: Vec<_> = ["p0", "p1", "p2"]
        .into_iter()
        .map(|p| publish_all(p, BURST / 3, vec![a, b]))
        .collect();
    within("every subscriber to read 20 messages", async {
        while subscribers
            .iter()
            .any(|(_, progress, _)| progress.load(Ordering::SeqCst) < 20)
        {
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
    })
    .await;
    nodes[2].kill().await;
    for publisher in burst {
        within("the burst publishers", publisher).await.unwrap();
    }
    within(
        "publishing while the subscribers are away",
        publish_all("away", WHILE_AWAY, vec![a, b]),
    )
    .await
    .unwrap();
    go.send(true).unwrap();
    within(
        "publishing after the go-ahead",
        publish_all("after", AFTER, vec![b, a]),
    )
    .await
    .unwrap();

    let by_data = acked.lock().unwrap().clone();
    let acked: std::collections::BTreeMap<u64, (String, String)> = by_data
        .into_iter()
        .map(|(data, id)| (seq(&id), (id, data)))
        .collect();
    check_gap_free(&acked, TOTAL);
    let expected: Vec<(String, String)> = acked.into_values().collect();
    for (transport, progress, task) in subscribers {
        let before = progress.load(Ordering::SeqCst);
        let got = within_for(std::time::Duration::from_secs(20), "a subscriber", task)
            .await
            .unwrap();
        let want = match transport {
            Transport::Raw => data_only(&expected),
            _ => with_ids(&expected),
        };
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            panic!(
                "{transport:?} (read {before} before the kill): {} messages, first difference \
                 at {first:?}: got {:?}, expected {:?}",
                got.len(),
                first.map(|i| &got[i]),
                first.map(|i| &want[i]),
            );
        }
    }
}

/// The events of `sse` up to and including the first message: the gaps told
/// before it, and it.
async fn gaps_then_message(sse: &mut SseStream, what: &str) -> (Vec<Value>, (String, String)) {
    let mut gaps = Vec::new();
    loop {
        let event = sse
            .next()
            .await
            .unwrap_or_else(|| panic!("{what}: the SSE stream ended"));
        match event.event.as_str() {
            "herald.gap" => gaps.push(serde_json::from_str(&event.data).unwrap()),
            "message" => return (gaps, (event.id, event.data)),
            other => panic!("{what}: unexpected SSE event {other}: {event:?}"),
        }
    }
}

/// The `/ws` frames up to and including the first `msg`: the gaps told before it, and it.
async fn ws_gaps_then_message(socket: &mut Socket, what: &str) -> (Vec<Value>, (String, String)) {
    let mut gaps = Vec::new();
    loop {
        let frame = try_json(socket)
            .await
            .unwrap_or_else(|| panic!("{what}: the /ws socket closed"));
        match frame["op"].as_str() {
            Some("gap") => gaps.push(frame),
            Some("msg") => {
                return (
                    gaps,
                    (
                        frame["id"].as_str().unwrap().to_owned(),
                        frame["data"].as_str().unwrap().to_owned(),
                    ),
                )
            }
            _ => panic!("{what}: unexpected /ws frame {frame}"),
        }
    }
}

/// Long-polls from `since` until a page carries messages; returns whether any
/// page on the way reported a gap, the gap objects, and the messages.
async fn poll_through_gap(
    addr: SocketAddr,
    channel: &str,
    since: &str,
) -> (bool, Vec<Value>, Vec<(String, String)>) {
    let mut since = since.to_owned();
    let mut gap = false;
    let mut gaps = Vec::new();
    loop {
        let page = poll(addr, &format!("/sub/{channel}?since={since}&timeout=3")).await;
        gap |= page["gap"] == true;
        gaps.extend(page["gaps"].as_array().cloned().unwrap_or_default());
        let messages: Vec<(String, String)> = page["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| {
                (
                    m["id"].as_str().unwrap().to_owned(),
                    m["data"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        if !messages.is_empty() {
            return (gap, gaps, messages);
        }
        since = page["next"].as_str().unwrap().to_owned();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn redis_down_fails_publishes_keeps_connections_and_the_nodes_recover() {
    let mut redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut sse = SseStream::open(a.addr, "/sub/outage", &[]).await;
    let mut raw = websocket(a.addr, "/sub/outage").await;
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "outage", None).await;
    let mut before = Vec::new();
    for (i, node) in [a, b, a].into_iter().enumerate() {
        let data = format!("before-{i}");
        before.push((node.publish("outage", &data).await, data));
    }
    assert_eq!(sse_messages(&mut sse, 3, "SSE").await, with_ids(&before));
    assert_eq!(
        raw_got(&mut raw, 3, "raw WebSocket").await,
        data_only(&before)
    );
    assert_eq!(ws_got(&mut ws, 3, "/ws").await, with_ids(&before));

    redis.stop().await;
    for node in [a, b] {
        // Never a 200 for a message that was not stored, from the first try.
        for attempt in 0..3 {
            let (status, body) = node.try_publish("outage", &format!("lost-{attempt}")).await;
            assert_eq!(
                (status, body["error"]["code"].as_str()),
                (503, Some("engine_unavailable")),
                "publish {attempt} on node {} with Redis down: {body}",
                node.name
            );
        }
        node.wait_ready(false, WAIT).await;
        assert_eq!(node.healthz().await, 200, "/healthz on node {}", node.name);
    }
    // Live connections stay open and served.
    send_json(
        &mut ws,
        json!({"op": "pub", "channel": "outage", "data": "lost-ws", "ref": "p"}),
    )
    .await;
    let answer = try_json(&mut ws)
        .await
        .expect("the /ws socket to stay open");
    assert_eq!(
        (
            answer["op"].as_str(),
            answer["ref"].as_str(),
            answer["error"]["code"].as_str()
        ),
        (Some("error"), Some("p"), Some("engine_unavailable")),
        "a /ws pub with Redis down: {answer}"
    );
    send_json(&mut ws, json!({"op": "ping", "ref": "alive"})).await;
    let pong = try_json(&mut ws)
        .await
        .expect("the /ws socket to stay open");
    assert_eq!(
        (pong["op"].as_str(), pong["ref"].as_str()),
        (Some("pong"), Some("alive")),
        "{pong}"
    );
    ping_pong(&mut raw).await;

    redis.restart().await;
    for node in [a, b] {
        node.wait_ready(true, RECOVERY).await;
    }
    let after = b.publish("outage", "after").await;
    // The restarted Redis has no data: a new history, and a gap for everyone
    // who held the old one.
    assert_ne!(epoch(&after), epoch(&before[0].0), "a new epoch: {after}");
    assert_eq!(seq(&after), 1, "the new history starts at 1: {after}");
    let (gaps, first) = gaps_then_message(&mut sse, "SSE kept open on node a").await;
    assert_eq!(first, (after.clone(), "after".to_owned()), "SSE");
    assert!(!gaps.is_empty(), "SSE: no herald.gap before {after}");
    assert!(gaps.iter().all(|g| g["channel"] == "outage"), "{gaps:?}");
    let (gaps, first) = ws_gaps_then_message(&mut ws, "/ws kept open on node b").await;
    assert_eq!(first, (after.clone(), "after".to_owned()), "/ws");
    assert!(!gaps.is_empty(), "/ws: no gap before {after}");
    assert!(gaps.iter().all(|g| g["channel"] == "outage"), "{gaps:?}");
    assert_eq!(
        raw_got(&mut raw, 1, "raw WebSocket kept open on node a").await,
        vec![(None, "after".to_owned())]
    );
    let (gap, _, messages) = poll_through_gap(a.addr, "outage", &before[2].0).await;
    assert!(gap, "a poll from an id of the lost history reports a gap");
    assert_eq!(messages, vec![(after.clone(), "after".to_owned())]);
    // Publishing works on every node again, in the new history.
    let next = a.publish("outage", "after-2").await;
    assert_eq!(
        split_id(&next),
        (epoch(&after), 2),
        "node a continues the new history"
    );
    assert_eq!(
        sse_messages(&mut sse, 1, "SSE").await,
        vec![(Some(next), "after-2".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn flushall_starts_a_new_epoch_and_every_transport_is_told_of_the_gap() {
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut sse = SseStream::open(a.addr, "/sub/flushed", &[]).await;
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "flushed", None).await;
    let mut old = Vec::new();
    for (i, node) in [a, b, a].into_iter().enumerate() {
        let data = format!("old-{i}");
        old.push((node.publish("flushed", &data).await, data));
    }
    assert_eq!(sse_messages(&mut sse, 3, "SSE").await, with_ids(&old));
    assert_eq!(ws_got(&mut ws, 3, "/ws").await, with_ids(&old));
    let last_old = old[2].0.clone();
    // A poll held at the newest id across the flush.
    let held = {
        let (addr, since) = (b.addr, last_old.clone());
        tokio::spawn(async move { poll_through_gap(addr, "flushed", &since).await })
    };

    assert_eq!(redis.command(&["FLUSHALL"]).await, "+OK");
    let fresh = b.publish("flushed", "fresh").await;
    assert_ne!(epoch(&fresh), epoch(&last_old), "a new epoch: {fresh}");
    assert_eq!(seq(&fresh), 1, "the new history starts at 1: {fresh}");
    let expected = (fresh.clone(), "fresh".to_owned());

    let (gaps, first) = gaps_then_message(&mut sse, "SSE on node a").await;
    assert_eq!(first, expected, "SSE");
    assert!(!gaps.is_empty(), "SSE: no herald.gap before {fresh}");
    for gap in &gaps {
        assert_eq!(
            (gap["channel"].as_str(), gap["reason"].as_str()),
            (Some("flushed"), Some("epoch")),
            "SSE gap {gap}"
        );
    }
    let (gaps, first) = ws_gaps_then_message(&mut ws, "/ws on node b").await;
    assert_eq!(first, expected, "/ws");
    assert!(!gaps.is_empty(), "/ws: no gap before {fresh}");
    for gap in &gaps {
        assert_eq!(
            (gap["channel"].as_str(), gap["reason"].as_str()),
            (Some("flushed"), Some("epoch")),
            "/ws gap {gap}"
        );
    }
    let (gap, gaps, messages) = within("the held poll", held).await.unwrap();
    assert!(gap, "the held poll reports no gap: {gaps:?}");
    assert_eq!(gaps[0]["reason"], "epoch", "{gaps:?}");
    assert_eq!(messages, vec![expected.clone()], "held poll");
    let page = poll(a.addr, &format!("/sub/flushed?since={last_old}")).await;
    assert_eq!(page["gap"], true, "a poll from before the flush: {page}");
    assert_eq!(
        (
            page["gaps"][0]["channel"].as_str(),
            page["gaps"][0]["reason"].as_str()
        ),
        (Some("flushed"), Some("epoch")),
        "{page}"
    );
    assert_eq!(page_data(&page), ["fresh"]);

    // Both nodes agree on the new history.
    let (status, info) = get_json(a.addr, "/pub/flushed").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        (&info["messages"], &info["first_id"], &info["last_id"]),
        (&json!(1), &json!(fresh), &json!(fresh)),
        "{info}"
    );
    let second = a.publish("flushed", "fresh-2").await;
    assert_eq!(split_id(&second), (epoch(&fresh), 2));
    assert_eq!(
        sse_messages(&mut sse, 1, "SSE").await,
        vec![(Some(second.clone()), "fresh-2".to_owned())]
    );
    assert_eq!(
        ws_got(&mut ws, 1, "/ws").await,
        vec![(Some(second), "fresh-2".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_client_resumes_on_another_node_with_an_id_from_the_first_on_every_transport() {
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut published = Vec::new();
    for i in 0..10 {
        let data = format!("m{i}");
        published.push((a.publish("resume", &data).await, data));
    }
    let since = published[3].0.clone();
    let rest = &published[4..];

    // Node b has never served this channel; it resumes from node a's id.
    let mut streams = vec![
        (
            "SSE Last-Event-ID",
            SseStream::open(b.addr, "/sub/resume", &[("last-event-id", &since)]).await,
        ),
        (
            "SSE ?lastEventId=",
            SseStream::open(b.addr, &format!("/sub/resume?lastEventId={since}"), &[]).await,
        ),
        (
            "SSE ?since=",
            SseStream::open(b.addr, &format!("/sub/resume?since={since}"), &[]).await,
        ),
    ];
    let mut raw = websocket(b.addr, &format!("/sub/resume?since={since}")).await;
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "resume", Some(&since)).await;
    let page = poll(b.addr, &format!("/sub/resume?since={since}")).await;
    assert!(page.get("gap").is_none(), "poll: {page}");
    let polled: Vec<(String, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["id"].as_str().unwrap().to_owned(),
                m["data"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(polled, rest, "poll");
    for (what, sse) in &mut streams {
        assert_eq!(sse_messages(sse, rest.len(), what).await, with_ids(rest));
    }
    assert_eq!(
        raw_got(&mut raw, rest.len(), "raw WebSocket ?since=").await,
        data_only(rest)
    );
    assert_eq!(
        ws_got(&mut ws, rest.len(), "/ws sub since").await,
        with_ids(rest)
    );

    // Then live messages from node a, with nothing repeated at the seam.
    let live = a.publish("resume", "live").await;
    let want = vec![(Some(live.clone()), "live".to_owned())];
    for (what, sse) in &mut streams {
        assert_eq!(sse_messages(sse, 1, what).await, want, "{what}");
    }
    assert_eq!(
        raw_got(&mut raw, 1, "raw WebSocket").await,
        vec![(None, "live".to_owned())]
    );
    assert_eq!(ws_got(&mut ws, 1, "/ws").await, want);
    let next = page["next"].as_str().unwrap();
    let page = poll(b.addr, &format!("/sub/resume?since={next}")).await;
    assert!(page.get("gap").is_none(), "poll: {page}");
    assert_eq!(page["messages"][0]["id"], live.as_str(), "{page}");
    assert_eq!(page_data(&page), ["live"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn channel_info_on_a_node_that_never_saw_the_channel_counts_what_others_published() {
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut ids = Vec::new();
    for i in 0..5 {
        ids.push(a.publish("info", &i.to_string()).await);
    }
    let (status, info) = get_json(b.addr, "/pub/info").await;
    assert_eq!(status, 200, "node b: {info}");
    assert_eq!(
        (
            &info["channel"],
            &info["subscribers"],
            &info["messages"],
            &info["first_id"],
            &info["last_id"]
        ),
        (
            &json!("info"),
            &json!(0),
            &json!(5),
            &json!(ids[0]),
            &json!(ids[4])
        ),
        "node b: {info}"
    );
    let more = b.publish("info", "5").await;
    assert_eq!(split_id(&more), (epoch(&ids[0]), 6));
    let (status, info) = get_json(a.addr, "/pub/info").await;
    assert_eq!(status, 200, "node a: {info}");
    assert_eq!(
        (&info["messages"], &info["first_id"], &info["last_id"]),
        (&json!(6), &json!(ids[0]), &json!(more)),
        "node a: {info}"
    );
    for node in [a, b] {
        let (status, body) = get_json(node.addr, "/pub/never-used").await;
        assert_eq!(status, 404, "node {}: {body}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_published_while_a_node_lost_its_pubsub_connection_arrive_without_a_gap() {
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut sse = SseStream::open(b.addr, "/sub/hole", &[]).await;
    let mut raw = websocket(b.addr, "/sub/hole").await;
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "hole", None).await;
    let first = vec![(a.publish("hole", "first").await, "first".to_owned())];
    assert_eq!(sse_messages(&mut sse, 1, "SSE").await, with_ids(&first));
    assert_eq!(raw_got(&mut raw, 1, "raw").await, data_only(&first));
    assert_eq!(ws_got(&mut ws, 1, "/ws").await, with_ids(&first));

    // Redis drops every Pub/Sub connection but keeps its data: what node a
    // publishes before node b listens again is in the Stream, not lost.
    let killed = redis.command(&["CLIENT", "KILL", "TYPE", "pubsub"]).await;
    assert_ne!(killed, ":0", "herald's Pub/Sub connections were found");
    let mut missed = Vec::new();
    for i in 0..20 {
        let data = format!("during-{i}");
        missed.push((a.publish("hole", &data).await, data));
    }
    let mut got = Vec::new();
    while got.len() < missed.len() {
        let event = sse
            .next_within(RECOVERY)
            .await
            .expect("the SSE stream to stay open");
        assert_eq!(event.event, "message", "no gap, nothing lost: {event:?}");
        got.push((Some(event.id), event.data));
    }
    assert_eq!(got, with_ids(&missed), "SSE on node b");
    assert_eq!(
        within_for(
            RECOVERY,
            "the raw WebSocket",
            raw_got(&mut raw, missed.len(), "raw")
        )
        .await,
        data_only(&missed)
    );
    assert_eq!(
        within_for(
            RECOVERY,
            "the /ws socket",
            ws_got(&mut ws, missed.len(), "/ws")
        )
        .await,
        with_ids(&missed)
    );
    let ids: Vec<u64> = missed.iter().map(|(id, _)| seq(id)).collect();
    assert_eq!(
        ids,
        (2..=21).collect::<Vec<_>>(),
        "one history, no new epoch"
    );
    // And live delivery goes on.
    let live = vec![(a.publish("hole", "live").await, "live".to_owned())];
    assert_eq!(sse_messages(&mut sse, 1, "SSE").await, with_ids(&live));
    assert_eq!(ws_got(&mut ws, 1, "/ws").await, with_ids(&live));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn history_is_trimmed_in_redis_and_a_late_resume_on_another_node_is_told_of_the_gap() {
    let redis = RedisServer::start().await;
    let a = Node::start_with("a", &redis, &["--history-size", "5"]).await;
    let b = Node::start_with("b", &redis, &["--history-size", "5"]).await;
    let mut ids = Vec::new();
    for i in 0..10 {
        ids.push(a.publish("trim", &i.to_string()).await);
    }
    // Node b never saw the channel: what it knows is what Redis kept.
    let (status, info) = get_json(b.addr, "/pub/trim").await;
    assert_eq!(status, 200, "{info}");
    assert_eq!(
        (&info["messages"], &info["first_id"], &info["last_id"]),
        (&json!(5), &json!(ids[5]), &json!(ids[9])),
        "{info}"
    );
    // Resuming after 1 misses 2, 3 and 4.
    let page = poll(b.addr, &format!("/sub/trim?since={}", ids[1])).await;
    assert_eq!(page["gap"], true, "{page}");
    let expected = json!({
        "channel": "trim", "reason": "trimmed", "since": ids[1], "missed": 3, "first_id": ids[5],
    });
    assert_eq!(page["gaps"][0], expected, "{page}");
    assert_eq!(page_data(&page), ["5", "6", "7", "8", "9"]);
    let mut sse = SseStream::open(b.addr, "/sub/trim", &[("last-event-id", &ids[1])]).await;
    let (gaps, first) = gaps_then_message(&mut sse, "SSE on node b").await;
    assert_eq!(gaps, vec![expected.clone()]);
    assert_eq!(first, (ids[5].clone(), "5".to_owned()));
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "trim", Some(&ids[1])).await;
    let (mut gaps, first) = ws_gaps_then_message(&mut ws, "/ws on node b").await;
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    gaps[0].as_object_mut().unwrap().remove("op");
    assert_eq!(gaps[0], expected);
    assert_eq!(first, (ids[5].clone(), "5".to_owned()));
    // A resume still inside the kept history reports no gap.
    let page = poll(b.addr, &format!("/sub/trim?since={}", ids[6])).await;
    assert!(page.get("gap").is_none(), "{page}");
    assert_eq!(page_data(&page), ["7", "8", "9"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_publish_retried_on_another_node_with_its_idempotency_key_is_stored_once() {
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let ids = publish_retried(&[a, b, a], "retried", "order-17", "once").await;
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "one id for every retry: {ids:?}"
    );
    let (_, info) = get_json(b.addr, "/pub/retried").await;
    assert_eq!(
        (&info["messages"], &info["last_id"]),
        (&json!(1), &json!(ids[0])),
        "{info}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_delete_on_one_node_reaches_subscribers_on_another() {
    let redis = RedisServer::start().await;
    let nodes = Node::cluster(&redis, 2).await;
    let (a, b) = (&nodes[0], &nodes[1]);
    let mut sse = SseStream::open(b.addr, "/sub/gone", &[]).await;
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "gone", None).await;
    let kept = vec![(a.publish("gone", "x").await, "x".to_owned())];
    assert_eq!(sse_messages(&mut sse, 1, "SSE").await, with_ids(&kept));
    assert_eq!(ws_got(&mut ws, 1, "/ws").await, with_ids(&kept));
    let response = within(
        "the delete",
        reqwest::Client::new()
            .delete(url(a.addr, "/pub/gone"))
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 200);
    let closed = sse.next().await.expect("herald.closed before the end");
    assert_eq!(closed.event, "herald.closed", "{closed:?}");
    let closed: Value = serde_json::from_str(&closed.data).unwrap();
    assert_eq!(closed, json!({"channel": "gone", "reason": "deleted"}));
    assert!(sse.next().await.is_none(), "the SSE stream ends");
    let frame = try_json(&mut ws)
        .await
        .expect("the /ws socket to stay open");
    assert_eq!(
        (
            frame["op"].as_str(),
            frame["channel"].as_str(),
            frame["error"]["code"].as_str()
        ),
        (Some("error"), Some("gone"), Some("channel_deleted")),
        "{frame}"
    );
    for node in [a, b] {
        let (status, body) = get_json(node.addr, "/pub/gone").await;
        assert_eq!(status, 404, "node {}: {body}", node.name);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_large_message_trims_many_small_ones_by_bytes_in_redis() {
    let redis = RedisServer::start().await;
    let limits = ["--history-size", "100", "--history-bytes", "1000"];
    let a = Node::start_with("a", &redis, &limits).await;
    let b = Node::start_with("b", &redis, &limits).await;
    let mut ids = Vec::new();
    for i in 0..40 {
        ids.push(a.publish("bytes", &format!("{i:0>20}")).await);
    }
    // 700 bytes more: most of the 40 small messages (800 bytes) must leave,
    // far more than the trim reads at first.
    let big = a.publish("bytes", &"x".repeat(700)).await;
    let (status, info) = get_json(b.addr, "/pub/bytes").await;
    assert_eq!(status, 200, "{info}");
    let bytes = info["bytes"].as_u64().unwrap();
    let kept = info["messages"].as_u64().unwrap() as usize;
    assert!(bytes <= 1000, "the byte limit holds: {info}");
    assert!(kept < 20, "more than 20 small messages left: {info}");
    let page = poll(b.addr, "/sub/bytes?since=0").await;
    let data = page_data(&page);
    assert_eq!(data.len(), kept, "{page}");
    // What stays is the newest: the small ones just before the big one.
    let expected: Vec<String> = (41 - kept..40)
        .map(|i| format!("{i:0>20}"))
        .chain(std::iter::once("x".repeat(700)))
        .collect();
    assert_eq!(data, expected);
    assert_eq!(info["first_id"], json!(ids[41 - kept]), "{info}");
    assert_eq!(info["last_id"], json!(big), "{info}");
}
