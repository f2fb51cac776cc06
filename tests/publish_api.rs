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
