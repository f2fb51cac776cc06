//! A crash loop of the durable engine: a node on one `--data-dir` is
//! `kill -9`ed while publishers keep it busy, started again on the same
//! directory, and killed again. After every restart each channel's history
//! holds every message that was ever acknowledged, exactly once, with ids
//! gap-free and in order in one epoch.
//!
//! Five rounds run in the test suite; `HERALD_FAULT_ROUNDS=N` runs N
//! (scripts/faults runs 50), and a `FAULTS {json}` line reports the cost.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::within;
use tokio::io::{AsyncBufReadExt, BufReader};

const CHANNELS: [&str; 2] = ["crash-a", "crash-b"];

async fn start(dir: &Path) -> (tokio::process::Child, SocketAddr) {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0", "--log-level", "warn"])
        .args(["--poll-page-size", "1000000", "--history-size", "1000000"])
        .arg("--data-dir")
        .arg(dir)
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let line = within("herald to start", lines.next_line())
        .await
        .unwrap()
        .expect("a listening line");
    let addr = line.rsplit("http://").next().unwrap().parse().unwrap();
    (child, addr)
}

/// Every message of `channel`'s history: seq → (id, data).
async fn history(addr: SocketAddr, channel: &str) -> BTreeMap<u64, (String, String)> {
    let (status, _) = common::get_json(addr, &format!("/pub/{channel}")).await;
    if status == 404 {
        // Never published to: a poll would wait for its first message.
        return BTreeMap::new();
    }
    let page = common::poll(addr, &format!("/sub/{channel}?since=0")).await;
    page["messages"]
        .as_array()
        .map(|messages| {
            messages
                .iter()
                .map(|m| {
                    let id = m["id"].as_str().unwrap().to_owned();
                    let seq: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
                    (seq, (id, m["data"].as_str().unwrap().to_owned()))
                })
                .collect()
        })
        .unwrap_or_default()
}

/// Acknowledged publishes per channel: id → data.
type Acked = Arc<Mutex<BTreeMap<&'static str, BTreeMap<String, String>>>>;

/// Problems with what the restarted node holds, given everything acknowledged.
async fn check(addr: SocketAddr, acked: &Acked) -> Vec<String> {
    let mut problems = Vec::new();
    for channel in CHANNELS {
        let stored = history(addr, channel).await;
        let acked = acked
            .lock()
            .unwrap()
            .get(channel)
            .cloned()
            .unwrap_or_default();
        let by_id: BTreeMap<&str, &str> = stored
            .values()
            .map(|(id, data)| (id.as_str(), data.as_str()))
            .collect();
        for (id, data) in &acked {
            match by_id.get(id.as_str()) {
                Some(found) if found == data => {}
                Some(found) => problems.push(format!("{channel} {id}: {data} stored as {found}")),
                None => problems.push(format!("{channel} {id} ({data}) acknowledged, lost")),
            }
        }
        if let Some(&last) = stored.keys().last() {
            if stored.keys().copied().ne(1..=last) {
                problems.push(format!("{channel}: ids not gap-free up to {last}"));
            }
        }
        let epochs: std::collections::BTreeSet<&str> = stored
            .values()
            .map(|(id, _)| id.split('-').next().unwrap())
            .collect();
        if epochs.len() > 1 {
            problems.push(format!("{channel}: several epochs {epochs:?}"));
        }
        let mut seen = std::collections::HashSet::new();
        for (_, data) in stored.values() {
            if !seen.insert(data) {
                problems.push(format!("{channel}: {data} stored twice"));
            }
        }
    }
    problems
}

fn rounds() -> usize {
    std::env::var("HERALD_FAULT_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_in_a_loop_under_load_loses_nothing_acknowledged() {
    let dir = std::env::temp_dir().join(format!("herald-crash-loop-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let acked: Acked = Arc::default();
    let mut restarts = Vec::new();
    let mut unanswered = 0usize;
    for round in 0..rounds() {
        let started = Instant::now();
        let (mut child, addr) = start(&dir).await;
        restarts.push(started.elapsed());
        let problems = check(addr, &acked).await;
        assert!(
            problems.is_empty(),
            "after restart {round}:\n{}",
            problems.join("\n")
        );
        let before: usize = acked.lock().unwrap().values().map(BTreeMap::len).sum();
        let unanswered_here = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let mut publishers = Vec::new();
        for p in 0..6 {
            let acked = acked.clone();
            let unanswered = unanswered_here.clone();
            let channel = CHANNELS[p % CHANNELS.len()];
            publishers.push(tokio::spawn(async move {
                let http = reqwest::Client::new();
                for i in 0.. {
                    let data = format!("r{round}-p{p}-{i}");
                    let answer = async {
                        let response = http
                            .post(format!("http://{addr}/pub/{channel}"))
                            .body(data.clone())
                            .send()
                            .await
                            .ok()?;
                        response.json::<serde_json::Value>().await.ok()
                    };
                    let Some(answer) = answer.await else {
                        // Killed mid-request: stored or not, never acknowledged.
                        unanswered.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        return;
                    };
                    let id = answer["id"].as_str().expect("an id").to_owned();
                    acked
                        .lock()
                        .unwrap()
                        .entry(channel)
                        .or_default()
                        .insert(id, data);
                }
            }));
        }
        // Kill after a different amount of work each round.
        let target = before + 60 + (round * 37) % 150;
        within("publishes before the kill", async {
            while acked
                .lock()
                .unwrap()
                .values()
                .map(BTreeMap::len)
                .sum::<usize>()
                < target
            {
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        })
        .await;
        child.start_kill().unwrap();
        child.wait().await.unwrap();
        for publisher in publishers {
            within("publishers to notice the kill", publisher)
                .await
                .unwrap();
        }
        unanswered += unanswered_here.load(std::sync::atomic::Ordering::Relaxed);
    }
    let started = Instant::now();
    let (_child, addr) = start(&dir).await;
    restarts.push(started.elapsed());
    let problems = check(addr, &acked).await;
    let total: usize = acked.lock().unwrap().values().map(BTreeMap::len).sum();
    println!(
        "FAULTS {}",
        serde_json::json!({
            "fault": "durable engine, kill -9 in a loop under load",
            "rounds": rounds(),
            "acknowledged": total,
            "lost": problems.iter().filter(|p| p.contains("lost")).count(),
            "duplicates": problems.iter().filter(|p| p.contains("twice")).count(),
            "in_flight_at_kill": unanswered,
            "worst_restart_ms": restarts.iter().max().map(|d| d.as_millis() as u64),
        })
    );
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    let _ = std::fs::remove_dir_all(&dir);
}
