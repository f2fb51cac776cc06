//! Auth, origins, rate limits and hostile input, against a real server over
//! real sockets.

use std::net::SocketAddr;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use herald::auth::{Auth, JwtKey};
use herald::config::ServerConfig;
use herald::http::RunningServer;
use jsonwebtoken::{encode, EncodingKey, Header};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::Message;

const SECRET: &str = "test-secret";
const KEY: &str = "publish-key";

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(10), future)
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

fn token(claims: Value) -> String {
    encode(
        &Header::default(),
        &claims,
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap()
}

fn grants(subscribe: &[&str], publish: &[&str], exp: u64) -> String {
    token(
        json!({"sub": "tester", "exp": exp, "herald": {"subscribe": subscribe, "publish": publish}}),
    )
}

async fn start(configure: impl FnOnce(&mut ServerConfig)) -> RunningServer {
    let mut config = ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..ServerConfig::default()
    };
    configure(&mut config);
    herald::http::start(config).await.unwrap()
}

async fn secured() -> RunningServer {
    start(|c| {
        c.auth = Auth {
            publish_key: Some(KEY.into()),
            jwt: Some(JwtKey::secret(SECRET)),
            leeway: 0,
        };
        c.allowed_origins = Some(vec!["https://good.example".into()]);
    })
    .await
}

fn url(addr: SocketAddr, path: &str) -> String {
    format!("http://{addr}{path}")
}

