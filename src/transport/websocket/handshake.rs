//! The server's half of the RFC 6455 opening handshake (§4.2), answered by
//! herald itself rather than a library: the request is checked, the
//! `Sec-WebSocket-Accept` value derived, and the connection taken over
//! from hyper once the `101 Switching Protocols` answer has gone out.

use std::future::Future;

use axum::http::request::Parts;
use axum::http::{header, HeaderValue, Method, StatusCode, Version};
use axum::response::Response;
use base64::Engine as _;
use hyper::upgrade::OnUpgrade;
use sha1::{Digest, Sha1};

use super::WebSocket;
use crate::error::ApiError;
use crate::limits::ConnectionSlot;
use crate::transport::Context;

/// The GUID every server appends to the client's key (RFC 6455 §1.3).
const GUID: &[u8] = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11";

/// A checked opening handshake: the accept value, the connection to take
/// over, and whether the client offered permessage-deflate.
pub struct Handshake {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
    deflate_offered: bool,
    /// The connection's place under `--max-connections`, kept by the WebSocket task.
    slot: Option<ConnectionSlot>,
}

impl Handshake {
    /// Checks that `parts` is a WebSocket opening handshake (§4.2.1) and
    /// takes its connection; a bad one is a 400 `bad_websocket_upgrade`.
    pub fn check(parts: &mut Parts) -> Result<Self, ApiError> {
        let accept = accept_key(parts)?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or_else(|| bad_upgrade("this connection cannot be upgraded"))?;
        let extensions = parts.headers.get_all(header::SEC_WEBSOCKET_EXTENSIONS);
        let deflate_offered =
            super::deflate::offered(extensions.iter().filter_map(|v| v.to_str().ok()));
        let slot = parts.extensions.get::<ConnectionSlot>().cloned();
        Ok(Self {
            accept,
            on_upgrade,
            deflate_offered,
            slot,
        })
    }

    /// Answers `101 Switching Protocols` and, once hyper hands the
    /// connection over, runs `serve` on it as its own task, with the
    /// server's message size limit and shutdown signal; with
    /// permessage-deflate when the client offered it and the server allows it.
    pub fn accept<F, Fut>(self, ctx: &Context, serve: F) -> Response
    where
        F: FnOnce(WebSocket) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let Self {
            accept,
            on_upgrade,
            deflate_offered,
            slot,
        } = self;
        let deflate = deflate_offered && ctx.config.ws_compression;
        let max_message = super::max_message(&ctx.channels);
        let shutdown = ctx.shutdown.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match on_upgrade.await {
                Ok(upgraded) => {
                    if deflate {
                        crate::telemetry::ws_compressed();
                    }
                    serve(WebSocket::new(upgraded, max_message, shutdown, deflate)).await
                }
                Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
            }
        });
        let mut response = Response::new(axum::body::Body::empty());
        *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        let headers = response.headers_mut();
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
        if deflate {
            headers.insert(
                header::SEC_WEBSOCKET_EXTENSIONS,
                HeaderValue::from_static(super::deflate::RESPONSE),
            );
        }
        response
    }
}

fn bad_upgrade(why: &str) -> ApiError {
    ApiError::bad_request("bad_websocket_upgrade", why.to_owned())
}

/// Validates an RFC 6455 opening handshake (§4.2.1) and returns the
/// `Sec-WebSocket-Accept` value that answers it.
pub fn accept_key(parts: &Parts) -> Result<HeaderValue, ApiError> {
    let has_token = |name: header::HeaderName, token: &str| {
        parts
            .headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .any(|t| t.trim().eq_ignore_ascii_case(token))
    };
    if parts.method != Method::GET {
        return Err(bad_upgrade("a WebSocket opening handshake is a GET"));
    }
    if parts.version != Version::HTTP_11 {
        return Err(bad_upgrade("a WebSocket upgrade needs HTTP/1.1"));
    }
    if !has_token(header::CONNECTION, "upgrade") {
        return Err(bad_upgrade("Connection header did not include 'upgrade'"));
    }
    if !has_token(header::UPGRADE, "websocket") {
        return Err(bad_upgrade("`Upgrade` header did not include 'websocket'"));
    }
    if parts
        .headers
        .get(header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|v| v.as_bytes() != b"13")
    {
        return Err(bad_upgrade(
            "`Sec-WebSocket-Version` header did not include '13'",
        ));
    }
    let key = parts
        .headers
        .get(header::SEC_WEBSOCKET_KEY)
        .ok_or_else(|| bad_upgrade("`Sec-WebSocket-Key` header missing"))?;
    HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
        .map_err(|_| bad_upgrade("bad `Sec-WebSocket-Key`"))
}

/// `Sec-WebSocket-Accept` for a client's `Sec-WebSocket-Key`: the base64 of
/// the SHA-1 of the key followed by the GUID (§4.2.2).
pub fn derive_accept_key(key: &[u8]) -> String {
    let mut sha1 = Sha1::new();
    sha1.update(key);
    sha1.update(GUID);
    base64::engine::general_purpose::STANDARD.encode(sha1.finalize())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_example_key_gives_the_rfc_accept_value() {
        // RFC 6455 §1.3.
        assert_eq!(
            derive_accept_key(b"dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
    }

    fn parts(request: axum::http::request::Builder) -> Parts {
        request.body(()).unwrap().into_parts().0
    }

    fn upgrade() -> axum::http::request::Builder {
        axum::http::Request::get("/ws")
            .header("connection", "keep-alive, Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==")
    }

    #[test]
    fn a_handshake_missing_any_part_is_refused() {
        assert!(accept_key(&parts(upgrade())).is_ok());
        let mut refused = vec![
            ("a POST", parts(upgrade().method(Method::POST))),
            ("HTTP/1.0", parts(upgrade().version(Version::HTTP_10))),
        ];
        for name in [
            "connection",
            "upgrade",
            "sec-websocket-version",
            "sec-websocket-key",
        ] {
            let mut without = parts(upgrade());
            without.headers.remove(name);
            refused.push((name, without));
        }
        let mut old = parts(upgrade());
        old.headers
            .insert("sec-websocket-version", HeaderValue::from_static("8"));
        refused.push(("version 8", old));
        for (case, parts) in refused {
            let error = accept_key(&parts).expect_err(case);
            assert_eq!(error.code(), "bad_websocket_upgrade", "{case}");
        }
    }
}
