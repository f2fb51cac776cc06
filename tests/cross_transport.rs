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

/// Many publishers at once on one channel: every subscriber sees the same
/// order, each publisher's messages in the order it sent them, and each id
/// is the one its publisher was answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_publishers_are_seen_in_one_order_by_every_transport() {
    use std::collections::HashMap;

    const PUBLISHERS: usize = 8;
    const EACH: usize = 100;
    const TOTAL: usize = PUBLISHERS * EACH;
    let server = start(|c| c.history.max_messages = 2 * TOTAL).await;
    let addr = server.addr;
    let start = poll(addr, "/sub/busy?timeout=0").await["next"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut sse = Sse::open(addr, "/sub/busy", &[]).await;
    let mut socket = websocket(addr, "/ws").await;
    ws_sub(&mut socket, "busy", None).await;
    wait_for_subscribers(addr, "busy", 2).await;

    let publishers: Vec<_> = (0..PUBLISHERS)
        .map(|p| {
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for n in 0..EACH {
                    let data = format!("{p}:{n}");
                    let id = publish(addr, "busy", data.clone()).await["id"]
                        .as_str()
                        .unwrap()
                        .to_owned();
                    answers.push((id, data));
                }
                answers
            })
        })
        .collect();
    let mut answered: HashMap<String, String> = HashMap::new();
    for publisher in publishers {
        answered.extend(within("a publisher", publisher).await.unwrap());
    }
    assert_eq!(answered.len(), TOTAL, "every publish got its own id");

    let from_sse: Vec<(String, String)> = sse
        .messages(TOTAL)
        .await
        .into_iter()
        .map(|e| (e.id, e.data))
        .collect();
    let mut from_socket = Vec::new();
    while from_socket.len() < TOTAL {
        let m = next_json(&mut socket).await;
        from_socket.push((
            m["id"].as_str().unwrap().to_owned(),
            m["data"].as_str().unwrap().to_owned(),
        ));
    }
    let mut from_poll = Vec::new();
    let mut since = start;
    while from_poll.len() < TOTAL {
        let page = poll(addr, &format!("/sub/busy?since={since}&timeout=3")).await;
        for m in page["messages"].as_array().unwrap() {
            from_poll.push((
                m["id"].as_str().unwrap().to_owned(),
                m["data"].as_str().unwrap().to_owned(),
            ));
        }
        since = page["next"].as_str().unwrap().to_owned();
    }

    assert_eq!(from_socket, from_sse, "/ws and SSE disagree");
    assert_eq!(from_poll, from_sse, "long poll and SSE disagree");
    let mut next_of = [0usize; PUBLISHERS];
    for (id, data) in &from_sse {
        assert_eq!(answered.get(id), Some(data), "{id} carries another message");
        let (p, n) = data.split_once(':').unwrap();
        let (p, n): (usize, usize) = (p.parse().unwrap(), n.parse().unwrap());
        assert_eq!(n, next_of[p], "publisher {p}'s messages out of order");
        next_of[p] += 1;
    }
    let (_, info) = get_json(addr, "/pub/busy").await;
    assert_eq!(info["messages"], TOTAL);
    assert_eq!(info["last_id"], from_sse[TOTAL - 1].0.as_str());
}
