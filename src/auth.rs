//! Who may publish and who may subscribe.
//!
//! Publishers prove themselves with the publish key (`--publish-key`, sent as
//! `Authorization: Bearer KEY`) or a JWT whose `herald.publish` patterns cover
//! the channel; subscribers with a JWT whose `herald.subscribe` patterns do
//! (`--jwt-secret` for HS256, `--jwt-public-key` for RS256/ES256). Browsers
//! cannot set headers on EventSource or WebSocket, so a token may also come as
//! `?token=` or a `herald_token` cookie. With nothing configured, everything
//! is open (the loopback quick start).

use std::path::Path;

use axum::http::{header, HeaderMap};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use subtle::ConstantTimeEq;
use thiserror::Error;

use crate::hub::ChannelName;

/// Clock skew tolerated on `exp` by default, in seconds.
pub const LEEWAY_SECONDS: u64 = 10;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    #[error(
        "a token is required: send Authorization: Bearer TOKEN, ?token= or a herald_token cookie"
    )]
    Missing,
    #[error("the token has expired")]
    Expired,
    #[error("the token is not valid: {0}")]
    Invalid(String),
    #[error("the token does not allow {action} on channel {channel:?}")]
    Forbidden {
        action: &'static str,
        channel: String,
    },
    #[error("channel {channel:?} takes no publishes from clients (client_publish = false)")]
    NoClientPublish { channel: String },
}

/// Why the auth settings could not be loaded.
#[derive(Debug, Error)]
pub enum AuthSetupError {
    #[error("cannot read the JWT public key {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{0} holds neither an RSA nor an EC public key in PEM form")]
    BadKey(String),
}

/// A key that verifies subscriber tokens.
#[derive(Clone)]
pub struct JwtKey {
    key: DecodingKey,
    algorithm: Algorithm,
}

impl std::fmt::Debug for JwtKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "JwtKey({:?})", self.algorithm)
    }
}

impl JwtKey {
    /// HS256 with a shared secret.
    pub fn secret(secret: &str) -> Self {
        Self {
            key: DecodingKey::from_secret(secret.as_bytes()),
            algorithm: Algorithm::HS256,
        }
    }

    /// RS256 or ES256, from a PEM public key file.
    pub fn public_key_file(path: &Path) -> Result<Self, AuthSetupError> {
        let pem = std::fs::read(path).map_err(|source| AuthSetupError::Read {
            path: path.display().to_string(),
            source,
        })?;
        if let Ok(key) = DecodingKey::from_rsa_pem(&pem) {
            return Ok(Self {
                key,
                algorithm: Algorithm::RS256,
            });
        }
        if let Ok(key) = DecodingKey::from_ec_pem(&pem) {
            return Ok(Self {
                key,
                algorithm: Algorithm::ES256,
            });
        }
        Err(AuthSetupError::BadKey(path.display().to_string()))
    }

    pub fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

/// The patterns a token grants.
#[derive(Debug, Clone, Default, Deserialize, PartialEq, Eq)]
pub struct Grants {
    #[serde(default)]
    pub subscribe: Vec<String>,
    #[serde(default)]
    pub publish: Vec<String>,
    /// Shown with the subject in presence (`herald.info`: any JSON).
    #[serde(default)]
    pub info: Option<serde_json::Value>,
}

/// The claims herald reads from a token.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct Claims {
    pub exp: u64,
    #[serde(default)]
    pub sub: Option<String>,
    #[serde(default)]
    pub herald: Grants,
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// No token (allowed only where auth is off).
    Anonymous,
    /// The publish key: may publish and subscribe anywhere.
    PublishKey,
    /// A verified token; `valid_until` is `exp` plus the leeway, in Unix seconds.
    Token { claims: Claims, valid_until: u64 },
}

impl Credential {
    /// Unix time at which this credential stops being valid, if it does.
    pub fn expires_at(&self) -> Option<u64> {
        match self {
            Self::Token { valid_until, .. } => Some(*valid_until),
            _ => None,
        }
    }

    /// The token's `herald.info` claim, for presence.
    pub fn info(&self) -> Option<&serde_json::Value> {
        match self {
            Self::Token { claims, .. } => claims.herald.info.as_ref(),
            _ => None,
        }
    }

    /// The token's subject, for logs and presence.
    pub fn subject(&self) -> Option<&str> {
        match self {
            Self::Token { claims, .. } => claims.sub.as_deref(),
            _ => None,
        }
    }
}

