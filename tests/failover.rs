//! Redis Sentinel failover with real processes: a primary, two replicas and
//! three sentinels, two herald nodes started with `--redis-sentinel` and
//! `--redis-wait-replicas 1`, a publisher and two SSE subscribers on each
//! node, and `kill -9` of the primary while messages flow.
//!
//! What is asserted is the promise of docs/reliability.md: every publish
//! answered 200 reaches every subscriber exactly once and in order, or the
//! subscriber is told of a gap where it is missing, never a silent hole;
//! publishes during the failover are answered 503 and succeed when retried
//! with their idempotency key; the nodes follow the new primary without a
//! restart.
//!
//! One failover runs in the test suite. `HERALD_FAULT_ROUNDS=N` runs N in a
//! row (scripts/faults does), each killed primary coming back as a replica
//! of the new one, and a `FAULTS {json}` line reports what it cost;
//! `HERALD_FAULT_WAIT_REPLICAS=0` runs it without `WAIT`.

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cluster::{eventually, redis_command, within_for, Node, Sentinelled, SseStream, RECOVERY};
use common::url;

/// What a subscriber saw, in order.
#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Message { id: String, data: String },
    Gap,
}

type Log = Arc<Mutex<Vec<Seen>>>;

/// An SSE subscriber on `addr` that reconnects with `Last-Event-ID` when its
/// stream ends, until `stop`.
fn subscribe(addr: SocketAddr, channel: &'static str, stop: Arc<AtomicBool>) -> Log {
    let log: Log = Arc::default();
    let keep = log.clone();
    tokio::spawn(async move {
        let mut last: Option<String> = None;
        while !stop.load(Ordering::SeqCst) {
            let headers: Vec<(&str, &str)> = match &last {
                Some(id) => vec![("last-event-id", id.as_str())],
                None => Vec::new(),
            };
            let path = format!("/sub/{channel}");
            let Ok(Ok(response)) = tokio::time::timeout(Duration::from_secs(2), async {
                let mut request = reqwest::Client::new()
                    .get(url(addr, &path))
                    .header("accept", "text/event-stream");
                for (name, value) in &headers {
                    request = request.header(*name, *value);
                }
                request.send().await
            })
            .await
            else {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            };
            if response.status() != 200 {
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let mut stream = SseStream::from_response(response);
            while !stop.load(Ordering::SeqCst) {
                let Some(event) = stream.next_within(Duration::from_secs(60)).await else {
                    break;
                };
                let seen = if event.event == "herald.gap" {
                    Seen::Gap
                } else {
                    last = Some(event.id.clone());
                    Seen::Message {
                        id: event.id,
                        data: event.data,
                    }
                };
                keep.lock().unwrap().push(seen);
            }
        }
    });
    log
}

/// One acknowledged publish.
#[derive(Debug, Clone)]
struct Ack {
    data: String,
    id: String,
    at: Instant,
}

#[derive(Default)]
struct Published {
    acks: Vec<Ack>,
    /// Answers other than 200 (status 0: no answer), by status.
    refused: HashMap<u16, usize>,
}

/// Publishes `prefix-0`, `prefix-1`... to `channel` on `addr` every few
/// milliseconds until `stop`, retrying each with its idempotency key until
/// it is answered 200.
fn publisher(
    addr: SocketAddr,
    channel: &'static str,
    prefix: &'static str,
    stop: Arc<AtomicBool>,
    out: Arc<Mutex<Published>>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .unwrap();
        let mut pace = tokio::time::interval(Duration::from_millis(20));
        for i in 0.. {
            pace.tick().await;
            if stop.load(Ordering::SeqCst) {
                return;
            }
            let data = format!("{prefix}-{i}");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                assert!(
                    Instant::now() < deadline,
                    "publish {data} not accepted within 60 s of retries"
                );
                let answer = http
                    .post(url(addr, &format!("/pub/{channel}")))
                    .header("idempotency-key", &data)
                    .body(data.clone())
                    .send()
                    .await;
                let (status, body) = match answer {
                    Ok(response) => {
                        let status = response.status().as_u16();
                        (
                            status,
                            response
                                .json::<serde_json::Value>()
                                .await
                                .unwrap_or_default(),
                        )
                    }
                    Err(_) => (0, serde_json::Value::Null),
                };
                if status == 200 {
                    let id = body["id"].as_str().expect("an id").to_owned();
                    out.lock().unwrap().acks.push(Ack {
                        data,
                        id,
                        at: Instant::now(),
                    });
                    break;
                }
                if status == 503 {
                    let code = body["error"]["code"].as_str().unwrap_or("");
                    assert!(
                        code == "engine_unavailable" || code == "not_replicated",
                        "503 with an unexpected code: {body}"
                    );
                } else {
                    assert_eq!(status, 0, "unexpected answer {status}: {body}");
                }
                *out.lock().unwrap().refused.entry(status).or_default() += 1;
                // Retry pacing, not synchronisation: the failover decides when it succeeds.
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    })
}

