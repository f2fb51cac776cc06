//! `herald bench echo`: WebSocket round trips against an echo endpoint such
//! as herald's `/demo/ws` (which answers `服务器回应:<message>`). Each
//! connection sends a message, waits for the reply that carries it back,
//! and records the round trip.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message as Frame;

use super::args::EchoArgs;
use super::payload;
use super::procfs;
use super::report::{progress, Report, ServerCost};
use super::stats::Latency;
use super::subscriber::websocket;
use super::target::{check_loopback, to_ws};
use super::{left, BenchError};

/// What one connection saw.
#[derive(Default)]
struct Tally {
    latency: Latency,
    answered: u64,
    errors: u64,
}

/// Runs the echo scenario.
pub async fn run(args: &EchoArgs) -> Result<Report, BenchError> {
    if args.connections == 0 || args.round_trips == 0 {
        return Err(BenchError::Options(
            "--connections and --round-trips must be at least 1".into(),
        ));
    }
    let url = to_ws(&args.url);
    check_loopback(&url)?;
    let deadline = Instant::now() + args.common.duration;
    let pid = args.common.server_pid;
    let before = procfs::sample(pid)?;
    let mut sockets = Vec::with_capacity(args.connections);
    for _ in 0..args.connections {
        let socket = tokio::time::timeout(left(deadline), websocket(&url))
            .await
            .map_err(|_| BenchError::Timeout(format!("connecting to {url}")))??;
        sockets.push(socket);
    }
    let connected = procfs::sample(pid)?;
    let total = args.round_trips * args.connections as u64;
    let bar = progress(total, "round trips");
    let start = Instant::now();
    let own_before = procfs::own_cpu_seconds();
    let mut tasks = JoinSet::new();
    for mut socket in sockets {
        let (round_trips, size, bar) = (args.round_trips, args.size, bar.clone());
        tasks.spawn(async move {
            let mut tally = Tally::default();
            for seq in 1..=round_trips {
                if Instant::now() >= deadline {
                    break;
                }
                let sent = payload::now_us();
                let message = payload::encode(seq, sent, size);
                if socket.send(Frame::text(message)).await.is_err() {
                    tally.errors += 1;
                    break;
                }
                let reply = tokio::time::timeout(left(deadline), async {
                    loop {
                        match socket.next().await {
                            Some(Ok(Frame::Text(text))) => return payload::find(text.as_bytes()),
                            Some(Ok(Frame::Binary(data))) => return payload::find(&data),
                            Some(Ok(_)) => continue,
                            _ => return None,
                        }
                    }
                })
                .await;
                match reply {
                    Ok(Some((got, echoed))) if got == seq && echoed == sent => {
                        tally.latency.record(payload::now_us().saturating_sub(sent));
                        tally.answered += 1;
                        if seq % 64 == 0 {
                            bar.inc(64);
                        }
                    }
                    Ok(Some(_)) => tally.errors += 1,
                    Ok(None) | Err(_) => {
                        tally.errors += 1;
                        break;
                    }
                }
            }
            let _ = tokio::time::timeout(Duration::from_secs(1), socket.close(None)).await;
            tally
        });
    }
    let mut latency = Latency::default();
    let (mut answered, mut errors) = (0, 0);
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok(tally) => {
                latency.merge(&tally.latency);
                answered += tally.answered;
                errors += tally.errors;
            }
            Err(_) => errors += 1,
        }
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let after = procfs::sample(pid)?;
    let mut report = Report {
        scenario: "echo".into(),
        label: args.common.label.clone(),
        transport: Some("ws".into()),
        connections: args.connections as u64,
        messages: total,
        size: args.size as u64,
        elapsed_s: elapsed,
        expected: total,
        delivered: answered,
        lost: total.saturating_sub(answered),
        errors,
        throughput: if elapsed > 0.0 {
            answered as f64 / elapsed
        } else {
            0.0
        },
        latency_us: latency.percentiles(),
        client_cpu_s: procfs::own_cpu_seconds() - own_before,
        ..Report::default()
    };
    if let (Some(before), Some(connected), Some(after)) = (before, connected, after) {
        report.server = Some(ServerCost::from_samples(
            before,
            connected,
            after,
            report.connections,
            answered,
        ));
    }
    Ok(report)
}
