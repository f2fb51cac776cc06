//! Real processes for the Redis engine tests: a private `redis-server` on a
//! free loopback port (never a Redis already running on the machine), herald
//! nodes started with `herald serve --redis`, a few raw RESP commands, and
//! subscribers that survive their node dying (they report the disconnect
//! instead of failing the test). Every wait is bounded.

#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use eventsource_stream::{Event, Eventsource};
use futures_util::{SinkExt, Stream, StreamExt};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio::process::{Child, Command};
use tokio_tungstenite::tungstenite::Message;

use crate::common::{url, within, Socket};

/// How long a node may take to notice that Redis is back (reconnect backoff
/// included). Longer than `common::WAIT`, still bounded.
pub const RECOVERY: Duration = Duration::from_secs(15);

/// Awaits `future` for at most `limit`, failing the test with `what`.
pub async fn within_for<T>(
    limit: Duration,
    what: &str,
    future: impl std::future::Future<Output = T>,
) -> T {
    tokio::time::timeout(limit, future)
        .await
        .unwrap_or_else(|_| panic!("timed out after {limit:?} waiting for {what}"))
}

/// Polls `condition` every few milliseconds until it holds, for at most `limit`.
pub async fn eventually<F, Fut>(limit: Duration, what: &str, mut condition: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    within_for(limit, what, async {
        while !condition().await {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap().port()
}

/// Sends one command to the Redis on `port` and returns its reply as text:
/// `+OK` and `:1` keep their type prefix, a bulk string is its content, an
/// error reply is `Err`.
pub async fn redis_command(port: u16, args: &[&str]) -> std::io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port)).await?;
    let mut stream = BufReader::new(stream);
    let mut request = format!("*{}\r\n", args.len());
    for arg in args {
        request.push_str(&format!("${}\r\n{arg}\r\n", arg.len()));
    }
    stream.get_mut().write_all(request.as_bytes()).await?;
    let mut line = String::new();
    stream.read_line(&mut line).await?;
    let line = line.trim_end().to_owned();
    match line.as_bytes().first() {
        Some(b'-') => Err(std::io::Error::other(line)),
        Some(b'$') => {
            let len: i64 = line[1..].parse().map_err(std::io::Error::other)?;
            if len < 0 {
                return Ok(String::new());
            }
            let mut body = vec![0; len as usize + 2];
            stream.read_exact(&mut body).await?;
            body.truncate(len as usize);
            String::from_utf8(body).map_err(std::io::Error::other)
        }
        Some(_) => Ok(line),
        None => Err(std::io::Error::other(
            "the connection closed without a reply",
        )),
    }
}

/// A private `redis-server` child, killed when dropped.
pub struct RedisServer {
    pub port: u16,
    child: Option<Child>,
    dir: PathBuf,
    role: Role,
}

/// What a [`RedisServer`] is started as.
#[derive(Clone)]
enum Role {
    Primary,
    /// `--replicaof 127.0.0.1 PORT`.
    Replica(u16),
    /// `redis-server --sentinel` watching the primary on PORT as NAME.
    Sentinel {
        master: String,
        port: u16,
    },
}

impl RedisServer {
    /// Starts a fresh Redis (no persistence) on a free loopback port.
    pub async fn start() -> Self {
        Self::start_as(Role::Primary).await
    }

    /// Starts a replica of the Redis on `primary`.
    pub async fn start_replica(primary: u16) -> Self {
        Self::start_as(Role::Replica(primary)).await
    }

    /// Starts a sentinel watching the Redis on `primary` as `master`
    /// (quorum 2, down after 1 s: a failover within a few seconds).
    pub async fn start_sentinel(master: &str, primary: u16) -> Self {
        Self::start_as(Role::Sentinel {
            master: master.to_owned(),
            port: primary,
        })
        .await
    }

    async fn start_as(role: Role) -> Self {
        static STARTED: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "herald-redis-{}-{}",
            std::process::id(),
            STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        // The port was free a moment ago; another process may take it before
        // redis-server binds, so try a few.
        for _ in 0..5 {
            let mut server = Self {
                port: free_port(),
                child: None,
                dir: dir.clone(),
                role: role.clone(),
            };
            if server.spawn().await {
                return server;
            }
        }
        panic!("redis-server did not start on any of 5 free ports");
    }

