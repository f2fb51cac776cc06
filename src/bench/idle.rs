//! `herald bench idle`: N subscriber connections that receive nothing,
//! held open while the server's resident memory is read: its cost per idle
//! connection.
//!
//! One source address has only as many ports as the kernel's ephemeral
//! range, so connection `i` binds to `127.0.0.(1 + i / per_address)` before
//! connecting, which takes the generator past 64k connections.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, Semaphore};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_util::sync::CancellationToken;

use super::args::{IdleArgs, IdleTransport};
use super::procfs;
use super::report::{progress, Report, ServerCost};
use super::target::{channel_names, socket_addr, Template};
use super::{left, BenchError};

/// Runs the idle-connection scenario.
pub async fn run(args: &IdleArgs) -> Result<Report, BenchError> {
    if args.connections == 0 || args.channels == 0 {
        return Err(BenchError::Options(
            "--connections and --channels must be at least 1".into(),
        ));
    }
    let deadline = Instant::now() + args.common.duration;
    let sub = Template::parse(&args.common.sub_url)?;
    let names = channel_names(args.common.channel_prefix.as_deref(), args.channels);
    let pid = args.common.server_pid;
    let before = procfs::sample(pid)?;
    let per_address = args
        .per_address
        .filter(|n| *n > 0)
        .unwrap_or_else(per_source_address);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let stop = CancellationToken::new();
    let (ready_tx, mut ready) = mpsc::channel(args.connections);
    let start = Instant::now();
    let own_before = procfs::own_cpu_seconds();
    let mut tasks = Vec::with_capacity(args.connections);
    for i in 0..args.connections {
        let url = sub.http(&names[i % names.len()]);
        let (gate, stop, ready_tx) = (gate.clone(), stop.clone(), ready_tx.clone());
        let transport = args.transport;
        tasks.push(tokio::spawn(async move {
            let permit = gate.acquire_owned().await;
            let opened = tokio::select! {
                opened = open(transport, &url, i, per_address) => opened,
                _ = stop.cancelled() => return,
            };
            drop(permit);
            match opened {
                Ok(connection) => {
                    let _ = ready_tx.send(Ok(())).await;
                    connection.hold(stop).await;
                }
                Err(error) => {
                    let _ = ready_tx.send(Err(error)).await;
                }
            }
        }));
    }
    drop(ready_tx);
    let bar = progress(args.connections as u64, "connecting");
    let (mut opened, mut failed, mut first_error) = (0u64, 0u64, None);
    while opened + failed < args.connections as u64 {
        match tokio::time::timeout(left(deadline), ready.recv()).await {
            Ok(Some(Ok(()))) => opened += 1,
            Ok(Some(Err(error))) => {
                failed += 1;
                first_error.get_or_insert(error);
            }
            Ok(None) | Err(_) => break,
        }
        bar.set_position(opened + failed);
    }
    bar.finish_and_clear();
    let connect_s = start.elapsed().as_secs_f64();
    tokio::time::sleep(args.hold.min(left(deadline))).await;
    let connected = procfs::sample(pid)?;
    stop.cancel();
    for task in tasks {
        let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
    }
    // Give the server a moment to see the connections close.
    tokio::time::sleep(Duration::from_millis(200).min(left(deadline))).await;
    let after = procfs::sample(pid)?;
    if opened == 0 {
        return Err(first_error.unwrap_or_else(|| {
            BenchError::Timeout("no connection opened within --duration".into())
        }));
    }
    let mut report = Report {
        scenario: "idle".into(),
        label: args.common.label.clone(),
        transport: Some(
            match args.transport {
                IdleTransport::Ws => "ws",
                IdleTransport::Sse => "sse",
            }
            .into(),
        ),
        connections: opened,
        channels: args.channels as u64,
        elapsed_s: connect_s,
        expected: args.connections as u64,
        delivered: opened,
        errors: failed,
        throughput: if connect_s > 0.0 {
            opened as f64 / connect_s
        } else {
            0.0
        },
        client_cpu_s: procfs::own_cpu_seconds() - own_before,
        ..Report::default()
    };
    if let (Some(before), Some(connected), Some(after)) = (before, connected, after) {
        report.server = Some(ServerCost::from_samples(
            before, connected, after, opened, opened,
        ));
    }
    Ok(report)
}

