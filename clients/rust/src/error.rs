//! The one error type: what herald refused (with its JSON `code`), or why
//! it could not be asked.

use thiserror::Error;

/// A failed call.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum Error {
    /// herald answered with an error: `code` is its snake_case code
    /// (`bad_channel`, `unauthorized`, `forbidden`...); `status` the HTTP
    /// status, `None` for an error frame on `/ws`.
    #[error("herald refused: {}{code}: {message}", status.map(|s| format!("{s} ")).unwrap_or_default())]
    Herald {
        status: Option<u16>,
        code: String,
        message: String,
    },
    /// The HTTP request failed (connection refused, timeout...).
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// The WebSocket failed in a way a retry cannot fix.
    #[error("WebSocket: {0}")]
    WebSocket(Box<tokio_tungstenite::tungstenite::Error>),
    /// herald answered something this client does not understand.
    #[error("unexpected answer from herald: {0}")]
    Protocol(String),
    /// The URL or an argument cannot work.
    #[error("{0}")]
    Usage(String),
}

impl Error {
    /// herald's error code, when herald answered with one.
    pub fn code(&self) -> Option<&str> {
        match self {
            Self::Herald { code, .. } => Some(code),
            _ => None,
        }
    }

    /// The HTTP status herald answered with, if any.
    pub fn status(&self) -> Option<u16> {
        match self {
            Self::Herald { status, .. } => *status,
            Self::Http(error) => error.status().map(|s| s.as_u16()),
            _ => None,
        }
    }

    /// Reads herald's `{"error": {"code", "message"}}`; anything else (a
    /// proxy's HTML page, say) becomes code `http_error`.
    pub(crate) fn from_body(status: u16, body: &[u8]) -> Self {
        let parsed: Option<(String, String)> = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| {
                let error = v.get("error")?;
                Some((
                    error.get("code")?.as_str()?.to_owned(),
                    error
                        .get("message")
                        .and_then(|m| m.as_str())
                        .unwrap_or_default()
                        .to_owned(),
                ))
            });
        let (code, message) = parsed.unwrap_or_else(|| {
            let text = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
            let text = if text.is_empty() {
                format!("HTTP {status}")
            } else {
                text
            };
            ("http_error".to_owned(), text)
        });
        Self::Herald {
            status: Some(status),
            code,
            message,
        }
    }
}

impl From<tokio_tungstenite::tungstenite::Error> for Error {
    fn from(error: tokio_tungstenite::tungstenite::Error) -> Self {
        Self::WebSocket(Box::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::Error;

    #[test]
    fn herald_error_bodies_give_their_code_and_others_http_error() {
        let error = Error::from_body(
            400,
            br#"{"error":{"code":"bad_channel","message":"bad channel name"}}"#,
        );
        assert_eq!(error.code(), Some("bad_channel"));
        assert_eq!(error.status(), Some(400));
        assert_eq!(
            error.to_string(),
            "herald refused: 400 bad_channel: bad channel name"
        );
        let proxy = Error::from_body(502, b"<html>bad gateway</html>");
        assert_eq!(proxy.code(), Some("http_error"));
        assert_eq!(
            Error::from_body(503, b"").to_string(),
            "herald refused: 503 http_error: HTTP 503"
        );
    }
}
