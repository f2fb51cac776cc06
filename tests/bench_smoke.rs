//! Smoke test of the load generator: a few seconds of `herald bench fanout`
//! against an in-process herald on each transport, checking that the
//! generator sees every message once and in order (no timing assertions:
//! the benchmark itself is `herald bench`).

use clap::Parser;
use herald::bench::{fanout, FanoutArgs};
use herald::config::ServerConfig;

async fn run_fanout(transport: &str, channels: usize) {
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
    let args = FanoutArgs::try_parse_from([
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
        &channels.to_string(),
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
    ])
    .unwrap();
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