/// Connections per source address: 90% of the ephemeral port range, at most 50,000.
fn per_source_address() -> usize {
    let range = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|text| {
            let mut parts = text.split_whitespace().map(|p| p.parse::<usize>().ok());
            Some((parts.next()??, parts.next()??))
        });
    match range {
        Some((low, high)) if high > low => ((high - low) * 9 / 10).clamp(1, 50_000),
        _ => 20_000,
    }
}

/// An open idle connection.
enum Idle {
    Ws(Box<tokio_tungstenite::WebSocketStream<TcpStream>>),
    Sse(TcpStream),
}

/// Connects from the `i`th source address and subscribes.
async fn open(
    transport: IdleTransport,
    url: &str,
    i: usize,
    per_address: usize,
) -> Result<Idle, BenchError> {
    let server = socket_addr(url)?;
    let socket = match server {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    if server.is_ipv4() {
        let host = u32::try_from(1 + i / per_address)
            .ok()
            .filter(|h| *h < 0x00ff_ffff)
            .ok_or_else(|| BenchError::Options("too many connections for 127.0.0.0/8".into()))?;
        let source = Ipv4Addr::from(u32::from(Ipv4Addr::new(127, 0, 0, 0)) + host);
        // Earlier runs leave their ports in TIME_WAIT; reuse them rather
        // than run out of ephemeral ports on the source address.
        socket.set_reuseaddr(true)?;
        socket.bind(SocketAddr::new(IpAddr::V4(source), 0))?;
    }
    let stream = socket
        .connect(server)
        .await
        .map_err(|e| BenchError::connect(url, e))?;
    match transport {
        IdleTransport::Ws => {
            // A small read buffer: an idle client needs next to nothing.
            let config = WebSocketConfig::default().read_buffer_size(4096);
            let ws_url = super::target::to_ws(url);
            let (socket, _) =
                tokio_tungstenite::client_async_with_config(ws_url.as_str(), stream, Some(config))
                    .await
                    .map_err(|e| BenchError::connect(url, e))?;
            Ok(Idle::Ws(Box::new(socket)))
        }
        IdleTransport::Sse => sse_handshake(stream, url, server).await.map(Idle::Sse),
    }
}

/// Sends an SSE request and reads the response head.
async fn sse_handshake(
    mut stream: TcpStream,
    url: &str,
    server: SocketAddr,
) -> Result<TcpStream, BenchError> {
    let parsed = super::target::check_loopback(url)?;
    let path = match parsed.query() {
        Some(q) => format!("{}?{q}", parsed.path()),
        None => parsed.path().to_owned(),
    };
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {server}\r\nAccept: text/event-stream\r\nCache-Control: no-cache\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 512];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 || head.len() > 16 * 1024 {
            return Err(BenchError::connect(url, "closed before the response head"));
        }
        head.extend_from_slice(&buf[..n]);
    }
    let status_ok = head.starts_with(b"HTTP/1.1 200") || head.starts_with(b"HTTP/1.0 200");
    if !status_ok {
        let line = String::from_utf8_lossy(&head[..head.len().min(64)]).into_owned();
        return Err(BenchError::connect(url, line));
    }
    Ok(stream)
}

impl Idle {
    /// Keeps the connection open (answering pings, discarding heartbeats) until `stop`.
    async fn hold(self, stop: CancellationToken) {
        match self {
            Idle::Ws(mut socket) => loop {
                tokio::select! {
                    frame = socket.next() => if !matches!(frame, Some(Ok(_))) { return },
                    _ = stop.cancelled() => return,
                }
            },
            Idle::Sse(mut stream) => {
                let mut buf = [0u8; 256];
                loop {
                    tokio::select! {
                        read = stream.read(&mut buf) => if !matches!(read, Ok(n) if n > 0) { return },
                        _ = stop.cancelled() => return,
                    }
                }
            }
        }
    }
}
