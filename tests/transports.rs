//! The three transports on `/sub/{channels}`: raw WebSocket, SSE, long poll.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn raw_websocket_sends_text_for_utf8_and_binary_otherwise() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/sub/frames").await;
    wait_for_subscribers(server.addr, "frames", 1).await;
    publish(server.addr, "frames", "héllo").await;
    publish(server.addr, "frames", vec![0xffu8, 0x00, 0x80]).await;
    assert_eq!(next_frame(&mut socket).await, Message::text("héllo"));
    assert_eq!(
        next_frame(&mut socket).await,
        Message::binary(vec![0xffu8, 0x00, 0x80])
    );
}

#[tokio::test]
async fn a_raw_websocket_frame_is_published_and_echoed_to_its_sender() {
    let server = server().await;
    let mut sender = websocket(server.addr, "/sub/chat").await;
    let mut other = websocket(server.addr, "/sub/chat").await;
    wait_for_subscribers(server.addr, "chat", 2).await;
    sender.send(Message::text("hi all")).await.unwrap();
    assert_eq!(next_frame(&mut sender).await, Message::text("hi all"));
    assert_eq!(next_frame(&mut other).await, Message::text("hi all"));
    let (_, info) = get_json(server.addr, "/pub/chat").await;
    assert_eq!(info["messages"], 1);
}

#[tokio::test]
async fn raw_websocket_resumes_with_since() {
    let server = server().await;
    let first = publish(server.addr, "r", "1").await;
    publish(server.addr, "r", "2").await;
    publish(server.addr, "r", "3").await;
    let since = first["id"].as_str().unwrap();
    let mut socket = websocket(server.addr, &format!("/sub/r?since={since}")).await;
    assert_eq!(next_frame(&mut socket).await, Message::text("2"));
    assert_eq!(next_frame(&mut socket).await, Message::text("3"));
}