    /// The URL herald is given.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Starts redis-server on `self.port`; false if it exited (port taken).
    async fn spawn(&mut self) -> bool {
        let mut args: Vec<std::ffi::OsString> = vec!["--loglevel".into(), "warning".into()];
        self.child = match &self.role {
            Role::Primary => spawn_redis_server(self.port, &self.dir, &args, Stdio::null).await,
            Role::Replica(primary) => {
                args.extend([
                    "--replicaof".into(),
                    "127.0.0.1".into(),
                    primary.to_string().into(),
                ]);
                spawn_redis_server(self.port, &self.dir, &args, Stdio::null).await
            }
            Role::Sentinel { master, port } => {
                // A sentinel rewrites its file: one per sentinel.
                let conf = self.dir.join(format!("sentinel-{}.conf", self.port));
                std::fs::write(
                    &conf,
                    format!(
                        "sentinel monitor {master} 127.0.0.1 {port} 2\n\
                         sentinel down-after-milliseconds {master} 1000\n\
                         sentinel failover-timeout {master} 10000\n\
                         sentinel parallel-syncs {master} 2\n"
                    ),
                )
                .unwrap();
                spawn_redis(Some(&conf), self.port, &self.dir, &args, Stdio::null).await
            }
        };
        self.child.is_some()
    }

