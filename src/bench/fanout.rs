//! `herald bench fanout`: S subscribers over C channels, M messages at rate
//! R. Subscriber `i` listens on channel `i % C`; message `k` goes to channel
//! `k % C` with that channel's next sequence number. One request is in flight
//! per channel, so the server sees each channel's messages in order and any
//! reordering a subscriber reports is the server's.
//!
//! Phases: connect every subscriber and wait until the server counts them
//! (so nothing is published before anyone listens), publish, wait for the
//! deliveries to drain, stop. The server's CPU is measured over publish and
//! drain; its memory before and after the subscribers connect.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio::task::JoinHandle;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::args::{FanoutArgs, Transport};
use super::payload;
use super::procfs;
use super::report::{progress, Report, ServerCost};
use super::stats::Latency;
use super::subscriber::{Shared, Spec, Tally};
use super::target::{channel_names, check_loopback, wsproto_url, Template};
use super::{left, BenchError};

/// Runs the fan-out scenario.
pub async fn run(args: &FanoutArgs) -> Result<Report, BenchError> {
    if args.subscribers == 0 || args.channels == 0 || args.messages == 0 {
        return Err(BenchError::Options(
            "--subscribers, --channels and --messages must be at least 1".into(),
        ));
    }
    if !(args.rate >= 0.0 && args.rate.is_finite()) {
        return Err(BenchError::Options("--rate must be 0 or more".into()));
    }
    let deadline = Instant::now() + args.common.duration;
    let sub = Template::parse(&args.common.sub_url)?;
    let publ = Template::parse(&args.common.pub_url)?;
    let wsproto = match &args.ws_url {
        Some(url) => check_loopback(url).map(|_| url.clone())?,
        None => wsproto_url(&args.common.sub_url)?,
    };
    let names = channel_names(args.common.channel_prefix.as_deref(), args.channels);
    let client = super::target::http_client(&args.common, false)?;
    // Subscriber clients: one per --h2-streams subscribers over HTTP/2 (each
    // keeps one connection and multiplexes its streams on it), else one
    // HTTP/1.1 client whose pool opens a connection per stream.
    let per_client = if args.http2 {
        args.h2_streams.max(1)
    } else {
        args.subscribers.max(1)
    };
    let subscriber_clients = (0..args.subscribers.div_ceil(per_client))
        .map(|_| super::target::http_client(&args.common, args.http2))
        .collect::<Result<Vec<_>, _>>()?;
    let pid = args.common.server_pid;
    let before = procfs::sample(pid)?;

    let shared = Arc::new(Shared::default());
    let stop = CancellationToken::new();
    let highest: Vec<Arc<AtomicU64>> = (0..args.subscribers)
        .map(|_| Arc::new(AtomicU64::new(0)))
        .collect();
    let subscribers = connect_all(
        args,
        &sub,
        &wsproto,
        &names,
        &subscriber_clients,
        &highest,
        &shared,
        &stop,
    );
    let (tasks, mut ready) = subscribers;
    let outcome = async {
        let bar = progress(args.subscribers as u64, "connecting");
        for _ in 0..args.subscribers {
            match tokio::time::timeout(left(deadline), ready.recv()).await {
                Ok(Some(Ok(()))) => bar.inc(1),
                Ok(Some(Err(error))) => return Err(error),
                Ok(None) => return Err(BenchError::Options("subscriber task ended".into())),
                Err(_) => {
                    return Err(BenchError::Timeout(format!(
                        "{} of {} subscribers connected within --duration",
                        bar.position(),
                        args.subscribers
                    )))
                }
            }
        }
        bar.finish_and_clear();
        let per_channel = subscribers_per_channel(args.subscribers, args.channels);
        if args.transport != Transport::Poll {
            let until = Instant::now() + Duration::from_secs(15).min(left(deadline));
            wait_for_subscribers(&client, &publ, &names, &per_channel, until).await?;
        }
        let connected = procfs::sample(pid)?;
        let own_before = procfs::own_cpu_seconds();
        let mut measured =
            publish_and_drain(args, &publ, &names, &client, &highest, &shared, deadline).await?;
        let after = procfs::sample(pid)?;
        measured.client_cpu_s = procfs::own_cpu_seconds() - own_before;
        Ok((connected, measured, after))
    }
    .await;
    stop.cancel();
    let mut tallies = Vec::with_capacity(tasks.len());
    for task in tasks {
        tallies.push(
            tokio::time::timeout(Duration::from_secs(5), task)
                .await
                .ok()
                .and_then(|joined| joined.ok())
                .flatten(),
        );
    }
    let (connected, measured, after) = outcome?;

    let mut report = Report {
        scenario: "fanout".into(),
        label: args.common.label.clone(),
        transport: Some(args.transport.name().into()),
        connections: args.subscribers as u64,
        channels: args.channels as u64,
        messages: measured.published.iter().sum(),
        size: args.size as u64,
        rate: args.rate,
        client_cpu_s: measured.client_cpu_s,
        ..Report::default()
    };
    let mut latency = Latency::default();
    for (i, tally) in tallies.iter().enumerate() {
        let published = measured.published[i % args.channels];
        report.expected += published;
        let Some(tally) = tally else {
            report.errors += 1;
            report.lost += published;
            continue;
        };
        report.delivered += tally.order.distinct();
        report.lost += tally.order.lost(published);
        report.duplicated += tally.order.duplicated;
        report.reordered += tally.order.reordered;
        report.gaps += tally.gaps;
        report.errors += tally.errors + u64::from(tally.dropped);
        latency.merge(&tally.latency);
    }
    let last = shared.last_receive_us.load(Ordering::Relaxed);
    report.elapsed_s = if last > measured.start_us {
        (last - measured.start_us) as f64 / 1e6
    } else {
        measured.publish_s
    };
    if report.elapsed_s > 0.0 {
        report.throughput = report.delivered as f64 / report.elapsed_s;
    }
    report.latency_us = latency.percentiles();
    if report.delivered > 0 {
        report.wire_bytes_per_delivery =
            shared.wire_bytes.load(Ordering::Relaxed) as f64 / report.delivered as f64;
    }
    if let (Some(before), Some(connected), Some(after)) = (before, connected, after) {
        report.server = Some(ServerCost::from_samples(
            before,
            connected,
            after,
            report.connections,
            report.delivered,
        ));
    }
    Ok(report)
}