pub use crate::hub::pattern_matches;

/// The auth settings of a server.
#[derive(Debug, Clone)]
pub struct Auth {
    pub publish_key: Option<String>,
    pub jwt: Option<JwtKey>,
    /// Seconds of clock skew tolerated on `exp`.
    pub leeway: u64,
}

impl Default for Auth {
    fn default() -> Self {
        Self {
            publish_key: None,
            jwt: None,
            leeway: LEEWAY_SECONDS,
        }
    }
}

impl Auth {
    /// Authenticates the token `headers` or `query_token` carry.
    pub fn identify(
        &self,
        headers: &HeaderMap,
        query_token: Option<&str>,
    ) -> Result<Credential, AuthError> {
        self.authenticate(Self::token(headers, query_token))
    }

    /// Whether any auth is configured.
    pub fn enabled(&self) -> bool {
        self.publish_key.is_some() || self.jwt.is_some()
    }

    /// The token a request carries: `Authorization: Bearer`, then `?token=`, then the cookie.
    pub fn token<'a>(headers: &'a HeaderMap, query_token: Option<&'a str>) -> Option<&'a str> {
        let bearer = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        let cookie = || {
            headers
                .get_all(header::COOKIE)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .flat_map(|v| v.split(';'))
                .filter_map(|pair| pair.trim().strip_prefix("herald_token="))
                .next()
        };
        bearer
            .or(query_token)
            .or_else(cookie)
            .filter(|t| !t.is_empty())
    }

    /// Checks a token, if any, against the publish key and the JWT key.
    pub fn authenticate(&self, token: Option<&str>) -> Result<Credential, AuthError> {
        let Some(token) = token.filter(|_| self.enabled()) else {
            return Ok(Credential::Anonymous);
        };
        if let Some(key) = &self.publish_key {
            if bool::from(key.as_bytes().ct_eq(token.as_bytes())) {
                return Ok(Credential::PublishKey);
            }
        }
        let Some(jwt) = &self.jwt else {
            return Err(AuthError::Invalid("not the publish key".into()));
        };
        let mut validation = Validation::new(jwt.algorithm);
        validation.leeway = self.leeway;
        validation.set_required_spec_claims(&["exp"]);
        validation.validate_aud = false;
        match jsonwebtoken::decode::<Claims>(token, &jwt.key, &validation) {
            Ok(data) => Ok(Credential::Token {
                valid_until: data.claims.exp + self.leeway,
                claims: data.claims,
            }),
            Err(e) => match e.kind() {
                jsonwebtoken::errors::ErrorKind::ExpiredSignature => Err(AuthError::Expired),
                _ => Err(AuthError::Invalid(e.to_string())),
            },
        }
    }

    /// May `who` subscribe to `channel`?
    pub fn may_subscribe(&self, who: &Credential, channel: &ChannelName) -> Result<(), AuthError> {
        if self.jwt.is_none() {
            return Ok(());
        }
        match who {
            Credential::PublishKey => Ok(()),
            Credential::Anonymous => Err(AuthError::Missing),
            Credential::Token { claims, .. } => {
                covered(&claims.herald.subscribe, "subscribe", channel)
            }
        }
    }

    /// May `who` publish to `channel`?
    pub fn may_publish(&self, who: &Credential, channel: &ChannelName) -> Result<(), AuthError> {
        if !self.enabled() {
            return Ok(());
        }
        match who {
            Credential::PublishKey => Ok(()),
            Credential::Anonymous => Err(AuthError::Missing),
            Credential::Token { claims, .. } => covered(&claims.herald.publish, "publish", channel),
        }
    }
}

fn covered(
    patterns: &[String],
    action: &'static str,
    channel: &ChannelName,
) -> Result<(), AuthError> {
    if patterns
        .iter()
        .any(|p| pattern_matches(p, channel.as_str()))
    {
        Ok(())
    } else {
        Err(AuthError::Forbidden {
            action,
            channel: channel.as_str().to_owned(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(pattern_matches("*", "anything"));
        assert!(pattern_matches("chat.*", "chat.room1"));
        assert!(!pattern_matches("chat.*", "chatroom"));
        assert!(pattern_matches("user.*.inbox", "user.42.inbox"));
        assert!(!pattern_matches("user.*.inbox", "user.42.outbox"));
        assert!(pattern_matches("news", "news"));
        assert!(!pattern_matches("news", "news2"));
        assert!(pattern_matches("*.alerts", "eu.alerts"));
    }
}