async fn status(request: reqwest::RequestBuilder) -> u16 {
    request.send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn publishing_needs_the_key_or_a_token_with_publish_rights() {
    let server = secured().await;
    let http = reqwest::Client::new();
    let post = |auth: Option<String>| {
        let mut request = http.post(url(server.addr, "/pub/chat.room1")).body("hi");
        if let Some(auth) = auth {
            request = request.bearer_auth(auth);
        }
        request
    };
    assert_eq!(status(post(None)).await, 401);
    assert_eq!(status(post(Some("wrong".into()))).await, 401);
    assert_eq!(status(post(Some(KEY.into()))).await, 200);
    let writer = grants(&[], &["chat.room1"], now() + 600);
    assert_eq!(status(post(Some(writer))).await, 200);
    let reader = grants(&["chat.*"], &[], now() + 600);
    assert_eq!(status(post(Some(reader))).await, 403);
    let response = post(None).send().await.unwrap();
    assert_eq!(
        response.headers().get("www-authenticate").unwrap(),
        "Bearer"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "unauthorized");
}

#[tokio::test]
async fn subscribing_checks_the_token_wherever_it_comes_from() {
    let server = secured().await;
    let http = reqwest::Client::new();
    let poll = |path: String| http.get(url(server.addr, &path));
    let good = grants(&["chat.*"], &[], now() + 600);
    let expired = grants(&["chat.*"], &[], now() - 60);
    let forged = encode(
        &Header::default(),
        &json!({"exp": now() + 600, "herald": {"subscribe": ["*"]}}),
        &EncodingKey::from_secret(b"another secret"),
    )
    .unwrap();
    let b64 = |v: Value| {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string())
    };
    let unsigned = format!(
        "{}.{}.",
        b64(json!({"alg": "none", "typ": "JWT"})),
        b64(json!({"exp": now() + 600, "herald": {"subscribe": ["*"]}}))
    );
    let hs512 = encode(
        &Header::new(jsonwebtoken::Algorithm::HS512),
        &json!({"exp": now() + 600, "herald": {"subscribe": ["*"]}}),
        &EncodingKey::from_secret(SECRET.as_bytes()),
    )
    .unwrap();

    assert_eq!(status(poll("/sub/chat.a?timeout=0".into())).await, 401);
    assert_eq!(
        status(poll(format!("/sub/chat.a?timeout=0&token={good}"))).await,
        200
    );
    assert_eq!(
        status(poll(format!("/sub/news?timeout=0&token={good}"))).await,
        403
    );
    assert_eq!(
        status(poll(format!("/sub/chat.a,news?timeout=0&token={good}"))).await,
        403
    );
    for bad in [&expired, &forged, &unsigned, &hs512] {
        assert_eq!(
            status(poll(format!("/sub/chat.a?timeout=0&token={bad}"))).await,
            401,
            "token {bad} was accepted"
        );
    }
    let cookie =
        poll("/sub/chat.a?timeout=0".into()).header("cookie", format!("x=1; herald_token={good}"));
    assert_eq!(status(cookie).await, 200);
    let bearer = poll("/sub/chat.a?timeout=0".into()).bearer_auth(&good);
    assert_eq!(status(bearer).await, 200);
    let body: Value = poll(format!("/sub/chat.a?timeout=0&token={expired}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["error"]["code"], "token_expired");
}

fn ws_request(
    addr: SocketAddr,
    path: &str,
    origin: Option<&str>,
) -> tokio_tungstenite::tungstenite::handshake::client::Request {
    let mut request = format!("ws://{addr}{path}").into_client_request().unwrap();
    if let Some(origin) = origin {
        request
            .headers_mut()
            .insert("origin", origin.parse().unwrap());
    }
    request
}

async fn close_code(
    socket: &mut tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>,
) -> u16 {
    loop {
        match within("a close frame", socket.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("socket failed before a close frame: {error}"),
        }
    }
}

#[tokio::test]
async fn a_websocket_closes_when_its_token_expires_unless_refreshed() {
    let server = secured().await;
    let short = grants(&["chat.*"], &[], now() + 2);
    let (mut raw, _) = tokio_tungstenite::connect_async(ws_request(
        server.addr,
        &format!("/sub/chat.a?token={short}"),
        None,
    ))
    .await
    .unwrap();
    assert_eq!(close_code(&mut raw).await, 1008);

    let short = grants(&["chat.*"], &[], now() + 2);
    let (mut socket, _) = tokio_tungstenite::connect_async(ws_request(
        server.addr,
        &format!("/ws?token={short}"),
        None,
    ))
    .await
    .unwrap();
    let fresh = grants(&["chat.*"], &[], now() + 600);
    socket
        .send(Message::text(
            json!({"op": "refresh", "token": fresh, "ref": 1}).to_string(),
        ))
        .await
        .unwrap();
    let answer = within("the refresh answer", socket.next())
        .await
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(answer["op"], "ok", "{answer}");
    // Let the first token's expiry pass, then show the socket still answers.
    tokio::time::sleep_until(tokio::time::Instant::now() + Duration::from_secs(3)).await;
    socket
        .send(Message::text(json!({"op": "ping", "ref": 2}).to_string()))
        .await
        .unwrap();
    let pong = within("a pong", socket.next()).await.unwrap().unwrap();
    assert!(pong.to_text().unwrap().contains("pong"), "{pong:?}");
}

#[tokio::test]
async fn websocket_publishing_needs_publish_rights_and_refusals_never_reach_history() {
    let server = secured().await;
    let reader = grants(&["chat.*"], &[], now() + 600);
    let (mut raw, _) = tokio_tungstenite::connect_async(ws_request(
        server.addr,
        &format!("/sub/chat.a?token={reader}"),
        None,
    ))
    .await
    .unwrap();
    raw.send(Message::text("sneaky")).await.unwrap();
    assert_eq!(close_code(&mut raw).await, 1008);

    let (mut socket, _) = tokio_tungstenite::connect_async(ws_request(
        server.addr,
        &format!("/ws?token={reader}"),
        None,
    ))
    .await
    .unwrap();
    socket
        .send(Message::text(
            json!({"op": "pub", "channel": "chat.a", "data": "sneaky", "ref": 1}).to_string(),
        ))
        .await
        .unwrap();
    let answer = within("the pub answer", socket.next())
        .await
        .unwrap()
        .unwrap();
    let answer: Value = serde_json::from_str(answer.to_text().unwrap()).unwrap();
    assert_eq!(answer["op"], "error");
    assert_eq!(answer["error"]["code"], "forbidden");

    let info = reqwest::Client::new()
        .get(url(server.addr, "/pub/chat.a"))
        .bearer_auth(KEY)
        .send()
        .await
        .unwrap();
    if info.status() == 200 {
        let info: Value = info.json().await.unwrap();
        assert_eq!(info["messages"], 0, "{info}");
    } else {
        assert_eq!(info.status(), 404);
    }
}

#[tokio::test]
async fn foreign_origins_are_refused_and_cors_follows_the_list() {
    let server = secured().await;
    let good = grants(&["*"], &[], now() + 600);
    let refused = tokio_tungstenite::connect_async(ws_request(
        server.addr,
        &format!("/sub/chat.a?token={good}"),
        Some("https://evil.example"),
    ))
    .await;
    match refused {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403)
        }
        other => panic!("expected 403, got {other:?}"),
    }
    let allowed = tokio_tungstenite::connect_async(ws_request(
        server.addr,
        &format!("/ws?token={good}"),
        Some("https://good.example"),
    ))
    .await;
    assert!(allowed.is_ok());

    let http = reqwest::Client::new();
    let sse = |origin: &str| {
        http.get(url(server.addr, &format!("/sub/chat.a?token={good}")))
            .header("accept", "text/event-stream")
            .header("origin", origin)
    };
    assert_eq!(status(sse("https://evil.example")).await, 403);
    assert_eq!(status(sse("https://good.example")).await, 200);

    let preflight = http
        .request(reqwest::Method::OPTIONS, url(server.addr, "/pub/chat.a"))
        .header("origin", "https://good.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .send()
        .await
        .unwrap();
    assert!(preflight.status().is_success());
    assert_eq!(
        preflight.headers()["access-control-allow-origin"],
        "https://good.example"
    );
    let foreign = http
        .request(reqwest::Method::OPTIONS, url(server.addr, "/pub/chat.a"))
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert!(foreign
        .headers()
        .get("access-control-allow-origin")
        .is_none());
}

/// A WebSocket handshake refused before the upgrade: its status and JSON error code.
async fn refused_upgrade(addr: SocketAddr, path: &str, origin: Option<&str>) -> (u16, String) {
    match tokio_tungstenite::connect_async(ws_request(addr, path, origin)).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body: Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default())
                    .expect("a JSON error body");
            let code = body["error"]["code"]
                .as_str()
                .unwrap_or_default()
                .to_owned();
            (response.status().as_u16(), code)
        }
        Err(other) => panic!("{path}: expected an HTTP refusal, got {other}"),
        Ok(_) => panic!("{path}: the upgrade was accepted"),
    }
}