type Ready = mpsc::Receiver<Result<(), BenchError>>;

/// Starts one task per subscriber: connect (a bounded number at once),
/// report ready, receive until `stop`.
#[allow(clippy::too_many_arguments)]
fn connect_all(
    args: &FanoutArgs,
    sub: &Template,
    wsproto: &str,
    names: &[String],
    clients: &[reqwest::Client],
    highest: &[Arc<AtomicU64>],
    shared: &Arc<Shared>,
    stop: &CancellationToken,
) -> (Vec<JoinHandle<Option<Tally>>>, Ready) {
    let per_client = args.subscribers.div_ceil(clients.len().max(1)).max(1);
    let (ready_tx, ready) = mpsc::channel(args.subscribers);
    let gate = Arc::new(Semaphore::new(args.connect_concurrency.max(1)));
    let tasks = (0..args.subscribers)
        .map(|i| {
            let channel = &names[i % names.len()];
            let spec = Spec {
                transport: args.transport,
                url: sub.http(channel),
                wsproto_url: wsproto.to_owned(),
                channel: channel.clone(),
                dialect: args.poll_dialect,
                ws_deflate: args.ws_deflate,
                ws_raw: args.ws_raw,
            };
            let client = clients[(i / per_client).min(clients.len() - 1)].clone();
            let (gate, ready_tx) = (gate.clone(), ready_tx.clone());
            let (highest, shared, stop) = (highest[i].clone(), shared.clone(), stop.clone());
            tokio::spawn(async move {
                let connected = {
                    let _permit = gate.acquire_owned().await.ok()?;
                    tokio::select! {
                        c = spec.connect(&client) => c,
                        _ = stop.cancelled() => return None,
                    }
                };
                match connected {
                    Ok(connection) => {
                        let _ = ready_tx.send(Ok(())).await;
                        Some(connection.receive(highest, shared, stop).await)
                    }
                    Err(error) => {
                        let _ = ready_tx.send(Err(error)).await;
                        None
                    }
                }
            })
        })
        .collect();
    (tasks, ready)
}

