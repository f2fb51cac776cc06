//! What monitoring sees: a real `herald serve` process on a free loopback
//! port, scraped right after it starts, exposes every metric documented in
//! docs/operations.md with a series for each known label value; and the
//! shipped Prometheus alerts (`deploy/prometheus/alerts.yml`) and Grafana
//! dashboard (`deploy/grafana/herald.json`) name only metrics that a live
//! `/metrics` really exposes. (`promtool check rules` and `promtool test
//! rules` check the alerts themselves, in scripts/test.)

#[path = "common/redis.rs"]
mod cluster;
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use serde_json::Value;

const WAIT: Duration = Duration::from_secs(10);

fn repo_file(path: &str) -> String {
    let full = format!("{}/{path}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("reading {full}: {e}"))
}

/// A `herald serve` process on a free port, killed when dropped.
struct Herald {
    node: cluster::Node,
}

impl Herald {
    async fn start() -> Self {
        let node = cluster::Node::serve("monitored", &["--max-connections", "500"]).await;
        Self { node }
    }

    async fn scrape(&self) -> Scrape {
        let get = reqwest::get(format!("http://{}/metrics", self.node.addr));
        let response = tokio::time::timeout(WAIT, get)
            .await
            .expect("/metrics answers within the deadline")
            .unwrap();
        assert_eq!(response.status(), 200);
        Scrape(response.text().await.unwrap())
    }
}

/// One Prometheus text scrape.
struct Scrape(String);

impl Scrape {
    /// Metric families announced with `# TYPE name type`.
    fn families(&self) -> BTreeMap<String, String> {
        self.0
            .lines()
            .filter_map(|l| l.strip_prefix("# TYPE "))
            .filter_map(|l| l.split_once(' '))
            .map(|(name, kind)| (name.to_owned(), kind.to_owned()))
            .collect()
    }

    /// Every sample as (name, labels, value).
    fn samples(&self) -> Vec<(String, BTreeMap<String, String>, f64)> {
        self.0
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|line| {
                let (series, value) = line.rsplit_once(' ').expect("name value");
                let (name, labels) = match series.split_once('{') {
                    Some((name, rest)) => (
                        name.to_owned(),
                        rest.trim_end_matches('}')
                            .split(',')
                            .filter(|p| !p.is_empty())
                            .map(|pair| {
                                let (k, v) = pair.split_once('=').expect("label=value");
                                (k.to_owned(), v.trim_matches('"').to_owned())
                            })
                            .collect(),
                    ),
                    None => (series.to_owned(), BTreeMap::new()),
                };
                (name, labels, value.parse().expect("a number"))
            })
            .collect()
    }

    /// The value of `name` with exactly `labels`.
    fn value(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples()
            .into_iter()
            .find(|(n, l, _)| n == name && *l == want)
            .map(|(_, _, v)| v)
    }
}

/// `herald_*` names in a text, histogram series folded into their family.
fn metric_names(text: &str) -> BTreeSet<String> {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("herald_") && w.len() > "herald_".len())
        .map(|w| {
            w.trim_end_matches("_bucket")
                .trim_end_matches("_count")
                .trim_end_matches("_sum")
                .to_owned()
        })
        .collect()
}

/// The `## Metrics` section of docs/operations.md.
fn metrics_section() -> String {
    let docs = repo_file("docs/operations.md");
    let section = docs
        .split("\n## Metrics")
        .nth(1)
        .expect("docs/operations.md has a ## Metrics section");
    section.split("\n## ").next().unwrap().to_owned()
}

