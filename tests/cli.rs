//! The `herald` command line, run as a user would.

mod common;

use std::process::{Command, Stdio};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

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

/// `herald ARGS` as a child process with no inherited `HERALD_*` variable,
/// killed when dropped.
fn herald_async(args: &[&str]) -> tokio::process::Command {
    let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            command.env_remove(key);
        }
    }
    command.args(args).kill_on_drop(true);
    command
}

/// A `herald serve --listen 127.0.0.1:0 ARGS` process and the address it printed.
struct Served {
    child: tokio::process::Child,
    base: String,
}

impl Served {
    async fn start(args: &[&str]) -> Self {
        Self::start_logging_to(args, Stdio::null()).await
    }

    /// [`Served::start`] with the server's standard error (its log) sent to `log`.
    async fn start_logging_to(args: &[&str], log: impl Into<Stdio>) -> Self {
        let mut command = herald_async(&["serve", "--listen", "127.0.0.1:0"]);
        command
            .args(args)
            .env_remove("NO_COLOR")
            .stdout(Stdio::piped())
            .stderr(log);
        let mut child = command.spawn().expect("herald serve starts");
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within("herald serve to print its address", lines.next_line())
            .await
            .unwrap()
            .expect("herald serve printed a line before exiting");
        let addr = line
            .strip_prefix("herald listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            child,
            base: format!("http://{addr}"),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn addr(&self) -> std::net::SocketAddr {
        self.base
            .trim_start_matches("http://")
            .parse()
            .expect("a socket address")
    }
}

/// Runs `herald ARGS` to completion and returns its output.
async fn run(args: &[&str]) -> std::process::Output {
    within(
        &format!("herald {}", args.join(" ")),
        herald_async(args).stdin(Stdio::null()).output(),
    )
    .await
    .unwrap()
}

#[tokio::test]
async fn serve_prints_its_address_and_the_cli_talks_to_it() {
    let mut served = Served::start(&["--history-size", "2", "--max-message-size", "8"]).await;
    let health = reqwest::get(served.url("/healthz")).await.unwrap();
    assert_eq!(health.status(), 200);

    for n in 1..=3 {
        let data = format!("m{n}");
        let output = run(&[
            "pub",
            "hist",
            &data,
            "--event",
            "note",
            "--url",
            &served.base,
        ])
        .await;
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // --history-size reached the server: two of three are kept.
    let (status, info) = get_json(served.addr(), "/pub/hist").await;
    assert_eq!(status, 200);
    assert_eq!(info["messages"], 2, "{info}");

    // --since 0 replays what is kept, with the event name, on every transport.
    for transport in ["ws", "sse", "poll"] {
        let output = run(&[
            "sub",
            "hist",
            "--transport",
            transport,
            "--since",
            "0",
            "--json",
            "--count",
            "2",
            "--url",
            &served.base,
        ])
        .await;
        assert!(output.status.success(), "{transport}");
        let lines: Vec<Value> = String::from_utf8(output.stdout)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        let data: Vec<&str> = lines.iter().map(|l| l["data"].as_str().unwrap()).collect();
        assert_eq!(data, ["m2", "m3"], "{transport}");
        assert_eq!(lines[0]["id"], info["first_id"], "{transport}");
        assert_eq!(lines[0]["event"], "note", "{transport}: {lines:?}");
    }

    // --max-message-size reached the server, and a refused publish fails the command.
    let output = run(&["pub", "hist", "too long by far", "--url", &served.base]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("413"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );

    served.child.kill().await.unwrap();
}

#[tokio::test]
async fn serve_demo_answers_like_the_seed() {
    let served = Served::start(&["--demo"]).await;
    let page = reqwest::get(served.url("/demo"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(page.contains("EventSource") && page.contains("WebSocket"));
    let mut socket = websocket(served.addr(), "/demo/ws").await;
    futures_util::SinkExt::send(
        &mut socket,
        tokio_tungstenite::tungstenite::Message::text("你好,服务器!"),
    )
    .await
    .unwrap();
    assert_eq!(
        next_frame(&mut socket).await,
        tokio_tungstenite::tungstenite::Message::text("服务器回应:你好,服务器!")
    );
}

#[tokio::test]
async fn pub_fails_and_sub_keeps_retrying_when_no_server_answers() {
    // A port that was free a moment ago: nothing listens there now.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let output = run(&["pub", "x", "y", "--url", &base]).await;
    assert!(!output.status.success());
    assert!(
        String::from_utf8_lossy(&output.stderr).contains("could not reach"),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let output = run(&["pub", "x", "y", "--url", "not-a-url"]).await;
    assert!(!output.status.success());

    // A subscriber outlives a server that is down: it says so and retries.
    let mut sub = herald_async(&["sub", "x", "--transport", "poll", "--url", &base])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut errors = BufReader::new(sub.stderr.take().unwrap()).lines();
    let line = within("herald sub to report the failure", errors.next_line())
        .await
        .unwrap()
        .expect("a line on stderr");
    assert!(line.contains("reconnecting"), "{line}");
    sub.kill().await.unwrap();
}

#[tokio::test]
async fn sub_gives_up_on_a_request_the_server_refuses() {
    let server = server().await;
    let base = format!("http://{}", server.addr);
    for transport in ["ws", "sse", "poll"] {
        let output = run(&[
            "sub",
            "x",
            "--transport",
            transport,
            "--since",
            "garbage",
            "--url",
            &base,
        ])
        .await;
        assert!(!output.status.success(), "{transport}");
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(
            stderr.contains("bad_cursor") || stderr.contains("not a message id"),
            "{transport}: {stderr}"
        );
    }
}

#[tokio::test]
async fn logs_to_a_file_carry_no_colour_codes() {
    let dir = std::env::temp_dir().join(format!("herald-log-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("serve.log");
    let file = std::fs::File::create(&log).unwrap();
    let mut served = Served::start_logging_to(&["--log-level", "debug"], file).await;
    // Written before the address is printed: the open-file-limit debug line.
    let written = std::fs::read(&log).unwrap();
    served.child.kill().await.unwrap();
    std::fs::remove_dir_all(&dir).unwrap();
    let text = String::from_utf8_lossy(&written);
    assert!(text.contains("DEBUG"), "a log line was written: {text:?}");
    assert!(
        !written.contains(&0x1b),
        "no escape byte in a log written to a file: {text:?}"
    );
}

#[test]
fn completions_and_the_manual_page_come_from_the_real_parser() {
    let run = |args: &[&str]| {
        let output = herald().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "herald {args:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8(output.stdout).unwrap()
    };
    let bash = run(&["completions", "bash"]);
    assert!(
        bash.contains("serve") && bash.contains("--history-size"),
        "{bash}"
    );
    assert!(bash.contains("complete -F"), "a bash completion script");
    let zsh = run(&["completions", "zsh"]);
    assert!(zsh.starts_with("#compdef herald"), "{zsh}");
    let fish = run(&["completions", "fish"]);
    assert!(fish.contains("complete -c herald"), "{fish}");

    let man = run(&["man"]);
    assert!(man.contains(".TH herald 1"), "{man}");
    assert!(man.contains("serve"), "the page lists the commands");

    let dir = std::env::temp_dir().join(format!("herald-man-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    run(&["man", "--dir", dir.to_str().unwrap()]);
    let serve = std::fs::read_to_string(dir.join("herald-serve.1")).unwrap();
    assert!(serve.contains(".TH herald-serve 1"), "{serve}");
    assert!(
        serve.contains("history\\-size"),
        "the serve page documents its flags"
    );
    assert!(dir.join("herald-config-check.1").exists());
    assert!(
        !dir.join("herald-man.1").exists(),
        "the hidden man command has no page"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
