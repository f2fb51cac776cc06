//! Where the load goes: URL templates with `{ch}`, the loopback-only rule,
//! and fresh channel names for each run.
//!
//! The generator only ever talks to 127.0.0.0/8 (or `::1`, `localhost`): it
//! can open a hundred thousand connections and must not be turned on anyone.

use std::net::IpAddr;

use rand::Rng;
use reqwest::Url;

use super::BenchError;

/// A URL with a `{ch}` placeholder for the channel name.
#[derive(Debug, Clone)]
pub struct Template {
    raw: String,
}

impl Template {
    /// Checks the template: an http(s)/ws(s) URL on a loopback host.
    pub fn parse(raw: &str) -> Result<Self, BenchError> {
        let probe = raw.replace("{ch}", "probe");
        check_loopback(&probe).map_err(|e| match e {
            BenchError::NotLoopback(_) => BenchError::NotLoopback(raw.to_owned()),
            other => other,
        })?;
        Ok(Self {
            raw: raw.to_owned(),
        })
    }

    /// The URL for `channel`, as given (http or ws scheme).
    pub fn http(&self, channel: &str) -> String {
        self.raw.replace("{ch}", channel)
    }

    /// The URL for `channel` with its scheme turned into ws:// or wss://.
    pub fn ws(&self, channel: &str) -> String {
        to_ws(&self.http(channel))
    }
}

/// `http://` → `ws://`, `https://` → `wss://`; ws URLs are returned as they are.
pub fn to_ws(url: &str) -> String {
    if let Some(rest) = url.strip_prefix("http://") {
        format!("ws://{rest}")
    } else if let Some(rest) = url.strip_prefix("https://") {
        format!("wss://{rest}")
    } else {
        url.to_owned()
    }
}

/// The `/ws` protocol URL on the same host as `sub_url`.
pub fn wsproto_url(sub_url: &str) -> Result<String, BenchError> {
    let mut url = parse(&to_ws(&sub_url.replace("{ch}", "probe")))?;
    url.set_path("/ws");
    url.set_query(None);
    Ok(url.to_string())
}

/// Refuses any URL whose host is not a loopback address.
pub fn check_loopback(url: &str) -> Result<Url, BenchError> {
    let parsed = parse(url)?;
    let loopback = match host_ip(&parsed) {
        Some(ip) => ip.is_loopback(),
        None => parsed
            .host_str()
            .is_some_and(|name| name.eq_ignore_ascii_case("localhost")),
    };
    if !loopback {
        return Err(BenchError::NotLoopback(url.to_owned()));
    }
    if !matches!(parsed.scheme(), "http" | "https" | "ws" | "wss") {
        return Err(BenchError::BadUrl(
            url.to_owned(),
            "scheme must be http, https, ws or wss".into(),
        ));
    }
    Ok(parsed)
}

/// The host of `url` when it is an IP address (IPv6 without its brackets).
fn host_ip(url: &Url) -> Option<IpAddr> {
    let host = url.host_str()?;
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

fn parse(url: &str) -> Result<Url, BenchError> {
    Url::parse(url).map_err(|e| BenchError::BadUrl(url.to_owned(), e.to_string()))
}

/// The `host:port` of a loopback URL, for raw TCP connections.
pub fn socket_addr(url: &str) -> Result<std::net::SocketAddr, BenchError> {
    let parsed = check_loopback(url)?;
    let port = parsed
        .port_or_known_default()
        .ok_or_else(|| BenchError::BadUrl(url.to_owned(), "no port".into()))?;
    let ip = host_ip(&parsed).unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST));
    Ok(std::net::SocketAddr::new(ip, port))
}

/// The HTTP client of a run: `https://` targets trusted per `--insecure` /
/// `--ca`; HTTP/2 (ALPN h2, prior knowledge on http://) with `http2`,
/// else HTTP/1.1 only, so that an https:// run without `--http2` measures
/// HTTP/1.1 over TLS.
pub fn http_client(common: &super::Common, http2: bool) -> Result<reqwest::Client, BenchError> {
    let mut builder = reqwest::Client::builder()
        .tcp_nodelay(true)
        .use_rustls_tls();
    if common.insecure {
        builder = builder.danger_accept_invalid_certs(true);
    }
    if let Some(path) = &common.ca {
        let pem = std::fs::read(path)
            .map_err(|e| BenchError::Options(format!("--ca {}: {e}", path.display())))?;
        let ca = reqwest::Certificate::from_pem(&pem)
            .map_err(|e| BenchError::Options(format!("--ca {}: {e}", path.display())))?;
        builder = builder.add_root_certificate(ca);
    }
    builder = if http2 {
        builder.http2_prior_knowledge()
    } else {
        builder.http1_only()
    };
    builder.build().map_err(BenchError::Http)
}

/// Channel names for one run: `prefix` (or a fresh random one) followed by
/// an index. Letters, digits and `_` only, which every server accepts (Nchan's
/// example locations match `\w+`).
pub fn channel_names(prefix: Option<&str>, count: usize) -> Vec<String> {
    let prefix = match prefix {
        Some(p) => p.to_owned(),
        None => {
            let mut rng = rand::rng();
            let tag: String = (0..8)
                .map(|_| char::from(b'a' + rng.random_range(0..26u8)))
                .collect();
            format!("b{tag}_")
        }
    };
    (0..count).map(|i| format!("{prefix}{i}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_only() {
        assert!(Template::parse("http://127.0.0.1:8080/sub/{ch}").is_ok());
        assert!(Template::parse("http://127.3.0.9:1/sub/{ch}").is_ok());
        assert!(Template::parse("http://localhost:1/sub/{ch}").is_ok());
        assert!(Template::parse("ws://[::1]:1/sub/{ch}").is_ok());
        assert!(matches!(
            Template::parse("http://10.0.0.1:8080/sub/{ch}"),
            Err(BenchError::NotLoopback(_))
        ));
        assert!(matches!(
            Template::parse("http://example.com/sub/{ch}"),
            Err(BenchError::NotLoopback(_))
        ));
        assert!(Template::parse("ftp://127.0.0.1/x").is_err());
    }

    #[test]
    fn templates_and_schemes() {
        let t = Template::parse("http://127.0.0.1:9/sub/{ch}?x=1").unwrap();
        assert_eq!(t.http("a"), "http://127.0.0.1:9/sub/a?x=1");
        assert_eq!(t.ws("a"), "ws://127.0.0.1:9/sub/a?x=1");
        assert_eq!(
            wsproto_url("http://127.0.0.1:9/sub/{ch}").unwrap(),
            "ws://127.0.0.1:9/ws"
        );
    }

    #[test]
    fn fresh_channel_names() {
        let a = channel_names(None, 3);
        assert_eq!(a.len(), 3);
        assert!(a[0].chars().all(|c| c.is_ascii_alphanumeric() || c == '_'));
        assert_ne!(channel_names(None, 1), channel_names(None, 1));
        assert_eq!(channel_names(Some("x_"), 2), vec!["x_0", "x_1"]);
    }
}
