//! `herald bench publish`: K publishers, each with one HTTP request in
//! flight on its own channel, share M messages: publishes/s and the latency
//! of a publish (request sent to answer read). With `--batch N`, each
//! request carries N messages (a `POST /pub` batch) and the latency is the
//! request's.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use super::args::PublishArgs;
use super::payload;
use super::procfs;
use super::report::{progress, Report, ServerCost};
use super::stats::Latency;
use super::target::{channel_names, Template};
use super::BenchError;

/// What one publisher saw.
#[derive(Default)]
struct Tally {
    latency: Latency,
    published: u64,
    errors: u64,
    first_error: Option<BenchError>,
}

/// Runs the publish scenario.
pub async fn run(args: &PublishArgs) -> Result<Report, BenchError> {
    if args.publishers == 0 || args.messages == 0 || args.batch == 0 {
        return Err(BenchError::Options(
            "--publishers, --messages and --batch must be at least 1".into(),
        ));
    }
    let publ = Template::parse(&args.common.pub_url)?;
    let batch_url = (args.batch > 1)
        .then(|| batch_url(&args.common.pub_url))
        .transpose()?;
    let names = channel_names(args.common.channel_prefix.as_deref(), args.publishers);
    let deadline = Instant::now() + args.common.duration;
    let client = super::target::http_client(&args.common, false)?;
    let pid = args.common.server_pid;
    let before = procfs::sample(pid)?;
    let done = Arc::new(AtomicU64::new(0));
    let bar = progress(args.messages, "publishing");
    let start = Instant::now();
    let own_before = procfs::own_cpu_seconds();
    let mut tasks = JoinSet::new();
    for (k, name) in names.iter().enumerate() {
        let count = args.messages / args.publishers as u64
            + u64::from((k as u64) < args.messages % args.publishers as u64);
        let (client, size, done) = (client.clone(), args.size, done.clone());
        let (url, channel, batch) = match &batch_url {
            Some(url) => (url.clone(), Some(name.clone()), args.batch as u64),
            None => (publ.http(name), None, 1),
        };
        let mut raw = if args.raw_http {
            Some(super::rawhttp::RawPublisher::new(&url)?)
        } else {
            None
        };
        tasks.spawn(async move {
            let mut tally = Tally::default();
            let mut seq = 1;
            while seq <= count {
                if Instant::now() >= deadline {
                    break;
                }
                let sent = payload::now_us();
                let last = count.min(seq + batch - 1);
                let body = match &channel {
                    Some(channel) => batch_body(channel, seq..=last, sent, size),
                    None => payload::encode(seq, sent, size),
                };
                let messages = last - seq + 1;
                seq = last + 1;
                let result = match raw.as_mut() {
                    Some(raw) => raw.post(body.as_bytes()).await,
                    None => publish_one(&client, &url, body).await,
                };
                match result {
                    Ok(()) => {
                        tally.latency.record(payload::now_us().saturating_sub(sent));
                        tally.published += messages;
                        done.fetch_add(messages, Ordering::Relaxed);
                    }
                    Err(error) => {
                        tally.errors += 1;
                        tally.first_error.get_or_insert(error);
                    }
                }
            }
            tally
        });
    }
    let mut latency = Latency::default();
    let (mut published, mut errors, mut first_error) = (0, 0, None);
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                Some(Ok(tally)) => {
                    latency.merge(&tally.latency);
                    published += tally.published;
                    errors += tally.errors;
                    if first_error.is_none() {
                        first_error = tally.first_error;
                    }
                }
                Some(Err(_)) => errors += 1,
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(100)) => {
                bar.set_position(done.load(Ordering::Relaxed));
            }
        }
    }
    bar.finish_and_clear();
    let elapsed = start.elapsed().as_secs_f64();
    let after = procfs::sample(pid)?;
    if published == 0 {
        if let Some(error) = first_error {
            return Err(error);
        }
    }
    let mut report = Report {
        scenario: "publish".into(),
        label: args.common.label.clone(),
        connections: args.publishers as u64,
        channels: args.publishers as u64,
        messages: args.messages,
        size: args.size as u64,
        elapsed_s: elapsed,
        expected: args.messages,
        delivered: published,
        errors,
        throughput: if elapsed > 0.0 {
            published as f64 / elapsed
        } else {
            0.0
        },
        latency_us: latency.percentiles(),
        client_cpu_s: procfs::own_cpu_seconds() - own_before,
        ..Report::default()
    };
    if let (Some(before), Some(after)) = (before, after) {
        report.server = Some(ServerCost::from_samples(
            before, before, after, 0, published,
        ));
    }
    Ok(report)
}

/// The batch URL: the publish URL without its `/{ch}` segment.
fn batch_url(template: &str) -> Result<String, BenchError> {
    template
        .strip_suffix("/{ch}")
        .map(str::to_owned)
        .ok_or_else(|| BenchError::Options("--batch needs a --pub-url ending in /{ch}".into()))
}

/// A `POST /pub` batch of the messages `seqs` on `channel`.
fn batch_body(
    channel: &str,
    seqs: std::ops::RangeInclusive<u64>,
    sent_us: u64,
    size: usize,
) -> String {
    let items: Vec<_> = seqs
        .map(|seq| serde_json::json!({ "channel": channel, "data": payload::encode(seq, sent_us, size) }))
        .collect();
    serde_json::Value::Array(items).to_string()
}

async fn publish_one(client: &reqwest::Client, url: &str, data: String) -> Result<(), BenchError> {
    let response = client.post(url).body(data).send().await?;
    let status = response.status();
    let body = response.bytes().await?;
    if status.is_success() {
        Ok(())
    } else {
        Err(BenchError::Publish {
            url: url.to_owned(),
            status: status.as_u16(),
            body: String::from_utf8_lossy(&body).into_owned(),
        })
    }
}
