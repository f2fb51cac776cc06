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
