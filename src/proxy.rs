//! Clients behind a reverse proxy or load balancer (`--trusted-proxy`): the
//! TCP peer is then the proxy, and the client's own address is in the
//! `X-Forwarded-For` (or `Forwarded`) header the proxy adds. Those headers
//! are believed only when the peer is a trusted proxy, since anyone else can
//! write them; per-IP publish limits then count the client, not the proxy.

use std::net::IpAddr;

use axum::http::HeaderMap;
use ipnet::IpNet;

/// The networks whose connections are proxies to believe.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustedProxies(Vec<IpNet>);

impl TrustedProxies {
    pub fn new(networks: Vec<IpNet>) -> Self {
        Self(networks)
    }

    pub fn networks(&self) -> &[IpNet] {
        &self.0
    }

    /// Whether `ip` is one of the trusted proxies.
    pub fn trusts(&self, ip: IpAddr) -> bool {
        let ip = canonical(ip);
        self.0.iter().any(|net| net.contains(&ip))
    }

    /// The client's address: `peer` itself unless it is a trusted proxy;
    /// then the right-most address of `X-Forwarded-For` (else of
    /// `Forwarded: for=`) that is not itself a trusted proxy. Addresses left
    /// of it were written by the client and are ignored.
    pub fn client_ip(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        if !self.trusts(peer) {
            return peer;
        }
        let forwarded = forwarded_for(headers);
        let mut nearest = peer;
        for ip in forwarded.into_iter().rev() {
            if !self.trusts(ip) {
                return ip;
            }
            nearest = ip;
        }
        nearest
    }
}

/// IPv4-mapped IPv6 addresses (a dual-stack listener's view of IPv4
/// clients) as the IPv4 addresses they are.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// The addresses a chain of proxies reported, nearest last; unparseable
/// entries (`unknown`, obfuscated names) are skipped.
fn forwarded_for(headers: &HeaderMap) -> Vec<IpAddr> {
    let x_forwarded_for: Vec<IpAddr> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|entry| parse_node(entry.trim()))
        .collect();
    if !x_forwarded_for.is_empty() {
        return x_forwarded_for;
    }
    // RFC 7239: `Forwarded: for=192.0.2.60;proto=http, for="[2001:db8::1]:4711"`.
    headers
        .get_all("forwarded")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (key, value) = pair.trim().split_once('=')?;
                key.eq_ignore_ascii_case("for")
                    .then(|| parse_node(value.trim().trim_matches('"')))
                    .flatten()
            })
        })
        .collect()
}

/// `192.0.2.1`, `192.0.2.1:80`, `2001:db8::1` or `[2001:db8::1]:80`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Some(rest) = node.strip_prefix('[') {
        return rest.split(']').next()?.parse().ok().map(canonical);
    }
    node.rsplit_once(':')?.0.parse().ok().map(canonical)
}

/// Parses `10.0.0.0/8`, `2001:db8::/32`, or a bare address (one host).
pub fn parse_network(raw: &str) -> Result<IpNet, String> {
    let raw = raw.trim();
    raw.parse::<IpNet>()
        .or_else(|_| raw.parse::<IpAddr>().map(IpNet::from))
        .map_err(|_| {
            format!("{raw:?} is not an address or network (10.0.0.0/8, 192.0.2.1, 2001:db8::/32)")
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                value.parse().unwrap(),
            );
        }
        map
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn forwarded_addresses_are_believed_only_from_trusted_proxies() {
        let trusted = TrustedProxies::new(vec![
            parse_network("10.0.0.0/8").unwrap(),
            parse_network("127.0.0.1").unwrap(),
        ]);
        let xff = headers(&[("x-forwarded-for", "6.6.6.6, 203.0.113.7, 10.1.1.1")]);
        // The right-most untrusted hop: the client the first proxy saw.
        assert_eq!(trusted.client_ip(ip("10.2.2.2"), &xff), ip("203.0.113.7"));
        // From an untrusted peer the header is the peer's own claim.
        assert_eq!(
            trusted.client_ip(ip("198.51.100.1"), &xff),
            ip("198.51.100.1")
        );
        assert_eq!(
            TrustedProxies::default().client_ip(ip("10.2.2.2"), &xff),
            ip("10.2.2.2")
        );
        let forwarded = headers(&[(
            "forwarded",
            "for=192.0.2.60;proto=http, for=\"[2001:db8::1]:4711\"",
        )]);
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &forwarded),
            ip("2001:db8::1")
        );
        let ported = headers(&[("x-forwarded-for", "192.0.2.9:5555, unknown")]);
        assert_eq!(trusted.client_ip(ip("127.0.0.1"), &ported), ip("192.0.2.9"));
        // Nothing forwarded: the proxy itself.
        assert_eq!(
            trusted.client_ip(ip("127.0.0.1"), &HeaderMap::new()),
            ip("127.0.0.1")
        );
        // A dual-stack listener's IPv4-mapped peer is the IPv4 proxy.
        assert_eq!(
            trusted.client_ip(ip("::ffff:127.0.0.1"), &xff),
            ip("203.0.113.7")
        );
        assert!(parse_network("not an address").is_err());
    }
}
