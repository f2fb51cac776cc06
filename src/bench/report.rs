//! One run's result: the same [`Report`] for every scenario, printed as a
//! summary table for people or as one JSON line for scripts
//! (`bench/compare.sh` collects the lines; `herald bench plot` reads them).

use std::fmt::Write as _;

use indicatif::{ProgressBar, ProgressStyle};
use serde::{Deserialize, Serialize};

use super::procfs::Usage;
use super::stats::Percentiles;

/// What a run measured. Fields a scenario does not measure stay zero or absent.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Report {
    /// fanout, idle, echo or publish.
    pub scenario: String,
    /// The server's name given with `--label`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    /// Subscribers, idle connections, echo connections or publishers.
    pub connections: u64,
    pub channels: u64,
    /// Messages published (fanout, publish) or sent (echo).
    pub messages: u64,
    /// Message size in bytes.
    pub size: u64,
    /// Publish rate asked for (messages/s, 0 = as fast as possible).
    pub rate: f64,
    /// Seconds from the first message sent to the last one received.
    pub elapsed_s: f64,
    /// Deliveries (or publishes, or round trips) that should have happened.
    pub expected: u64,
    /// Distinct deliveries (or publishes, or round trips) that did.
    pub delivered: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub reordered: u64,
    /// Gap reports received (SSE `herald.gap`, poll `gap`, `/ws` `gap`).
    pub gaps: u64,
    /// Failed connections, requests or unexpected frames.
    pub errors: u64,
    /// Deliveries/s (fanout), publishes/s (publish), round trips/s (echo), connections/s (idle).
    pub throughput: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency_us: Option<Percentiles>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub server: Option<ServerCost>,
    /// CPU seconds the generator itself spent in the measured phase: near
    /// `elapsed_s` means the generator, not the server, was the limit.
    #[serde(default)]
    pub client_cpu_s: f64,
    /// Bytes read off the sockets per delivery by raw WebSocket subscribers
    /// (`--ws-raw`, `--ws-deflate`): frame headers and (compressed) payloads.
    #[serde(default)]
    pub wire_bytes_per_delivery: f64,
}

/// The server's CPU and memory over the run (from `--server-pid`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ServerCost {
    /// CPU seconds spent during the measured phase.
    pub cpu_s: f64,
    /// CPU seconds per million deliveries (or publishes, or round trips).
    pub cpu_s_per_million: f64,
    /// The part of `cpu_s` the kernel spent (system time): a floor no
    /// change in the server's own code moves.
    #[serde(default)]
    pub cpu_system_s: f64,
    /// RSS before the clients connected, KiB.
    pub rss_before_kib: u64,
    /// RSS with every client connected, KiB.
    pub rss_connected_kib: u64,
    /// RSS at the end, KiB.
    pub rss_after_kib: u64,
    /// (RSS connected − RSS before) / connections, bytes.
    pub rss_per_connection_bytes: f64,
}

impl ServerCost {
    /// Builds the cost from three samples: before connecting, connected
    /// (start of the measured phase) and after it.
    pub fn from_samples(
        before: Usage,
        connected: Usage,
        after: Usage,
        connections: u64,
        work: u64,
    ) -> Self {
        let cpu_s = (after.cpu_s - connected.cpu_s).max(0.0);
        Self {
            cpu_s,
            cpu_system_s: (after.system_s - connected.system_s).clamp(0.0, cpu_s),
            cpu_s_per_million: if work > 0 {
                cpu_s * 1e6 / work as f64
            } else {
                0.0
            },
            rss_before_kib: before.rss_kib,
            rss_connected_kib: connected.rss_kib,
            rss_after_kib: after.rss_kib,
            rss_per_connection_bytes: if connections > 0 {
                (connected.rss_kib as f64 - before.rss_kib as f64) * 1024.0 / connections as f64
            } else {
                0.0
            },
        }
    }
}

impl Report {
    /// One JSON line.
    pub fn json(&self) -> String {
        serde_json::to_string(self).unwrap_or_else(|e| format!("{{\"error\":\"{e}\"}}"))
    }