#[tokio::test]
async fn the_ws_protocol_refuses_origins_and_missing_credentials_before_upgrading() {
    let server = secured().await;
    let good = grants(&["*"], &[], now() + 600);
    let expired = grants(&["*"], &[], now() - 60);
    let cases = [
        (
            format!("/ws?token={good}"),
            Some("https://evil.example"),
            403,
            "origin_not_allowed",
        ),
        ("/ws".to_owned(), None, 401, "unauthorized"),
        (format!("/ws?token={expired}"), None, 401, "token_expired"),
        ("/ws?token=nonsense".to_owned(), None, 401, "invalid_token"),
    ];
    for (path, origin, status, code) in cases {
        assert_eq!(
            refused_upgrade(server.addr, &path, origin).await,
            (status, code.to_owned()),
            "{path} from {origin:?}"
        );
    }
    // A request that is no handshake at all is refused first, whatever else is wrong.
    let response = reqwest::Client::new()
        .get(url(server.addr, "/ws"))
        .header("origin", "https://evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "bad_websocket_upgrade");
}

#[tokio::test]
async fn publishing_too_fast_is_answered_429_with_retry_after() {
    let server = start(|c| {
        c.publish_rate = 2.0;
        c.rate_limit_loopback = true;
    })
    .await;
    let http = reqwest::Client::new();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        let response = http
            .post(url(server.addr, "/pub/x"))
            .body("a")
            .send()
            .await
            .unwrap();
        statuses.push(response.status().as_u16());
        if response.status() == 429 {
            assert!(
                response.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap()
                    >= 1
            );
            let body: Value = response.json().await.unwrap();
            assert_eq!(body["error"]["code"], "rate_limited");
        }
    }
    assert_eq!(
        &statuses[..4],
        &[200, 200, 200, 200],
        "a burst of twice the rate passes"
    );
    assert!(statuses[4..].iter().all(|s| *s == 429), "{statuses:?}");
}