/// How many of `subscribers` listen on each of `channels` (round-robin).
fn subscribers_per_channel(subscribers: usize, channels: usize) -> Vec<u64> {
    (0..channels)
        .map(|c| ((subscribers + channels - 1 - c) / channels) as u64)
        .collect()
}

/// Waits until the server reports at least `want[c]` subscribers on each
/// channel, through a GET on the publish URL (herald's JSON channel info,
/// or Nchan's). A server whose answer has no subscriber count is trusted.
async fn wait_for_subscribers(
    client: &reqwest::Client,
    publ: &Template,
    names: &[String],
    want: &[u64],
    until: Instant,
) -> Result<(), BenchError> {
    for (name, &want) in names.iter().zip(want) {
        let url = publ.http(name);
        loop {
            let got = match subscriber_count(client, &url).await? {
                Some(n) if n >= want => break,
                Some(n) => n,
                None => return Ok(()),
            };
            if Instant::now() >= until {
                return Err(BenchError::Timeout(format!(
                    "the server counts {got} of {want} subscribers on {name}"
                )));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

/// The subscriber count in a channel-info answer: JSON `subscribers`, or a
/// text line `active subscribers: N` (Nchan without `Accept: application/json`).
/// 404 counts as zero (not created yet); `None` if there is no count at all.
async fn subscriber_count(client: &reqwest::Client, url: &str) -> Result<Option<u64>, BenchError> {
    let response = client
        .get(url)
        .header("Accept", "application/json")
        .send()
        .await?;
    if response.status().as_u16() == 404 {
        return Ok(Some(0));
    }
    let body = response.text().await?;
    Ok(parse_subscriber_count(&body))
}

fn parse_subscriber_count(body: &str) -> Option<u64> {
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(body) {
        return value.get("subscribers").and_then(|v| v.as_u64());
    }
    body.lines().find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim()
            .ends_with("subscribers")
            .then(|| value.trim().parse().ok())
            .flatten()
    })
}

/// What the publish phase measured.
struct Measured {
    /// Messages published per channel.
    published: Vec<u64>,
    /// When publishing started, µs since the epoch.
    start_us: u64,
    /// Seconds spent publishing.
    publish_s: f64,
    /// The generator's own CPU seconds over the phase.
    client_cpu_s: f64,
}

/// Publishes every channel's messages, then waits until every subscriber has
/// them (or `--drain` passes).
async fn publish_and_drain(
    args: &FanoutArgs,
    publ: &Template,
    names: &[String],
    client: &reqwest::Client,
    highest: &[Arc<AtomicU64>],
    shared: &Arc<Shared>,
    deadline: Instant,
) -> Result<Measured, BenchError> {
    let channels = names.len();
    let per_channel = subscribers_per_channel(args.subscribers, channels);
    let planned: Vec<u64> = (0..channels as u64)
        .map(|c| args.messages / channels as u64 + u64::from(c < args.messages % channels as u64))
        .collect();
    let total: u64 = planned.iter().zip(&per_channel).map(|(m, s)| m * s).sum();
    // Publishing stops early enough to leave time to drain inside --duration.
    let publish_until = deadline - args.drain.min(args.common.duration / 2);
    let start = Instant::now();
    let start_us = payload::now_us();
    let counters: Vec<Arc<AtomicU64>> =
        (0..channels).map(|_| Arc::new(AtomicU64::new(0))).collect();
    let mut publishers = tokio::task::JoinSet::new();
    for (c, name) in names.iter().enumerate() {
        let listeners: Vec<Arc<AtomicU64>> = (c..highest.len())
            .step_by(channels)
            .map(|i| highest[i].clone())
            .collect();
        let channel = ChannelPublisher {
            client: client.clone(),
            url: publ.http(name),
            messages: planned[c],
            first_index: c as u64,
            stride: channels as u64,
            rate: args.rate,
            size: args.size,
            json: args.payload == super::args::PayloadKind::Json,
            max_lag: args.max_lag,
            listeners,
            published: counters[c].clone(),
        };
        publishers.spawn(channel.run(start, start_us, publish_until));
    }
    let bar = progress(total, "delivering");
    let mut failure = None;
    loop {
        tokio::select! {
            joined = publishers.join_next() => match joined {
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(error))) => {
                    failure.get_or_insert(error);
                    publishers.abort_all();
                }
                Some(Err(_)) => {}
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                bar.set_position(shared.received.load(Ordering::Relaxed));
            }
        }
    }
    if let Some(error) = failure {
        bar.finish_and_clear();
        return Err(error);
    }
    let publish_s = start.elapsed().as_secs_f64();
    let published: Vec<u64> = counters.iter().map(|c| c.load(Ordering::Relaxed)).collect();
    let expected: u64 = published.iter().zip(&per_channel).map(|(m, s)| m * s).sum();
    let drain_until = (Instant::now() + args.drain).min(deadline);
    while shared.received.load(Ordering::Relaxed) < expected && Instant::now() < drain_until {
        bar.set_position(shared.received.load(Ordering::Relaxed));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    bar.finish_and_clear();
    Ok(Measured {
        published,
        start_us,
        publish_s,
        client_cpu_s: 0.0,
    })
}

/// Publishes one channel's messages, one request in flight.
struct ChannelPublisher {
    client: reqwest::Client,
    url: String,
    messages: u64,
    /// Global index of this channel's first message, and the step between its messages.
    first_index: u64,
    stride: u64,
    rate: f64,
    size: usize,
    /// JSON bodies rather than `x` (`--payload json`).
    json: bool,
    max_lag: u64,
    /// The highest sequence number each subscriber of the channel has seen.
    listeners: Vec<Arc<AtomicU64>>,
    published: Arc<AtomicU64>,
}

impl ChannelPublisher {
    async fn run(self, start: Instant, start_us: u64, until: Instant) -> Result<(), BenchError> {
        let mut slowest = 0;
        for seq in 1..=self.messages {
            // With a rate, latency counts from when the message was due, not
            // from when it went out: a server that is slow to answer a
            // publish delays the next one, and that delay is latency its
            // subscribers see (no coordinated omission).
            let mut due_us = None;
            if self.rate > 0.0 {
                let index = self.first_index + (seq - 1) * self.stride;
                let offset = Duration::from_secs_f64(index as f64 / self.rate);
                let due = start + offset;
                if due >= until {
                    break;
                }
                tokio::time::sleep_until(due).await;
                due_us = Some(start_us + offset.as_micros() as u64);
            }
            if self.max_lag > 0 && !self.listeners.is_empty() {
                while seq.saturating_sub(slowest) > self.max_lag {
                    slowest = self
                        .listeners
                        .iter()
                        .map(|h| h.load(Ordering::Relaxed))
                        .min()
                        .unwrap_or(seq);
                    if seq.saturating_sub(slowest) > self.max_lag {
                        if Instant::now() >= until {
                            return Ok(());
                        }
                        tokio::time::sleep(Duration::from_micros(500)).await;
                    }
                }
            }
            if Instant::now() >= until {
                break;
            }
            let sent_us = due_us.unwrap_or_else(payload::now_us);
            let data = if self.json {
                payload::encode_json(seq, sent_us, self.size)
            } else {
                payload::encode(seq, sent_us, self.size)
            };
            let response = self.client.post(&self.url).body(data).send().await?;
            let status = response.status();
            if !status.is_success() {
                let body = response.text().await.unwrap_or_default();
                return Err(BenchError::Publish {
                    url: self.url,
                    status: status.as_u16(),
                    body,
                });
            }
            // Read the answer so the connection goes back to the pool.
            let _ = response.bytes().await?;
            self.published.store(seq, Ordering::Relaxed);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_robin_counts() {
        assert_eq!(subscribers_per_channel(10, 3), vec![4, 3, 3]);
        assert_eq!(subscribers_per_channel(1000, 1), vec![1000]);
        assert_eq!(subscribers_per_channel(2, 3), vec![1, 1, 0]);
    }

    #[test]
    fn channel_info_counts() {
        assert_eq!(
            parse_subscriber_count(r#"{"channel":"a","subscribers":12}"#),
            Some(12)
        );
        assert_eq!(
            parse_subscriber_count("queued messages: 0\nlast requested: -1 sec. ago\nactive subscribers: 7\nlast message id: none\n"),
            Some(7)
        );
        assert_eq!(parse_subscriber_count("hello"), None);
    }
}
