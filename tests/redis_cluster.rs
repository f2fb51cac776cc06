//! The Redis engine against a real Redis Cluster: three `redis-server`
//! primaries on free loopback ports joined by `redis-cli --cluster create`,
//! and two herald nodes given different primaries as seeds (`--redis
//! URL,URL --redis-cluster`), so each must learn the rest of the cluster to
//! reach every channel. A channel's keys share the hash tag `{channel}`, so
//! channels spread over the primaries; a subscription to several of them
//! still receives every message of each channel in order, with the ids its
//! publishers were answered, on every transport of both nodes. A client
//! resumes on the other node with an id (or a multi-channel cursor) from the
//! first; an idempotent retry on the other node is stored once; both nodes
//! report the same channel info.

mod common;
#[path = "common/redis.rs"]
mod processes;

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::*;
use processes::*;
use serde_json::{json, Value};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;

/// How many primaries the cluster has (no replicas).
const PRIMARIES: usize = 3;

/// How long `redis-cli --cluster create` may take (it waits for the nodes to
/// agree on the configuration, checking once a second).
const CREATE: Duration = Duration::from_secs(15);

/// One primary: a `redis-server` child, killed when dropped.
struct Primary {
    port: u16,
    child: Child,
}

/// A private Redis Cluster: [`PRIMARIES`] primaries sharing the 16384 slots,
/// each with its own working directory under one temporary directory that is
/// removed when the cluster is dropped.
struct RedisCluster {
    primaries: Vec<Primary>,
    dir: PathBuf,
}

impl RedisCluster {
    /// Starts the primaries, creates the cluster and waits until every
    /// primary reports `cluster_state:ok`.
    async fn start() -> Self {
        // Unique per cluster: the tests of this file run at once in one process.
        static CLUSTERS: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-cluster-{}-{}",
            std::process::id(),
            CLUSTERS.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Built first, so that a failure below still removes the directory.
        let mut cluster = Self {
            primaries: Vec::new(),
            dir,
        };
        for _ in 0..PRIMARIES {
            let primary = cluster.spawn_primary().await;
            cluster.primaries.push(primary);
        }
        cluster.create().await;
        cluster.wait_ok().await;
        cluster
    }

    /// Starts one cluster-enabled `redis-server` on a free port, trying a few
    /// (another process may take a port before redis-server binds it).
    async fn spawn_primary(&self) -> Primary {
        for _ in 0..5 {
            // The bus port is given explicitly: port + 10000 may not exist.
            let (port, bus) = (free_port(), free_port());
            if port == bus {
                continue;
            }
            let dir = self.dir.join(port.to_string());
            std::fs::create_dir_all(&dir).unwrap();
            let args: Vec<std::ffi::OsString> = vec![
                "--cluster-port".into(),
                bus.to_string().into(),
                "--cluster-enabled".into(),
                "yes".into(),
                "--cluster-config-file".into(),
                self.dir.join(format!("nodes-{port}.conf")).into(),
                "--loglevel".into(),
                "notice".into(),
                "--logfile".into(),
                dir.join("redis.log").into(),
            ];
            let Some(child) = spawn_redis_server(port, &dir, &args, Stdio::null).await else {
                continue;
            };
            return Primary { port, child };
        }
        panic!("a cluster-enabled redis-server did not start on any of 5 free ports");
    }

