//! Event streams served straight from the socket, without hyper.
//!
//! hyper keeps a read buffer and a write buffer (8 KiB each) for as long as
//! an HTTP/1 connection lives, and an SSE response lives as long as its
//! subscriber: two thirds of an idle stream's memory. So the accept loop
//! peeks at a connection's first request head; when it is a plain
//! `GET /sub/...` asking for Server-Sent Events, the head is parsed here, the
//! request goes through the same router (CORS, auth, limits, errors), and
//! the response is written by this small HTTP/1.1 writer: the head, then each
//! chunk of the body as it comes, straight to the connection (TCP, or TLS
//! with HTTP/1.1 chosen by ALPN: [`Stream`]). Everything else (WebSocket
//! upgrades, publishes, long polls, HTTP/2, a head that did not arrive in
//! one piece) is left untouched for hyper.

use std::collections::HashMap;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::{ConnectInfo, Query};
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::response::Response;
use axum::Router;
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tower::ServiceExt;

use super::server::MAX_HEADERS;
use super::stream::Stream;
use super::subscribe::{transport_kind, TransportKind};
use crate::config::ServerConfig;

/// What the first bytes of a connection turned out to be.
pub enum Opening {
    /// An SSE subscription, its head already read from the socket.
    EventStream(Box<Request<Body>>),
    /// Anything else, nothing read: hyper serves the connection.
    Other,
    /// Nothing arrived in time, or the peer left: close.
    Gone,
}

/// Peeks at the first request head on `stream` and takes it only if it asks
/// for an event stream.
pub async fn open(stream: &mut Stream, peer: SocketAddr, config: &ServerConfig) -> Opening {
    let mut buf = vec![0u8; config.max_header_bytes.clamp(1024, 64 * 1024)];
    // The same deadline hyper applies to a head; a slower head that started
    // arriving in time gets hyper's own deadline after this one.
    let peeked = match tokio::time::timeout(config.header_read_timeout, stream.peek(&mut buf)).await
    {
        Ok(Ok(n)) if n > 0 => n,
        Ok(Ok(_)) => return Opening::Gone,
        Ok(Err(error)) => {
            tracing::debug!(%peer, %error, "connection failed before its first request");
            return Opening::Gone;
        }
        Err(_) => {
            tracing::debug!(%peer, "no request head in time");
            return Opening::Gone;
        }
    };
    let Some((request, length)) = event_stream_request(&buf[..peeked], peer) else {
        return Opening::Other;
    };
    // The head is in the socket's receive queue, so this does not wait.
    match stream.read_exact(&mut buf[..length]).await {
        Ok(_) => Opening::EventStream(Box::new(request)),
        Err(_) => Opening::Gone,
    }
}

/// The request in `bytes` and its head's length, if it is a complete
/// HTTP/1.x `GET /sub/...` for Server-Sent Events with no body.
fn event_stream_request(bytes: &[u8], peer: SocketAddr) -> Option<(Request<Body>, usize)> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    let length = match head.parse(bytes) {
        Ok(httparse::Status::Complete(length)) => length,
        // Partial, too many headers, malformed: hyper gives the answer.
        _ => return None,
    };
    if head.method? != "GET" || !head.path?.starts_with("/sub/") {
        return None;
    }
    let version = match head.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    let uri = Uri::try_from(head.path?).ok()?;
    let mut map = HeaderMap::with_capacity(head.headers.len());
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        map.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    let has_body = map.contains_key(header::TRANSFER_ENCODING)
        || map
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() != b"0");
    if has_body || map.contains_key(header::UPGRADE) {
        return None;
    }
    let query = Query::<HashMap<String, String>>::try_from_uri(&uri).ok()?.0;
    if !matches!(transport_kind(&map, &query), Ok(TransportKind::EventStream)) {
        return None;
    }
    let mut request = Request::new(Body::empty());
    *request.method_mut() = Method::GET;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    request.extensions_mut().insert(ConnectInfo(peer));
    Some((request, length))
}

/// Whether hyper may go on serving the connection after this response.
pub enum After {
    KeepAlive,
    Close,
}

/// Answers `request` through `app` and writes the response to `stream`.
pub async fn serve(stream: &mut Stream, app: Router, request: Box<Request<Body>>) -> After {
    let version = request.version();
    let client_closes = version == Version::HTTP_10
        || request
            .headers()
            .get(header::CONNECTION)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("close"));
    let response = match app.oneshot(*request).await {
        Ok(response) => response,
        Err(never) => match never {},
    };
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let written = if streaming {
        write_stream(stream, response, version == Version::HTTP_11).await
    } else {
        write_whole(stream, response, client_closes).await
    };
    match written {
        Ok(After::KeepAlive) if !client_closes => After::KeepAlive,
        _ => {
            let _ = stream.shutdown().await;
            After::Close
        }
    }
}

/// Largest non-streaming body buffered here (errors are a few hundred bytes).
const MAX_WHOLE_BODY: usize = 1024 * 1024;

