//! Where herald listens: one or more addresses, each plain HTTP or TLS.
//!
//! `--listen` may be given several times (or comma-separated); an address
//! written `tls://HOST:PORT` serves HTTPS and WSS (with HTTP/2 by ALPN) from
//! the `--tls-cert` and `--tls-key` files, any other serves plain HTTP. The
//! prefix keeps a TLS port visible in the one place that names the port,
//! rather than in a second flag that would have to say which `--listen` it
//! means.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

/// The prefix of a TLS listening address.
pub const TLS_PREFIX: &str = "tls://";

/// One listening address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Listen {
    pub addr: SocketAddr,
    /// Serve TLS (HTTPS, WSS, HTTP/2 by ALPN) on this address.
    pub tls: bool,
}

impl FromStr for Listen {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (rest, tls) = match text.strip_prefix(TLS_PREFIX) {
            Some(rest) => (rest, true),
            None => (text, false),
        };
        let addr = rest.parse().map_err(|_| {
            format!(
                "{text:?} is not an address and port (such as 0.0.0.0:8080 or tls://0.0.0.0:443)"
            )
        })?;
        Ok(Self { addr, tls })
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.tls {
            f.write_str(TLS_PREFIX)?;
        }
        write!(f, "{}", self.addr)
    }
}

/// Every address to listen on, in the order given (at least one).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listeners(Vec<Listen>);

impl Listeners {
    /// The addresses; never empty.
    pub fn new(list: Vec<Listen>) -> Option<Self> {
        (!list.is_empty()).then_some(Self(list))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Listen> {
        self.0.iter()
    }

    /// Whether any address serves TLS.
    pub fn any_tls(&self) -> bool {
        self.0.iter().any(|l| l.tls)
    }
}

impl FromStr for Listeners {
    type Err = String;

    /// One address, or several separated by commas.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let list = text
            .split(',')
            .map(str::parse)
            .collect::<Result<Vec<Listen>, _>>()?;
        Self::new(list).ok_or_else(|| "no address".to_owned())
    }
}

impl From<SocketAddr> for Listeners {
    fn from(addr: SocketAddr) -> Self {
        Self(vec![Listen { addr, tls: false }])
    }
}

/// The certificate chain and private key of the TLS listeners (PEM files,
/// reloaded when they change).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tls_prefix_marks_a_tls_address() {
        let plain: Listen = "127.0.0.1:80".parse().unwrap();
        assert!(!plain.tls);
        let tls: Listen = "tls://[::]:443".parse().unwrap();
        assert!(tls.tls);
        assert_eq!(tls.addr.port(), 443);
        assert_eq!(tls.to_string(), "tls://[::]:443");
        assert!("https://0.0.0.0:443".parse::<Listen>().is_err());
        assert!("tls://".parse::<Listen>().is_err());
        let both: Listeners = "127.0.0.1:80, tls://127.0.0.1:443".parse().unwrap();
        assert_eq!(both.iter().count(), 2);
        assert!(both.any_tls());
    }
}
