//! A full disk under the durable engine, made for real: a 2 MiB `tmpfs`
//! mounted for the test (the test command runs as root), half of it taken
//! by a filler file, and `herald serve --data-dir` on it. Publishing until
//! the disk fills: the first refused publish is `507 storage_full` with
//! `Retry-After`, `/readyz` says `storage_full`, every acknowledged message
//! reached the live subscriber and stays in history; once the filler is
//! removed the node is ready again by itself and publishes go through; after
//! `kill -9` every acknowledged message is still there.

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use cluster::Node;
use common::*;
use serde_json::Value;

/// A tmpfs of `size` mounted on a fresh directory, unmounted when dropped.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("herald-full-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let status = std::process::Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(&dir)
            .status()
            .expect("mount(8) runs");
        assert!(
            status.success(),
            "mounting a tmpfs needs root (the test command runs as root): {status}"
        );
        Self(dir)
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // The store's writer thread may still hold its files for a moment
        // after the server is dropped: a lazy unmount detaches the tmpfs
        // now either way (it goes once they are closed), so no mount is
        // left behind.
        let _ = std::process::Command::new("umount")
            .arg("--lazy")
            .arg(&self.0)
            .status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

const MESSAGE: usize = 60 * 1024;

async fn publish(addr: std::net::SocketAddr, n: usize) -> reqwest::Response {
    let body = format!("{n:06}").repeat(MESSAGE / 6);
    within(
        "a publish",
        reqwest::Client::new()
            .post(url(addr, "/pub/disk"))
            .body(body)
            .send(),
    )
    .await
    .unwrap()
}

async fn readyz(addr: std::net::SocketAddr) -> (u16, Value) {
    get_json(addr, "/readyz").await
}

/// The ids in history, from the start.
async fn history_ids(addr: std::net::SocketAddr) -> Vec<String> {
    let page = poll(addr, "/sub/disk?since=0&limit=1000").await;
    page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_full_disk_refuses_publishes_with_507_loses_nothing_and_recovers_by_itself() {
    let disk = Tmpfs::mount("2m");
    let filler = disk.path().join("filler");
    std::fs::write(&filler, vec![0u8; 1 << 20]).unwrap();
    let data = disk.path().join("data");
    let args = [
        "--data-dir",
        data.to_str().unwrap(),
        "--max-message-size",
        "64KiB",
    ];
    let mut node = Node::serve("full", &args).await;
    let mut live = Sse::open(node.addr, "/sub/disk", &[]).await;

    let mut acked = Vec::new();
    let refused = loop {
        assert!(acked.len() < 100, "2 MiB never filled up");
        let response = publish(node.addr, acked.len()).await;
        if response.status() != 200 {
            break response;
        }
        let answer: Value = response.json().await.unwrap();
        acked.push(answer["id"].as_str().unwrap().to_owned());
    };
    assert!(
        !acked.is_empty(),
        "some publishes fit before the disk filled"
    );
    assert_eq!(refused.status(), 507);
    assert!(refused.headers().contains_key("retry-after"));
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "storage_full", "{body}");

    let (status, ready) = readyz(node.addr).await;
    assert_eq!(
        (status, &ready["status"]),
        (503, &Value::from("storage_full"))
    );
    // Everything acknowledged reached the live subscriber, in order, and
    // history still serves it.
    let delivered: Vec<String> = live
        .messages(acked.len())
        .await
        .into_iter()
        .map(|e| e.id)
        .collect();
    assert_eq!(delivered, acked);
    assert_eq!(history_ids(node.addr).await, acked);

    // Space comes back: the node says so by itself, and publishing resumes.
    std::fs::remove_file(&filler).unwrap();
    within("the node to be ready again", async {
        while readyz(node.addr).await.0 != 200 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let response = publish(node.addr, acked.len()).await;
    assert_eq!(response.status(), 200);
    let answer: Value = response.json().await.unwrap();
    acked.push(answer["id"].as_str().unwrap().to_owned());
    assert_eq!(live.messages(1).await[0].id, acked[acked.len() - 1]);

    node.kill().await;
    let again = Node::serve("full again", &args).await;
    assert_eq!(
        history_ids(again.addr).await,
        acked,
        "acknowledged survive kill -9"
    );
    drop(again);
    drop(node);
}
