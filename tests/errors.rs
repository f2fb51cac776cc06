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
