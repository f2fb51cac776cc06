//! Wall-clock jumps, made for real with libfaketime (Debian's `faketime`,
//! installed by the test command): a herald process whose wall clock is
//! stepped three hours forward and then three hours back while it runs,
//! its monotonic clock untouched, as an NTP step or a resumed VM does.
//! History with a one-hour age limit is neither expired at once by the step
//! forward nor disordered by the step back; ids keep counting in one epoch;
//! a long poll still ends on time.

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use cluster::Node;
use common::*;
use serde_json::Value;

const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The offset file libfaketime rereads, removed when dropped.
struct Offset(PathBuf);

impl Offset {
    fn new() -> Self {
        let path = std::env::temp_dir().join(format!("herald-faketime-{}", std::process::id()));
        std::fs::write(&path, "+0\n").unwrap();
        Self(path)
    }

    fn set(&self, offset: &str) {
        std::fs::write(&self.0, format!("{offset}\n")).unwrap();
    }
}

impl Drop for Offset {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The server's wall clock as its `Date` header says, minus ours, in hours.
/// Read from an event stream's answer, which reads the clock each time
/// (hyper's own `Date` is cached until a wall-clock time that a step back
/// puts hours away).
async fn server_offset_hours(addr: std::net::SocketAddr) -> i64 {
    let response = reqwest::Client::new()
        .get(url(addr, "/sub/clock.date"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let date = response.headers()["date"].to_str().unwrap().to_owned();
    let theirs = httpdate::parse_http_date(&date).unwrap();
    let ours = SystemTime::now();
    // Rounded: the header has whole seconds.
    match theirs.duration_since(ours) {
        Ok(ahead) => ((ahead.as_secs() + 1800) / 3600) as i64,
        Err(behind) => -(((behind.duration().as_secs() + 1800) / 3600) as i64),
    }
}

/// Steps the server's wall clock and waits until its `Date` header shows it.
async fn step(node: &Node, offset: &Offset, to: &str, hours: i64) {
    offset.set(to);
    within(&format!("the server's clock to read {to}"), async {
        while server_offset_hours(node.addr).await != hours {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await;
}

async fn publish_id(node: &Node, data: &str) -> String {
    let answer = publish(node.addr, "clock", data.to_owned()).await;
    answer["id"].as_str().unwrap().to_owned()
}

fn seqs(page: &Value) -> Vec<u64> {
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| cluster::seq(m["id"].as_str().unwrap()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn wall_clock_steps_neither_expire_history_nor_reorder_ids_nor_stall_polls() {
    assert!(
        std::path::Path::new(LIBFAKETIME).exists(),
        "libfaketime missing: apt-get install -y faketime (the test command does)"
    );
    let offset = Offset::new();
    let env = [
        ("LD_PRELOAD", LIBFAKETIME),
        ("FAKETIME_TIMESTAMP_FILE", offset.0.to_str().unwrap()),
        ("FAKETIME_NO_CACHE", "1"),
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let node = Node::serve_with_env("clock", &["--history-ttl", "1h"], &env).await;
    let first = publish_id(&node, "before").await;

    step(&node, &offset, "+3h", 3).await;
    let forward = publish_id(&node, "after the step forward").await;
    let page = poll(node.addr, "/sub/clock?since=0").await;
    assert_eq!(seqs(&page), [1, 2], "nothing expired by the step: {page}");

    step(&node, &offset, "-3h", -3).await;
    let back = publish_id(&node, "after the step back").await;
    let page = poll(node.addr, "/sub/clock?since=0").await;
    assert_eq!(seqs(&page), [1, 2, 3], "{page}");
    let epochs: Vec<String> = [&first, &forward, &back]
        .iter()
        .map(|id| cluster::epoch(id))
        .collect();
    assert!(
        epochs.iter().all(|e| e == &epochs[0]),
        "one epoch: {epochs:?}"
    );

    // A long poll holds for its timeout by the monotonic clock and ends.
    let started = Instant::now();
    let page = poll(node.addr, &format!("/sub/clock?since={back}&timeout=1")).await;
    assert_eq!(seqs(&page), Vec::<u64>::new());
    let held = started.elapsed();
    assert!(
        held >= Duration::from_millis(900) && held < Duration::from_secs(4),
        "held {held:?}"
    );
}