#[tokio::test]
async fn oversized_and_malformed_requests_fail_alone() {
    let server = start(|c| c.max_message_size = 1024).await;
    let http = reqwest::Client::new();
    assert_eq!(
        status(http.post(url(server.addr, "/pub/x")).body(vec![b'a'; 2048])).await,
        413
    );
    let big_header = "a".repeat(20 * 1024);
    let fresh = reqwest::Client::new();
    assert_eq!(
        status(
            fresh
                .get(url(server.addr, "/healthz"))
                .header("x-big", big_header)
        )
        .await,
        431
    );
    let mut many_headers = fresh.get(url(server.addr, "/healthz"));
    for i in 0..150 {
        many_headers = many_headers.header(format!("x-h{i}"), "v");
    }
    assert_eq!(status(many_headers).await, 431);
    let many: Vec<String> = (0..65).map(|i| format!("c{i}")).collect();
    assert_eq!(
        status(http.get(url(
            server.addr,
            &format!("/sub/{}?timeout=0", many.join(","))
        )))
        .await,
        400
    );
    assert_eq!(
        status(http.get(url(server.addr, "/sub/x?since=not-a-cursor"))).await,
        400
    );
    assert_eq!(
        status(http.post(url(server.addr, "/pub")).body("[{oops")).await,
        400
    );
    // The server still serves everyone else.
    assert_eq!(
        status(http.post(url(server.addr, "/pub/x")).body("fine")).await,
        200
    );
}

/// Opens a WebSocket by hand, to send frames no library would.
async fn raw_socket(addr: SocketAddr, path: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        within("the handshake", stream.read_exact(&mut byte))
            .await
            .unwrap();
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    stream
}