/// Every acknowledged message a subscriber did not get once, and did not
/// hear of as a gap where it belonged: the holes, duplicates and
/// disorder in its log.
fn check(log: &[Seen], acks: &[Ack]) -> Vec<String> {
    let mut problems = Vec::new();
    let split = |id: &str| -> (String, u64) {
        let (epoch, seq) = id.split_once('-').expect("an EPOCH-SEQ id");
        (epoch.to_owned(), seq.parse().expect("a sequence"))
    };
    // Order: within an epoch, ids strictly increase; a new epoch only after a gap.
    let mut previous: Option<(String, u64)> = None;
    let mut gap_since_previous = false;
    let mut positions: HashMap<&str, usize> = HashMap::new();
    for (index, seen) in log.iter().enumerate() {
        match seen {
            Seen::Gap => gap_since_previous = true,
            Seen::Message { id, data } => {
                let (epoch, seq) = split(id);
                if let Some((e, s)) = &previous {
                    if *e == epoch && seq <= *s {
                        problems.push(format!("{id} ({data}) after {e}-{s}: out of order"));
                    }
                    if *e != epoch && !gap_since_previous {
                        problems.push(format!("new epoch at {id} without a gap report"));
                    }
                }
                if positions.insert(id.as_str(), index).is_some() {
                    problems.push(format!("{id} ({data}) delivered twice"));
                }
                previous = Some((epoch, seq));
                gap_since_previous = false;
            }
        }
    }
    for ack in acks {
        match positions.get(ack.id.as_str()) {
            Some(&index) => {
                if let Seen::Message { data, .. } = &log[index] {
                    if *data != ack.data {
                        problems.push(format!(
                            "{} acknowledged for {} but delivered as {data}",
                            ack.id, ack.data
                        ));
                    }
                }
            }
            None => {
                // Missing: a gap must stand after the last message before it
                // (same epoch, lower seq) and before the next message delivered.
                let (epoch, seq) = split(&ack.id);
                let before = log.iter().rposition(|s| match s {
                    Seen::Message { id, .. } => {
                        let (e, s) = split(id);
                        e == epoch && s < seq
                    }
                    Seen::Gap => false,
                });
                let from = before.map_or(0, |b| b + 1);
                let until = log[from..]
                    .iter()
                    .position(|s| matches!(s, Seen::Message { .. }))
                    .map_or(log.len(), |p| from + p);
                if !log[from..until].contains(&Seen::Gap) {
                    problems.push(format!(
                        "{} ({}) acknowledged, never delivered, no gap reported",
                        ack.id, ack.data
                    ));
                }
            }
        }
    }
    problems
}

