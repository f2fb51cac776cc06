//! The command-line clients: `herald pub` and `herald sub`.

pub mod subscribe;

use std::io::Read;

use serde_json::Value;
use thiserror::Error;

use crate::config::cli::PubArgs;

/// Why a client command failed.
#[derive(Debug, Error)]
pub enum ClientError {
    #[error("could not reach {url}: {source}")]
    Connect { url: String, source: reqwest::Error },
    #[error("the server answered {status}: {body}")]
    Refused { status: u16, body: String },
    #[error("WebSocket: {0}")]
    WebSocket(#[from] tokio_tungstenite::tungstenite::Error),
    #[error("{0}")]
    Protocol(String),
    #[error("reading standard input: {0}")]
    Stdin(#[from] std::io::Error),
    #[error("bad URL {0:?}: use http://host:port")]
    BadUrl(String),
}

/// Trims the trailing slash so paths can be appended.
pub fn base_url(url: &str) -> Result<String, ClientError> {
    let url = url.trim_end_matches('/');
    if url.starts_with("http://") || url.starts_with("https://") {
        Ok(url.to_owned())
    } else {
        Err(ClientError::BadUrl(url.to_owned()))
    }
}

/// Publishes one message and returns the server's answer.
pub async fn publish(args: PubArgs) -> Result<Value, ClientError> {
    let base = base_url(&args.url)?;
    let data = if args.data == "-" {
        let mut buf = Vec::new();
        std::io::stdin().read_to_end(&mut buf)?;
        buf
    } else {
        args.data.into_bytes()
    };
    let url = format!("{base}/pub/{}", args.channel);
    let mut request = reqwest::Client::new().post(&url).body(data);
    if let Some(event) = &args.event {
        request = request.query(&[("event", event)]);
    }
    if let Some(key) = &args.key {
        request = request.bearer_auth(key);
    }
    let response = request
        .send()
        .await
        .map_err(|source| ClientError::Connect {
            url: url.clone(),
            source,
        })?;
    let status = response.status();
    let body = response
        .text()
        .await
        .map_err(|source| ClientError::Connect { url, source })?;
    if !status.is_success() {
        return Err(ClientError::Refused {
            status: status.as_u16(),
            body,
        });
    }
    serde_json::from_str(&body)
        .map_err(|e| ClientError::Protocol(format!("unexpected answer {body:?}: {e}")))
}