    /// The summary table.
    pub fn table(&self) -> String {
        let mut rows: Vec<(&str, String)> = vec![("scenario", self.scenario.clone())];
        if let Some(label) = &self.label {
            rows.push(("server", label.clone()));
        }
        if let Some(t) = &self.transport {
            rows.push(("transport", t.clone()));
        }
        rows.push(("connections", self.connections.to_string()));
        if self.channels > 0 {
            rows.push(("channels", self.channels.to_string()));
        }
        if self.messages > 0 {
            rows.push((
                "messages",
                format!(
                    "{} × {} B at {}",
                    self.messages,
                    self.size,
                    if self.rate > 0.0 {
                        format!("{}/s", self.rate)
                    } else {
                        "full speed".into()
                    }
                ),
            ));
        }
        rows.push(("elapsed", format!("{:.2} s", self.elapsed_s)));
        rows.push((
            "delivered",
            format!("{} of {}", self.delivered, self.expected),
        ));
        rows.push(("throughput", format!("{:.0}/s", self.throughput)));
        rows.push((
            "lost / dup / reordered",
            format!("{} / {} / {}", self.lost, self.duplicated, self.reordered),
        ));
        if self.gaps > 0 {
            rows.push(("gap reports", self.gaps.to_string()));
        }
        rows.push(("errors", self.errors.to_string()));
        if let Some(p) = &self.latency_us {
            rows.push((
                "latency p50 / p99 / p99.9 / max",
                format!(
                    "{} / {} / {} / {}",
                    micros(p.p50),
                    micros(p.p99),
                    micros(p.p999),
                    micros(p.max)
                ),
            ));
        }
        if let Some(s) = &self.server {
            rows.push((
                "server CPU (of it in the kernel)",
                format!("{:.2} s ({:.2} s)", s.cpu_s, s.cpu_system_s),
            ));
            rows.push((
                "server CPU per million",
                format!("{:.2} s", s.cpu_s_per_million),
            ));
            rows.push((
                "server RSS before / connected / after",
                format!(
                    "{} / {} / {} MiB",
                    mib(s.rss_before_kib),
                    mib(s.rss_connected_kib),
                    mib(s.rss_after_kib)
                ),
            ));
            rows.push((
                "server RSS per connection",
                format!("{:.0} B", s.rss_per_connection_bytes),
            ));
        }
        if self.wire_bytes_per_delivery > 0.0 {
            rows.push((
                "wire bytes per delivery",
                format!("{:.1} B", self.wire_bytes_per_delivery),
            ));
        }
        rows.push(("generator CPU", format!("{:.2} s", self.client_cpu_s)));
        let width = rows.iter().map(|(k, _)| k.len()).max().unwrap_or(0);
        let mut out = String::new();
        for (key, value) in rows {
            let _ = writeln!(out, "{key:<width$}  {value}");
        }
        out
    }
}

fn micros(us: u64) -> String {
    if us >= 10_000 {
        format!("{:.1} ms", us as f64 / 1000.0)
    } else {
        format!("{us} µs")
    }
}

fn mib(kib: u64) -> String {
    format!("{:.1}", kib as f64 / 1024.0)
}

/// A progress bar on standard error (hidden when it is not a terminal).
pub fn progress(total: u64, what: &str) -> ProgressBar {
    let bar = ProgressBar::new(total);
    if let Ok(style) =
        ProgressStyle::with_template("{msg:>12} [{elapsed_precise}] {wide_bar} {pos}/{len}")
    {
        bar.set_style(style);
    }
    bar.set_message(what.to_owned());
    bar
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_round_trip_and_table() {
        let report = Report {
            scenario: "fanout".into(),
            label: Some("herald".into()),
            connections: 10,
            delivered: 100,
            expected: 100,
            latency_us: Some(Percentiles {
                p50: 100,
                p99: 20_000,
                ..Default::default()
            }),
            server: Some(ServerCost::from_samples(
                Usage {
                    cpu_s: 1.0,
                    rss_kib: 1000,
                    ..Default::default()
                },
                Usage {
                    cpu_s: 1.0,
                    system_s: 0.1,
                    rss_kib: 1010,
                },
                Usage {
                    cpu_s: 1.5,
                    system_s: 0.3,
                    rss_kib: 1010,
                },
                10,
                100,
            )),
            ..Default::default()
        };
        let back: Report = serde_json::from_str(&report.json()).unwrap();
        assert_eq!(back.delivered, 100);
        let cost = back.server.unwrap();
        assert_eq!(cost.cpu_s_per_million, 5000.0);
        assert!((cost.cpu_system_s - 0.2).abs() < 1e-9);
        assert_eq!(cost.rss_per_connection_bytes, 1024.0);
        let table = report.table();
        assert!(table.contains("20.0 ms"), "{table}");
        assert!(!report.json().contains('\n'));
    }
}
