//! The durable engine against real processes: `kill -9` in the middle of a
//! publishing burst loses no acknowledged message, ids continue after a
//! restart, and history is trimmed on disk too.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

struct Node {
    child: tokio::process::Child,
    addr: SocketAddr,
}

async fn node(dir: &Path, extra: &[&str]) -> Node {
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--log-level",
            "warn",
            "--poll-page-size",
            "100000",
        ])
        .arg("--data-dir")
        .arg(dir)
        .args(extra)
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
    Node { child, addr }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_burst_loses_no_acknowledged_message_and_ids_continue() {
    let dir = scratch("kill9");
    let mut first = node(&dir, &[]).await;
    let addr = first.addr;
    let acked: Arc<Mutex<BTreeMap<u64, (String, String)>>> = Arc::default();
    let mut publishers = Vec::new();
    for p in 0..8 {
        let acked = acked.clone();
        publishers.push(tokio::spawn(async move {
            let http = reqwest::Client::new();
            for i in 0.. {
                let data = format!("p{p}-{i}");
                let Ok(response) = http
                    .post(format!("http://{addr}/pub/burst"))
                    .body(data.clone())
                    .send()
                    .await
                else {
                    return;
                };
                let Ok(answer) = response.json::<serde_json::Value>().await else {
                    return;
                };
                let id = answer["id"].as_str().unwrap().to_owned();
                let seq: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
                acked.lock().unwrap().insert(seq, (id, data));
            }
        }));
    }
    within("500 acknowledged publishes", async {
        while acked.lock().unwrap().len() < 500 {
            tokio::time::sleep(std::time::Duration::from_millis(2)).await;
        }
    })
    .await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    for publisher in publishers {
        within("publishers to notice", publisher).await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();

    let second = node(&dir, &[]).await;
    let page = poll(second.addr, "/sub/burst?since=0").await;
    let stored: BTreeMap<u64, (String, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            let id = m["id"].as_str().unwrap().to_owned();
            let seq: u64 = id.rsplit('-').next().unwrap().parse().unwrap();
            (seq, (id, m["data"].as_str().unwrap().to_owned()))
        })
        .collect();
    for (seq, message) in &acked {
        assert_eq!(
            stored.get(seq),
            Some(message),
            "acknowledged message {seq} lost or changed"
        );
    }
    let last = *stored.keys().last().unwrap();
    assert_eq!(
        stored.keys().copied().collect::<Vec<_>>(),
        (1..=last).collect::<Vec<_>>(),
        "gap-free ids"
    );
    let epoch = acked
        .values()
        .next()
        .unwrap()
        .0
        .split('-')
        .next()
        .unwrap()
        .to_owned();
    let next = publish(second.addr, "burst", "after restart").await;
    assert_eq!(
        next["id"],
        format!("{epoch}-{}", last + 1),
        "ids continue in the same epoch"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_subscriber_resumes_across_a_restart_without_a_gap() {
    let dir = scratch("resume");
    let mut first = node(&dir, &[]).await;
    let seen = publish(first.addr, "r", "before").await["id"]
        .as_str()
        .unwrap()
        .to_owned();
    publish(first.addr, "r", "missed while away").await;
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let second = node(&dir, &[]).await;
    let mut sse = Sse::open(second.addr, "/sub/r", &[("last-event-id", &seen)]).await;
    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", "missed while away")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_trimmed_on_disk() {
    let dir = scratch("trim");
    let mut first = node(&dir, &["--history-size", "10"]).await;
    for i in 0..100 {
        publish(first.addr, "t", i.to_string()).await;
    }
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    // What the store holds is what a restart reads back: its count is logged.
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--history-size",
            "10",
            "--log-format",
            "json",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .stderr(Stdio::piped())
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut logs = BufReader::new(child.stderr.take().unwrap()).lines();
    let loaded = within("the load log line", async {
        loop {
            let line = logs
                .next_line()
                .await
                .unwrap()
                .expect("herald logs its load");
            if line.contains("history loaded from disk") {
                return line;
            }
        }
    })
    .await;
    let loaded: serde_json::Value = serde_json::from_str(&loaded).unwrap();
    assert_eq!(
        loaded["fields"]["messages"], 10,
        "the store kept more than the history size"
    );
    drop(child);
    let second = node(&dir, &["--history-size", "10"]).await;
    let page = poll(second.addr, "/sub/t?since=0").await;
    let data: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, (90..100).map(|i| i.to_string()).collect::<Vec<_>>());
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotent_retry_after_kill_9_returns_the_first_answer() {
    let dir = scratch("idem");
    let mut first = node(&dir, &[]).await;
    let http = reqwest::Client::new();
    let send = |addr: SocketAddr, data: &'static str| {
        http.post(format!("http://{addr}/pub/orders"))
            .header("idempotency-key", "order-17")
            .body(data)
            .send()
    };
    let answer: serde_json::Value = send(first.addr, "first")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    let second = node(&dir, &[]).await;
    let retried: serde_json::Value = send(second.addr, "retry")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        retried["id"], answer["id"],
        "the retry is answered with the first id"
    );
    let page = poll(second.addr, "/sub/orders?since=0").await;
    assert_eq!(page_data(&page), vec!["first"], "published once");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_process_on_the_same_data_dir_is_refused() {
    let dir = scratch("lock");
    let first = node(&dir, &[]).await;
    let second = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["serve", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .output();
    let second = within("the second process to exit", second).await.unwrap();
    assert!(
        !second.status.success(),
        "a second herald on one data dir must not start"
    );
    let stderr = String::from_utf8_lossy(&second.stderr);
    assert!(stderr.contains("in use by another herald"), "{stderr}");
    // The first is unharmed.
    publish(first.addr, "still", "fine").await;
    let _ = std::fs::remove_dir_all(&dir);
}