    /// The process id of the running server.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(|c| c.id())
    }

    /// Kills the server (SIGKILL) and waits until it is gone and the port is closed.
    pub async fn stop(&mut self) {
        let mut child = self.child.take().expect("redis-server running");
        child.start_kill().unwrap();
        within("redis-server to exit", child.wait()).await.unwrap();
        let port = self.port;
        within("the Redis port to close", async {
            while TcpStream::connect(("127.0.0.1", port)).await.is_ok() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
    }

    /// Starts a new, empty server on the same port (what a restart without
    /// persistence looks like to herald).
    pub async fn restart(&mut self) {
        assert!(self.child.is_none(), "stop the server first");
        assert!(
            self.spawn().await,
            "redis-server could not start again on port {}",
            self.port
        );
    }

    /// Starts the server again on its port, empty, as a replica of `primary`
    /// (a killed primary rejoining after a failover).
    pub async fn restart_as_replica(&mut self, primary: u16) {
        self.role = Role::Replica(primary);
        self.restart().await;
    }

    /// Runs one command, failing the test on error.
    pub async fn command(&self, args: &[&str]) -> String {
        within(
            &format!("Redis to answer {args:?}"),
            redis_command(self.port, args),
        )
        .await
        .unwrap_or_else(|e| panic!("Redis {args:?}: {e}"))
    }
}

/// Starts a `redis-server` (no persistence) on loopback `port` with `dir` as
/// its working directory and `extra` arguments, and waits until it answers
/// PING. `None` if it exited or if whoever answers is not this child (the
/// port was taken by another Redis a moment earlier): the caller tries
/// another port.
pub async fn spawn_redis_server(
    port: u16,
    dir: &std::path::Path,
    extra: &[std::ffi::OsString],
    stderr: fn() -> Stdio,
) -> Option<Child> {
    spawn_redis(None, port, dir, extra, stderr).await
}

/// [`spawn_redis_server`], as a sentinel when given its configuration file.
async fn spawn_redis(
    sentinel_conf: Option<&std::path::Path>,
    port: u16,
    dir: &std::path::Path,
    extra: &[std::ffi::OsString],
    stderr: fn() -> Stdio,
) -> Option<Child> {
    let mut command = Command::new("redis-server");
    if let Some(conf) = sentinel_conf {
        command.arg(conf).arg("--sentinel");
    } else {
        command.args(["--save", ""]).args(["--appendonly", "no"]);
    }
    let mut child = command
        .args(["--port", &port.to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--daemonize", "no"])
        .arg("--dir")
        .arg(dir)
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr())
        .kill_on_drop(true)
        .spawn()
        .expect("redis-server on PATH (apt-get install -y redis-server)");
    let pid = child.id().expect("a running child");
    let started = within("redis-server to answer PING", async {
        loop {
            if child.try_wait().unwrap().is_some() {
                return false;
            }
            if redis_command(port, &["PING"]).await.ok().as_deref() == Some("+PONG") {
                return true;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
    if !started {
        return None;
    }
    let info = redis_command(port, &["INFO", "server"])
        .await
        .unwrap_or_default();
    if !info.contains(&format!("process_id:{pid}\r")) {
        let _ = child.start_kill();
        let _ = within("a redis-server that lost its port to exit", child.wait()).await;
        return None;
    }
    Some(child)
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        if let Some(child) = &mut self.child {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// One `herald serve --redis` process. Its output is kept and printed if the
/// test fails, so a failure report carries the server's side.
pub struct Node {
    pub name: String,
    pub addr: SocketAddr,
    child: Child,
    log: Arc<Mutex<Vec<String>>>,
}

impl Node {
    /// Starts a node on a free port and waits until it is ready (Redis reached).
    pub async fn start(name: &str, redis: &RedisServer) -> Self {
        Self::start_with(name, redis, &[]).await
    }

    /// Like [`Node::start`], with `extra` flags for `herald serve`.
    pub async fn start_with(name: &str, redis: &RedisServer, extra: &[&str]) -> Self {
        Self::start_on(name, &redis.url(), extra).await
    }

    /// Like [`Node::start_with`], given the `--redis` value itself (a Redis
    /// Cluster's seed nodes, say).
    pub async fn start_on(name: &str, redis: &str, extra: &[&str]) -> Self {
        let mut args = vec!["--redis", redis];
        args.extend_from_slice(extra);
        Self::serve(name, &args).await
    }

    /// `herald serve --listen 127.0.0.1:0 ARGS` (any engine), ready.
    pub async fn serve(name: &str, args: &[&str]) -> Self {
        Self::serve_with_env(name, args, &[]).await
    }

    /// [`Node::serve`] with `env` added to the process's environment.
    pub async fn serve_with_env(name: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_herald"))
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(["--log-level", "info"])
            .args(args)
            .envs(env.iter().copied())
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let log: Arc<Mutex<Vec<String>>> = Arc::default();
        let stderr = child.stderr.take().unwrap();
        let keep = log.clone();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
        let line = within(&format!("herald {name} to listen"), stdout.next_line())
            .await
            .unwrap()
            .unwrap_or_else(|| {
                panic!(
                    "herald {name} exited before listening:\n{}",
                    log.lock().unwrap().join("\n")
                )
            });
        let addr = line
            .rsplit("http://")
            .next()
            .unwrap()
            .trim()
            .parse()
            .unwrap();
        // Keep reading stdout so a later line never meets a closed pipe.
        let keep = log.clone();
        tokio::spawn(async move {
            while let Ok(Some(line)) = stdout.next_line().await {
                keep.lock().unwrap().push(line);
            }
        });
        let node = Self {
            name: name.to_owned(),
            addr,
            child,
            log,
        };
        node.wait_ready(true, crate::common::WAIT).await;
        node
    }

    /// Starts `count` nodes named a, b, c... on the same Redis.
    pub async fn cluster(redis: &RedisServer, count: usize) -> Vec<Self> {
        let names = ["a", "b", "c", "d", "e"];
        let mut nodes = Vec::new();
        for name in &names[..count] {
            nodes.push(Self::start(name, redis).await);
        }
        nodes
    }

    /// `/readyz` status.
    pub async fn readyz(&self) -> u16 {
        match reqwest::get(url(self.addr, "/readyz")).await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// `/healthz` status.
    pub async fn healthz(&self) -> u16 {
        match reqwest::get(url(self.addr, "/healthz")).await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Waits until `/readyz` says ready (200) or not (503).
    pub async fn wait_ready(&self, ready: bool, limit: Duration) {
        let want = if ready { 200 } else { 503 };
        eventually(
            limit,
            &format!("/readyz {want} on node {}", self.name),
            || async { self.readyz().await == want },
        )
        .await;
    }

    /// Publishes and returns (status, JSON body) whatever the status.
    pub async fn try_publish(&self, channel: &str, data: &str) -> (u16, Value) {
        let response = within(
            &format!("node {} to answer a publish", self.name),
            reqwest::Client::new()
                .post(url(self.addr, &format!("/pub/{channel}")))
                .body(data.to_owned())
                .send(),
        )
        .await
        .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Publishes, asserts 200 and returns the id it was given.
    pub async fn publish(&self, channel: &str, data: &str) -> String {
        let (status, body) = self.try_publish(channel, data).await;
        assert_eq!(
            status, 200,
            "publish {data:?} to {channel} on node {}: {body}",
            self.name
        );
        body["id"].as_str().expect("an id").to_owned()
    }

    /// Kills the process (SIGKILL) and waits for it.
    pub async fn kill(&mut self) {
        self.child.start_kill().unwrap();
        within(&format!("node {} to die", self.name), self.child.wait())
            .await
            .unwrap();
    }

    /// Everything the node logged so far.
    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("----- herald node {} ({}) log -----", self.name, self.addr);
            eprintln!("{}", self.log());
        }
        let _ = self.child.start_kill();
    }
}

/// Splits an `EPOCH-SEQ` id.
pub fn split_id(id: &str) -> (String, u64) {
    let (epoch, seq) = id.split_once('-').expect("an EPOCH-SEQ id");
    (epoch.to_owned(), seq.parse().expect("a numeric sequence"))
}

pub fn seq(id: &str) -> u64 {
    split_id(id).1
}

pub fn epoch(id: &str) -> String {
    split_id(id).0
}

/// An SSE stream that ends (`None`) instead of failing when its server dies.
pub struct SseStream {
    events: Pin<Box<dyn Stream<Item = Option<Event>> + Send>>,
}

impl SseStream {
    /// The next event within `limit`; `None` when the stream ended or broke.
    pub async fn next_within(&mut self, limit: Duration) -> Option<Event> {
        within_for(limit, "an SSE event", self.events.next())
            .await
            .flatten()
    }

    /// Opens `path` with `Accept: text/event-stream` plus `extra` headers.
    pub async fn open(addr: SocketAddr, path: &str, extra: &[(&str, &str)]) -> Self {
        let mut request = reqwest::Client::new()
            .get(url(addr, path))
            .header("accept", "text/event-stream");
        for (name, value) in extra {
            request = request.header(*name, *value);
        }
        let response = within("the SSE response", request.send()).await.unwrap();
        assert_eq!(response.status(), 200, "SSE {path} on {addr}");
        Self::from_response(response)
    }

    /// The events of a response already answered.
    pub fn from_response(response: reqwest::Response) -> Self {
        let events = response.bytes_stream().eventsource().map(|e| e.ok());
        Self {
            events: Box::pin(events),
        }
    }

    /// The next event; `None` when the stream ended or broke.
    pub async fn next(&mut self) -> Option<Event> {
        within("an SSE event", self.events.next()).await.flatten()
    }
}

/// The next data frame of a raw WebSocket; `None` when it closed or broke.
pub async fn try_frame(socket: &mut Socket) -> Option<Message> {
    loop {
        match within("a WebSocket frame", socket.next()).await {
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(other)) => return Some(other),
        }
    }
}

/// The next `/ws` frame as JSON; `None` when the socket closed or broke.
pub async fn try_json(socket: &mut Socket) -> Option<Value> {
    let frame = try_frame(socket).await?;
    Some(serde_json::from_str(frame.to_text().expect("a text frame")).expect("a JSON frame"))
}

/// Sends a WebSocket ping and waits for its pong: the socket is alive and served.
pub async fn ping_pong(socket: &mut Socket) {
    socket
        .send(Message::Ping(b"alive?".to_vec().into()))
        .await
        .unwrap();
    within("a pong", async {
        loop {
            match socket.next().await {
                Some(Ok(Message::Pong(payload))) if payload.as_ref() == b"alive?" => return,
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a pong, got {other:?}"),
            }
        }
    })
    .await
}

/// Long-polls `path`; `None` if the server could not be reached or did not answer 200.
pub async fn try_poll(addr: SocketAddr, path: &str) -> Option<Value> {
    let response = within("a poll answer", reqwest::get(url(addr, path)))
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    within("a poll body", response.json()).await.ok()
}

/// A delivered message: its channel, its id (none on a raw WebSocket) and its data.
pub type Delivery = (String, Option<String>, String);

/// The data of the next `count` text frames of a raw WebSocket.
pub async fn raw_messages(socket: &mut Socket, count: usize, what: &str) -> Vec<String> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        match try_frame(socket).await {
            Some(Message::Text(text)) => got.push(text.to_string()),
            other => panic!("{what}: after {} frames got {other:?}", got.len()),
        }
    }
    got
}

/// The next `count` `msg` frames of a `/ws` socket, failing on any other op.
pub async fn ws_messages(socket: &mut Socket, count: usize, what: &str) -> Vec<Delivery> {
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let frame = try_json(socket)
            .await
            .unwrap_or_else(|| panic!("{what}: the socket closed after {}", got.len()));
        assert_eq!(frame["op"], "msg", "{what}: {frame}");
        got.push(delivery(&frame));
    }
    got
}

/// Long-polls `channels` from `since` until `count` messages, failing on a
/// gap; returns them and the cursor after the last.
pub async fn poll_messages(
    addr: SocketAddr,
    channels: &str,
    since: &str,
    count: usize,
    what: &str,
) -> (Vec<Delivery>, String) {
    let mut since = since.to_owned();
    let mut got = Vec::with_capacity(count);
    while got.len() < count {
        let path = format!("/sub/{channels}?since={}&timeout=3", encode_cursor(&since));
        let page = crate::common::poll(addr, &path).await;
        assert!(page.get("gap").is_none(), "{what}: {page}");
        got.extend(page["messages"].as_array().unwrap().iter().map(delivery));
        since = page["next"].as_str().unwrap().to_owned();
    }
    (got, since)
}

/// A message object (`/ws` frame or poll page entry) as a [`Delivery`].
fn delivery(m: &Value) -> Delivery {
    (
        m["channel"].as_str().unwrap().to_owned(),
        Some(m["id"].as_str().unwrap().to_owned()),
        m["data"].as_str().unwrap().to_owned(),
    )
}

/// A cursor in a query string.
pub fn encode_cursor(cursor: &str) -> String {
    cursor.replace('=', "%3D").replace(',', "%2C")
}

/// Publishes `data` to `channel` on each of `nodes` in turn with one
/// `Idempotency-Key`, as a retrying publisher would; the ids answered.
pub async fn publish_retried(nodes: &[&Node], channel: &str, key: &str, data: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let mut ids = Vec::new();
    for node in nodes {
        let response = within(
            "an idempotent publish",
            http.post(url(node.addr, &format!("/pub/{channel}")))
                .header("idempotency-key", key)
                .body(data.to_owned())
                .send(),
        )
        .await
        .unwrap();
        let status = response.status();
        let answer: Value = within("a publish answer", response.json())
            .await
            .unwrap_or(Value::Null);
        assert_eq!(status, 200, "publish on node {}: {answer}", node.name);
        ids.push(answer["id"].as_str().unwrap().to_owned());
    }
    ids
}

/// A primary, two replicas and three sentinels watching them as `master`:
/// real processes on free loopback ports, killed when dropped.
pub struct Sentinelled {
    pub master: String,
    /// The data servers: the first started as the primary, then its replicas.
    pub servers: Vec<RedisServer>,
    pub sentinels: Vec<RedisServer>,
}

impl Sentinelled {
    /// Starts them all and waits until a failover can happen: both replicas
    /// in sync and every sentinel knowing the replicas and the other sentinels.
    pub async fn start(master: &str) -> Self {
        let primary = RedisServer::start().await;
        let mut replicas = Vec::new();
        for _ in 0..2 {
            replicas.push(RedisServer::start_replica(primary.port).await);
        }
        eventually(RECOVERY, "both replicas to be in sync", || async {
            let info = redis_command(primary.port, &["INFO", "replication"])
                .await
                .unwrap_or_default();
            info.contains("connected_slaves:2") && info.matches("state=online").count() == 2
        })
        .await;
        let mut sentinels = Vec::new();
        for _ in 0..3 {
            sentinels.push(RedisServer::start_sentinel(master, primary.port).await);
        }
        replicas.insert(0, primary);
        let set = Self {
            master: master.to_owned(),
            servers: replicas,
            sentinels,
        };
        // Sentinels find the replicas through INFO and each other through
        // hello messages every 2 s.
        eventually(
            Duration::from_secs(30),
            "every sentinel to know 2 replicas and 3 sentinels",
            || async {
                let mut all = true;
                for sentinel in &set.sentinels {
                    let info = redis_command(sentinel.port, &["INFO", "sentinel"])
                        .await
                        .unwrap_or_default();
                    all &= info.contains("status=ok")
                        && info.contains("slaves=2")
                        && info.contains("sentinels=3");
                }
                all
            },
        )
        .await;
        set
    }

    /// `herald serve` flags that find the primary through these sentinels.
    pub fn flags(&self) -> Vec<String> {
        let addrs: Vec<String> = self
            .sentinels
            .iter()
            .map(|s| format!("127.0.0.1:{}", s.port))
            .collect();
        vec![
            "--redis-sentinel".into(),
            addrs.join(","),
            "--redis-sentinel-master".into(),
            self.master.clone(),
        ]
    }

    /// The port of the primary a sentinel names now.
    pub async fn primary_port(&self) -> Option<u16> {
        for sentinel in &self.sentinels {
            let Ok(info) = redis_command(sentinel.port, &["INFO", "sentinel"]).await else {
                continue;
            };
            let port = info
                .split("address=")
                .nth(1)
                .and_then(|rest| rest.split(',').next())
                .and_then(|addr| addr.rsplit(':').next())
                .and_then(|port| port.parse().ok());
            if port.is_some() {
                return port;
            }
        }
        None
    }

    /// The server (primary or replica) listening on `port`.
    pub fn server(&mut self, port: u16) -> &mut RedisServer {
        self.servers
            .iter_mut()
            .find(|r| r.port == port)
            .expect("a server of this set")
    }
}