fn frame(opcode: u8, payload: &[u8], masked: bool) -> Vec<u8> {
    let mut out = vec![0x80 | opcode];
    let mask_bit = if masked { 0x80 } else { 0 };
    match payload.len() {
        n if n < 126 => out.push(mask_bit | n as u8),
        n if n < 65536 => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    if masked {
        let key = [1u8, 2, 3, 4];
        out.extend_from_slice(&key);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
    } else {
        out.extend_from_slice(payload);
    }
    out
}

/// Reads server frames until a close frame, returning its code.
async fn read_close(stream: &mut TcpStream) -> u16 {
    loop {
        let mut head = [0u8; 2];
        within("a frame", stream.read_exact(&mut head))
            .await
            .unwrap();
        let mut len = u64::from(head[1] & 0x7f);
        if len == 126 {
            let mut ext = [0u8; 2];
            stream.read_exact(&mut ext).await.unwrap();
            len = u64::from(u16::from_be_bytes(ext));
        } else if len == 127 {
            let mut ext = [0u8; 8];
            stream.read_exact(&mut ext).await.unwrap();
            len = u64::from_be_bytes(ext);
        }
        let mut payload = vec![0u8; len as usize];
        stream.read_exact(&mut payload).await.unwrap();
        if head[0] & 0x0f == 0x8 {
            assert!(payload.len() >= 2, "close frame without a code");
            return u16::from_be_bytes([payload[0], payload[1]]);
        }
    }
}

#[tokio::test]
async fn hostile_websocket_frames_fail_their_own_connection_only() {
    let server = start(|c| c.max_message_size = 1024).await;
    let (mut bystander, _) =
        tokio_tungstenite::connect_async(format!("ws://{}/sub/shared", server.addr))
            .await
            .unwrap();

    let mut unmasked = raw_socket(server.addr, "/sub/hostile").await;
    unmasked
        .write_all(&frame(0x1, b"hello", false))
        .await
        .unwrap();
    assert_eq!(read_close(&mut unmasked).await, 1002);

    let mut bad_utf8 = raw_socket(server.addr, "/sub/hostile").await;
    bad_utf8
        .write_all(&frame(0x1, &[0xff, 0xfe, 0x41], true))
        .await
        .unwrap();
    assert_eq!(read_close(&mut bad_utf8).await, 1007);

    let mut too_big = raw_socket(server.addr, "/sub/hostile").await;
    too_big
        .write_all(&frame(0x2, &vec![7u8; 64 * 1024], true))
        .await
        .unwrap();
    assert_eq!(read_close(&mut too_big).await, 1009);

    let mut reserved = raw_socket(server.addr, "/sub/hostile").await;
    reserved.write_all(&frame(0x3, b"x", true)).await.unwrap();
    assert_eq!(read_close(&mut reserved).await, 1002);

    // A flood of small fragments that never ends a message: failed at the size limit.
    let mut flood = raw_socket(server.addr, "/sub/hostile").await;
    let mut first = frame(0x2, &[1u8; 512], true);
    first[0] &= 0x7f; // not final
    flood.write_all(&first).await.unwrap();
    let outcome = within("the flood to be cut off", async {
        for _ in 0..10_000 {
            let mut fragment = frame(0x0, &[1u8; 512], true);
            fragment[0] &= 0x7f;
            if flood.write_all(&fragment).await.is_err() {
                return None;
            }
            let mut peek = [0u8; 1];
            if let Ok(Ok(n)) =
                tokio::time::timeout(std::time::Duration::from_millis(0), flood.peek(&mut peek))
                    .await
            {
                if n > 0 {
                    return Some(read_close(&mut flood).await);
                }
            }
        }
        panic!("10,000 fragments (5 MB) were accepted");
    })
    .await;
    if let Some(code) = outcome {
        assert_eq!(code, 1009);
    }

    // The bystander still publishes and hears itself.
    bystander.send(Message::text("still here")).await.unwrap();
    let echoed = within("the bystander's own message", bystander.next())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(echoed.to_text().unwrap(), "still here");
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_subscriber_neither_slows_a_fast_one_nor_grows_memory() {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_herald"));
    command.args(["serve", "--listen", "127.0.0.1:0", "--history-size", "100"]);
    command.args(["--log-level", "warn"]);
    let (addr, pid, guard) = spawn_server(command);
    // What the server holds before the flood (its code and startup data:
    // more than 30 MB in a debug build, and growing with the binary).
    let baseline_rss = rss_kib(pid);

    // The stalled subscriber asks for an event stream and never reads it.
    let mut stalled = TcpStream::connect(addr).await.unwrap();
    stalled
        .write_all(
            format!("GET /sub/flood HTTP/1.1\r\nHost: {addr}\r\nAccept: text/event-stream\r\n\r\n")
                .as_bytes(),
        )
        .await
        .unwrap();
    let (mut fast, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/ws"))
        .await
        .unwrap();
    fast.send(Message::text(
        json!({"op": "sub", "channel": "flood", "ref": 1}).to_string(),
    ))
    .await
    .unwrap();
    let ok = within("the sub ack", fast.next()).await.unwrap().unwrap();
    assert!(ok.to_text().unwrap().contains("\"ok\""));

    let http = reqwest::Client::new();
    let size = 45 * 1024;
    let total = 2000; // 90 MB
    let mut received = 0u64;
    let mut peak_rss = 0;
    for batch in 0..(total / 50) {
        for i in 0..50 {
            let seq = batch * 50 + i;
            let mut data = format!("{seq:08}").into_bytes();
            data.resize(size, b'x');
            let response = http
                .post(format!("http://{addr}/pub/flood"))
                .body(data)
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 200);
        }
        // Pace on the fast subscriber: it must have everything so far, in order.
        while received < (batch as u64 + 1) * 50 {
            let frame = within("the fast subscriber's messages", fast.next())
                .await
                .unwrap()
                .unwrap();
            let value: Value = serde_json::from_str(frame.to_text().unwrap()).unwrap();
            assert_eq!(value["op"], "msg", "fast subscriber got {}", value["op"]);
            let seq: u64 = value["data"].as_str().unwrap()[..8].parse().unwrap();
            assert_eq!(seq, received, "fast subscriber lost or reordered a message");
            received += 1;
        }
        peak_rss = peak_rss.max(rss_kib(pid));
    }
    assert_eq!(received, total as u64);
    // 90 MB went through; the server grew by far less: its history (100
    // messages, each with the encodings its subscribers were sent), one
    // subscriber's bounded queue and socket buffers.
    let growth = peak_rss.saturating_sub(baseline_rss);
    assert!(
        growth < 40 * 1024,
        "server RSS grew by {growth} KiB (from {baseline_rss} to {peak_rss} KiB)"
    );
    drop(stalled);
    drop(guard);
}

/// Starts `command` (a `herald serve` on port 0) and reads the address it
/// prints; returns it, the process id, and a guard that kills the process.
fn spawn_server(mut command: std::process::Command) -> (SocketAddr, u32, impl Drop) {
    use std::io::BufRead;
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let line = std::io::BufReader::new(stdout)
        .lines()
        .next()
        .unwrap()
        .unwrap();
    let addr: SocketAddr = line.rsplit("http://").next().unwrap().parse().unwrap();
    let pid = child.id();
    (addr, pid, scopeguard(child))
}

/// Kills the child process when dropped, even if the test fails.
fn scopeguard(child: std::process::Child) -> impl Drop {
    struct Kill(std::process::Child);
    impl Drop for Kill {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    Kill(child)
}

/// Runs openssl (Debian's, on every machine of this kind) to make a key.
fn openssl(args: &[&str]) {
    let status = std::process::Command::new("openssl")
        .args(args)
        .status()
        .expect("openssl runs");
    assert!(status.success(), "openssl {args:?}");
}

#[tokio::test]
async fn public_key_tokens_rs256_and_es256_and_no_algorithm_confusion() {
    let dir = std::env::temp_dir().join(format!("herald-keys-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
    openssl(&[
        "ecparam",
        "-name",
        "prime256v1",
        "-genkey",
        "-noout",
        "-out",
        &path("ec.pem"),
    ]);
    openssl(&[
        "pkcs8",
        "-topk8",
        "-nocrypt",
        "-in",
        &path("ec.pem"),
        "-out",
        &path("ec-private.pem"),
    ]);
    openssl(&[
        "ec",
        "-in",
        &path("ec.pem"),
        "-pubout",
        "-out",
        &path("ec-public.pem"),
    ]);
    openssl(&["genrsa", "-out", &path("rsa.pem"), "2048"]);
    openssl(&[
        "rsa",
        "-in",
        &path("rsa.pem"),
        "-pubout",
        "-out",
        &path("rsa-public.pem"),
    ]);

    let claims = json!({"exp": now() + 600, "herald": {"subscribe": ["*"]}});
    let cases = [
        (
            "ec-public.pem",
            jsonwebtoken::Algorithm::ES256,
            EncodingKey::from_ec_pem(&std::fs::read(path("ec-private.pem")).unwrap()).unwrap(),
        ),
        (
            "rsa-public.pem",
            jsonwebtoken::Algorithm::RS256,
            EncodingKey::from_rsa_pem(&std::fs::read(path("rsa.pem")).unwrap()).unwrap(),
        ),
    ];
    for (public, algorithm, signing) in cases {
        let key = JwtKey::public_key_file(std::path::Path::new(&path(public))).unwrap();
        assert_eq!(key.algorithm(), algorithm);
        let server = start(|c| {
            c.auth = Auth {
                publish_key: None,
                jwt: Some(key),
                leeway: 0,
            }
        })
        .await;
        let good = encode(&Header::new(algorithm), &claims, &signing).unwrap();
        // The classic confusion: an HS256 token "signed" with the public key as secret.
        let confused = encode(
            &Header::new(jsonwebtoken::Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(&std::fs::read(path(public)).unwrap()),
        )
        .unwrap();
        let http = reqwest::Client::new();
        let poll =
            |token: &str| http.get(url(server.addr, &format!("/sub/k?timeout=0&token={token}")));
        assert_eq!(status(poll(&good)).await, 200, "{algorithm:?}");
        assert_eq!(
            status(poll(&confused)).await,
            401,
            "{algorithm:?} accepted an HS256 token"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn at_the_connection_limit_health_and_metrics_answer_and_the_rest_get_503() {
    let server = start(|c| c.max_connections = 2).await;
    // Two connections that send nothing hold both slots: the accept loop
    // takes connections in order, so they are counted before the next.
    let held = [
        TcpStream::connect(server.addr).await.unwrap(),
        TcpStream::connect(server.addr).await.unwrap(),
    ];
    let fresh = || reqwest::Client::builder().build().unwrap();
    for path in ["/healthz", "/readyz", "/metrics"] {
        let response = within(path, fresh().get(url(server.addr, path)).send())
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{path} at the connection limit");
    }
    let response = within(
        "a publish at the limit",
        fresh().post(url(server.addr, "/pub/full")).body("x").send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503);
    assert_eq!(response.headers()["retry-after"], "1");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_many_connections", "{body}");
    drop(held);
    // With the slots free again, a publish goes through.
    within("the slots to come back", async {
        loop {
            let response = fresh()
                .post(url(server.addr, "/pub/full"))
                .body("x")
                .send()
                .await
                .unwrap();
            if response.status() == 200 {
                return;
            }
            assert_eq!(response.status(), 503);
            tokio::task::yield_now().await;
        }
    })
    .await;
}

#[tokio::test]
async fn websockets_keep_their_connection_slot_after_the_upgrade() {
    // Found by scripts/faults: an upgraded socket used to give its slot
    // back when hyper handed it over, so WebSockets escaped the limit.
    let server = start(|c| c.max_connections = 2).await;
    let open = || async {
        let request = format!("ws://{}/sub/slots", server.addr);
        within("a WebSocket", tokio_tungstenite::connect_async(request))
            .await
            .unwrap()
            .0
    };
    let held = [open().await, open().await];
    let response = within(
        "a publish with two WebSockets open",
        reqwest::Client::new()
            .post(url(server.addr, "/pub/slots"))
            .body("x")
            .send(),
    )
    .await
    .unwrap();
    assert_eq!(response.status(), 503, "the WebSockets hold both slots");
    drop(held);
}

#[tokio::test]
async fn forwarded_client_addresses_count_only_from_a_trusted_proxy() {
    // Publishes are limited per client address (1/s, bursts of 2), loopback
    // included, so the test's own address would be one client.
    let configure = |trusted: bool| {
        move |c: &mut ServerConfig| {
            c.publish_rate = 1.0;
            c.rate_limit_loopback = true;
            if trusted {
                c.trusted_proxies =
                    herald::proxy::TrustedProxies::new(vec![herald::proxy::parse_network(
                        "127.0.0.1",
                    )
                    .unwrap()]);
            }
        }
    };
    let publish_as = |addr: SocketAddr, client: &'static str| {
        reqwest::Client::new()
            .post(url(addr, "/pub/proxied"))
            .header("x-forwarded-for", format!("6.6.6.6, {client}"))
            .body("x")
    };
    let trusting = start(configure(true)).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        statuses.push(status(publish_as(trusting.addr, "203.0.113.5")).await);
    }
    assert_eq!(statuses, [200, 200, 429], "one client's burst");
    // Another client behind the same proxy has a bucket of its own.
    assert_eq!(status(publish_as(trusting.addr, "203.0.113.6")).await, 200);

    // Without --trusted-proxy the header is anyone's claim: every publish
    // counts against the peer, whatever it says.
    let plain = start(configure(false)).await;
    let mut statuses = Vec::new();
    for client in ["203.0.113.5", "203.0.113.6", "203.0.113.7"] {
        statuses.push(status(publish_as(plain.addr, client)).await);
    }
    assert_eq!(
        statuses,
        [200, 200, 429],
        "one peer, however it names itself"
    );
}

#[tokio::test]
async fn a_full_server_answers_a_bounded_number_of_refusals_and_closes_the_rest() {
    use herald::http::server::{refusal_slots, OPERATIONS_SLOTS};
    // Its own process with 400 open files: its refusal slots are then few
    // enough for every held connection to fit the listen backlog, so the
    // server accepts them in the order they were made.
    const OPEN_FILES: u64 = 400;
    let mut command = std::process::Command::new("sh");
    command
        .arg("-c")
        .arg(format!(
            "ulimit -n {OPEN_FILES} && exec \"$0\" serve --listen 127.0.0.1:0 --max-connections 1 --log-level warn"
        ))
        .arg(env!("CARGO_BIN_EXE_herald"));
    let (addr, _, guard) = spawn_server(command);
    let refusals = refusal_slots(1, OPEN_FILES);
    assert!(
        1 + OPERATIONS_SLOTS + refusals < 512,
        "fits a listen backlog"
    );
    // Connections that send nothing hold the client slot, every operations
    // slot and every refusal slot (the accept loop takes them in order).
    let mut held = Vec::new();
    for _ in 0..1 + OPERATIONS_SLOTS + refusals {
        held.push(TcpStream::connect(addr).await.unwrap());
    }
    // One more is closed at once, without an answer: refusals never hold
    // more descriptors than their slots.
    let mut extra = TcpStream::connect(addr).await.unwrap();
    let mut buf = [0u8; 256];
    // (At once: a refusal would wait seconds for a request head first.)
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("the extra connection is closed at once");
    assert!(
        matches!(read, Ok(0) | Err(_)),
        "closed without an answer: {read:?}"
    );
    // A connection in a refusal slot still gets its 503.
    let refused = held.last_mut().unwrap();
    refused
        .write_all(b"GET /pub/x HTTP/1.1\r\nHost: herald\r\n\r\n")
        .await
        .unwrap();
    let n = within("the refusal", refused.read(&mut buf)).await.unwrap();
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    drop(held);
    drop(guard);
}
