//! One channel, four kinds of subscriber, 1,000 messages: every subscriber
//! gets all of them in order, and the same message has the same id everywhere.

mod common;

use common::*;
use tokio_tungstenite::tungstenite::Message;

const COUNT: usize = 1000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_transport_gets_every_message_in_order_with_identical_ids() {
    let server = start(|c| c.history.max_messages = 2 * COUNT).await;
    let addr = server.addr;
    let start = poll(addr, "/sub/x?timeout=0").await["next"]
        .as_str()
        .unwrap()
        .to_owned();

    let mut raw = websocket(addr, "/sub/x").await;
    let mut sse = Sse::open(addr, "/sub/x", &[]).await;
    let mut socket = websocket(addr, "/ws").await;
    ws_sub(&mut socket, "x", None).await;
    wait_for_subscribers(addr, "x", 3).await;

    let poller = tokio::spawn(async move {
        let mut since = start;
        let mut got = Vec::new();
        while got.len() < COUNT {
            let page = poll(addr, &format!("/sub/x?since={since}&timeout=3")).await;
            for m in page["messages"].as_array().unwrap() {
                got.push((
                    m["id"].as_str().unwrap().to_owned(),
                    m["data"].as_str().unwrap().to_owned(),
                ));
            }
            since = page["next"].as_str().unwrap().to_owned();
        }
        got
    });
    let publisher = tokio::spawn(async move {
        let mut ids = Vec::new();
        for i in 0..COUNT {
            ids.push(
                publish(addr, "x", i.to_string()).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        ids
    });

    let expected_data: Vec<String> = (0..COUNT).map(|i| i.to_string()).collect();
    let mut raw_data = Vec::new();
    while raw_data.len() < COUNT {
        match next_frame(&mut raw).await {
            Message::Text(text) => raw_data.push(text.to_string()),
            other => panic!("unexpected frame {other:?}"),
        }
    }
    let sse_events: Vec<(String, String)> = sse
        .messages(COUNT)
        .await
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect();
    let mut socket_msgs = Vec::new();
    while socket_msgs.len() < COUNT {
        let m = next_json(&mut socket).await;
        assert_eq!(m["op"], "msg", "{m}");
        socket_msgs.push((
            m["id"].as_str().unwrap().to_owned(),
            m["data"].as_str().unwrap().to_owned(),
        ));
    }
    let ids = within("the publisher", publisher).await.unwrap();
    let polled = within("the poller", poller).await.unwrap();

    let expected: Vec<(String, String)> =
        ids.into_iter().zip(expected_data.iter().cloned()).collect();
    assert_eq!(raw_data, expected_data, "raw WebSocket");
    assert_eq!(sse_events, expected, "SSE");
    assert_eq!(socket_msgs, expected, "/ws");
    assert_eq!(polled, expected, "long poll");
}

/// A message reaches every transport whichever way it was published: HTTP,
/// a batch, a `/ws` `pub` or a raw WebSocket frame.
#[tokio::test]
async fn messages_from_every_kind_of_publisher_reach_every_kind_of_subscriber() {
    use futures_util::SinkExt;
    use serde_json::{json, Value};

    let server = server().await;
    let addr = server.addr;
    let start = poll(addr, "/sub/mix?timeout=0").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut raw = websocket(addr, "/sub/mix").await;
    let mut sse = Sse::open(addr, "/sub/mix", &[]).await;
    let mut socket = websocket(addr, "/ws").await;
    ws_sub(&mut socket, "mix", None).await;
    wait_for_subscribers(addr, "mix", 3).await;

    let mut ids = Vec::new();
    ids.push(publish(addr, "mix", "http").await["id"].clone());
    let batch: Vec<Value> = reqwest::Client::new()
        .post(url(addr, "/pub"))
        .json(&json!([{"channel": "mix", "data": "batch"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    ids.push(batch[0]["id"].clone());
    // A /ws publisher that is not subscribed: its only frame is the answer.
    let mut publisher = websocket(addr, "/ws").await;
    send_json(
        &mut publisher,
        json!({"op": "pub", "channel": "mix", "data": "ws-protocol", "ref": 1}),
    )
    .await;
    let ok = next_json(&mut publisher).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    ids.push(ok["id"].clone());
    raw.send(Message::text("raw-frame")).await.unwrap();
    let data = ["http", "batch", "ws-protocol", "raw-frame"];

    for want in data {
        assert_eq!(next_frame(&mut raw).await, Message::text(want));
    }
    let events = sse.messages(4).await;
    // The raw frame's id is only known from a subscriber: take it from SSE.
    ids.push(Value::from(events[3].id.clone()));
    let expected: Vec<(Value, &str)> = ids.iter().cloned().zip(data).collect();
    let got: Vec<(Value, &str)> = events
        .iter()
        .map(|e| (Value::from(e.id.clone()), e.data.as_str()))
        .collect();
    assert_eq!(got, expected, "SSE");
    let mut got = Vec::new();
    for _ in 0..4 {
        let m = next_json(&mut socket).await;
        got.push((m["id"].clone(), m["data"].as_str().unwrap().to_owned()));
    }
    let expected_owned: Vec<(Value, String)> = expected
        .iter()
        .map(|(id, d)| (id.clone(), d.to_string()))
        .collect();
    assert_eq!(got, expected_owned, "/ws");
    let page = poll(addr, &format!("/sub/mix?since={start}")).await;
    let got: Vec<(Value, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].clone(), m["data"].as_str().unwrap().to_owned()))
        .collect();
    assert_eq!(got, expected_owned, "long poll");
}
