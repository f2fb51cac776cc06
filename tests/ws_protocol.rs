//! The `/ws` JSON protocol.

mod common;

use common::*;
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test]
async fn sub_is_acknowledged_with_its_ref_and_replays_from_since() {
    let server = server().await;
    let first = publish(server.addr, "news", "1").await;
    let second = publish(server.addr, "news", "2").await;
    let mut socket = websocket(server.addr, "/ws").await;
    send_json(
        &mut socket,
        json!({"op": "sub", "channel": "news", "since": first["id"], "ref": 42}),
    )
    .await;
    let ok = next_json(&mut socket).await;
    assert_eq!(ok["op"], "ok");
    assert_eq!(ok["ref"], 42);
    assert_eq!(ok["channel"], "news");
    assert_eq!(ok["last_id"], second["id"]);
    let msg = next_json(&mut socket).await;
    assert_eq!(
        msg,
        json!({"op": "msg", "id": second["id"], "channel": "news", "data": "2"})
    );
}

#[tokio::test]
async fn pub_is_acknowledged_with_the_id_and_delivered_to_everyone_including_the_sender() {
    let server = server().await;
    let mut sender = websocket(server.addr, "/ws").await;
    let mut other = websocket(server.addr, "/ws").await;
    ws_sub(&mut sender, "room", None).await;
    ws_sub(&mut other, "room", None).await;
    send_json(
        &mut sender,
        json!({"op": "pub", "channel": "room", "data": "hello", "event": "chat", "ref": "p1"}),
    )
    .await;
    let ok = next_json(&mut sender).await;
    assert_eq!(ok["op"], "ok");
    assert_eq!(ok["ref"], "p1");
    assert_eq!(ok["subscribers"], 2);
    let id = ok["id"].clone();
    for socket in [&mut sender, &mut other] {
        let msg = next_json(socket).await;
        assert_eq!(
            msg,
            json!({"op": "msg", "id": id, "channel": "room", "event": "chat", "data": "hello"})
        );
    }
}

#[tokio::test]
async fn unsub_stops_delivery_and_ping_gets_pong() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "a", None).await;
    ws_sub(&mut socket, "b", None).await;
    send_json(
        &mut socket,
        json!({"op": "unsub", "channel": "a", "ref": 7}),
    )
    .await;
    let ok = next_json(&mut socket).await;
    assert_eq!(
        (ok["op"].as_str(), ok["ref"].as_i64()),
        (Some("ok"), Some(7))
    );
    publish(server.addr, "a", "not for me").await;
    publish(server.addr, "b", "for me").await;
    let msg = next_json(&mut socket).await;
    assert_eq!(msg["channel"], "b", "{msg}");
    send_json(&mut socket, json!({"op": "ping", "ref": "x"})).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({"op": "pong", "ref": "x"})
    );
    send_json(
        &mut socket,
        json!({"op": "unsub", "channel": "zzz", "ref": 8}),
    )
    .await;
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "not_subscribed"
    );
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_socket_keeps_working() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    socket.send(Message::text("{not json")).await.unwrap();
    let error = next_json(&mut socket).await;
    assert_eq!(error["op"], "error");
    assert_eq!(error["error"]["code"], "bad_json");
    send_json(&mut socket, json!({"op": "dance", "ref": 5})).await;
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["error"]["code"].as_str(), error["ref"].as_i64()),
        (Some("unknown_op"), Some(5))
    );
    send_json(
        &mut socket,
        json!({"op": "sub", "channel": "bad name", "ref": 6}),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_channel");
    send_json(
        &mut socket,
        json!({"op": "sub", "channel": "ok", "since": "nonsense", "ref": 7}),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["error"]["code"], "bad_cursor");
    socket.send(Message::binary(vec![1u8, 2, 3])).await.unwrap();
    assert_eq!(next_json(&mut socket).await["op"], "error");
    // Still working.
    ws_sub(&mut socket, "ok", None).await;
    publish(server.addr, "ok", "fine").await;
    assert_eq!(next_json(&mut socket).await["data"], "fine");
}

#[tokio::test]
async fn binary_data_travels_base64_on_the_protocol() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "bin", None).await;
    publish(server.addr, "bin", vec![0u8, 255]).await;
    let msg = next_json(&mut socket).await;
    assert_eq!(
        (msg["data"].as_str(), msg["encoding"].as_str()),
        (Some("AP8="), Some("base64"))
    );
    send_json(
        &mut socket,
        json!({"op": "pub", "channel": "bin", "data": "AP8=", "encoding": "base64", "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["op"], "ok");
    assert_eq!(next_json(&mut socket).await["data"], "AP8=");
}

#[tokio::test]
async fn one_socket_carries_several_channels_each_message_tagged_with_its_channel() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "north", None).await;
    ws_sub(&mut socket, "south", None).await;
    let mut expected = Vec::new();
    for (channel, data) in [("north", "n1"), ("south", "s1"), ("north", "n2")] {
        let id = publish(server.addr, channel, data).await["id"].clone();
        expected.push(json!({"op": "msg", "id": id, "channel": channel, "data": data}));
    }
    for want in expected {
        assert_eq!(next_json(&mut socket).await, want);
    }
}

