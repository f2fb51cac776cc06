//! Operations, end to end: each test starts a real `herald serve` process on
//! a free loopback port and drives it as an operator would, with signals,
//! environment variables, configuration files, flags, `/metrics` and logs.
//!
//! Every wait is for an event (a frame, a log line, an exit) or a condition
//! polled against a deadline, so a broken server fails a test in seconds.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::time::{Duration, Instant};

use eventsource_stream::{Event, Eventsource};
use futures_util::{Stream, StreamExt};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;

const BIN: &str = env!("CARGO_BIN_EXE_herald");

/// The longest any single wait in these tests may take.
const WAIT: Duration = Duration::from_secs(10);

/// A `herald` command with no `HERALD_*` variable inherited from the test's
/// own environment, so each test states exactly what the server sees.
fn herald_command() -> Command {
    let mut command = Command::new(BIN);
    for (key, _) in std::env::vars() {
        if key.starts_with("HERALD_") {
            command.env_remove(key);
        }
    }
    command.kill_on_drop(true);
    command
}

/// A running `herald serve` process, its address and its log lines.
struct Herald {
    child: Child,
    addr: String,
    logs: watch::Receiver<Vec<String>>,
    http: reqwest::Client,
}

impl Herald {
    /// `herald serve --listen 127.0.0.1:0 ARGS...`
    async fn start(args: &[&str]) -> Self {
        let mut command = herald_command();
        command
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args);
        Self::spawn(command).await
    }

    /// Spawns a prepared `serve` command and waits for its address.
    async fn spawn(mut command: Command) -> Self {
        command.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = command.spawn().expect("herald starts");
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let (log_sender, logs) = watch::channel(Vec::new());
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                log_sender.send_modify(|logs| logs.push(line));
            }
        });
        let mut stdout = BufReader::new(stdout).lines();
        let line = tokio::time::timeout(WAIT, stdout.next_line())
            .await
            .expect("herald prints its address within the deadline")
            .unwrap()
            .expect("herald printed its address before exiting");
        let addr = line
            .strip_prefix("herald listening on http://")
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
            .to_owned();
        // Keep draining stdout so the process never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = stdout.next_line().await {} });
        let herald = Self {
            child,
            addr,
            logs,
            http: reqwest::Client::new(),
        };
        herald.wait_for_signal_handlers().await;
        herald
    }

    /// Checks the process already catches SIGTERM and SIGINT when it has
    /// printed its address, so a supervisor may signal it at once.
    async fn wait_for_signal_handlers(&self) {
        const SIGINT: u64 = 1 << (2 - 1);
        const SIGTERM: u64 = 1 << (15 - 1);
        let path = format!("/proc/{}/status", self.child.id().unwrap());
        let Ok(status) = std::fs::read_to_string(&path) else {
            return;
        };
        let caught = status
            .lines()
            .find_map(|l| l.strip_prefix("SigCgt:"))
            .and_then(|mask| u64::from_str_radix(mask.trim(), 16).ok())
            .unwrap_or(0);
        assert_eq!(
            caught & (SIGINT | SIGTERM),
            SIGINT | SIGTERM,
            "herald printed its address before catching SIGTERM and SIGINT"
        );
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Sends `kill -SIGNAL pid`, as an init system would.
    fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("the process is running").to_string();
        let status = std::process::Command::new("kill")
            .args([format!("-{signal}"), pid])
            .status()
            .expect("kill runs");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// Waits for the process to exit, at most `deadline`.
    async fn exit(&mut self, deadline: Duration) -> ExitStatus {
        tokio::time::timeout(deadline, self.child.wait())
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "herald still running after {deadline:?}; logs:\n{}",
                    self.logs.borrow().join("\n")
                )
            })
            .unwrap()
    }

    /// Waits until a log line satisfies `matches`, and returns it.
    async fn log_line(&self, what: &str, matches: impl Fn(&str) -> bool) -> String {
        let mut logs = self.logs.clone();
        let found = tokio::time::timeout(
            WAIT,
            logs.wait_for(|lines| lines.iter().any(|l| matches(l))),
        )
        .await
        .unwrap_or_else(|_| {
            panic!(
                "no log line {what} within {WAIT:?}; logs:\n{}",
                self.logs.borrow().join("\n")
            )
        })
        .expect("the log reader is alive while a line may come");
        let line = found.iter().find(|l| matches(l)).cloned().unwrap();
        line
    }

    async fn publish(&self, channel: &str, data: &str) -> Value {
        let response = self
            .http
            .post(self.url(&format!("/pub/{channel}")))
            .body(data.to_owned())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "publish to {channel}");
        response.json().await.unwrap()
    }

    async fn metrics(&self) -> Metrics {
        let response = self.http.get(self.url("/metrics")).send().await.unwrap();
        assert_eq!(response.status(), 200);
        Metrics(response.text().await.unwrap())
    }

    /// Polls `/metrics` until `name{labels}` satisfies `ok`.
    async fn wait_metric(&self, name: &str, labels: &[(&str, &str)], ok: impl Fn(f64) -> bool) {
        let deadline = Instant::now() + WAIT;
        loop {
            let metrics = self.metrics().await;
            if ok(metrics.value(name, labels).unwrap_or(0.0)) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{name}{labels:?} never reached the expected value; last scrape:\n{}",
                metrics.0
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Opens an SSE subscription at `path` and returns its events (the
    /// subscription exists once this returns: the server answers after subscribing).
    async fn sse(&self, path: &str) -> impl Stream<Item = Event> + Unpin {
        let response = self
            .http
            .get(self.url(path))
            .header("accept", "text/event-stream")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        Box::pin(
            response
                .bytes_stream()
                .eventsource()
                .map(|event| event.expect("a well-formed event stream"))
                // The first event only carries the resume id.
                .filter(|event| std::future::ready(!event.data.is_empty())),
        )
    }
}

/// Waits for the next item of a stream, at most [`WAIT`].
async fn next<S: Stream + Unpin>(stream: &mut S, what: &str) -> Option<S::Item> {
    tokio::time::timeout(WAIT, stream.next())
        .await
        .unwrap_or_else(|_| panic!("no {what} within {WAIT:?}"))
}

/// A Prometheus text scrape.
struct Metrics(String);

impl Metrics {
    /// The sample `name{labels}` (labels given must match; others are ignored).
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples()
            .into_iter()
            .find(|(n, l, _)| {
                n == name
                    && labels
                        .iter()
                        .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
            })
            .map(|(_, _, v)| v)
    }

    fn samples(&self) -> Vec<(String, BTreeMap<String, String>, f64)> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("name value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => {
                        let labels = rest
                            .trim_end_matches('}')
                            .split(',')
                            .filter(|p| !p.is_empty())
                            .map(|pair| {
                                let (k, v) = pair.split_once('=').expect("label=value");
                                (k.to_owned(), v.trim_matches('"').to_owned())
                            })
                            .collect();
                        (name.to_owned(), labels)
                    }
                    None => (series.to_owned(), BTreeMap::new()),
                };
                (name, labels, value.parse().expect("a number"))
            })
            .collect()
    }

    fn names(&self) -> std::collections::BTreeSet<String> {
        self.samples().into_iter().map(|(n, _, _)| n).collect()
    }
}