/// The backticked values of the label-values bullet that starts with `bullet`.
fn documented_values(section: &str, bullet: &str) -> Vec<String> {
    let start = section
        .find(bullet)
        .unwrap_or_else(|| panic!("no {bullet:?} bullet in docs/operations.md"));
    let text = &section[start + bullet.len()..];
    let end = text
        .find("\n- ")
        .or(text.find("\n\n"))
        .unwrap_or(text.len());
    text[..end]
        .split('`')
        .skip(1)
        .step_by(2)
        .filter(|v| v.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn every_documented_metric_is_exposed_at_start_with_each_known_label() {
    let herald = Herald::start().await;
    let scrape = herald.scrape().await;
    let families = scrape.families();
    let section = metrics_section();

    let documented = metric_names(&section);
    assert!(documented.len() >= 15, "{documented:?}");
    let missing: Vec<_> = documented
        .iter()
        .filter(|name| !families.contains_key(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "documented but not exposed at start: {missing:?}\n{}",
        scrape.0
    );

    let transports = documented_values(&section, "- `transport`:");
    assert_eq!(transports, ["ws", "socket", "sse", "poll", "echo"]);
    let reasons = documented_values(&section, "- `reason` on disconnects:");
    assert!(reasons.len() >= 14, "{reasons:?}");
    let zero = |name: &str, labels: &[(&str, &str)]| {
        assert_eq!(
            scrape.value(name, labels),
            Some(0.0),
            "{name}{labels:?} at zero from start"
        );
    };
    for transport in &transports {
        let t = ("transport", transport.as_str());
        zero("herald_connections", &[t]);
        zero("herald_connections_opened_total", &[t]);
        zero("herald_deliveries_total", &[t]);
        for reason in &reasons {
            zero("herald_disconnects_total", &[t, ("reason", reason)]);
        }
    }
    for reason in documented_values(&section, "- `reason` on gaps:") {
        zero("herald_gaps_total", &[("reason", &reason)]);
    }
    for operation in documented_values(&section, "- `operation` on engine errors:") {
        zero("herald_engine_errors_total", &[("operation", &operation)]);
    }
    for code in herald::error::CODES
        .iter()
        .chain(&["connection_rate_limited", "too_many_connections"])
    {
        zero("herald_rejected_total", &[("code", code)]);
    }
    for name in [
        "herald_publishes_total",
        "herald_published_bytes_total",
        "herald_subscriber_lag_total",
        "herald_subscriptions",
        "herald_channels",
        "herald_history_messages",
        "herald_history_bytes",
        "herald_delivery_latency_seconds_count",
    ] {
        zero(name, &[]);
    }
    assert_eq!(
        families
            .get("herald_delivery_latency_seconds")
            .map(String::as_str),
        Some("histogram")
    );
    zero("herald_delivery_latency_seconds_bucket", &[("le", "+Inf")]);
    assert_eq!(scrape.value("herald_ready", &[]), Some(1.0));
    assert_eq!(scrape.value("herald_max_connections", &[]), Some(500.0));
}

/// `herald::error::CODES` (the `code` values registered at start) names
/// every code an `ApiError` can carry: the fixed ones of `ApiError::code`
/// and each `ApiError::bad_request("code", ...)` anywhere in the source.
#[test]
fn the_registered_rejection_codes_cover_every_error_code() {
    fn sources(dir: &std::path::Path, out: &mut Vec<String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                sources(&path, out);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(std::fs::read_to_string(&path).unwrap());
            }
        }
    }
    let mut texts = Vec::new();
    sources(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src"),
        &mut texts,
    );
    let literal_after = |text: &str, marker: &str| -> Vec<String> {
        text.match_indices(marker)
            .filter_map(|(at, _)| {
                let rest = text[at + marker.len()..].trim_start();
                let rest = rest.strip_prefix('"')?;
                Some(rest[..rest.find('"')?].to_owned())
            })
            .collect()
    };
    let mut codes = BTreeSet::new();
    for text in &texts {
        codes.extend(literal_after(text, "bad_request("));
    }
    let error = repo_file("src/error.rs");
    let code_fn = error
        .split("pub fn code(&self)")
        .nth(1)
        .expect("ApiError::code");
    let code_fn = &code_fn[..code_fn.find("\n    }\n").unwrap()];
    codes.extend(literal_after(code_fn, "=>"));
    assert!(codes.len() > 20, "{codes:?}");
    let missing: Vec<_> = codes
        .iter()
        .filter(|c| !herald::error::CODES.contains(&c.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "add these codes to herald::error::CODES: {missing:?}"
    );
}

/// Every string under an `"expr"` key of the dashboard, at any depth.
fn dashboard_queries(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query", Value::String(query)) => out.push(query.clone()),
                    _ => dashboard_queries(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|v| dashboard_queries(v, out)),
        _ => {}
    }
}

#[tokio::test]
async fn the_dashboard_and_the_alerts_name_only_exposed_metrics() {
    let herald = Herald::start().await;
    let exposed: BTreeSet<String> = herald.scrape().await.families().into_keys().collect();

    let dashboard: Value = serde_json::from_str(&repo_file("deploy/grafana/herald.json"))
        .expect("deploy/grafana/herald.json is JSON");
    let mut queries = Vec::new();
    dashboard_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "{queries:?}");
    let in_dashboard = metric_names(&queries.join("\n"));

    // Comment lines may name metrics herald does not have yet (webhooks).
    let alerts: String = repo_file("deploy/prometheus/alerts.yml")
        .lines()
        .filter(|l| !l.trim_start().starts_with('#'))
        .collect::<Vec<_>>()
        .join("\n");
    let in_alerts = metric_names(&alerts);
    assert!(in_alerts.len() >= 8, "{in_alerts:?}");

    for (file, names) in [
        ("deploy/grafana/herald.json", &in_dashboard),
        ("deploy/prometheus/alerts.yml", &in_alerts),
    ] {
        let unknown: Vec<_> = names.difference(&exposed).collect();
        assert!(
            unknown.is_empty(),
            "{file} names metrics /metrics does not expose: {unknown:?}"
        );
    }
    let herald_metrics: BTreeSet<String> = exposed
        .into_iter()
        .filter(|n| n.starts_with("herald_"))
        .collect();
    let not_shown: Vec<_> = herald_metrics.difference(&in_dashboard).collect();
    assert!(
        not_shown.is_empty(),
        "the dashboard has no panel for {not_shown:?}"
    );
}
