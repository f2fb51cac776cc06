//! The publish API: publish, batch, channel info, delete, idempotency.

mod common;

use common::*;
use serde_json::{json, Value};

#[tokio::test]
async fn publish_answers_id_channel_and_live_subscriber_count() {
    let server = server().await;
    let first = publish(server.addr, "news", "one").await;
    assert_eq!(first["channel"], "news");
    assert_eq!(first["subscribers"], 0);
    let id = first["id"].as_str().unwrap();
    assert!(id.ends_with("-1"), "{id}");

    let mut sse = Sse::open(server.addr, "/sub/news", &[]).await;
    wait_for_subscribers(server.addr, "news", 1).await;
    let response = reqwest::Client::new()
        .post(url(server.addr, "/pub/news?event=update"))
        .body("two")
        .send()
        .await
        .unwrap();
    let second: Value = response.json().await.unwrap();
    assert_eq!(second["subscribers"], 1);
    let event = sse.messages(1).await.remove(0);
    assert_eq!(event.event, "update");
    assert_eq!(event.data, "two");
    assert_eq!(event.id, second["id"].as_str().unwrap());
}

#[tokio::test]
async fn batch_publish_answers_one_result_per_message_in_order() {
    let server = server().await;
    let batch = json!([
        {"channel": "a", "data": "one"},
        {"channel": "b", "data": "two", "event": "e"},
        {"channel": "a", "data": {"n": 3}},
    ]);
    let response = reqwest::Client::new()
        .post(url(server.addr, "/pub"))
        .json(&batch)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let results: Vec<Value> = response.json().await.unwrap();
    assert_eq!(results.len(), 3);
    assert_eq!(results[0]["channel"], "a");
    assert_eq!(results[1]["channel"], "b");
    assert!(results[2]["id"].as_str().unwrap().ends_with("-2"));
    let page = poll(server.addr, "/sub/a?since=0").await;
    let data: Vec<&str> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["data"].as_str().unwrap())
        .collect();
    assert_eq!(data, ["one", r#"{"n":3}"#]);

    // A bad item refuses the whole batch: nothing is published.
    let bad = json!([{"channel": "a", "data": "x"}, {"channel": "no good", "data": "y"}]);
    let response = reqwest::Client::new()
        .post(url(server.addr, "/pub"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let (_, info) = get_json(server.addr, "/pub/a").await;
    assert_eq!(info["messages"], 2);
}

#[tokio::test]
async fn channel_info_describes_history_and_is_404_for_unknown_channels() {
    let server = server().await;
    let (status, body) = get_json(server.addr, "/pub/never").await;
    assert_eq!(status, 404);
    assert_eq!(body["error"]["code"], "not_found");

    let first = publish(server.addr, "c", "1").await;
    publish(server.addr, "c", "2").await;
    let last = publish(server.addr, "c", "3").await;
    let (status, info) = get_json(server.addr, "/pub/c").await;
    assert_eq!(status, 200);
    assert_eq!(info["channel"], "c");
    assert_eq!(info["subscribers"], 0);
    assert_eq!(info["messages"], 3);
    assert_eq!(info["first_id"], first["id"]);
    assert_eq!(info["last_id"], last["id"]);
}

#[tokio::test]
async fn delete_drops_history_and_tells_subscribers() {
    let server = server().await;
    publish(server.addr, "doomed", "x").await;
    let mut sse = Sse::open(server.addr, "/sub/doomed", &[]).await;
    let mut socket = websocket(server.addr, "/ws").await;
    ws_sub(&mut socket, "doomed", None).await;
    wait_for_subscribers(server.addr, "doomed", 2).await;

    let response = reqwest::Client::new()
        .delete(url(server.addr, "/pub/doomed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body, json!({"channel": "doomed", "deleted": true}));

    let event = sse.next().await.expect("a closing event");
    assert_eq!(event.event, "herald.closed");
    assert!(event.data.contains("deleted"));
    assert!(sse.next().await.is_none(), "the stream ends");

    let frame = next_json(&mut socket).await;
    assert_eq!(frame["op"], "error");
    assert_eq!(frame["error"]["code"], "channel_deleted");
    assert_eq!(frame["channel"], "doomed");

    let (status, _) = get_json(server.addr, "/pub/doomed").await;
    assert_eq!(status, 404);
    let response = reqwest::Client::new()
        .delete(url(server.addr, "/pub/doomed"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn an_idempotency_key_makes_a_retry_return_the_first_result() {
    let server = server().await;
    let http = reqwest::Client::new();
    let send = || {
        http.post(url(server.addr, "/pub/orders"))
            .header("idempotency-key", "order-17")
            .body("paid")
    };
    let first: Value = send().send().await.unwrap().json().await.unwrap();
    let retry: Value = send().send().await.unwrap().json().await.unwrap();
    assert_eq!(first, retry);
    let (_, info) = get_json(server.addr, "/pub/orders").await;
    assert_eq!(info["messages"], 1);
    let other: Value = http
        .post(url(server.addr, "/pub/orders"))
        .header("idempotency-key", "order-18")
        .body("paid")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_ne!(other["id"], first["id"]);
}

#[tokio::test]
async fn health_is_ok() {
    let server = server().await;
    let (status, body) = get_json(server.addr, "/healthz").await;
    assert_eq!((status, body), (200, json!({"status": "ok"})));
    let (status, body) = get_json(server.addr, "/readyz").await;
    assert_eq!(status, 200);
    assert_eq!(body["status"], "ready");
}

#[tokio::test]
async fn the_subscriber_count_follows_live_subscribers_on_every_transport() {
    let server = server().await;
    let addr = server.addr;
    let sse = Sse::open(addr, "/sub/live", &[]).await;
    let raw = websocket(addr, "/sub/live").await;
    let mut socket = websocket(addr, "/ws").await;
    ws_sub(&mut socket, "live", None).await;
    let held = tokio::spawn(async move { poll(addr, "/sub/live?timeout=20").await });
    wait_for_subscribers(addr, "live", 4).await;
    let (_, info) = get_json(addr, "/pub/live").await;
    assert_eq!(info["subscribers"], 4, "{info}");

    let answer = publish(addr, "live", "to four").await;
    assert_eq!(answer["subscribers"], 4);
    let page = within("the held poll", held).await.unwrap();
    assert_eq!(page["messages"][0]["data"], "to four");
    assert_eq!(next_json(&mut socket).await["data"], "to four");

    // A poll that has answered is no longer a subscriber; neither is a
    // client that went away.
    drop(sse);
    drop(raw);
    drop(socket);
    wait_for_exact_subscribers(addr, "live", 0).await;
    assert_eq!(publish(addr, "live", "to none").await["subscribers"], 0);
}

#[tokio::test]
async fn a_held_poll_that_is_abandoned_stops_counting_as_a_subscriber() {
    let server = server().await;
    let addr = server.addr;
    let held = tokio::spawn(async move { poll(addr, "/sub/gone?timeout=60").await });
    wait_for_subscribers(addr, "gone", 1).await;
    held.abort();
    let _ = held.await;
    wait_for_exact_subscribers(addr, "gone", 0).await;
}

#[tokio::test]
async fn concurrent_retries_with_one_idempotency_key_publish_once() {
    let server = server().await;
    let http = reqwest::Client::new();
    let tries = (0..20).map(|i| {
        http.post(url(server.addr, "/pub/pay"))
            .header("idempotency-key", "invoice-9")
            .body(format!("attempt {i}"))
            .send()
    });
    let answers = within(
        "20 concurrent retries",
        futures_util::future::join_all(tries),
    )
    .await;
    let mut ids = Vec::new();
    for answer in answers {
        let answer = answer.unwrap();
        assert_eq!(answer.status(), 200);
        ids.push(answer.json::<Value>().await.unwrap()["id"].clone());
    }
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    let (_, info) = get_json(server.addr, "/pub/pay").await;
    assert_eq!(info["messages"], 1);
}

#[tokio::test]
async fn a_retried_batch_with_an_idempotency_key_is_published_once() {
    let server = server().await;
    let http = reqwest::Client::new();
    let batch = json!([
        {"channel": "x", "data": "one"},
        {"channel": "y", "data": "AP8=", "encoding": "base64", "event": "blob"},
    ]);
    let send = || {
        http.post(url(server.addr, "/pub"))
            .header("idempotency-key", "batch-1")
            .json(&batch)
            .send()
    };
    let first: Value = send().await.unwrap().json().await.unwrap();
    let retry: Value = send().await.unwrap().json().await.unwrap();
    assert_eq!(first, retry);
    for channel in ["x", "y"] {
        let (_, info) = get_json(server.addr, &format!("/pub/{channel}")).await;
        assert_eq!(info["messages"], 1, "{channel}");
    }
    let page = poll(server.addr, "/sub/y?since=0").await;
    let message = &page["messages"][0];
    assert_eq!(message["id"], first[1]["id"]);
    assert_eq!(message["event"], "blob");
    assert_eq!(
        (message["data"].as_str(), message["encoding"].as_str()),
        (Some("AP8="), Some("base64"))
    );
}

#[tokio::test]
async fn a_deleted_channel_closes_raw_websockets_answers_held_polls_and_starts_afresh() {
    let server = server().await;
    let addr = server.addr;
    let old = publish(addr, "gone", "before").await;
    let mut raw = websocket(addr, "/sub/gone").await;
    let held = tokio::spawn(async move { poll(addr, "/sub/gone?timeout=20").await });
    wait_for_subscribers(addr, "gone", 2).await;
    let response = reqwest::Client::new()
        .delete(url(addr, "/pub/gone"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let page = within("the held poll", held).await.unwrap();
    assert_eq!(page["closed"], json!(["gone"]), "{page}");
    assert_eq!(page["messages"], json!([]));
    match next_frame(&mut raw).await {
        tokio_tungstenite::tungstenite::Message::Close(Some(close)) => {
            assert_eq!(u16::from(close.code), 1000);
        }
        other => panic!("expected a close frame, got {other:?}"),
    }

    // The name can be used again, as a new history: the old id is stale.
    let fresh = publish(addr, "gone", "after").await;
    assert_ne!(fresh["id"], old["id"]);
    let page = poll(
        addr,
        &format!("/sub/gone?since={}", old["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(page["gap"], true, "{page}");
    assert_eq!(page["messages"][0]["data"], "after");
}