/// A fresh directory for files a test writes.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("herald-ops-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[tokio::test]
async fn metrics_are_named_herald_and_move_when_messages_flow() {
    let herald = Herald::start(&[]).await;
    let before = herald.metrics().await;
    assert_eq!(before.value("herald_publishes_total", &[]), Some(0.0));

    let mut events = herald.sse("/sub/ops.metrics").await;
    herald
        .wait_metric("herald_connections", &[("transport", "sse")], |v| v == 1.0)
        .await;
    for i in 0..5 {
        herald.publish("ops.metrics", &format!("m{i}")).await;
    }
    for i in 0..5 {
        let event = next(&mut events, "SSE message").await.unwrap();
        assert_eq!(event.data, format!("m{i}"));
    }
    // Deliveries are counted once the write happened, which the client saw.
    herald
        .wait_metric("herald_deliveries_total", &[("transport", "sse")], |v| {
            v == 5.0
        })
        .await;
    let after = herald.metrics().await;
    let expect = |name: &str, labels: &[(&str, &str)], want: f64| {
        assert_eq!(
            after.value(name, labels),
            Some(want),
            "{name}{labels:?} in\n{}",
            after.0
        );
    };
    expect("herald_publishes_total", &[], 5.0);
    expect("herald_published_bytes_total", &[], 10.0);
    expect("herald_connections", &[("transport", "sse")], 1.0);
    expect(
        "herald_connections_opened_total",
        &[("transport", "sse")],
        1.0,
    );
    expect("herald_subscriptions", &[], 1.0);
    expect("herald_channels", &[], 1.0);
    expect("herald_history_messages", &[], 5.0);
    let history_bytes = after.value("herald_history_bytes", &[]).unwrap();
    assert!(history_bytes >= 10.0, "{history_bytes} bytes of history");
    let writes = after
        .value("herald_delivery_latency_seconds_count", &[])
        .expect("the latency histogram has samples");
    assert!((1.0..=5.0).contains(&writes), "{writes} latency samples");
    assert!(
        after
            .value("herald_delivery_latency_seconds_bucket", &[("le", "+Inf")])
            .is_some(),
        "latency buckets are exported"
    );
    assert!(
        after
            .0
            .contains("# TYPE herald_delivery_latency_seconds histogram"),
        "{}",
        after.0
    );

    // A refused request and a closed connection show up too.
    let refused = herald
        .http
        .post(herald.url("/pub/bad%20name"))
        .body("x")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    drop(events);
    herald
        .wait_metric(
            "herald_disconnects_total",
            &[("transport", "sse"), ("reason", "client_closed")],
            |v| v == 1.0,
        )
        .await;
    let last = herald.metrics().await;
    assert_eq!(
        last.value("herald_rejected_total", &[("code", "bad_channel")]),
        Some(1.0)
    );
    assert_eq!(
        last.value("herald_connections", &[("transport", "sse")]),
        Some(0.0)
    );
    assert_eq!(last.value("herald_subscriptions", &[]), Some(0.0));
    for name in last.names() {
        assert!(
            name.starts_with("herald_"),
            "metric {name} lacks the prefix"
        );
    }
}

