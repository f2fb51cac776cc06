//! The `herald` command line, run as a user would.

mod common;

use std::process::{Command, Stdio};
use tokio::io::AsyncWriteExt;

use common::*;
use serde_json::Value;

fn herald() -> Command {
    Command::new(env!("CARGO_BIN_EXE_herald"))
}

#[tokio::test]
async fn pub_publishes_an_argument_or_standard_input() {
    let server = server().await;
    let base = format!("http://{}", server.addr);
    // The server runs in this process: run the CLI without blocking it.
    let output = within(
        "herald pub",
        tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["pub", "news", "from an argument", "--url", &base])
            .output(),
    )
    .await
    .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let answer: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(answer["channel"], "news");

    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
        .args(["pub", "news", "-", "--url", &base])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(b"from stdin").await.unwrap();
    drop(stdin);
    let output = within("herald pub -", child.wait_with_output())
        .await
        .unwrap();
    assert!(output.status.success());
    let page = poll(server.addr, "/sub/news?since=0").await;
    let data: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["from an argument", "from stdin"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sub_prints_one_json_line_per_message_on_every_transport() {
    let server = server().await;
    let base = format!("http://{}", server.addr);
    for (i, transport) in ["ws", "sse", "poll"].into_iter().enumerate() {
        let channel = format!("cli{i}");
        let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"))
            .args([
                "sub",
                &channel,
                "--transport",
                transport,
                "--json",
                "--count",
                "3",
                "--url",
                &base,
            ])
            .stdout(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        wait_for_subscribers(server.addr, &channel, 1).await;
        let mut ids = Vec::new();
        for n in 0..3 {
            ids.push(publish(server.addr, &channel, format!("m{n}")).await["id"].clone());
        }
        let output = within("herald sub to finish", child.wait_with_output())
            .await
            .unwrap();
        assert!(output.status.success(), "{transport}");
        let lines: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines.len(), 3, "{transport}: {lines:?}");
        for (n, line) in lines.iter().enumerate() {
            assert_eq!(line["data"], format!("m{n}"), "{transport}");
            assert_eq!(line["channel"], channel.as_str(), "{transport}");
            assert_eq!(line["id"], ids[n], "{transport}");
        }
    }
}

#[test]
fn unknown_flags_are_errors_and_help_explains_the_commands() {
    let output = herald().args(["serve", "--bogus-flag"]).output().unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("--bogus-flag"));
    let help = herald().arg("--help").output().unwrap();
    let text = String::from_utf8(help.stdout).unwrap();
    for command in ["serve", "pub", "sub"] {
        assert!(text.contains(command), "--help lacks {command}");
    }
    let serve_help =
        String::from_utf8(herald().args(["serve", "--help"]).output().unwrap().stdout).unwrap();
    for flag in [
        "--listen",
        "--history-size",
        "--history-ttl",
        "--max-message-size",
        "--demo",
    ] {
        assert!(serve_help.contains(flag), "serve --help lacks {flag}");
    }
}