fn rounds() -> usize {
    std::env::var("HERALD_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(1)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_sentinel_failover_loses_no_acknowledged_publish() {
    const CHANNEL: &str = "failover";
    let mut set = Sentinelled::start("herald-main").await;
    let mut flags = set.flags();
    // HERALD_FAULT_WAIT_REPLICAS=0 measures what asynchronous replication costs.
    let wait = std::env::var("HERALD_FAULT_WAIT_REPLICAS").unwrap_or_else(|_| "1".into());
    flags.extend(
        [
            "--redis-wait-replicas",
            wait.as_str(),
            "--redis-wait-timeout",
            "500ms",
        ]
        .map(String::from),
    );
    let flags: Vec<&str> = flags.iter().map(String::as_str).collect();
    let a = Node::serve("a", &flags).await;
    let b = Node::serve("b", &flags).await;

    let stop = Arc::new(AtomicBool::new(false));
    let subscribers: Vec<(&str, Log)> = vec![
        ("a1", subscribe(a.addr, CHANNEL, stop.clone())),
        ("a2", subscribe(a.addr, CHANNEL, stop.clone())),
        ("b1", subscribe(b.addr, CHANNEL, stop.clone())),
        ("b2", subscribe(b.addr, CHANNEL, stop.clone())),
    ];
    common::wait_for_subscribers(a.addr, CHANNEL, 4).await;

    let halt = Arc::new(AtomicBool::new(false));
    let out: Arc<Mutex<Published>> = Arc::default();
    let publishers = vec![
        publisher(a.addr, CHANNEL, "pa", halt.clone(), out.clone()),
        publisher(b.addr, CHANNEL, "pb", halt.clone(), out.clone()),
    ];
    let acked = || out.lock().unwrap().acks.len();

    let mut recoveries = Vec::new();
    for round in 0..rounds() {
        let before = acked();
        eventually(RECOVERY, "20 publishes before the kill", || async {
            acked() >= before + 20
        })
        .await;
        let old = set.primary_port().await.expect("a primary named");
        let killed_at = Instant::now();
        set.server(old).stop().await;
        // Both nodes lose Redis: /readyz must say so (not asserted on
        // timing: the failover may already be over by the time we ask).
        let new = within_for(
            Duration::from_secs(30),
            "the sentinels to promote a replica",
            async {
                loop {
                    if let Some(port) = set.primary_port().await.filter(|p| *p != old) {
                        return port;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
        )
        .await;
        let promoted = killed_at.elapsed();
        eventually(
            Duration::from_secs(30),
            "a publish acknowledged after the kill on both nodes",
            || async {
                let published = out.lock().unwrap();
                ["pa-", "pb-"].iter().all(|p| {
                    published
                        .acks
                        .iter()
                        .any(|a| a.data.starts_with(p) && a.at > killed_at + promoted)
                })
            },
        )
        .await;
        // Publishing was interrupted for the longest stretch without an
        // acknowledgement around the kill (a publish in flight at the kill
        // may still be acknowledged just after it).
        let first_ack = {
            let published = out.lock().unwrap();
            let mut times: Vec<Instant> = published
                .acks
                .iter()
                .map(|a| a.at)
                .filter(|t| *t + Duration::from_secs(1) > killed_at)
                .collect();
            times.sort();
            times
                .windows(2)
                .filter(|w| w[1] > killed_at)
                .map(|w| w[1] - w[0])
                .max()
                .unwrap_or_default()
        };
        recoveries.push((promoted, first_ack));
        eprintln!(
            "round {round}: primary {old} killed, {new} promoted after {promoted:?}, \
             publishing interrupted for {first_ack:?}"
        );
        if round + 1 < rounds() {
            // The killed primary comes back as a replica of the new one.
            set.server(old).restart_as_replica(new).await;
            eventually(RECOVERY, "two replicas in sync again", || async {
                let info = redis_command(new, &["INFO", "replication"])
                    .await
                    .unwrap_or_default();
                info.matches("state=online").count() == 2
            })
            .await;
        }
    }
    halt.store(true, Ordering::SeqCst);
    for publisher in publishers {
        common::within("the publishers to stop", publisher)
            .await
            .unwrap();
    }

    let published = std::mem::take(&mut *out.lock().unwrap());
    let acks = &published.acks;
    // Wait (bounded) until every subscriber has every acknowledged id, or
    // has stopped moving; then check what it got.
    let want: Vec<&str> = acks.iter().map(|a| a.id.as_str()).collect();
    let _ = tokio::time::timeout(RECOVERY, async {
        loop {
            let done = subscribers.iter().all(|(_, log)| {
                let log = log.lock().unwrap();
                want.iter().all(|id| {
                    log.iter()
                        .any(|s| matches!(s, Seen::Message { id: i, .. } if i == id))
                })
            });
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
    stop.store(true, Ordering::SeqCst);

    let mut report = Vec::new();
    let mut gaps = 0;
    let mut missing = 0;
    for (name, log) in &subscribers {
        let log = log.lock().unwrap().clone();
        gaps += log.iter().filter(|s| **s == Seen::Gap).count();
        missing += acks
            .iter()
            .filter(|a| {
                !log.iter()
                    .any(|s| matches!(s, Seen::Message { id, .. } if *id == a.id))
            })
            .count();
        for problem in check(&log, acks) {
            report.push(format!("subscriber {name}: {problem}"));
        }
    }
    let refused: usize = published.refused.values().sum();
    let worst = recoveries.iter().map(|r| r.1).max().unwrap_or_default();
    println!(
        "FAULTS {}",
        serde_json::json!({
            "fault": "sentinel failover (kill -9 of the primary)",
            "wait_replicas": wait,
            "rounds": recoveries.len(),
            "acknowledged": acks.len(),
            "lost": report.iter().filter(|p| p.contains("no gap reported")).count(),
            "duplicates": report.iter().filter(|p| p.contains("twice")).count(),
            "gaps_reported": gaps,
            "missing_with_gap": missing,
            "refused_during_failover": refused,
            "refused_by_status": published.refused,
            "promotion_ms": recoveries.iter().map(|r| r.0.as_millis() as u64).collect::<Vec<_>>(),
            "publish_outage_ms": recoveries.iter().map(|r| r.1.as_millis() as u64).collect::<Vec<_>>(),
            "worst_recovery_ms": worst.as_millis() as u64,
        })
    );
    assert!(
        report.is_empty(),
        "{} problems:\n{}",
        report.len(),
        report.join("\n")
    );
    assert!(
        refused > 0,
        "no publish was refused: the kill was not mid-stream"
    );
    drop((a, b));
}