#[tokio::test]
async fn the_last_id_in_a_sub_answer_resumes_without_loss() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    let ok = ws_sub(&mut socket, "fresh", None).await;
    assert_eq!(ok["channel"], "fresh");
    let last_id = ok["last_id"].as_str().expect("a last_id").to_owned();
    drop(socket);
    wait_for_exact_subscribers(server.addr, "fresh", 0).await;
    let missed = publish(server.addr, "fresh", "while away").await;
    let mut socket = websocket(server.addr, "/ws").await;
    let ok = ws_sub(&mut socket, "fresh", Some(&last_id)).await;
    assert_eq!(ok["last_id"], missed["id"]);
    let msg = next_json(&mut socket).await;
    assert_eq!(
        (msg["op"].as_str(), msg["data"].as_str()),
        (Some("msg"), Some("while away"))
    );
}

#[tokio::test]
async fn subscribing_again_with_since_replays_without_duplicates() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "again", None).await;
    let first = publish(server.addr, "again", "1").await;
    publish(server.addr, "again", "2").await;
    assert_eq!(next_json(&mut socket).await["data"], "1");
    assert_eq!(next_json(&mut socket).await["data"], "2");
    ws_sub(&mut socket, "again", first["id"].as_str()).await;
    assert_eq!(next_json(&mut socket).await["data"], "2");
    publish(server.addr, "again", "3").await;
    assert_eq!(next_json(&mut socket).await["data"], "3");
    // Nothing else is pending: the next frame is the answer to a ping.
    send_json(&mut socket, json!({"op": "ping", "ref": "end"})).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({"op": "pong", "ref": "end"})
    );
}

#[tokio::test]
async fn publishing_to_a_channel_the_socket_does_not_follow_delivers_nothing_back() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    send_json(
        &mut socket,
        json!({"op": "pub", "channel": "elsewhere", "data": "x", "ref": 1}),
    )
    .await;
    let ok = next_json(&mut socket).await;
    assert_eq!(
        (
            ok["op"].as_str(),
            ok["channel"].as_str(),
            ok["subscribers"].as_u64()
        ),
        (Some("ok"), Some("elsewhere"), Some(0))
    );
    send_json(&mut socket, json!({"op": "ping", "ref": 2})).await;
    assert_eq!(
        next_json(&mut socket).await,
        json!({"op": "pong", "ref": 2})
    );
    let (_, info) = get_json(server.addr, "/pub/elsewhere").await;
    assert_eq!(info["last_id"], ok["id"]);
}

