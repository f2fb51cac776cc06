//! The auth hook and webhooks (DESIGN.md §8) against a real backend: an
//! HTTP server in the test, on its own port, that decides by channel name
//! (`ok.*` allowed as user `hooked` with info, `no.*` refused with 403,
//! `deny.*` refused with `{"allow": false}`, `err.*` a 500, `slow.*` too
//! slow) and records every question and every webhook batch.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Json, Router};
use common::*;
use herald::hub::ChannelRule;
use parking_lot::Mutex;
use serde_json::{json, Value};

/// A webhook batch as received: parsed, its signature header, its raw body.
type Batch = (Value, Option<String>, Vec<u8>);

#[derive(Default)]
struct Backend {
    questions: Mutex<Vec<Value>>,
    batches: Mutex<Vec<Batch>>,
    /// Webhook requests to fail before answering 200.
    fail_webhooks: Mutex<usize>,
}

async fn decide(
    State(backend): State<Arc<Backend>>,
    Json(question): Json<Value>,
) -> impl IntoResponse {
    backend.questions.lock().push(question.clone());
    let channel = question["channel"].as_str().unwrap_or_default().to_owned();
    if channel.starts_with("slow.") {
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    if channel.starts_with("no.") {
        return (StatusCode::FORBIDDEN, Json(json!({}))).into_response();
    }
    if channel.starts_with("deny.") {
        return Json(json!({"allow": false})).into_response();
    }
    if channel.starts_with("err.") {
        return (StatusCode::INTERNAL_SERVER_ERROR, "broken").into_response();
    }
    Json(json!({"allow": true, "user": "hooked", "info": {"seat": 7}})).into_response()
}

async fn webhook(
    State(backend): State<Arc<Backend>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    {
        let mut fail = backend.fail_webhooks.lock();
        if *fail > 0 {
            *fail -= 1;
            return StatusCode::SERVICE_UNAVAILABLE;
        }
    }
    let signature = headers
        .get("x-herald-signature")
        .map(|v| v.to_str().unwrap().to_owned());
    let parsed: Value = serde_json::from_slice(&body).unwrap();
    backend
        .batches
        .lock()
        .push((parsed, signature, body.to_vec()));
    StatusCode::OK
}

async fn backend() -> (SocketAddr, Arc<Backend>) {
    let state = Arc::new(Backend::default());
    let app = Router::new()
        .route("/auth", post(decide))
        .route("/events", post(webhook))
        .with_state(state.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (addr, state)
}

fn presence_rules() -> Vec<ChannelRule> {
    vec![ChannelRule {
        pattern: "ok.*".into(),
        presence: Some(true),
        join_leave: Some(true),
        ..ChannelRule::default()
    }]
}

async fn status_of(addr: SocketAddr, path: &str, sse: bool) -> (u16, Value) {
    let mut request = reqwest::Client::new()
        .get(url(addr, path))
        .header("cookie", "session=abc")
        .header("origin", "http://app.test");
    if sse {
        request = request.header("accept", "text/event-stream");
    }
    let response = within("an answer", request.send()).await.unwrap();
    let status = response.status().as_u16();
    if status == 200 {
        return (status, Value::Null);
    }
    (status, response.json().await.unwrap_or(Value::Null))
}

/// Sends a `/ws` frame and returns the answer with the same `ref`.
async fn answer(ws: &mut Socket, frame: Value) -> Value {
    let reference = frame["ref"].clone();
    send_json(ws, frame).await;
    loop {
        let frame = next_json(ws).await;
        if frame["ref"] == reference {
            return frame;
        }
    }
}

#[tokio::test]
async fn the_auth_hook_decides_every_subscribe_and_client_publish_and_fails_closed() {
    let (hook, backend) = backend().await;
    let server = start(|c| {
        c.channel_rules = presence_rules();
        c.auth_hook = Some(herald::config::AuthHookSettings {
            url: format!("http://{hook}/auth"),
            timeout: Duration::from_millis(500),
            cache: Duration::from_secs(30),
        });
    })
    .await;
    let addr = server.addr;

    // Allowed: the hook's user and info stand in presence.
    let sse = Sse::open(addr, "/sub/ok.a", &[("cookie", "session=abc")]).await;
    let question = backend.questions.lock().last().cloned().unwrap();
    assert_eq!(question["action"], "subscribe");
    assert_eq!(question["channel"], "ok.a");
    assert_eq!(question["transport"], "sse");
    assert_eq!(question["headers"]["cookie"], "session=abc");
    assert_eq!(question["ip"], "127.0.0.1");
    assert!(question["client"].as_str().is_some_and(|c| !c.is_empty()));
    let (_, listing) = get_json(addr, "/pub/ok.a/presence").await;
    assert_eq!(listing["clients"][0]["user"], "hooked", "{listing}");
    assert_eq!(listing["clients"][0]["info"], json!({"seat": 7}));
    drop(sse);

    // Refused (403 or allow:false) and unavailable (500, too slow) on each transport.
    for (channel, status, code) in [
        ("no.a", 403, "forbidden"),
        ("deny.a", 403, "forbidden"),
        ("err.a", 503, "auth_unavailable"),
        ("slow.a", 503, "auth_unavailable"),
    ] {
        for sse in [true, false] {
            let (got, body) = status_of(addr, &format!("/sub/{channel}?timeout=100ms"), sse).await;
            assert_eq!(got, status, "{channel} sse={sse}: {body}");
            assert_eq!(body["error"]["code"], code, "{channel}");
        }
        // A raw WebSocket handshake is answered with the same status.
        let refused = tokio_tungstenite::connect_async(format!("ws://{addr}/sub/{channel}")).await;
        match refused {
            Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
                assert_eq!(response.status().as_u16(), status, "{channel} ws")
            }
            other => panic!("{channel}: the handshake should be refused, got {other:?}"),
        }
    }

    // Each channel of a multi-channel subscription is asked: one refusal refuses all.
    let (got, _) = status_of(addr, "/sub/ok.b,no.b?timeout=100ms", true).await;
    assert_eq!(got, 403);

    // /ws: every sub and pub is asked; refusals are `forbidden` errors.
    let mut ws = websocket(addr, "/ws").await;
    let ok = ws_sub(&mut ws, "ok.c", None).await;
    assert_eq!(ok["op"], "ok", "{ok}");
    let refused = answer(&mut ws, json!({"op": "sub", "channel": "no.c", "ref": 1})).await;
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let unavailable = answer(&mut ws, json!({"op": "sub", "channel": "err.c", "ref": 2})).await;
    assert_eq!(unavailable["error"]["code"], "auth_unavailable");
    send_json(
        &mut ws,
        json!({"op": "pub", "channel": "deny.c", "data": "x", "ref": 3}),
    )
    .await;
    let refused = loop {
        let frame = next_json(&mut ws).await;
        if frame["ref"] == 3 {
            break frame;
        }
    };
    assert_eq!(refused["error"]["code"], "forbidden", "{refused}");
    let asked = backend.questions.lock().iter().any(|q| {
        q["action"] == "publish" && q["channel"] == "deny.c" && q["transport"] == "ws-protocol"
    });
    assert!(asked, "the publish was put to the hook");

    // A slow hook does not hold up other clients: while one question waits
    // out its timeout, another is answered at once.
    let slow = tokio::spawn(status_of(addr, "/sub/slow.b?timeout=100ms", false));
    within("the slow question to reach the hook", async {
        while !backend
            .questions
            .lock()
            .iter()
            .any(|q| q["channel"] == "slow.b")
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
    .await;
    let started = std::time::Instant::now();
    let (got, _) = status_of(addr, "/sub/ok.d?timeout=100ms", false).await;
    assert_eq!(got, 200);
    assert!(
        started.elapsed() < Duration::from_millis(450),
        "not queued behind the slow hook"
    );
    assert_eq!(slow.await.unwrap().0, 503);

    // Long polls are cached per credential, cookie and channel.
    let before = backend.questions.lock().len();
    for _ in 0..3 {
        let (got, _) = status_of(addr, "/sub/ok.poll?timeout=50ms", false).await;
        assert_eq!(got, 200);
    }
    assert_eq!(
        backend.questions.lock().len(),
        before + 1,
        "asked once, then cached"
    );
    server.shutdown();
}

#[tokio::test]
async fn webhooks_report_occupancy_and_presence_signed_batched_and_retried() {
    let (hook, backend) = backend().await;
    *backend.fail_webhooks.lock() = 1;
    let secret = "webhook-secret";
    let server = start(|c| {
        c.channel_rules = presence_rules();
        c.webhook = Some(herald::hooks::Webhook {
            url: format!("http://{hook}/events"),
            secret: Some(secret.into()),
            retry_for: Duration::from_secs(30),
        });
    })
    .await;
    let addr = server.addr;

    // A presence channel: occupied, join, then leave, vacated.
    let ws = websocket(addr, "/sub/ok.room").await;
    // A plain channel: occupied and vacated only.
    let sse = Sse::open(addr, "/sub/plain", &[]).await;
    drop(ws);
    drop(sse);

    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    let events = loop {
        let events: Vec<Value> = backend
            .batches
            .lock()
            .iter()
            .flat_map(|(body, _, _)| body["events"].as_array().cloned().unwrap_or_default())
            .collect();
        if events.len() >= 6 {
            break events;
        }
        assert!(tokio::time::Instant::now() < deadline, "events: {events:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let of = |channel: &str| -> Vec<String> {
        events
            .iter()
            .filter(|e| e["channel"] == channel)
            .map(|e| e["type"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        of("ok.room"),
        [
            "channel.occupied",
            "presence.join",
            "presence.leave",
            "channel.vacated"
        ]
    );
    assert_eq!(of("plain"), ["channel.occupied", "channel.vacated"]);
    let join = events
        .iter()
        .find(|e| e["type"] == "presence.join")
        .unwrap();
    assert!(join["client"].as_str().is_some());
    assert!(join["time_ms"].as_u64().unwrap() > 1_600_000_000_000);

    // The first attempt failed and was retried; every batch is signed.
    for (_, signature, raw) in backend.batches.lock().iter() {
        assert_eq!(
            signature.as_deref(),
            Some(herald::hooks::sign(secret.as_bytes(), raw).as_str())
        );
        let parsed: Value = serde_json::from_slice(raw).unwrap();
        assert!(parsed["events"].as_array().unwrap().len() <= 100);
    }
    let (_, metrics) = {
        let response = reqwest::get(url(addr, "/metrics")).await.unwrap();
        (response.status(), response.text().await.unwrap())
    };
    assert!(
        metrics.contains("herald_webhook_requests_total{result=\"failed\"} 1"),
        "one failed attempt counted"
    );
    server.shutdown();
}
