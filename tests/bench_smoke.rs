//! Smoke test of the load generator: a few seconds of `herald bench fanout`
//! against an in-process herald on each transport, checking that the
//! generator sees every message once and in order (no timing assertions:
//! the benchmark itself is `herald bench`).

use clap::Parser;
use herald::bench::{fanout, publish, FanoutArgs, PublishArgs};
use herald::config::ServerConfig;

async fn run_fanout(transport: &str, channels: usize) {
    run_fanout_with(transport, channels, &[]).await;
}

async fn run_fanout_with(transport: &str, channels: usize, extra: &[&str]) {
    let server = herald::http::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let addr = server.addr;
    let sub = format!("http://{addr}/sub/{{ch}}");
    let publ = format!("http://{addr}/pub/{{ch}}");
    let pid = std::process::id().to_string();
    let channel_count = channels.to_string();
    let mut argv = vec![
        "fanout",
        "--transport",
        transport,
        "--sub-url",
        &sub,
        "--pub-url",
        &publ,
        "--subscribers",
        "8",
        "--channels",
        &channel_count,
        "--messages",
        "200",
        "--rate",
        "200",
        "--size",
        "64",
        "--server-pid",
        &pid,
        "--duration",
        "20s",
    ];
    argv.extend_from_slice(extra);
    let args = FanoutArgs::try_parse_from(argv).unwrap();
    let report = fanout::run(&args).await.unwrap();
    assert_eq!(report.messages, 200, "{transport}: {report:?}");
    assert_eq!(report.expected, 200 * 8 / channels as u64, "{transport}");
    assert_eq!(report.delivered, report.expected, "{transport}: {report:?}");
    assert_eq!(
        (
            report.lost,
            report.duplicated,
            report.reordered,
            report.errors
        ),
        (0, 0, 0, 0),
        "{transport}: {report:?}"
    );
    assert!(report.latency_us.is_some());
    assert!(report.server.is_some());
    server.shutdown_token().cancel();
}

#[tokio::test]
async fn fanout_over_raw_websocket() {
    run_fanout("ws", 2).await;
}

#[tokio::test]
async fn fanout_over_sse() {
    run_fanout("sse", 2).await;
}

#[tokio::test]
async fn fanout_over_long_poll() {
    run_fanout("poll", 2).await;
}

#[tokio::test]
async fn fanout_over_ws_protocol() {
    run_fanout("wsproto", 1).await;
}

#[tokio::test]
async fn fanout_over_raw_websocket_read_in_batches() {
    run_fanout_with("ws", 2, &["--ws-raw"]).await;
}

/// `herald bench publish`, through reqwest and through the raw HTTP/1.1
/// publisher: every message acknowledged, none refused.
async fn run_publish(extra: &[&str]) {
    let server = herald::http::start(ServerConfig {
        listen: "127.0.0.1:0".parse().unwrap(),
        ..Default::default()
    })
    .await
    .unwrap();
    let publ = format!("http://{}/pub/{{ch}}", server.addr);
    let pid = std::process::id().to_string();
    let mut argv = vec![
        "publish",
        "--pub-url",
        &publ,
        "--publishers",
        "4",
        "--messages",
        "400",
        "--server-pid",
        &pid,
        "--duration",
        "20s",
    ];
    argv.extend_from_slice(extra);
    let args = PublishArgs::try_parse_from(argv).unwrap();
    let report = publish::run(&args).await.unwrap();
    assert_eq!(report.expected, 400, "{report:?}");
    assert_eq!(report.delivered, 400, "{report:?}");
    assert_eq!(report.errors, 0, "{report:?}");
    assert!(report.latency_us.is_some());
    server.shutdown_token().cancel();
}

#[tokio::test]
async fn publish_through_reqwest() {
    run_publish(&[]).await;
}

#[tokio::test]
async fn publish_through_the_raw_http_client() {
    run_publish(&["--raw-http"]).await;
}

#[tokio::test]
async fn batch_publish_through_the_raw_http_client() {
    run_publish(&["--raw-http", "--batch", "10"]).await;
}