#[tokio::test]
async fn sse_sends_headers_retry_ids_events_and_one_data_line_per_line() {
    let server = server().await;
    let response = reqwest::Client::new()
        .get(url(server.addr, "/sub/lines"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    let headers = response.headers().clone();
    assert!(headers["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(headers["cache-control"], "no-cache");
    assert_eq!(headers["x-accel-buffering"], "no");
    wait_for_subscribers(server.addr, "lines", 1).await;
    let published = reqwest::Client::new()
        .post(url(server.addr, "/pub/lines?event=note"))
        .body("first line\nsecond line")
        .send()
        .await
        .unwrap()
        .json::<Value>()
        .await
        .unwrap();
    let id = published["id"].as_str().unwrap();
    let expected = format!("id: {id}\nevent: note\ndata: first line\ndata: second line\n\n");
    let mut raw = String::new();
    let mut body = response;
    while !raw.contains(&expected) {
        let chunk = within("the event bytes", body.chunk())
            .await
            .unwrap()
            .expect("stream open");
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
    }
    assert!(raw.starts_with("retry: "), "{raw:?}");
}

#[tokio::test]
async fn sse_sends_a_ping_comment_as_heartbeat() {
    let server = start(|c| c.sse_heartbeat = Duration::from_millis(100)).await;
    let mut response = reqwest::Client::new()
        .get(url(server.addr, "/sub/quiet?transport=sse"))
        .send()
        .await
        .unwrap();
    let mut raw = String::new();
    while !raw.contains(": ping\n\n") {
        let chunk = within("a heartbeat", response.chunk())
            .await
            .unwrap()
            .expect("stream open");
        raw.push_str(std::str::from_utf8(&chunk).unwrap());
    }
}

#[tokio::test]
async fn sse_resumes_from_last_event_id_last_event_id_query_or_since() {
    let server = server().await;
    let first = publish(server.addr, "s", "1").await;
    publish(server.addr, "s", "2").await;
    let id = first["id"].as_str().unwrap();
    for (path, headers) in [
        ("/sub/s".to_string(), vec![("last-event-id", id)]),
        (format!("/sub/s?lastEventId={id}"), vec![]),
        (format!("/sub/s?since={id}"), vec![]),
        // The header wins over the query, as on an EventSource reconnect.
        ("/sub/s?since=0".to_string(), vec![("last-event-id", id)]),
    ] {
        let mut sse = Sse::open(server.addr, &path, &headers).await;
        let event = sse.messages(1).await.remove(0);
        assert_eq!(event.data, "2", "{path} {headers:?}");
    }
}

#[tokio::test]
async fn long_poll_answers_at_once_after_since_and_holds_until_news() {
    let server = server().await;
    let first = publish(server.addr, "p", "1").await;
    let second = publish(server.addr, "p", "2").await;
    let since = first["id"].as_str().unwrap();
    let page = poll(server.addr, &format!("/sub/p?since={since}")).await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 1);
    assert_eq!(page["messages"][0]["data"], "2");
    assert_eq!(page["messages"][0]["channel"], "p");
    assert_eq!(page["messages"][0]["id"], second["id"]);
    assert_eq!(page["next"], second["id"]);

    let next = page["next"].as_str().unwrap().to_owned();
    let addr = server.addr;
    let held =
        tokio::spawn(async move { poll(addr, &format!("/sub/p?since={next}&timeout=20")).await });
    wait_for_subscribers(server.addr, "p", 1).await;
    let third = publish(server.addr, "p", "3").await;
    let page = within("the held poll", held).await.unwrap();
    assert_eq!(page["messages"][0]["data"], "3");
    assert_eq!(page["next"], third["id"]);
}

#[tokio::test]
async fn long_poll_without_since_waits_for_the_next_message() {
    let server = server().await;
    publish(server.addr, "w", "old").await;
    let addr = server.addr;
    let held = tokio::spawn(async move { poll(addr, "/sub/w").await });
    wait_for_subscribers(server.addr, "w", 1).await;
    publish(server.addr, "w", "new").await;
    let page = within("the held poll", held).await.unwrap();
    let data: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["new"]);
}

#[tokio::test]
async fn long_poll_times_out_with_an_empty_page_and_a_usable_next() {
    let server = server().await;
    let last = publish(server.addr, "t", "x").await;
    let page = poll(server.addr, "/sub/t?timeout=1").await;
    assert_eq!(page["messages"].as_array().unwrap().len(), 0);
    assert_eq!(page["next"], last["id"]);
    assert!(page.get("gap").is_none());
}

#[tokio::test]
async fn long_poll_sends_binary_as_base64() {
    let server = server().await;
    publish(server.addr, "bin", vec![0xffu8, 0x00]).await;
    let page = poll(server.addr, "/sub/bin?since=0").await;
    assert_eq!(page["messages"][0]["data"], "/wA=");
    assert_eq!(page["messages"][0]["encoding"], "base64");
}

#[tokio::test]
async fn long_poll_pages_are_limited_and_next_continues_without_loss() {
    let server = start(|c| c.poll_page_size = 10).await;
    for i in 0..25 {
        publish(server.addr, "many", i.to_string()).await;
    }
    let mut since = "0".to_string();
    let mut seen = Vec::new();
    for expected in [10, 10, 5] {
        let page = poll(server.addr, &format!("/sub/many?since={since}")).await;
        let messages = page["messages"].as_array().unwrap();
        assert_eq!(messages.len(), expected);
        seen.extend(
            messages
                .iter()
                .map(|m| m["data"].as_str().unwrap().parse::<u32>().unwrap()),
        );
        since = page["next"].as_str().unwrap().to_owned();
    }
    assert_eq!(seen, (0..25).collect::<Vec<_>>());
    let page = poll(
        server.addr,
        &format!("/sub/many?since={since}&limit=3&timeout=0"),
    )
    .await;
    assert!(page["messages"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn multi_channel_subscriptions_work_on_every_transport_with_one_cursor() {
    let server = server().await;
    let a1 = publish(server.addr, "a", "a1").await;
    let b1 = publish(server.addr, "b", "b1").await;

    // Long poll: one cursor covering both channels.
    let page = poll(server.addr, "/sub/a,b?since=0").await;
    let cursor = page["next"].as_str().unwrap().to_owned();
    assert_eq!(page["messages"].as_array().unwrap().len(), 2);
    assert!(
        cursor.contains(&format!("a={}", a1["id"].as_str().unwrap())),
        "{cursor}"
    );
    assert!(
        cursor.contains(&format!("b={}", b1["id"].as_str().unwrap())),
        "{cursor}"
    );

    // SSE: ids are cursors; resuming from one gives exactly what followed.
    let mut sse = Sse::open(server.addr, &format!("/sub/a,b?since={cursor}"), &[]).await;
    let mut raw = websocket(server.addr, &format!("/sub/a,b?since={cursor}")).await;
    wait_for_subscribers(server.addr, "b", 2).await;
    publish(server.addr, "b", "b2").await;
    publish(server.addr, "a", "a2").await;
    let events = sse.messages(2).await;
    assert_eq!(events[0].data, "b2");
    assert_eq!(events[1].data, "a2");
    let resume_from = events[0].id.clone();
    assert_eq!(next_frame(&mut raw).await, Message::text("b2"));
    assert_eq!(next_frame(&mut raw).await, Message::text("a2"));
    let mut resumed = Sse::open(server.addr, "/sub/a,b", &[("last-event-id", &resume_from)]).await;
    assert_eq!(resumed.messages(1).await[0].data, "a2");
    let page = poll(
        server.addr,
        &format!("/sub/a,b?since={}", urlencode(&resume_from)),
    )
    .await;
    let data: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["a2"]);
}

fn urlencode(raw: &str) -> String {
    raw.replace('=', "%3D").replace(',', "%2C")
}

#[tokio::test]
async fn transport_query_overrides_and_a_plain_get_is_a_long_poll() {
    let server = server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    stream
        .write_all(b"GET /sub/q?transport=sse HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut head = vec![0u8; 512];
    let n = within("the SSE head", stream.read(&mut head))
        .await
        .unwrap();
    assert!(String::from_utf8_lossy(&head[..n]).contains("text/event-stream"));
    let page = poll(server.addr, "/sub/q?timeout=0").await;
    assert!(page["messages"].is_array());
}

#[tokio::test]
async fn sse_data_keeps_blank_and_trailing_lines() {
    let server = server().await;
    let mut sse = Sse::open(server.addr, "/sub/text", &[]).await;
    wait_for_subscribers(server.addr, "text", 1).await;
    let cases = ["one\n\nthree", "trailing\n", "\n", "", "  spaced  "];
    for data in cases {
        publish(server.addr, "text", data).await;
    }
    let got: Vec<String> = sse
        .messages(cases.len())
        .await
        .into_iter()
        .map(|e| e.data)
        .collect();
    assert_eq!(got, cases);
}

#[tokio::test]
async fn sse_sends_binary_data_base64() {
    let server = server().await;
    publish(server.addr, "bin", vec![0xffu8, 0x00]).await;
    let mut sse = Sse::open(server.addr, "/sub/bin?since=0", &[]).await;
    assert_eq!(sse.next().await.unwrap().data, "/wA=");
}

#[tokio::test]
async fn an_sse_stream_that_drops_before_any_message_resumes_from_where_it_began() {
    let server = server().await;
    let mut response = reqwest::Client::new()
        .get(url(server.addr, "/sub/early"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    // The opening chunk carries an id, as an EventSource would remember it.
    let raw = read_until(&mut response, "\n\n").await;
    let id = raw
        .lines()
        .find_map(|l| l.strip_prefix("id: "))
        .unwrap_or_else(|| panic!("no id in the opening chunk {raw:?}"))
        .to_owned();
    drop(response);
    wait_for_exact_subscribers(server.addr, "early", 0).await;
    publish(server.addr, "early", "while away").await;
    let mut sse = Sse::open(server.addr, "/sub/early", &[("last-event-id", &id)]).await;
    let event = sse.next().await.unwrap();
    assert_eq!(
        (event.event.as_str(), event.data.as_str()),
        ("message", "while away")
    );
}

#[tokio::test]
async fn a_raw_websocket_on_several_channels_publishes_its_frames_to_each() {
    let server = server().await;
    let mut sender = websocket(server.addr, "/sub/left,right").await;
    let mut left = Sse::open(server.addr, "/sub/left", &[]).await;
    let mut right = Sse::open(server.addr, "/sub/right", &[]).await;
    wait_for_subscribers(server.addr, "left", 2).await;
    wait_for_subscribers(server.addr, "right", 2).await;
    sender
        .send(Message::binary(vec![1u8, 2, 255]))
        .await
        .unwrap();
    assert_eq!(left.messages(1).await[0].data, "AQL/");
    assert_eq!(right.messages(1).await[0].data, "AQL/");
    // The sender hears it once per channel it is subscribed to.
    for _ in 0..2 {
        assert_eq!(
            next_frame(&mut sender).await,
            Message::binary(vec![1u8, 2, 255])
        );
    }
    let page = poll(server.addr, "/sub/left?since=0").await;
    assert_eq!(page["messages"][0]["encoding"], "base64");
}

#[tokio::test]
async fn raw_websocket_since_zero_replays_history_then_goes_live() {
    let server = server().await;
    publish(server.addr, "replay", "old").await;
    let mut socket = websocket(server.addr, "/sub/replay?since=0").await;
    assert_eq!(next_frame(&mut socket).await, Message::text("old"));
    publish(server.addr, "replay", "new").await;
    assert_eq!(next_frame(&mut socket).await, Message::text("new"));
}

#[tokio::test]
async fn a_held_poll_on_several_channels_answers_for_either_and_its_cursor_continues() {
    let server = server().await;
    let addr = server.addr;
    let start = poll(addr, "/sub/m1,m2?timeout=0").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let since = urlencode(&start);
    let held =
        tokio::spawn(
            async move { poll(addr, &format!("/sub/m1,m2?since={since}&timeout=20")).await },
        );
    wait_for_subscribers(addr, "m2", 1).await;
    let published = publish(addr, "m2", "on two").await;
    let page = within("the held poll", held).await.unwrap();
    assert_eq!(page["messages"][0]["channel"], "m2");
    assert_eq!(page["messages"][0]["id"], published["id"]);
    publish(addr, "m1", "on one").await;
    publish(addr, "m2", "two again").await;
    let next = urlencode(page["next"].as_str().unwrap());
    let page = poll(addr, &format!("/sub/m1,m2?since={next}")).await;
    assert_eq!(page_data(&page), ["on one", "two again"]);
}

#[tokio::test]
async fn the_transport_query_wins_over_the_accept_header() {
    let server = server().await;
    let response = reqwest::Client::new()
        .get(url(server.addr, "/sub/pick?transport=poll&timeout=0"))
        .header("accept", "text/event-stream")
        .send()
        .await
        .unwrap();
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("application/json"));
    let body: Value = response.json().await.unwrap();
    assert!(body["next"].is_string(), "{body}");
}

#[tokio::test]
async fn a_channel_named_twice_in_a_subscription_counts_once() {
    let server = server().await;
    let mut raw = websocket(server.addr, "/sub/twice,twice").await;
    wait_for_subscribers(server.addr, "twice", 1).await;
    raw.send(Message::text("once")).await.unwrap();
    assert_eq!(next_frame(&mut raw).await, Message::text("once"));
    let page = poll(server.addr, "/sub/twice,twice?since=0").await;
    assert_eq!(page_data(&page), ["once"]);
    let (_, info) = get_json(server.addr, "/pub/twice").await;
    assert_eq!(
        (info["messages"].as_u64(), info["subscribers"].as_u64()),
        (Some(1), Some(1))
    );
}

/// Reads from `stream` until `done` holds for what has arrived.
async fn read_to(
    stream: &mut tokio::net::TcpStream,
    what: &str,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let mut got = Vec::new();
    while !done(&got) {
        let mut buf = [0u8; 1024];
        let n = within(what, stream.read(&mut buf)).await.unwrap();
        assert!(
            n > 0,
            "closed before {what}: {}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
    }
    got
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[tokio::test]
async fn an_sse_stream_is_chunked_http_1_1_and_ends_its_connection() {
    let server = server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /sub/wire HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_to(&mut stream, "the head", |b| contains(b, b"\r\n\r\n")).await;
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(text.starts_with("http/1.1 200 ok\r\n"), "{text}");
    for header in [
        "content-type: text/event-stream",
        "cache-control: no-cache",
        "x-accel-buffering: no",
        "transfer-encoding: chunked",
        "connection: close",
        "date: ",
    ] {
        assert!(text.contains(header), "no {header:?} in {text}");
    }
    wait_for_subscribers(server.addr, "wire", 1).await;
    publish(server.addr, "wire", "over the wire").await;
    // Chunk framing around the event: size line, event, CRLF.
    read_to(&mut stream, "the event", |b| {
        contains(b, b"data: over the wire\n\n\r\n")
    })
    .await;
    // Leaving ends the subscription at once, not at the next heartbeat.
    drop(stream);
    wait_for_exact_subscribers(server.addr, "wire", 0).await;
}

#[tokio::test]
async fn an_sse_request_refused_keeps_the_connection_for_the_next_request() {
    let server = server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let bad = "GET /sub/no$such?transport=sse HTTP/1.1\r\nHost: h\r\n\r\n";
    stream.write_all(bad.as_bytes()).await.unwrap();
    let answer = read_to(&mut stream, "the refusal", |b| contains(b, b"}}")).await;
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400 Bad Request\r\n"), "{text}");
    assert!(text.contains("content-length: "), "{text}");
    assert!(text.contains("\"bad_channel\""), "{text}");
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: h\r\n\r\n")
        .await
        .unwrap();
    let next = read_to(&mut stream, "the second answer", |b| contains(b, b"\"ok\"")).await;
    assert!(next.starts_with(b"HTTP/1.1 200 OK\r\n"));
}

#[tokio::test]
async fn an_http_1_0_sse_stream_is_delimited_by_the_close() {
    let server = server().await;
    let mut stream = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let request = "GET /sub/old HTTP/1.0\r\nAccept: text/event-stream\r\n\r\n";
    stream.write_all(request.as_bytes()).await.unwrap();
    let head = read_to(&mut stream, "the stream's start", |b| {
        contains(b, b"retry: ")
    })
    .await;
    let text = String::from_utf8_lossy(&head).to_ascii_lowercase();
    assert!(text.contains("connection: close"), "{text}");
    assert!(!text.contains("transfer-encoding"), "{text}");
    // The retry line follows the head directly: no chunk size in between.
    assert!(text.contains("\r\n\r\nretry: "), "{text}");
}