    /// Joins the primaries and shares the slots out among them.
    async fn create(&self) {
        let mut command = Command::new("redis-cli");
        command.args(["--cluster", "create"]);
        for primary in &self.primaries {
            command.arg(format!("127.0.0.1:{}", primary.port));
        }
        // Its output goes to a file, so that a failure or a timeout can show it.
        let output = self.dir.join("create.log");
        let log = std::fs::File::create(&output).unwrap();
        let mut child = command
            .args(["--cluster-replicas", "0", "--cluster-yes"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .expect("redis-cli on PATH (it ships with redis-server)");
        let status = tokio::time::timeout(CREATE, child.wait()).await;
        let said = || std::fs::read_to_string(&output).unwrap_or_default();
        match status {
            Ok(Ok(status)) if status.success() => {}
            Ok(status) => panic!(
                "redis-cli --cluster create failed ({status:?}):\n{}\n{}",
                said(),
                self.logs()
            ),
            Err(_) => panic!(
                "timed out after {CREATE:?} waiting for redis-cli --cluster create:\n{}\n{}\n{}",
                said(),
                self.state().await,
                self.logs()
            ),
        }
    }

    /// Waits until every primary knows every other and sees all slots served.
    async fn wait_ok(&self) {
        let ports: Vec<u16> = self.primaries.iter().map(|p| p.port).collect();
        let ports = &ports;
        let ready = tokio::time::timeout(WAIT, async move {
            loop {
                let mut all = true;
                for &port in ports {
                    let info = redis_command(port, &["CLUSTER", "INFO"])
                        .await
                        .unwrap_or_default();
                    all &= info.contains("cluster_state:ok\r")
                        && info.contains(&format!("cluster_known_nodes:{PRIMARIES}\r"));
                }
                if all {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await;
        assert!(
            ready.is_ok(),
            "timed out after {WAIT:?} waiting for cluster_state:ok on every primary:\n{}",
            self.logs()
        );
    }

    /// The `--redis` URL of primary `i`.
    fn seed(&self, i: usize) -> String {
        format!("redis://127.0.0.1:{}/", self.primaries[i].port)
    }

    /// Runs one command on primary `i` (no redirection), failing the test on error.
    async fn command(&self, i: usize, args: &[&str]) -> String {
        let port = self.primaries[i].port;
        within(
            &format!("primary {i} to answer {args:?}"),
            redis_command(port, args),
        )
        .await
        .unwrap_or_else(|e| panic!("primary {i} {args:?}: {e}"))
    }

    /// The primary holding the keys of `channel`: its slot must have keys on
    /// exactly one primary, and that one must answer for its `meta` hash.
    async fn holder(&self, channel: &str) -> usize {
        let meta = format!("herald:{{{channel}}}:meta");
        let slot = self.command(0, &["CLUSTER", "KEYSLOT", &meta]).await;
        let slot = slot.trim_start_matches(':').to_owned();
        let mut holders = Vec::new();
        for i in 0..self.primaries.len() {
            if self
                .command(i, &["CLUSTER", "COUNTKEYSINSLOT", &slot])
                .await
                != ":0"
            {
                holders.push(i);
            }
        }
        assert_eq!(
            holders.len(),
            1,
            "the keys of {channel} (slot {slot}) are on primaries {holders:?}"
        );
        assert_eq!(
            self.command(holders[0], &["EXISTS", &meta]).await,
            ":1",
            "{meta} on primary {}",
            holders[0]
        );
        holders[0]
    }

    /// What each primary knows of the cluster, for a failure report.
    async fn state(&self) -> String {
        let mut out = String::new();
        for primary in &self.primaries {
            for command in [["CLUSTER", "INFO"], ["CLUSTER", "NODES"]] {
                let answer =
                    tokio::time::timeout(WAIT, redis_command(primary.port, &command)).await;
                out.push_str(&format!(
                    "----- {} {command:?} -----\n{answer:?}\n",
                    primary.port
                ));
            }
        }
        out
    }

    /// What the primaries logged, for a failure report.
    fn logs(&self) -> String {
        self.primaries
            .iter()
            .map(|p| {
                let log = self.dir.join(p.port.to_string()).join("redis.log");
                format!(
                    "----- redis-server {} -----\n{}",
                    p.port,
                    std::fs::read_to_string(&log).unwrap_or_else(|e| format!("({log:?}: {e})"))
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    }
}

impl Drop for RedisCluster {
    fn drop(&mut self) {
        for primary in &mut self.primaries {
            let _ = primary.child.start_kill();
        }
        // Reap them (bounded) so none writes into the directory being removed.
        let deadline = Instant::now() + Duration::from_secs(2);
        for primary in &mut self.primaries {
            while matches!(primary.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(5));
            }
        }
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Herald node `a` seeded with the first two primaries, `b` with the third.
async fn two_nodes(redis: &RedisCluster) -> (Node, Node) {
    let seeds_a = format!("{},{}", redis.seed(0), redis.seed(1));
    let a = Node::start_on("a", &seeds_a, &["--redis-cluster"]).await;
    let b = Node::start_on("b", &redis.seed(2), &["--redis-cluster"]).await;
    (a, b)
}

/// A delivered message: its channel, its id (none on raw WebSocket) and its data.
type Got = (String, Option<String>, String);

/// What each channel's subscribers should see: (id, data) in seq order.
type Expected = BTreeMap<String, Vec<(String, String)>>;

/// Published data is `CHANNEL|TAG`, so a raw frame names its channel.
fn channel_of(data: &str) -> String {
    data.split_once('|')
        .unwrap_or_else(|| panic!("data without a channel: {data:?}"))
        .0
        .to_owned()
}

/// The next `count` messages of an SSE stream opened with `?envelope=1`;
/// each event's id is the stream's cursor (just the message id on one channel).
async fn sse_messages(sse: &mut SseStream, count: usize, what: &str) -> Vec<Got> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let event = sse
            .next()
            .await
            .unwrap_or_else(|| panic!("{what}: the stream ended after {}", got.len()));
        assert_eq!(event.event, "message", "{what}: {event:?}");
        let m: Value = serde_json::from_str(&event.data)
            .unwrap_or_else(|e| panic!("{what}: an envelope, not {:?}: {e}", event.data));
        let (channel, id) = (m["channel"].as_str().unwrap(), m["id"].as_str().unwrap());
        assert!(
            event.id == id
                || event
                    .id
                    .split(',')
                    .any(|entry| entry == format!("{channel}={id}")),
            "{what}: the cursor {:?} does not carry {channel}={id}",
            event.id
        );
        got.push((
            channel.to_owned(),
            Some(id.to_owned()),
            m["data"].as_str().unwrap().to_owned(),
        ));
    }
    got
}

/// The next `count` raw WebSocket frames as [`Got`], each data naming its channel.
async fn raw_deliveries(socket: &mut Socket, count: usize, what: &str) -> Vec<Got> {
    let data = raw_messages(socket, count, what).await;
    data.into_iter()
        .map(|data| (channel_of(&data), None, data))
        .collect()
}

/// Checks that `got` is, channel by channel, exactly `expected` (ids
/// included unless `has_ids` is false): nothing missing, repeated or reordered.
fn check_per_channel(what: &str, got: &[Got], expected: &Expected, has_ids: bool) {
    let mut by_channel: BTreeMap<&str, Vec<(Option<&str>, &str)>> = BTreeMap::new();
    for (channel, id, data) in got {
        by_channel
            .entry(channel)
            .or_default()
            .push((id.as_deref(), data));
    }
    for channel in by_channel.keys() {
        assert!(
            expected.contains_key(*channel),
            "{what}: a message on {channel}, not subscribed"
        );
    }
    for (channel, want) in expected {
        let want: Vec<(Option<&str>, &str)> = want
            .iter()
            .map(|(id, data)| (has_ids.then_some(id.as_str()), data.as_str()))
            .collect();
        let got = by_channel.remove(channel.as_str()).unwrap_or_default();
        if got != want {
            let first = got.iter().zip(&want).position(|(g, w)| g != w);
            panic!(
                "{what} on {channel}: {} messages (expected {}), first difference at {first:?}: \
                 got {:?}, expected {:?}",
                got.len(),
                want.len(),
                first.map(|i| got[i]),
                first.map(|i| want[i]),
            );
        }
    }
}

/// `GET /pub/{channel}` on `node`, asserting 200.
async fn info(node: &Node, channel: &str) -> Value {
    let (status, info) = within(
        "channel info",
        get_json(node.addr, &format!("/pub/{channel}")),
    )
    .await;
    assert_eq!(
        status, 200,
        "GET /pub/{channel} on node {}: {info}",
        node.name
    );
    info
}

/// Both nodes report `channel` as holding exactly `expected`.
async fn check_info_agrees(nodes: [&Node; 2], channel: &str, expected: &[(String, String)]) {
    let mut seen = Vec::new();
    for node in nodes {
        let info = info(node, channel).await;
        assert_eq!(
            (&info["messages"], &info["first_id"], &info["last_id"]),
            (
                &json!(expected.len()),
                &json!(expected.first().unwrap().0),
                &json!(expected.last().unwrap().0)
            ),
            "GET /pub/{channel} on node {}: {info}",
            node.name
        );
        seen.push(info["bytes"].clone());
    }
    assert_eq!(seen[0], seen[1], "bytes of {channel} on nodes a and b");
}

/// Six channels, two in each primary's slot range as `redis-cli --cluster
/// create` shares them out (0-5460, 5461-10922, 10923-16383): `news` 5161,
/// `alerts` 4569, `sports` 10183, `weather` 8949, `chat` 14028, `scores`
/// 15629. The test checks where their keys really are.
const SPREAD: [&str; 6] = ["news", "alerts", "sports", "weather", "chat", "scores"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_subscription_to_channels_on_every_primary_gets_every_message_on_both_nodes() {
    const PUBLISHERS: usize = 3;
    const EACH: usize = 10 * SPREAD.len();
    const TOTAL: usize = PUBLISHERS * EACH;
    const PER_CHANNEL: usize = TOTAL / SPREAD.len();
    let redis = RedisCluster::start().await;
    let (a, b) = two_nodes(&redis).await;
    let list = SPREAD.join(",");

    // Every transport on both nodes, all attached before the first publish.
    let mut readers: Vec<(String, bool, JoinHandle<Vec<Got>>)> = Vec::new();
    for node in [&a, &b] {
        let what = format!("SSE on node {}", node.name);
        let mut sse = SseStream::open(node.addr, &format!("/sub/{list}?envelope=1"), &[]).await;
        let task = {
            let what = what.clone();
            tokio::spawn(async move { sse_messages(&mut sse, TOTAL, &what).await })
        };
        readers.push((what, true, task));

        let what = format!("raw WebSocket on node {}", node.name);
        let mut socket = websocket(node.addr, &format!("/sub/{list}")).await;
        let task = {
            let what = what.clone();
            tokio::spawn(async move { raw_deliveries(&mut socket, TOTAL, &what).await })
        };
        readers.push((what, false, task));

        let what = format!("/ws on node {}", node.name);
        let mut socket = websocket(node.addr, "/ws").await;
        for channel in SPREAD {
            ws_sub(&mut socket, channel, None).await;
        }
        let task = {
            let what = what.clone();
            tokio::spawn(async move { ws_messages(&mut socket, TOTAL, &what).await })
        };
        readers.push((what, true, task));

        let what = format!("long poll on node {}", node.name);
        let (addr, list) = (node.addr, list.clone());
        let task = {
            let what = what.clone();
            tokio::spawn(async move { poll_messages(addr, &list, "0", TOTAL, &what).await.0 })
        };
        readers.push((what, true, task));
    }

    // Each publisher goes round the channels, and round the nodes from one
    // round to the next: every channel is published to from both nodes at once.
    let addrs = [a.addr, b.addr];
    let mut publishers = Vec::new();
    for p in 0..PUBLISHERS {
        publishers.push(tokio::spawn(async move {
            let mut answered = Vec::new();
            for i in 0..EACH {
                let channel = SPREAD[i % SPREAD.len()];
                let addr = addrs[(p + i / SPREAD.len()) % addrs.len()];
                let data = format!("{channel}|p{p}-{i}");
                let id = publish(addr, channel, data.clone()).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned();
                answered.push((channel, id, data));
            }
            answered
        }));
    }
    let mut acked: BTreeMap<&str, BTreeMap<u64, (String, String)>> = BTreeMap::new();
    for (p, publisher) in publishers.into_iter().enumerate() {
        let answered = within_for(Duration::from_secs(20), "the publishers", publisher)
            .await
            .unwrap();
        for channel in SPREAD {
            let seqs: Vec<u64> = answered
                .iter()
                .filter(|(c, _, _)| *c == channel)
                .map(|(_, id, _)| seq(id))
                .collect();
            assert!(
                seqs.windows(2).all(|w| w[0] < w[1]),
                "publisher {p}'s later publishes to {channel} got later ids: {seqs:?}"
            );
        }
        for (channel, id, data) in answered {
            assert!(
                acked
                    .entry(channel)
                    .or_default()
                    .insert(seq(&id), (id.clone(), data))
                    .is_none(),
                "{id} given twice on {channel}"
            );
        }
    }
    let mut expected = Expected::new();
    for (channel, messages) in acked {
        assert_eq!(
            messages.keys().copied().collect::<Vec<_>>(),
            (1..=PER_CHANNEL as u64).collect::<Vec<_>>(),
            "the publishers' answers on {channel} are seqs 1..={PER_CHANNEL}, each once"
        );
        let epochs: BTreeSet<String> = messages.values().map(|(id, _)| epoch(id)).collect();
        assert_eq!(epochs.len(), 1, "one epoch on {channel}: {epochs:?}");
        expected.insert(channel.to_owned(), messages.into_values().collect());
    }

    for (what, has_ids, reader) in readers {
        let got = within_for(Duration::from_secs(20), &what, reader)
            .await
            .unwrap();
        check_per_channel(&what, &got, &expected, has_ids);
    }

    // The channels really are spread over the cluster: each channel's keys
    // are on one primary, its seq there is the last one given, and every
    // primary holds some channel.
    let mut holders = BTreeMap::new();
    for channel in SPREAD {
        let holder = redis.holder(channel).await;
        assert_eq!(
            redis
                .command(
                    holder,
                    &["HGET", &format!("herald:{{{channel}}}:meta"), "seq"]
                )
                .await,
            PER_CHANNEL.to_string(),
            "the seq of {channel} on primary {holder}"
        );
        holders.insert(channel, holder);
    }
    let used: BTreeSet<usize> = holders.values().copied().collect();
    assert_eq!(
        used.len(),
        PRIMARIES,
        "every primary holds channels: {holders:?}"
    );

    for channel in SPREAD {
        check_info_agrees([&a, &b], channel, &expected[channel]).await;
    }
}

/// Three channels on three primaries (`orders` slot 105, `ticks` 9530, `chat`
/// 14028); node b was given only the third primary as its seed.
const RESUMED: [&str; 3] = ["orders", "ticks", "chat"];

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn resumes_idempotent_retries_and_channel_info_agree_across_nodes_on_a_cluster() {
    const EACH: usize = 10;
    let redis = RedisCluster::start().await;
    let (a, b) = two_nodes(&redis).await;
    let mut published = Expected::new();
    for round in 0..EACH {
        for channel in RESUMED {
            let data = format!("{channel}|{round}");
            let id = a.publish(channel, &data).await;
            published
                .entry(channel.to_owned())
                .or_default()
                .push((id, data));
        }
    }
    let mut holders = BTreeSet::new();
    for channel in RESUMED {
        holders.insert(redis.holder(channel).await);
    }
    assert_eq!(
        holders.len(),
        RESUMED.len(),
        "one primary per channel: {holders:?}"
    );

    // One channel, resumed on node b from an id node a answered.
    let orders = published["orders"].clone();
    let since = orders[3].0.clone();
    let rest = Expected::from([("orders".to_owned(), orders[4..].to_vec())]);
    let count = orders.len() - 4;
    let mut sse = SseStream::open(
        b.addr,
        "/sub/orders?envelope=1",
        &[("last-event-id", &since)],
    )
    .await;
    check_per_channel(
        "SSE Last-Event-ID on node b",
        &sse_messages(&mut sse, count, "SSE").await,
        &rest,
        true,
    );
    let mut raw = websocket(b.addr, &format!("/sub/orders?since={since}")).await;
    check_per_channel(
        "raw WebSocket ?since= on node b",
        &raw_deliveries(&mut raw, count, "raw").await,
        &rest,
        false,
    );
    let mut ws = websocket(b.addr, "/ws").await;
    ws_sub(&mut ws, "orders", Some(&since)).await;
    check_per_channel(
        "/ws sub since on node b",
        &ws_messages(&mut ws, count, "/ws").await,
        &rest,
        true,
    );
    let (polled, _) = poll_messages(b.addr, "orders", &since, count, "poll").await;
    check_per_channel("poll since on node b", &polled, &rest, true);
    // Nothing more than the rest: the next page from the last id is empty.
    let page = poll(
        b.addr,
        &format!("/sub/orders?since={}&timeout=0", orders[9].0),
    )
    .await;
    assert_eq!(
        page["messages"],
        json!([]),
        "poll after the last id: {page}"
    );

    // Several channels, one cursor built from node a's ids, on node b.
    let (ticks, chat) = (published["ticks"].clone(), published["chat"].clone());
    let cursor = format!(
        "orders={},ticks={},chat={}",
        orders[3].0, ticks[6].0, chat[0].0
    );
    let rest = Expected::from([
        ("orders".to_owned(), orders[4..].to_vec()),
        ("ticks".to_owned(), ticks[7..].to_vec()),
        ("chat".to_owned(), chat[1..].to_vec()),
    ]);
    let count: usize = rest.values().map(Vec::len).sum();
    let list = RESUMED.join(",");
    let mut multi_sse = SseStream::open(
        b.addr,
        &format!("/sub/{list}?envelope=1"),
        &[("last-event-id", &cursor)],
    )
    .await;
    check_per_channel(
        "multi-channel SSE on node b",
        &sse_messages(&mut multi_sse, count, "SSE").await,
        &rest,
        true,
    );
    let mut multi_raw = websocket(
        b.addr,
        &format!("/sub/{list}?since={}", encode_cursor(&cursor)),
    )
    .await;
    check_per_channel(
        "multi-channel raw WebSocket on node b",
        &raw_deliveries(&mut multi_raw, count, "raw").await,
        &rest,
        false,
    );
    let (polled, next) = poll_messages(b.addr, &list, &cursor, count, "poll").await;
    check_per_channel("multi-channel poll on node b", &polled, &rest, true);

    // Live messages from node a follow on node b with nothing repeated at the seam.
    let mut live = Expected::new();
    for channel in RESUMED {
        let data = format!("{channel}|live");
        let id = a.publish(channel, &data).await;
        live.insert(channel.to_owned(), vec![(id.clone(), data.clone())]);
        published.get_mut(channel).unwrap().push((id, data));
    }
    let orders_live = Expected::from([("orders".to_owned(), live["orders"].clone())]);
    check_per_channel(
        "SSE on node b, live",
        &sse_messages(&mut sse, 1, "SSE").await,
        &orders_live,
        true,
    );
    check_per_channel(
        "raw WebSocket on node b, live",
        &raw_deliveries(&mut raw, 1, "raw").await,
        &orders_live,
        false,
    );
    check_per_channel(
        "/ws on node b, live",
        &ws_messages(&mut ws, 1, "/ws").await,
        &orders_live,
        true,
    );
    check_per_channel(
        "multi-channel SSE on node b, live",
        &sse_messages(&mut multi_sse, RESUMED.len(), "SSE").await,
        &live,
        true,
    );
    check_per_channel(
        "multi-channel raw WebSocket on node b, live",
        &raw_deliveries(&mut multi_raw, RESUMED.len(), "raw").await,
        &live,
        false,
    );
    let (polled, _) = poll_messages(b.addr, &list, &next, RESUMED.len(), "poll").await;
    check_per_channel("multi-channel poll on node b, live", &polled, &live, true);

    // A publish to `chat` (on the primary node a was not given) retried on
    // the other node with its Idempotency-Key: one id, one message.
    let ids = publish_retried(&[&a, &b, &a, &b], "chat", "order-17", "chat|once").await;
    assert!(
        ids.iter().all(|id| id == &ids[0]),
        "one id for every retry: {ids:?}"
    );
    let once = ids[0].clone();
    assert_eq!(
        split_id(&once),
        (epoch(&chat[0].0), EACH as u64 + 2),
        "the retried message follows the live one"
    );
    let chat_holder = redis.holder("chat").await;
    assert_eq!(
        redis
            .command(chat_holder, &["EXISTS", "herald:{chat}:idem:order-17"])
            .await,
        ":1",
        "the idempotency key is kept with the channel's keys"
    );
    let after = b.publish("chat", "chat|after").await;
    assert_eq!(
        seq(&after),
        seq(&once) + 1,
        "stored once: {once}, then {after}"
    );
    let tail = vec![
        (once.clone(), "chat|once".to_owned()),
        (after.clone(), "chat|after".to_owned()),
    ];
    published.get_mut("chat").unwrap().extend(tail.clone());
    let tail = Expected::from([("chat".to_owned(), tail)]);
    check_per_channel(
        "multi-channel SSE on node b, after the retries",
        &sse_messages(&mut multi_sse, 2, "SSE").await,
        &tail,
        true,
    );
    check_per_channel(
        "multi-channel raw WebSocket on node b, after the retries",
        &raw_deliveries(&mut multi_raw, 2, "raw").await,
        &tail,
        false,
    );

    // Both nodes report the same history for every channel.
    for channel in RESUMED {
        check_info_agrees([&a, &b], channel, &published[channel]).await;
    }
    for node in [&a, &b] {
        let (status, body) = within("channel info", get_json(node.addr, "/pub/never-used")).await;
        assert_eq!(status, 404, "node {}: {body}", node.name);
    }
}