/// Every metric the code defines is in docs/operations.md, and the docs name no other.
#[test]
fn the_metrics_reference_matches_the_code() {
    let names = |text: &str| -> std::collections::BTreeSet<String> {
        text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .filter(|w| w.starts_with("herald_") && w.len() > "herald_".len())
            // Histogram series are documented under the histogram's name.
            .map(|w| {
                w.trim_end_matches("_bucket")
                    .trim_end_matches("_count")
                    .trim_end_matches("_sum")
                    .to_owned()
            })
            .collect()
    };
    let code = names(include_str!("../src/telemetry.rs"));
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md exists");
    let section = docs
        .split("## Metrics")
        .nth(1)
        .expect("docs/operations.md has a ## Metrics section");
    let section = section.split("\n## ").next().unwrap_or(section);
    let documented = names(section);
    assert!(!code.is_empty());
    let missing: Vec<_> = code.difference(&documented).collect();
    let stale: Vec<_> = documented.difference(&code).collect();
    assert!(
        missing.is_empty() && stale.is_empty(),
        "metrics in the code but not documented: {missing:?}; documented but not in the code: {stale:?}"
    );
}

/// Every option `herald serve` (or a config file) takes is in the
/// configuration table of docs/operations.md with its variable and default.
#[test]
fn the_configuration_reference_matches_the_code() {
    let docs = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docs/operations.md"))
        .expect("docs/operations.md exists");
    let section = docs
        .split("## Configuration reference")
        .nth(1)
        .expect("docs/operations.md has a ## Configuration reference section");
    let section = section.split("\n## ").next().unwrap_or(section);
    // Rows: | `key` | `--flag` | `HERALD_KEY` | default | meaning |
    let rows: BTreeMap<String, Vec<String>> = section
        .lines()
        .filter(|l| l.starts_with("| `"))
        .map(|l| {
            let cells: Vec<String> = l
                .trim_matches('|')
                .split(" | ")
                .map(|c| c.trim().trim_matches('`').to_owned())
                .collect();
            (cells[0].clone(), cells)
        })
        .collect();
    let mut known = herald::config::file::known_keys();
    known.push("config".into());
    let mut problems = Vec::new();
    for key in &known {
        let Some(cells) = rows.get(key) else {
            problems.push(format!("{key} is not documented"));
            continue;
        };
        let flag = format!("--{}", key.replace('_', "-"));
        let env = format!("HERALD_{}", key.to_uppercase());
        if cells.get(1) != Some(&flag) {
            problems.push(format!(
                "{key}: flag should be {flag}, table says {cells:?}"
            ));
        }
        if cells.get(2) != Some(&env) {
            problems.push(format!(
                "{key}: variable should be {env}, table says {cells:?}"
            ));
        }
    }
    for key in rows.keys() {
        if !known.contains(key) {
            problems.push(format!("{key} is documented but herald has no such option"));
        }
    }
    // Defaults: compare with what `herald config show` prints for an empty configuration.
    let shown = std::process::Command::new(BIN)
        .args(["config", "show"])
        .env_clear()
        .output()
        .unwrap();
    assert!(shown.status.success());
    for line in String::from_utf8(shown.stdout).unwrap().lines() {
        let Some((key, value)) = line.split_once(" = ") else {
            continue;
        };
        let value = value.trim_matches('"');
        if let Some(cells) = rows.get(key) {
            let documented = cells.get(3).map(String::as_str).unwrap_or_default();
            if documented != value {
                problems.push(format!(
                    "{key}: default is {value:?}, the table says {documented:?}"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1012_ends_sse_answers_polls_and_exits_zero() {
    let mut herald = Herald::start(&["--shutdown-timeout", "5s"]).await;
    let (mut ws, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/sub/ops.drain", herald.addr))
            .await
            .unwrap();
    let mut sse = herald.sse("/sub/ops.drain").await;
    herald
        .wait_metric("herald_connections", &[("transport", "ws")], |v| v == 1.0)
        .await;
    let published = herald.publish("ops.drain", "before the restart").await;
    match next(&mut ws, "WebSocket frame").await {
        Some(Ok(Message::Text(text))) => assert_eq!(text.as_str(), "before the restart"),
        other => panic!("unexpected {other:?}"),
    }
    assert_eq!(
        next(&mut sse, "SSE message").await.unwrap().data,
        "before the restart"
    );
    let since = published["id"].as_str().unwrap().to_owned();
    let poll = {
        let request = herald
            .http
            .get(herald.url(&format!("/sub/ops.drain?since={since}&timeout=60")));
        tokio::spawn(async move { request.send().await })
    };
    herald
        .wait_metric("herald_connections", &[("transport", "poll")], |v| v == 1.0)
        .await;

    let signalled = Instant::now();
    herald.signal("TERM");

    let close = loop {
        match next(&mut ws, "WebSocket close").await {
            Some(Ok(Message::Close(frame))) => break frame,
            Some(Ok(_)) => continue,
            other => panic!("the WebSocket ended without a close frame: {other:?}"),
        }
    };
    let close = close.expect("the close frame has a code");
    assert_eq!(u16::from(close.code), 1012, "{close:?}");

    let goodbye = next(&mut sse, "herald.closed").await.unwrap();
    assert_eq!(goodbye.event, "herald.closed");
    let reason: Value = serde_json::from_str(&goodbye.data).unwrap();
    assert_eq!(reason["reason"], "shutdown");
    assert!(
        next(&mut sse, "the end of the SSE stream").await.is_none(),
        "the stream ends after herald.closed"
    );

    let answer = tokio::time::timeout(WAIT, poll)
        .await
        .expect("the held poll is answered")
        .unwrap()
        .unwrap();
    assert_eq!(answer.status(), 200);
    let page: Value = answer.json().await.unwrap();
    assert_eq!(page["messages"], json!([]));
    assert_eq!(page["next"].as_str(), Some(since.as_str()));

    let status = herald.exit(WAIT).await;
    assert!(status.success(), "exit status {status:?}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "exited after {:?}, past the 5 s deadline",
        signalled.elapsed()
    );
    herald
        .log_line("saying it shuts down", |l| l.contains("shutting down"))
        .await;
}

/// Starts a publish whose body never finishes, and returns once the server
/// is reading that body (it answered `100 Continue`): an in-flight request
/// the drain must wait for.
async fn stuck_upload(herald: &Herald) -> tokio::net::TcpStream {
    let mut stream = tokio::net::TcpStream::connect(&herald.addr).await.unwrap();
    stream
        .write_all(
            b"POST /pub/ops.slow HTTP/1.1\r\nHost: herald\r\nContent-Length: 100\r\n\
              Expect: 100-continue\r\n\r\n",
        )
        .await
        .unwrap();
    let mut seen = Vec::new();
    tokio::time::timeout(WAIT, async {
        while !String::from_utf8_lossy(&seen).contains("100 Continue\r\n\r\n") {
            let mut buf = [0u8; 256];
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "closed before 100 Continue");
            seen.extend_from_slice(&buf[..n]);
        }
    })
    .await
    .expect("100 Continue");
    stream.write_all(b"partial").await.unwrap();
    stream
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let mut herald = Herald::start(&["--shutdown-timeout", "60s"]).await;
    let _upload = stuck_upload(&herald).await;
    herald.signal("TERM");
    herald
        .log_line("saying it shuts down", |l| l.contains("shutting down"))
        .await;
    assert!(
        herald.child.try_wait().unwrap().is_none(),
        "the drain waits for the upload"
    );
    let second = Instant::now();
    // The listeners exist from before the first signal, so one more is enough.
    herald.signal("INT");
    let status = tokio::time::timeout(Duration::from_secs(3), herald.child.wait())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "a second signal did not stop the drain; logs:\n{}",
                herald.logs.borrow().join("\n")
            )
        })
        .unwrap();
    assert_eq!(status.code(), Some(130), "{status:?}");
    assert!(second.elapsed() < Duration::from_secs(3));
    herald
        .log_line("about the second signal", |l| l.contains("second signal"))
        .await;
}

#[tokio::test]
async fn the_shutdown_deadline_bounds_a_stuck_drain() {
    let mut herald = Herald::start(&["--shutdown-timeout", "300ms"]).await;
    let _upload = stuck_upload(&herald).await;
    let signalled = Instant::now();
    herald.signal("TERM");
    let status = herald.exit(WAIT).await;
    assert!(status.success(), "{status:?}");
    let took = signalled.elapsed();
    assert!(
        took >= Duration::from_millis(300) && took < Duration::from_secs(5),
        "exited after {took:?}"
    );
    herald
        .log_line("about the deadline", |l| l.contains("shutdown deadline"))
        .await;
}

#[tokio::test]
async fn health_readiness_and_the_api_description_are_served() {
    let herald = Herald::start(&[]).await;
    let get = |path: &'static str| {
        let request = herald.http.get(herald.url(path));
        async move { request.send().await.unwrap() }
    };
    let health = get("/healthz").await;
    assert_eq!(health.status(), 200);
    assert_eq!(
        health.json::<Value>().await.unwrap(),
        json!({"status": "ok"})
    );
    let ready = get("/readyz").await;
    assert_eq!(ready.status(), 200);
    assert_eq!(
        ready.json::<Value>().await.unwrap(),
        json!({"status": "ready", "engine": "memory"})
    );
    let openapi = get("/openapi.yaml").await;
    assert_eq!(openapi.status(), 200);
    assert_eq!(openapi.headers()["content-type"], "application/yaml");
    let text = openapi.text().await.unwrap();
    assert!(text.starts_with("openapi: 3"), "{}", &text[..40]);
    assert_eq!(text, include_str!("../docs/openapi.yaml"));
    let page = get("/status").await;
    assert_eq!(page.status(), 200);
    let page = page.text().await.unwrap();
    assert!(page.contains("/status/stream"), "the page reads the stream");
    assert!(
        !page.contains("http://") && !page.contains("https://"),
        "the status page is self-contained"
    );

    // The stream's snapshots carry what the page charts.
    let mut snapshots = herald.sse("/status/stream").await;
    let snapshot = loop {
        let event = next(&mut snapshots, "a status snapshot").await.unwrap();
        let snapshot: Value = serde_json::from_str(&event.data).unwrap();
        // The stream may open with an empty object before the first tick.
        if snapshot != json!({}) {
            break snapshot;
        }
    };
    for field in [
        "connections",
        "publishes_per_sec",
        "deliveries_per_sec",
        "latency_ms",
        "busiest",
    ] {
        assert!(snapshot.get(field).is_some(), "{field} in {snapshot}");
    }
}

#[tokio::test]
async fn new_connections_are_refused_while_draining() {
    let mut herald = Herald::start(&["--shutdown-timeout", "60s"]).await;
    let _upload = stuck_upload(&herald).await;
    herald.signal("TERM");
    herald
        .log_line("saying it shuts down", |l| l.contains("shutting down"))
        .await;
    // A draining node takes no new work: a load balancer or client that
    // connects now must learn it at once and go elsewhere, not hang.
    let deadline = Instant::now() + WAIT;
    loop {
        let attempt = tokio::time::timeout(
            Duration::from_secs(1),
            herald.http.get(herald.url("/readyz")).send(),
        )
        .await;
        match attempt {
            Ok(Err(error)) if error.is_connect() => break,
            Ok(Ok(response)) => {
                assert_eq!(response.status(), 503, "ready while draining");
                break;
            }
            _ => assert!(
                Instant::now() < deadline,
                "a new connection neither refused nor answered: {attempt:?}"
            ),
        }
    }
    herald.signal("KILL");
    herald.exit(WAIT).await;
}

#[tokio::test]
async fn precedence_is_flag_over_environment_over_file_over_default() {
    let dir = scratch("precedence");
    let file = dir.join("herald.toml");
    std::fs::write(
        &file,
        "# every level sets something\n\
         max_message_size = \"1000\"\n\
         history_size = 50\n\
         poll_page_size = 2\n\
         history_ttl = \"90s\"\n",
    )
    .unwrap();
    let configure = |command: &mut Command| {
        command
            .env("HERALD_CONFIG", &file)
            .env("HERALD_HISTORY_SIZE", "4")
            .env("HERALD_POLL_PAGE_SIZE", "3");
    };

    // What `config show` reports.
    let mut show = herald_command();
    show.args(["config", "show", "--poll-page-size", "5"]);
    configure(&mut show);
    let shown = show.output().await.unwrap();
    assert!(shown.status.success(), "{shown:?}");
    let shown = String::from_utf8(shown.stdout).unwrap();
    for line in [
        "max_message_size = 1000",     // file over default
        "history_size = 4",            // environment over file
        "poll_page_size = 5",          // flag over environment
        "history_ttl = \"90s\"",       // file
        "max_poll_timeout = \"120s\"", // default
        "listen = \"127.0.0.1:8080\"", // default
    ] {
        assert!(shown.lines().any(|l| l == line), "{line} in\n{shown}");
    }

    // And what the server does.
    let mut serve = herald_command();
    serve.args(["serve", "--listen", "127.0.0.1:0", "--poll-page-size", "5"]);
    configure(&mut serve);
    let herald = Herald::spawn(serve).await;
    let big = herald
        .http
        .post(herald.url("/pub/ops.precedence"))
        .body("x".repeat(1001))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 413, "the file's max_message_size applies");
    herald.publish("ops.precedence", &"x".repeat(1000)).await;
    for i in 0..9 {
        herald.publish("ops.precedence", &format!("{i}")).await;
    }
    let info: Value = herald
        .http
        .get(herald.url("/pub/ops.precedence"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        info["messages"], 4,
        "the environment's history_size applies"
    );
    let page: Value = herald
        .http
        .get(herald.url("/sub/ops.precedence?since=0"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        page["messages"].as_array().unwrap().len(),
        4,
        "the flag's poll_page_size (5) applies, not the environment's (3) or the file's (2)"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[tokio::test]
async fn config_check_names_a_typo_with_a_suggestion() {
    let dir = scratch("check");
    let typo = dir.join("typo.toml");
    std::fs::write(&typo, "listen = \"127.0.0.1:9000\"\nhistory_sise = 10\n").unwrap();
    let checked = herald_command()
        .args(["config", "check"])
        .arg(&typo)
        .output()
        .await
        .unwrap();
    assert!(!checked.status.success());
    assert_eq!(checked.status.code(), Some(1));
    let stderr = String::from_utf8(checked.stderr).unwrap();
    assert!(stderr.contains("history_sise"), "{stderr}");
    assert!(stderr.contains("did you mean history_size?"), "{stderr}");

    let good = dir.join("good.toml");
    std::fs::write(&good, "history_size = 10\nhistory_ttl = \"2h\"\n").unwrap();
    let checked = herald_command()
        .args(["config", "check"])
        .arg(&good)
        .output()
        .await
        .unwrap();
    assert!(checked.status.success(), "{checked:?}");
    std::fs::remove_dir_all(&dir).unwrap();

    // The example shipped for systemd is valid too.
    let shipped = herald_command()
        .args([
            "config",
            "check",
            concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/herald.toml"),
        ])
        .output()
        .await
        .unwrap();
    assert!(shipped.status.success(), "{shipped:?}");
}

#[tokio::test]
async fn json_logs_have_one_object_per_line_and_no_token() {
    let secret = "s3cret-signing-key-for-the-test";
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &json!({
            "exp": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_secs()
                + 3600,
            "sub": "ops-test",
            "herald": {"subscribe": ["ops.*"], "publish": ["ops.*"]},
        }),
        &jsonwebtoken::EncodingKey::from_secret(secret.as_bytes()),
    )
    .unwrap();
    let publish_key = "publish-key-never-logged";
    let herald = Herald::start(&[
        "--log-format",
        "json",
        "--log-level",
        "debug",
        "--jwt-secret",
        secret,
        "--publish-key",
        publish_key,
    ])
    .await;

    let mut sse = herald.sse(&format!("/sub/ops.logs?token={token}")).await;
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "ws://{}/sub/ops.logs?token={token}",
        herald.addr
    ))
    .await
    .unwrap();
    herald
        .wait_metric("herald_connections", &[("transport", "ws")], |v| v == 1.0)
        .await;
    let published = herald
        .http
        .post(herald.url("/pub/ops.logs"))
        .bearer_auth(publish_key)
        .body("logged?")
        .send()
        .await
        .unwrap();
    assert_eq!(published.status(), 200);
    assert_eq!(next(&mut sse, "SSE message").await.unwrap().data, "logged?");
    assert!(matches!(
        next(&mut ws, "WebSocket frame").await,
        Some(Ok(Message::Text(_)))
    ));
    let refused = herald
        .http
        .get(herald.url("/sub/ops.logs?token=not-a-valid-token&timeout=0"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    drop(sse);
    ws.close(None).await.unwrap();

    let closed = |transport: &'static str| {
        move |line: &str| {
            serde_json::from_str::<Value>(line).is_ok_and(|v| {
                v["fields"]["message"] == "connection closed"
                    && v["fields"]["transport"] == transport
            })
        }
    };
    for transport in ["sse", "ws"] {
        let line = herald
            .log_line(
                &format!("for the closed {transport} connection"),
                closed(transport),
            )
            .await;
        let line: Value = serde_json::from_str(&line).unwrap();
        let fields = &line["fields"];
        assert!(fields["duration_ms"].is_u64(), "{line}");
        assert_eq!(fields["delivered"], 1, "{line}");
        assert!(fields["reason"].is_string(), "{line}");
        assert!(
            line["level"].is_string() && line["timestamp"].is_string(),
            "{line}"
        );
    }

    let logs = herald.logs.borrow().clone();
    assert!(!logs.is_empty());
    for line in &logs {
        let parsed: Result<Value, _> = serde_json::from_str(line);
        assert!(
            parsed.as_ref().is_ok_and(Value::is_object),
            "not one JSON object: {line}"
        );
        for leaked in [token.as_str(), secret, publish_key, "not-a-valid-token"] {
            assert!(!line.contains(leaked), "a secret was logged: {line}");
        }
    }
}