/// The status line and headers, with the framing headers this writer owns.
fn head(response: &Response, framing: &[(&str, &str)]) -> Vec<u8> {
    let status = response.status();
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"HTTP/1.1 ");
    out.extend_from_slice(status.as_str().as_bytes());
    out.push(b' ');
    out.extend_from_slice(status.canonical_reason().unwrap_or("").as_bytes());
    out.extend_from_slice(b"\r\n");
    for (name, value) in response.headers() {
        // Framing is this writer's: never trust a handler's copy of it.
        if name == header::CONTENT_LENGTH
            || name == header::TRANSFER_ENCODING
            || name == header::CONNECTION
        {
            continue;
        }
        push_header(&mut out, name.as_str(), value.as_bytes());
    }
    for (name, value) in framing {
        push_header(&mut out, name, value.as_bytes());
    }
    // RFC 9110 §6.6.1: an origin server with a clock sends Date.
    let date = httpdate::fmt_http_date(SystemTime::now());
    push_header(&mut out, "date", date.as_bytes());
    out.extend_from_slice(b"\r\n");
    out
}

fn push_header(out: &mut Vec<u8>, name: &str, value: &[u8]) {
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b": ");
    out.extend_from_slice(value);
    out.extend_from_slice(b"\r\n");
}

/// A response whose body is complete in memory (errors, mostly).
async fn write_whole(
    stream: &mut Stream,
    response: Response,
    client_closes: bool,
) -> std::io::Result<After> {
    let (parts, body) = response.into_parts();
    let body = tokio::time::timeout(
        Duration::from_secs(60),
        axum::body::to_bytes(body, MAX_WHOLE_BODY),
    )
    .await
    .map_err(|_| std::io::Error::other("response body took too long"))?
    .map_err(std::io::Error::other)?;
    let response = Response::from_parts(parts, Body::empty());
    let length = body.len().to_string();
    let connection = if client_closes { "close" } else { "keep-alive" };
    let head = head(
        &response,
        &[("content-length", &length), ("connection", connection)],
    );
    write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&body)]).await?;
    Ok(After::KeepAlive)
}

/// An event stream: chunked for HTTP/1.1, close-delimited for HTTP/1.0,
/// always the connection's last response.
async fn write_stream(
    stream: &mut Stream,
    response: Response,
    chunked: bool,
) -> std::io::Result<After> {
    let framing: &[(&str, &str)] = if chunked {
        &[("transfer-encoding", "chunked"), ("connection", "close")]
    } else {
        &[("connection", "close")]
    };
    let (parts, body) = response.into_parts();
    let head = head(&Response::from_parts(parts, Body::empty()), framing);
    let mut body = body.into_data_stream();
    // The head goes out with the first chunk (the stream's retry and id
    // lines are ready at once), in one write.
    let mut pending_head = Some(head);
    // A client says nothing on an event stream; reading only notices when
    // it leaves, so its subscription ends then rather than at the next write.
    let mut scratch = [0u8; 64];
    loop {
        let next = tokio::select! {
            chunk = body.next() => Next::Chunk(chunk),
            read = stream.read(&mut scratch) => Next::Read(read),
        };
        let chunk = match next {
            Next::Read(Ok(0) | Err(_)) => return Ok(After::Close),
            Next::Read(Ok(_)) => continue,
            Next::Chunk(None) => {
                let head = pending_head.take().unwrap_or_default();
                let last: &[u8] = if chunked { b"0\r\n\r\n" } else { b"" };
                write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(last)]).await?;
                return Ok(After::Close);
            }
            Next::Chunk(Some(Err(error))) => return Err(std::io::Error::other(error)),
            Next::Chunk(Some(Ok(chunk))) if chunk.is_empty() => continue,
            Next::Chunk(Some(Ok(chunk))) => chunk,
        };
        let head = pending_head.take().unwrap_or_default();
        if chunked {
            let size = format!("{:X}\r\n", chunk.len());
            write_all(
                stream,
                &mut [
                    IoSlice::new(&head),
                    IoSlice::new(size.as_bytes()),
                    IoSlice::new(&chunk),
                    IoSlice::new(b"\r\n"),
                ],
            )
            .await?;
        } else {
            write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&chunk)]).await?;
        }
    }
}

enum Next {
    Chunk(Option<Result<Bytes, axum::Error>>),
    Read(std::io::Result<usize>),
}

/// Writes every slice, in as few system calls as the kernel allows.
async fn write_all(stream: &mut Stream, mut parts: &mut [IoSlice<'_>]) -> std::io::Result<()> {
    IoSlice::advance_slices(&mut parts, 0);
    while !parts.is_empty() {
        let n = stream.write_vectored(parts).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        IoSlice::advance_slices(&mut parts, n);
    }
    // TLS keeps what the socket would not take yet: send it now, not with
    // the next event.
    stream.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], 1))
    }

    #[test]
    fn takes_only_complete_event_stream_gets() {
        let sse = b"GET /sub/a?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\nrest";
        let (request, length) = event_stream_request(sse, peer()).expect("an SSE request");
        assert_eq!(length, sse.len() - 4);
        assert_eq!(request.uri().path(), "/sub/a");
        assert_eq!(request.headers()["host"], "h");
        let by_query = b"GET /sub/a?transport=sse HTTP/1.0\r\n\r\n";
        let (request, _) = event_stream_request(by_query, peer()).expect("?transport=sse");
        assert_eq!(request.version(), Version::HTTP_10);
        for other in [
            &b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\n"[..],
            b"GET /sub/a HTTP/1.1\r\n\r\n",
            b"POST /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            b"GET /pub/a HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\nUpgrade: websocket\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 3\r\n\r\nabc",
            b"GET /sub/a?transport=poll HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\nBad\x01Name: v\r\n\r\n",
        ] {
            assert!(
                event_stream_request(other, peer()).is_none(),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
