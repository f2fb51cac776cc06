//! Every client mistake is a JSON error with a fitting status, never a 500.

mod common;

use common::*;

async fn error(request: reqwest::RequestBuilder) -> (u16, String) {
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body: serde_json::Value = response.json().await.expect("a JSON error body");
    let code = body["error"]["code"]
        .as_str()
        .expect("error.code")
        .to_owned();
    assert!(body["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    (status, code)
}

#[tokio::test]
async fn bad_input_is_a_json_error_with_the_right_status() {
    let server = start(|c| c.max_message_size = 100).await;
    let http = reqwest::Client::new();
    let long = "x".repeat(129);
    let cases = [
        (
            http.post(url(server.addr, "/pub/has%20space")).body("x"),
            400,
            "bad_channel",
        ),
        (
            http.post(url(server.addr, &format!("/pub/{long}")))
                .body("x"),
            400,
            "bad_channel",
        ),
        (http.get(url(server.addr, "/sub/a,,b")), 400, "bad_channel"),
        (
            http.get(url(server.addr, "/sub/a?since=garbage")),
            400,
            "bad_cursor",
        ),
        (
            http.get(url(server.addr, "/sub/a,b?since=k-1")),
            400,
            "bad_cursor",
        ),
        (
            http.get(url(server.addr, "/sub/a?timeout=soon")),
            400,
            "bad_timeout",
        ),
        (
            http.post(url(server.addr, "/pub/a?event=herald.gap"))
                .body("x"),
            400,
            "bad_event",
        ),
        (
            http.post(url(server.addr, "/pub/a")).body("x".repeat(101)),
            413,
            "too_large",
        ),
        (
            http.post(url(server.addr, "/pub")).body("not json"),
            400,
            "bad_json",
        ),
        (http.get(url(server.addr, "/pub/unknown")), 404, "not_found"),
        (
            http.get(url(server.addr, "/no/such/endpoint")),
            404,
            "not_found",
        ),
        (
            http.put(url(server.addr, "/pub/a")),
            405,
            "method_not_allowed",
        ),
        (
            http.get(url(server.addr, "/sub/a?transport=ws")),
            400,
            "websocket_upgrade_required",
        ),
    ];
    for (request, status, code) in cases {
        assert_eq!(error(request).await, (status, code.to_owned()));
    }
    let exactly = "x".repeat(100);
    assert_eq!(publish(server.addr, "a", exactly).await["channel"], "a");
    let longest = "y".repeat(128);
    assert_eq!(
        publish(server.addr, &longest, "x").await["channel"],
        longest.as_str()
    );
}

/// Sends `request` and checks the answer is a client error with a JSON body.
async fn client_error(what: &str, request: reqwest::RequestBuilder) -> u16 {
    let response = within(what, request.send()).await.unwrap();
    let status = response.status().as_u16();
    assert!(
        (400..500).contains(&status),
        "{what}: expected a 4xx, got {status}"
    );
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.unwrap();
    assert!(
        content_type.starts_with("application/json"),
        "{what}: {status} with content-type {content_type:?}: {text}"
    );
    let body: serde_json::Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: {status} body is not JSON ({e}): {text}"));
    assert!(
        body["error"]["code"]
            .as_str()
            .is_some_and(|c| !c.is_empty())
            && body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
    status
}

#[tokio::test]
async fn hostile_requests_get_json_client_errors_never_a_500() {
    let server = start(|c| {
        c.max_message_size = 100;
        c.max_channels_per_subscription = 4;
    })
    .await;
    let addr = server.addr;
    let http = reqwest::Client::new();
    let get = |path: &str| http.get(url(addr, path));
    let post = |path: &str| http.post(url(addr, path));
    let requests: Vec<(&str, reqwest::RequestBuilder)> = vec![
        ("invalid UTF-8 in a channel", post("/pub/%FF%FE").body("x")),
        ("a reserved character", post("/pub/a%2Fb").body("x")),
        ("an empty channel list", get("/sub/,")),
        ("too many channels", get("/sub/a,b,c,d,e")),
        (
            "a huge seq",
            get("/sub/a?since=abc-999999999999999999999999"),
        ),
        ("a huge epoch", get("/sub/a?since=zzzzzzzzzzzzzzzzzzzz-1")),
        ("a negative seq", get("/sub/a?since=abc--1")),
        (
            "a cursor naming a bad channel",
            get("/sub/a,b?since=a%20b%3Dabc-1"),
        ),
        ("a cursor with an empty id", get("/sub/a,b?since=a%3D")),
        (
            "a long cursor",
            get(&format!("/sub/a?since={}", "9".repeat(10_000))),
        ),
        (
            "a bad Last-Event-ID",
            get("/sub/a")
                .header("accept", "text/event-stream")
                .header("last-event-id", "nope"),
        ),
        ("a negative timeout", get("/sub/a?timeout=-1")),
        (
            "an absurd timeout",
            get("/sub/a?timeout=99999999999999999999999"),
        ),
        ("a zero limit", get("/sub/a?limit=0")),
        ("a word limit", get("/sub/a?limit=many")),
        (
            "an unknown transport",
            get("/sub/a?transport=carrier-pigeon"),
        ),
        (
            "a bad event name",
            post("/pub/a?event=has%20space").body("x"),
        ),
        (
            "a long idempotency key",
            post("/pub/a")
                .header("idempotency-key", "k".repeat(300))
                .body("x"),
        ),
        (
            "a declared oversized body",
            post("/pub/a")
                .header("content-length", "1000000")
                .body("x".repeat(1_000_000)),
        ),
        (
            "a batch that is an object",
            post("/pub").body(r#"{"channel":"a","data":"x"}"#),
        ),
        (
            "a batch item without data",
            post("/pub").body(r#"[{"channel":"a"}]"#),
        ),
        (
            "a batch item with a bad channel",
            post("/pub").body(r#"[{"channel":"","data":"x"}]"#),
        ),
        (
            "a batch item with bad base64",
            post("/pub").body(r#"[{"channel":"a","data":"!!","encoding":"base64"}]"#),
        ),
        (
            "a batch item with an unknown encoding",
            post("/pub").body(r#"[{"channel":"a","data":"x","encoding":"rot13"}]"#),
        ),
        (
            "a batch item too large",
            post("/pub").body(format!(
                r#"[{{"channel":"a","data":"{}"}}]"#,
                "x".repeat(101)
            )),
        ),
        (
            "a batch of 1001",
            post("/pub").body(format!(
                "[{}]",
                vec![r#"{"channel":"a","data":"x"}"#; 1001].join(",")
            )),
        ),
        ("a plain GET on /ws", get("/ws")),
        (
            "a websocket upgrade without a key",
            get("/sub/a")
                .header("connection", "upgrade")
                .header("upgrade", "websocket"),
        ),
        (
            "DELETE of an unknown channel",
            http.delete(url(addr, "/pub/never-was")),
        ),
        ("PATCH on /pub", http.patch(url(addr, "/pub/a"))),
        ("POST on /sub", post("/sub/a").body("x")),
        ("an unknown route", get("/pub/a/b/c")),
    ];
    for (what, request) in requests {
        client_error(what, request).await;
    }
    // Nothing above was published, and the server still works.
    let (status, _) = get_json(addr, "/pub/a").await;
    assert_eq!(status, 404, "a refused request must not create the channel");
    assert_eq!(publish(addr, "a", "fine").await["channel"], "a");
}

#[tokio::test]
async fn a_bad_cursor_is_refused_before_a_websocket_opens() {
    let server = server().await;
    let error =
        tokio_tungstenite::connect_async(format!("ws://{}/sub/a?since=garbage", server.addr))
            .await
            .expect_err("the upgrade is refused");
    match error {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap_or_default()).unwrap();
            assert_eq!(body["error"]["code"], "bad_cursor");
        }
        other => panic!("expected an HTTP refusal, got {other}"),
    }
}

#[tokio::test]
async fn an_oversized_body_without_a_length_is_refused_with_413_and_nothing_published() {
    let server = start(|c| c.max_message_size = 1000).await;
    // Chunked, so the server only learns the size by reading.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..20).map(|_| Ok(vec![b'x'; 100])).collect();
    let body = reqwest::Body::wrap_stream(futures_util::stream::iter(chunks));
    let response = reqwest::Client::new()
        .post(url(server.addr, "/pub/chunky"))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "too_large");
    let (status, _) = get_json(server.addr, "/pub/chunky").await;
    assert_eq!(status, 404, "nothing was published");
    // Exactly the limit, chunked, is accepted.
    let chunks: Vec<Result<Vec<u8>, std::io::Error>> =
        (0..10).map(|_| Ok(vec![b'x'; 100])).collect();
    let response = reqwest::Client::new()
        .post(url(server.addr, "/pub/chunky"))
        .body(reqwest::Body::wrap_stream(futures_util::stream::iter(
            chunks,
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
}

/// Sends `requests` back to back on one connection and reads until `answers`
/// responses (counted by their status lines) have arrived or the server
/// closed; returns the status codes seen.
async fn pipelined(addr: std::net::SocketAddr, requests: &[Vec<u8>], answers: usize) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    for request in requests {
        stream.write_all(request).await.unwrap();
    }
    let mut raw = Vec::new();
    let statuses = |raw: &[u8]| -> Vec<u16> {
        String::from_utf8_lossy(raw)
            .match_indices("HTTP/1.1 ")
            .filter_map(|(at, _)| String::from_utf8_lossy(&raw[at + 9..at + 12]).parse().ok())
            .collect()
    };
    within("the pipelined answers", async {
        let mut buffer = [0u8; 4096];
        while statuses(&raw).len() < answers {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    statuses(&raw)
}

fn post(path: &str, body: &[u8]) -> Vec<u8> {
    let mut request = format!(
        "POST {path} HTTP/1.1\r\nhost: herald\r\ncontent-length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    request.extend_from_slice(body);
    request
}

#[tokio::test]
async fn a_request_refused_before_its_body_is_read_leaves_the_connection_usable() {
    let server = server().await;
    let body = vec![b'x'; 32 * 1024];
    let good = post("/pub/kept", b"after");
    for refused in [
        post("/pub/bad%20channel", &body), // 400 before the body is read
        post("/pub/kept?event=bad%20event", &body), // 400
        post("/no/such/endpoint", &body),  // 404
    ] {
        let statuses = pipelined(server.addr, &[refused, good.clone()], 2).await;
        assert_eq!(statuses.len(), 2, "both requests answered: {statuses:?}");
        assert!(statuses[0] >= 400, "{statuses:?}");
        assert_eq!(statuses[1], 200, "{statuses:?}");
    }
    // Too large by its declared length: refused with `Connection: close`, so
    // the client knows not to send more on it.
    let response = reqwest::Client::new()
        .post(url(server.addr, "/pub/kept"))
        .body(vec![b'x'; 128 * 1024])
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 413);
    assert_eq!(response.headers()["connection"], "close");
}

fn get(path: &str) -> Vec<u8> {
    format!("GET {path} HTTP/1.1\r\nhost: herald\r\n\r\n").into_bytes()
}

/// What the server sends on `stream` until `enough` says so or it closes
/// the connection, as text, within the test's wait.
async fn read_until(
    stream: &mut tokio::net::TcpStream,
    what: &str,
    enough: impl Fn(&[u8]) -> bool,
) -> String {
    use tokio::io::AsyncReadExt;
    let mut raw = Vec::new();
    within(what, async {
        let mut buffer = [0u8; 8192];
        while !enough(&raw) {
            match stream.read(&mut buffer).await {
                Ok(0) | Err(_) => break,
                Ok(n) => raw.extend_from_slice(&buffer[..n]),
            }
        }
    })
    .await;
    String::from_utf8_lossy(&raw).into_owned()
}

/// Whether `raw` ends with a whole JSON answer.
fn answered(raw: &[u8]) -> bool {
    raw.ends_with(b"}")
}

/// The answers to `requests` sent back to back on one connection, as text,
/// once `answers` status lines have arrived (or the server closed).
async fn pipelined_text(
    addr: std::net::SocketAddr,
    requests: &[Vec<u8>],
    answers: usize,
) -> String {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream.write_all(&requests.concat()).await.unwrap();
    read_until(&mut stream, "the pipelined answers", |raw| {
        String::from_utf8_lossy(raw).matches("HTTP/1.1 ").count() >= answers && answered(raw)
    })
    .await
}

#[tokio::test]
async fn publishes_long_polls_and_other_requests_share_one_kept_alive_connection() {
    let server = server().await;
    // Publishes and long polls are served without hyper; the channel info
    // request is hyper's, and so is everything after it on the connection.
    let requests = [
        post("/pub/mixed", b"one"),
        post("/pub/mixed", b"two"),
        get("/sub/mixed?since=0"),
        get("/pub/mixed"),
        post("/pub/mixed", b"three"),
        get("/sub/mixed?since=0"),
    ];
    let text = pipelined_text(server.addr, &requests, requests.len()).await;
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["200"; 6], "{text}");
    let bodies: Vec<&str> = text.split("\r\n\r\n").skip(1).collect();
    assert!(
        bodies[0].starts_with(r#"{"channel":"mixed","id":"#),
        "{text}"
    );
    assert!(
        bodies[2].contains(r#""data":"one""#) && bodies[2].contains(r#""data":"two""#),
        "the first poll has both: {text}"
    );
    assert!(bodies[3].contains(r#""messages":2"#), "{text}");
    assert!(bodies[5].contains(r#""data":"three""#), "{text}");
    // Every answer says how long it is, and none ends the connection.
    assert_eq!(text.matches("content-length: ").count(), 6, "{text}");
    assert!(!text.contains("connection: close"), "{text}");
}

#[tokio::test]
async fn a_publish_whose_body_arrives_after_its_head_is_published_whole() {
    use tokio::io::AsyncWriteExt;
    let server = server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream.set_nodelay(true).unwrap();
    stream
        .write_all(b"POST /pub/halves HTTP/1.1\r\nhost: herald\r\ncontent-length: 10\r\n\r\nfirst")
        .await
        .unwrap();
    stream.flush().await.unwrap();
    tokio::task::yield_now().await;
    stream.write_all(b"-half").await.unwrap();
    let answer = read_until(&mut stream, "the answer", answered).await;
    assert!(answered(answer.as_bytes()), "closed early: {answer}");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let (_, page) = get_json(server.addr, "/sub/halves?since=0&transport=poll").await;
    assert_eq!(page["messages"][0]["data"], "first-half", "{page}");
}

#[tokio::test]
async fn a_long_poll_whose_client_leaves_stops_waiting() {
    use tokio::io::AsyncWriteExt;
    let server = server().await;
    publish(server.addr, "left", "hello").await;
    let mut poll = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    poll.write_all(&get("/sub/left")).await.unwrap();
    let subscribers = |count: u64| async move {
        loop {
            let (_, info) = get_json(server.addr, "/pub/left").await;
            if info["subscribers"] == count {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    within("the poll waiting", subscribers(1)).await;
    drop(poll);
    within("the poll to end with its client", subscribers(0)).await;
}

/// Reads from `stream` until the server closes it, within the test's wait.
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> String {
    read_until(stream, "the server to close the connection", |_| false).await
}

#[tokio::test]
async fn a_signed_or_listed_content_length_is_refused_not_read() {
    let server = server().await;
    for length in ["+5", "5, 5", " 5x"] {
        let request = format!(
            "POST /pub/framing HTTP/1.1\r\nhost: herald\r\ncontent-length: {length}\r\n\r\nhello"
        );
        let statuses = pipelined(server.addr, &[request.into_bytes()], 1).await;
        assert_eq!(statuses, [400], "content-length: {length}");
    }
    let (status, _) = get_json(server.addr, "/pub/framing").await;
    assert_eq!(status, 404, "nothing was published");
}

#[tokio::test]
async fn a_refused_event_stream_leaves_the_next_pipelined_request_intact() {
    let server = server().await;
    let refused = get("/sub/kept?transport=sse&since=bogus");
    let text = pipelined_text(server.addr, &[refused, post("/pub/kept", b"after")], 2).await;
    let statuses: Vec<&str> = text
        .match_indices("HTTP/1.1 ")
        .map(|(at, _)| &text[at + 9..at + 12])
        .collect();
    assert_eq!(statuses, ["400", "200"], "{text}");
}

#[tokio::test]
async fn a_long_poll_page_over_a_mebibyte_is_answered_whole() {
    let server = server().await;
    let data = "x".repeat(60 * 1024);
    for _ in 0..20 {
        publish(server.addr, "large", data.clone()).await;
    }
    let (status, page) = get_json(server.addr, "/sub/large?since=0&transport=poll").await;
    assert_eq!(status, 200);
    assert_eq!(page["messages"].as_array().map(Vec::len), Some(20));
}

#[tokio::test]
async fn at_shutdown_kept_alive_connections_close_after_their_current_response() {
    use tokio::io::AsyncWriteExt;
    let server = server().await;
    publish(server.addr, "closing", "first").await;
    // One connection idle after a publish, one waiting in a long poll.
    let mut idle = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    idle.write_all(&post("/pub/closing", b"second"))
        .await
        .unwrap();
    let answer = read_until(&mut idle, "the publish's answer", answered).await;
    assert!(answered(answer.as_bytes()), "closed before answering");
    let mut waiting = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    waiting.write_all(&get("/sub/closing")).await.unwrap();
    within("the poll waiting", async {
        loop {
            let (_, info) = get_json(server.addr, "/pub/closing").await;
            if info["subscribers"] == 1 {
                return;
            }
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    })
    .await;
    server.shutdown();
    assert_eq!(
        read_to_close(&mut idle).await,
        "",
        "the idle connection just closes"
    );
    let last = read_to_close(&mut waiting).await;
    assert!(last.starts_with("HTTP/1.1 200"), "{last}");
    assert!(last.contains("connection: close"), "{last}");
}