#[tokio::test]
async fn refused_publishes_are_errors_with_their_ref_and_publish_nothing() {
    let server = start(|c| c.max_message_size = 16).await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "p", None).await;
    let cases = [
        (
            json!({"op": "pub", "channel": "p", "data": "x".repeat(17), "ref": 1}),
            "too_large",
        ),
        (
            json!({"op": "pub", "channel": "p p", "data": "x", "ref": 2}),
            "bad_channel",
        ),
        (
            json!({"op": "pub", "channel": "p", "data": "x", "event": "herald.gap", "ref": 3}),
            "bad_event",
        ),
        (
            json!({"op": "pub", "channel": "p", "data": "!!", "encoding": "base64", "ref": 4}),
            "bad_data",
        ),
        (json!({"op": "pub", "channel": "p", "ref": 5}), "bad_frame"),
        (json!({"op": "sub", "ref": 6}), "bad_frame"),
    ];
    for (frame, code) in cases {
        let reference = frame["ref"].clone();
        send_json(&mut socket, frame).await;
        let error = next_json(&mut socket).await;
        assert_eq!(error["op"], "error", "{error}");
        assert_eq!(error["ref"], reference, "{error}");
        assert_eq!(error["error"]["code"], code, "{error}");
        assert!(error["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
    }
    for not_an_object in ["[1,2]", "\"sub\"", "42", "{}"] {
        socket.send(Message::text(not_an_object)).await.unwrap();
        let error = next_json(&mut socket).await;
        assert_eq!(error["op"], "error", "{not_an_object}: {error}");
    }
    let (_, info) = get_json(server.addr, "/pub/p").await;
    assert_eq!(info["messages"], 0, "{info}");
    // The socket still publishes and receives.
    send_json(
        &mut socket,
        json!({"op": "pub", "channel": "p", "data": "x".repeat(16), "ref": 9}),
    )
    .await;
    assert_eq!(next_json(&mut socket).await["op"], "ok");
    assert_eq!(next_json(&mut socket).await["data"], "x".repeat(16));
}

#[tokio::test]
async fn after_a_channel_is_deleted_the_socket_can_subscribe_to_it_again() {
    let server = server().await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "phoenix", None).await;
    ws_sub(&mut socket, "other", None).await;
    let response = reqwest::Client::new()
        .delete(url(server.addr, "/pub/phoenix"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let error = next_json(&mut socket).await;
    assert_eq!(
        (error["error"]["code"].as_str(), error["channel"].as_str()),
        (Some("channel_deleted"), Some("phoenix"))
    );
    // The other subscription is untouched.
    publish(server.addr, "other", "still here").await;
    assert_eq!(next_json(&mut socket).await["data"], "still here");
    ws_sub(&mut socket, "phoenix", None).await;
    publish(server.addr, "phoenix", "reborn").await;
    let msg = next_json(&mut socket).await;
    assert_eq!(
        (msg["channel"].as_str(), msg["data"].as_str()),
        (Some("phoenix"), Some("reborn"))
    );
}

/// Reads frames until the server's close frame; returns its code.
async fn close_code(socket: &mut Socket) -> u16 {
    use futures_util::StreamExt;
    loop {
        match within("a close frame", socket.next()).await {
            Some(Ok(Message::Close(Some(frame)))) => return frame.code.into(),
            Some(Ok(Message::Close(None))) | None => panic!("closed without a code"),
            Some(Ok(_)) => continue,
            Some(Err(error)) => panic!("the socket failed before a close frame: {error}"),
        }
    }
}

#[tokio::test]
async fn a_socket_without_subscriptions_closes_after_the_idle_timeout() {
    let idle = std::time::Duration::from_millis(200);
    let server = start(|c| c.idle_timeout = idle).await;
    let mut quiet = websocket(server.addr, "/ws").await;
    let mut left = websocket(server.addr, "/ws").await;
    ws_sub(&mut left, "idle.left", None).await;
    send_json(
        &mut left,
        json!({"op": "unsub", "channel": "idle.left", "ref": 1}),
    )
    .await;
    assert_eq!(next_json(&mut left).await["op"], "ok");
    let mut busy = websocket(server.addr, "/ws").await;
    ws_sub(&mut busy, "idle.busy", None).await;
    assert_eq!(close_code(&mut quiet).await, 1000, "never subscribed");
    assert_eq!(close_code(&mut left).await, 1000, "unsubscribed from all");
    // A subscribed socket is not idle, however long it hears nothing.
    tokio::time::sleep(idle * 2).await;
    publish(server.addr, "idle.busy", "still open").await;
    assert_eq!(next_json(&mut busy).await["data"], "still open");
}

#[tokio::test]
async fn a_socket_closes_with_1001_at_the_maximum_connection_age() {
    let server =
        start(|c| c.max_connection_age = Some(std::time::Duration::from_millis(200))).await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "aging", None).await;
    assert_eq!(close_code(&mut socket).await, 1001);
}

#[tokio::test]
async fn shutdown_closes_protocol_and_echo_sockets_with_1012() {
    let server = start(|c| c.demo = true).await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "draining", None).await;
    let mut echo = websocket(server.addr, "/demo/ws").await;
    echo.send(Message::text("hello")).await.unwrap();
    assert_eq!(
        next_frame(&mut echo).await,
        Message::text("服务器回应:hello")
    );
    server.shutdown();
    assert_eq!(close_code(&mut socket).await, 1012, "/ws");
    assert_eq!(close_code(&mut echo).await, 1012, "/demo/ws");
}

#[tokio::test]
async fn a_socket_whose_last_channel_is_deleted_goes_idle() {
    let idle = std::time::Duration::from_millis(200);
    let server = start(|c| c.idle_timeout = idle).await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "doomed", None).await;
    // The idle time passes while the socket is subscribed, and so not idle;
    // it becomes idle, already past its time, when its channel goes.
    tokio::time::sleep(idle * 2).await;
    let response = reqwest::Client::new()
        .delete(url(server.addr, "/pub/doomed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        next_json(&mut socket).await["error"]["code"],
        "channel_deleted"
    );
    assert_eq!(close_code(&mut socket).await, 1000);
}
