//! `--demo` answers like the seed's three examples.

mod common;

use std::time::Duration;

use common::*;
use futures_util::SinkExt;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn the_echo_server_replies_like_the_seed() {
    let server = start(|c| c.demo = true).await;
    let mut socket = websocket(server.addr, "/demo/ws").await;
    socket.send(Message::text("你好,服务器!")).await.unwrap();
    assert_eq!(
        next_frame(&mut socket).await,
        Message::text("服务器回应:你好,服务器!")
    );
    socket.send(Message::text("again")).await.unwrap();
    assert_eq!(
        next_frame(&mut socket).await,
        Message::text("服务器回应:again")
    );
}

fn is_clock_message(text: &str) -> bool {
    let Some(time) = text.strip_prefix("New message at ") else {
        return false;
    };
    let parts: Vec<&str> = time.split(':').collect();
    parts.len() == 3
        && parts
            .iter()
            .all(|p| p.len() == 2 && p.bytes().all(|b| b.is_ascii_digit()))
}

/// The time in a clock message is the local time now (give or take a few seconds).
fn assert_is_about_now(text: &str) {
    use chrono::Timelike;
    let time = text.trim_start_matches("New message at ");
    let seconds = |h: u32, m: u32, s: u32| i64::from(h * 3600 + m * 60 + s);
    let parts: Vec<u32> = time.split(':').map(|p| p.parse().unwrap()).collect();
    let told = seconds(parts[0], parts[1], parts[2]);
    let now = chrono::Local::now();
    let now = seconds(now.hour(), now.minute(), now.second());
    let apart = (now - told).rem_euclid(86_400);
    assert!(
        apart.min(86_400 - apart) <= 5,
        "{text:?} is not the local time now"
    );
}

#[tokio::test]
async fn the_clock_ticks_into_a_channel_that_every_transport_can_read() {
    let server = start(|c| {
        c.demo = true;
        c.demo_tick = Duration::from_millis(100);
    })
    .await;
    let mut sse = Sse::open(server.addr, "/sub/clock", &[]).await;
    let events = sse.messages(2).await;
    for event in &events {
        assert!(is_clock_message(&event.data), "{:?}", event.data);
        assert_is_about_now(&event.data);
    }
    // Two pollers sharing the channel both see the same messages (the seed's
    // shared array lost them).
    let since = events[0].id.clone();
    let one = poll(server.addr, &format!("/sub/clock?since={since}")).await;
    let two = poll(server.addr, &format!("/sub/clock?since={since}")).await;
    assert_eq!(one["messages"][0], two["messages"][0]);
    assert!(is_clock_message(
        one["messages"][0]["data"].as_str().unwrap()
    ));
}

#[tokio::test]
async fn the_demo_page_has_the_three_clients_and_no_external_resources() {
    let server = start(|c| c.demo = true).await;
    let page = reqwest::get(url(server.addr, "/demo")).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/html"));
    let html = page.text().await.unwrap();
    for needle in [
        "new WebSocket",
        "/demo/ws",
        "你好,服务器!",
        "new EventSource",
        "/sub/clock",
        "fetch(",
    ] {
        assert!(html.contains(needle), "the demo page lacks {needle}");
    }
    for external in [
        "src=\"http",
        "src='http",
        "href=\"http",
        "@import",
        "url(http",
    ] {
        assert!(
            !html.contains(external),
            "the demo page loads something external: {external}"
        );
    }
}

#[tokio::test]
async fn a_plain_get_on_the_echo_endpoint_is_a_json_error() {
    let server = start(|c| c.demo = true).await;
    let (status, body) = get_json(server.addr, "/demo/ws").await;
    assert_eq!(status, 400);
    assert_eq!(body["error"]["code"], "bad_websocket_upgrade");
}

#[tokio::test]
async fn without_demo_the_demo_routes_do_not_exist() {
    let server = server().await;
    let (status, _) = get_json(server.addr, "/demo").await;
    assert_eq!(status, 404);
}
