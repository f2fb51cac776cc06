//! The two secrets a backend shares with herald: the JWT secret it mints
//! subscriber tokens with (`--jwt-secret`), and the webhook secret herald
//! signs its calls with (`--webhook-secret`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes a key of any length")
}

/// An HS256 JWT for a herald started with `--jwt-secret`, built up then
/// [signed](Token::sign): `sub` names the user (logs, presence), the
/// `subscribe` and `publish` channel patterns (`*` a wildcard) say what it
/// may do, and it expires after `ttl` (an hour unless set).
///
/// ```
/// let token = herald_client::Token::new("user-42")
///     .subscribe(["news", "user.42.*"])
///     .publish(["chat.*"])
///     .sign("JWT_SECRET");
/// assert_eq!(token.split('.').count(), 3);
/// ```
#[derive(Debug, Clone)]
#[must_use = "a token is only useful once signed"]
pub struct Token {
    sub: Option<String>,
    subscribe: Vec<String>,
    publish: Vec<String>,
    ttl: Duration,
    info: Option<Value>,
}

impl Token {
    /// A token for user `sub`, allowed nothing yet.
    pub fn new(sub: impl Into<String>) -> Self {
        Self {
            sub: Some(sub.into()),
            ..Self::anonymous()
        }
    }

    /// A token naming no user.
    pub fn anonymous() -> Self {
        Self {
            sub: None,
            subscribe: Vec::new(),
            publish: Vec::new(),
            ttl: Duration::from_secs(3600),
            info: None,
        }
    }

    /// Channel patterns the holder may subscribe to.
    pub fn subscribe<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.subscribe.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// Channel patterns the holder may publish to.
    pub fn publish<I: IntoIterator<Item = S>, S: Into<String>>(mut self, patterns: I) -> Self {
        self.publish.extend(patterns.into_iter().map(Into::into));
        self
    }

    /// How long until it expires (`exp`).
    pub fn ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// Any JSON, shown beside the user in presence (`herald.info`).
    pub fn info(mut self, info: Value) -> Self {
        self.info = Some(info);
        self
    }

    /// The claims as herald reads them, `exp` counted from `now`.
    fn claims(&self, now: SystemTime) -> Value {
        let exp = now
            .checked_add(self.ttl)
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(0, |d| d.as_secs());
        let mut herald = json!({ "subscribe": self.subscribe, "publish": self.publish });
        if let Some(info) = &self.info {
            herald["info"] = info.clone();
        }
        let mut claims = json!({ "exp": exp, "herald": herald });
        if let Some(sub) = &self.sub {
            claims["sub"] = sub.as_str().into();
        }
        claims
    }

    /// The signed token (`header.claims.signature`).
    pub fn sign(&self, secret: impl AsRef<[u8]>) -> String {
        // HS256 is one HMAC over two base64url JSON parts (RFC 7519): not
        // worth a JWT library.
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let claims = URL_SAFE_NO_PAD.encode(self.claims(SystemTime::now()).to_string());
        let signed = format!("{header}.{claims}");
        let mut mac = mac(secret.as_ref());
        mac.update(signed.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signed}.{signature}")
    }
}

/// Whether `signature_header` (the `X-Herald-Signature` header,
/// `sha256=<hex>`) is herald's HMAC-SHA256 of the raw `body` under `secret`.
/// Pass the body exactly as received, before parsing it; the comparison
/// takes constant time.
pub fn verify_webhook(
    secret: impl AsRef<[u8]>,
    body: impl AsRef<[u8]>,
    signature_header: Option<&str>,
) -> bool {
    let Some(hex) = signature_header
        .and_then(|h| h.trim().strip_prefix("sha256="))
        .map(str::trim)
    else {
        return false;
    };
    if hex.len() != 64 || !hex.is_ascii() {
        return false;
    }
    let mut expected = [0u8; 32];
    for (i, byte) in expected.iter_mut().enumerate() {
        match u8::from_str_radix(&hex[2 * i..2 * i + 2], 16) {
            Ok(value) => *byte = value,
            Err(_) => return false,
        }
    }
    let mut mac = mac(secret.as_ref());
    mac.update(body.as_ref());
    mac.verify_slice(&expected).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 4231-style known answer: HMAC-SHA256("key", "The quick brown fox...").
    const FOX: &str = "The quick brown fox jumps over the lazy dog";
    const FOX_MAC: &str = "f7bc83f430538424b13298e6aa6fb143ef4d59a14946175997479dbc2d1a3cd8";

    #[test]
    fn webhook_signatures_are_checked_against_the_raw_body() {
        assert!(verify_webhook(
            "key",
            FOX,
            Some(&format!("sha256={FOX_MAC}"))
        ));
        assert!(verify_webhook(
            "key",
            FOX,
            Some(&format!("sha256={}", FOX_MAC.to_uppercase()))
        ));
        assert!(!verify_webhook(
            "key",
            format!("{FOX}."),
            Some(&format!("sha256={FOX_MAC}"))
        ));
        assert!(!verify_webhook(
            "other",
            FOX,
            Some(&format!("sha256={FOX_MAC}"))
        ));
        assert!(!verify_webhook("key", FOX, Some(FOX_MAC)));
        assert!(!verify_webhook("key", FOX, Some("sha256=zz")));
        assert!(!verify_webhook("key", FOX, None));
    }

    #[test]
    fn tokens_are_hs256_over_herald_claims() {
        let token = Token::new("user-42")
            .subscribe(["news"])
            .publish(["chat.*"])
            .info(json!({"name": "Ada"}))
            .sign("key");
        let parts: Vec<&str> = token.split('.').collect();
        assert_eq!(parts.len(), 3);
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header, json!({"alg": "HS256", "typ": "JWT"}));
        let claims: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[1]).unwrap()).unwrap();
        assert_eq!(claims["sub"], "user-42");
        assert_eq!(claims["herald"]["subscribe"], json!(["news"]));
        assert_eq!(claims["herald"]["publish"], json!(["chat.*"]));
        assert_eq!(claims["herald"]["info"]["name"], "Ada");
        let mut mac = mac(b"key");
        mac.update(format!("{}.{}", parts[0], parts[1]).as_bytes());
        assert_eq!(
            parts[2],
            URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
        );

        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        let claims = Token::anonymous().ttl(Duration::from_secs(60)).claims(at);
        assert_eq!(claims["exp"], 1_060);
        assert!(claims.get("sub").is_none());
    }
}
