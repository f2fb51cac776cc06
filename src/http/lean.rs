//! HTTP/1 requests served straight from the socket, without hyper.
//!
//! Three kinds of request make up nearly all of a push server's HTTP work:
//! Server-Sent Events subscriptions, publishes and long polls. For them,
//! hyper's per-connection machinery (its dispatcher, a read and a write
//! buffer of 8 KiB each for as long as the connection lives) costs more than
//! the request itself: two thirds of an idle event stream's memory, and a
//! large share of the CPU of a publish or a long poll. So the accept loop
//! hands an HTTP/1 connection here first. Each request head is read into a
//! small per-connection buffer; when it is one of the three, with no body
//! or a body of known length (at most [`MAX_BODY`]), it goes through the
//! same router (CORS, auth, limits, errors) as any other, and its response
//! is written by the small HTTP/1.1 writer below, keep-alive and
//! pipelining included. At the first request that is anything else (a
//! WebSocket upgrade, any other endpoint, a chunked body, `Expect:
//! 100-continue`, an over-long head), what was read of it is put back in
//! front of the stream ([`Stream::unread`]) and hyper serves the connection
//! from there on, starting with that request. Works on TCP and on TLS with
//! HTTP/1.1 chosen by ALPN; HTTP/2 never comes here.

use std::io::IoSlice;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use axum::body::Body;
use axum::extract::ConnectInfo;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, Method, Request, Uri, Version};
use axum::response::{IntoResponse, Response};
use axum::Router;
use bytes::{Buf, Bytes, BytesMut};
use futures_util::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use super::dispatch::{self, Route};
use super::server::MAX_HEADERS;
use super::stream::Stream;
use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::limits::ConnectionSlot;
use crate::transport::Context;

/// Largest request body read here; a larger one (a big batch) is hyper's.
pub const MAX_BODY: usize = 1024 * 1024;

/// What is left of a connection when this path is done with it.
pub enum Served {
    /// A request this path does not take is waiting, unread: hyper serves
    /// the connection from here.
    Hyper,
    /// The connection is finished (closed by either side, timed out, or
    /// its last response written).
    Closed,
}

/// One connection's context, as hyper's requests get it.
pub struct Peer<'a> {
    pub addr: SocketAddr,
    pub ctx: &'a Context,
    pub slot: &'a ConnectionSlot,
    pub config: &'a ServerConfig,
    pub shutdown: &'a CancellationToken,
}

/// Serves requests on `stream` for as long as they are ones this path
/// takes. The first head must arrive within the header read timeout, as
/// hyper requires; so must each next one on a kept-alive connection (hyper
/// closes idle connections the same way), and an idle connection is closed
/// at shutdown.
pub async fn serve(stream: &mut Stream, app: &Router, peer: Peer<'_>) -> Served {
    // The same limit as hyper's read buffer, so that a head too long for
    // one is too long for the other (hyper answers it 431).
    let limit = peer.config.max_header_bytes.max(8192);
    let mut buf = BytesMut::new();
    let mut first = true;
    loop {
        let deadline = tokio::time::Instant::now() + peer.config.header_read_timeout;
        // Read until a whole head is in `buf`.
        let taken = loop {
            match take(&buf, limit, peer.addr) {
                Head::Taken(taken) => break *taken,
                Head::Other => {
                    stream.unread(buf);
                    return Served::Hyper;
                }
                Head::Partial if buf.len() >= limit => {
                    // Too long a head: hyper answers it.
                    stream.unread(buf);
                    return Served::Hyper;
                }
                Head::Partial => {}
            }
            if buf.capacity() - buf.len() < 1024 {
                buf.reserve(READ_CHUNK);
            }
            let read = tokio::select! {
                read = tokio::time::timeout_at(deadline, stream.read_buf(&mut buf)) => read,
                // An idle kept-alive connection ends at shutdown; one whose
                // request has begun to arrive is served first.
                _ = peer.shutdown.cancelled(), if !first && buf.is_empty() => return Served::Closed,
            };
            match read {
                Ok(Ok(0)) if buf.is_empty() => return Served::Closed,
                Ok(Ok(0)) => {
                    // The client closed in the middle of a head: hyper
                    // answers what it can.
                    stream.unread(buf);
                    return Served::Hyper;
                }
                Ok(Ok(_)) => {}
                Ok(Err(error)) => {
                    tracing::debug!(peer = %peer.addr, %error, "connection failed before a request");
                    return Served::Closed;
                }
                Err(_) => {
                    tracing::debug!(peer = %peer.addr, "no request head in time");
                    return Served::Closed;
                }
            }
        };
        first = false;
        buf.advance(taken.head_length);
        let mut request = taken.request;
        request.extensions_mut().insert(peer.slot.clone());
        let body_timeout = peer.config.body_read_timeout;
        let after = match read_body(stream, &mut buf, taken.body_length, body_timeout).await {
            Ok(body) => {
                *request.body_mut() = Body::from(body);
                let handler = Handler {
                    app,
                    ctx: peer.ctx,
                    route: taken.route,
                };
                respond(stream, handler, request, &mut buf, peer.shutdown).await
            }
            Err(late) => {
                // A client that closed mid-body reads no answer.
                if let Some(error) = late {
                    let _ = write_whole(stream, error.into_response(), true).await;
                }
                let _ = stream.shutdown().await;
                After::Close
            }
        };
        if let After::Close = after {
            return Served::Closed;
        }
    }
}

/// How much more room a read asks for at once.
const READ_CHUNK: usize = 4096;

/// What the bytes read so far hold.
enum Head {
    /// A request this path takes.
    Taken(Box<Taken>),
    /// Any other request (or bytes that are no request): hyper's.
    Other,
    /// Not yet a whole head.
    Partial,
}

/// A request this path takes, parsed from its head.
struct Taken {
    request: Request<Body>,
    head_length: usize,
    body_length: usize,
    /// The endpoint, called directly; none for one the router must find.
    route: Option<Route>,
}

/// What `bytes` begin with: a request this path takes (a complete HTTP/1.x
/// head of a `GET /sub/...`, an event stream or a long poll, not an
/// upgrade, with no body; or of a `POST /pub` or `POST /pub/{channel}`
/// whose body has a length of at most [`MAX_BODY`]), another one, or not
/// yet a whole head.
fn take(bytes: &[u8], limit: usize, peer: SocketAddr) -> Head {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut head = httparse::Request::new(&mut headers);
    match head.parse(bytes) {
        // Longer than hyper takes (it answers 431).
        Ok(httparse::Status::Complete(length)) if length > limit => Head::Other,
        Ok(httparse::Status::Complete(length)) => match taken(&head, length, peer) {
            Some(taken) => Head::Taken(Box::new(taken)),
            None => Head::Other,
        },
        Ok(httparse::Status::Partial) => Head::Partial,
        // Too many headers, malformed: hyper gives the answer.
        Err(_) => Head::Other,
    }
}

/// The request of a parsed head, if this path takes it.
fn taken(head: &httparse::Request<'_, '_>, head_length: usize, peer: SocketAddr) -> Option<Taken> {
    let method = match head.method? {
        "GET" => Method::GET,
        "POST" => Method::POST,
        _ => return None,
    };
    let target = head.path?;
    let path = target.split('?').next().unwrap_or_default();
    let is_subscribe = method == Method::GET && path.starts_with("/sub/");
    let is_publish = method == Method::POST
        && (path == "/pub" || (path.starts_with("/pub/") && !path[5..].contains('/')));
    if !is_subscribe && !is_publish {
        return None;
    }
    let version = match head.version? {
        0 => Version::HTTP_10,
        1 => Version::HTTP_11,
        _ => return None,
    };
    let uri = Uri::try_from(target).ok()?;
    let mut map = HeaderMap::with_capacity(head.headers.len());
    for h in head.headers.iter() {
        let name = HeaderName::from_bytes(h.name.as_bytes()).ok()?;
        map.append(name, HeaderValue::from_bytes(h.value).ok()?);
    }
    // Framing and protocol switches are hyper's to handle.
    if map.contains_key(header::TRANSFER_ENCODING)
        || map.contains_key(header::UPGRADE)
        || map.contains_key(header::EXPECT)
    {
        return None;
    }
    let body_length = match map.get_all(header::CONTENT_LENGTH).iter().count() {
        0 => 0,
        1 => content_length(map.get(header::CONTENT_LENGTH)?.as_bytes())
            .filter(|length| *length <= MAX_BODY)?,
        _ => return None,
    };
    if is_subscribe && body_length != 0 {
        return None;
    }
    let route = Route::of(&method, path);
    let mut request = Request::new(Body::empty());
    *request.method_mut() = method;
    *request.uri_mut() = uri;
    *request.version_mut() = version;
    *request.headers_mut() = map;
    request.extensions_mut().insert(ConnectInfo(peer));
    Some(Taken {
        request,
        head_length,
        body_length,
        route,
    })
}

/// A `Content-Length` value: digits only (no sign, no spaces, no list),
/// as hyper reads it; anything else is hyper's to refuse.
fn content_length(value: &[u8]) -> Option<usize> {
    if value.is_empty() || !value.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(value).ok()?.parse().ok()
}

/// The body of `length` bytes at the front of `buf`, reading what has not
/// arrived yet within `timeout`: the error to answer if it did not arrive
/// in time, none if the client closed the connection first.
async fn read_body(
    stream: &mut Stream,
    buf: &mut BytesMut,
    length: usize,
    timeout: Duration,
) -> Result<Bytes, Option<ApiError>> {
    if buf.len() >= length {
        return Ok(buf.split_to(length).freeze());
    }
    // The rest is read into an allocation of its own, so that the
    // connection's buffer never grows to a body's size.
    let mut body = BytesMut::with_capacity(length);
    body.extend_from_slice(buf);
    buf.clear();
    let filled = tokio::time::timeout(timeout, async {
        while body.len() < length {
            // Never past the body: the capacity is exactly its length.
            if stream.read_buf(&mut body).await? == 0 {
                return Err(std::io::Error::from(std::io::ErrorKind::UnexpectedEof));
            }
        }
        Ok(())
    })
    .await;
    {
        match filled {
            Ok(Ok(())) => {}
            Ok(Err(_)) => return Err(None),
            Err(_) => {
                return Err(Some(ApiError::bad_request(
                    "body_timeout",
                    "the request body did not arrive in time",
                )))
            }
        }
    }
    Ok(body.freeze())
}

/// Whether the connection goes on after a response.
enum After {
    KeepAlive,
    Close,
}

/// Answers `request` through `app` and writes the response to `stream`;
/// bytes of a next request that arrive meanwhile are kept in `buf`.
async fn respond(
    stream: &mut Stream,
    handler: Handler<'_>,
    request: Request<Body>,
    buf: &mut BytesMut,
    shutdown: &CancellationToken,
) -> After {
    let version = request.version();
    let mut client_closes = version == Version::HTTP_10 || asks_to_close(request.headers());
    // A client that leaves while its request waits (a long poll) ends the
    // request, as with hyper.
    // The answer is tried first: a publish is usually answered at once,
    // without a read on the socket.
    // Boxed: the handlers' and the router's futures are large, and inline
    // they would make every connection's task that large for its whole
    // life, an idle SSE stream or WebSocket included.
    let response = tokio::select! {
        biased;
        response = Box::pin(handler.answer(request)) => response,
        () = gone(stream, buf) => return After::Close,
    };
    // A server shutting down ends each connection with its current
    // response, as hyper's graceful shutdown does.
    client_closes |= shutdown.is_cancelled();
    let streaming = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("text/event-stream"));
    let written = if streaming {
        // The stream is the connection's last response.
        *buf = BytesMut::new();
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

/// Who answers a request: its endpoint directly, or the router.
struct Handler<'a> {
    app: &'a Router,
    ctx: &'a Context,
    route: Option<Route>,
}

impl Handler<'_> {
    async fn answer(self, request: Request<Body>) -> Response {
        match self.route {
            Some(route) => dispatch::call(self.ctx, route, request).await,
            None => match self.app.clone().oneshot(request).await {
                Ok(response) => response,
                Err(never) => match never {},
            },
        }
    }
}

/// Returns when the client closes the connection; never, once it sends
/// more (a pipelined request, kept in `buf` for after this response).
async fn gone(stream: &mut Stream, buf: &mut BytesMut) {
    if !buf.is_empty() {
        // A next request is already here: reading more would only let a
        // pipelining client fill the buffer without bound.
        return std::future::pending().await;
    }
    buf.reserve(READ_CHUNK);
    if let Ok(n) = stream.read_buf(buf).await {
        if n > 0 {
            std::future::pending::<()>().await;
        }
    }
}

thread_local! {
    /// The `Date` header's value and the second it is for, formatted once
    /// a second per thread rather than once per response.
    static DATE: std::cell::RefCell<(u64, String)> = const { std::cell::RefCell::new((u64::MAX, String::new())) };
}

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
    DATE.with(|date| {
        let mut date = date.borrow_mut();
        let now = SystemTime::now();
        let second = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |since| since.as_secs());
        if date.0 != second {
            *date = (second, httpdate::fmt_http_date(now));
        }
        push_header(&mut out, "date", date.1.as_bytes());
    });
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
        // Already in memory (a long poll's page can pass 1 MiB): no limit.
        axum::body::to_bytes(body, usize::MAX),
    )
    .await
    .map_err(|_| std::io::Error::other("response body took too long"))?
    .map_err(std::io::Error::other)?;
    // A handler may end the connection (a body refused unread, as with
    // hyper): `Connection: close` is kept, and done.
    let closes = client_closes || asks_to_close(&parts.headers);
    let response = Response::from_parts(parts, Body::empty());
    let length = body.len().to_string();
    // HTTP/1.1 connections persist unless one side says otherwise.
    let framing: &[(&str, &str)] = if closes {
        &[("content-length", &length), ("connection", "close")]
    } else {
        &[("content-length", &length)]
    };
    let head = head(&response, framing);
    write_all(stream, &mut [IoSlice::new(&head), IoSlice::new(&body)]).await?;
    Ok(if closes {
        After::Close
    } else {
        After::KeepAlive
    })
}

/// Whether `headers` carry `Connection: close`.
fn asks_to_close(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| {
            v.split(',')
                .any(|token| token.trim().eq_ignore_ascii_case("close"))
        })
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

    fn taken_from(bytes: &[u8]) -> Option<Taken> {
        match take(bytes, 16 * 1024, peer()) {
            Head::Taken(taken) => Some(*taken),
            Head::Other | Head::Partial => None,
        }
    }

    fn kind(bytes: &[u8]) -> Option<(&'static str, usize)> {
        taken_from(bytes).map(|taken| match taken.route {
            Some(Route::Subscribe(_)) => ("subscribe", taken.body_length),
            Some(Route::PublishOne(_) | Route::PublishBatch) => ("publish", taken.body_length),
            None => ("router", taken.body_length),
        })
    }

    #[test]
    fn takes_event_streams_long_polls_and_publishes() {
        let sse = b"GET /sub/a?x=1 HTTP/1.1\r\nHost: h\r\nAccept: text/event-stream\r\n\r\nrest";
        let taken = taken_from(sse).expect("an SSE request");
        assert_eq!(taken.head_length, sse.len() - 4);
        assert_eq!(taken.request.uri().path(), "/sub/a");
        assert_eq!(taken.request.headers()["host"], "h");
        assert_eq!(kind(sse), Some(("subscribe", 0)));
        let by_query = b"GET /sub/a?transport=sse HTTP/1.0\r\n\r\n";
        let taken = taken_from(by_query).expect("?transport=sse");
        assert_eq!(taken.request.version(), Version::HTTP_10);
        assert_eq!(kind(by_query), Some(("subscribe", 0)));
        for poll in [
            &b"GET /sub/a HTTP/1.1\r\n\r\n"[..],
            b"GET /sub/a?transport=poll HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n",
        ] {
            assert_eq!(kind(poll), Some(("subscribe", 0)));
        }
        // The router answers a bad transport or an encoded channel name.
        assert_eq!(
            kind(b"GET /sub/a?transport=ws HTTP/1.1\r\n\r\n"),
            Some(("subscribe", 0))
        );
        assert_eq!(
            kind(b"GET /sub/a%2Cb HTTP/1.1\r\n\r\n"),
            Some(("router", 0))
        );
        let publish = b"POST /pub/a HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(kind(publish), Some(("publish", 5)));
        assert_eq!(
            kind(b"POST /pub HTTP/1.1\r\nContent-Length: 2\r\n\r\n[]"),
            Some(("publish", 2))
        );
        assert_eq!(kind(b"POST /pub/a HTTP/1.1\r\n\r\n"), Some(("publish", 0)));
    }

    #[test]
    fn leaves_everything_else_to_hyper() {
        let long_head = format!("GET /sub/a?x={} HTTP/1.1\r\n\r\n", "y".repeat(20_000));
        let too_big = format!(
            "POST /pub/a HTTP/1.1\r\nContent-Length: {}\r\n\r\n",
            MAX_BODY + 1
        );
        assert!(matches!(
            take(
                b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\n",
                16 * 1024,
                peer()
            ),
            Head::Partial
        ));
        for other in [
            &b"POST /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\n\r\n"[..],
            b"GET /pub/a HTTP/1.1\r\n\r\n",
            b"HEAD /sub/a HTTP/1.1\r\n\r\n",
            b"POST /pub/a/presence HTTP/1.1\r\nContent-Length: 0\r\n\r\n",
            b"DELETE /pub/a HTTP/1.1\r\n\r\n",
            b"GET /ws HTTP/1.1\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\nUpgrade: websocket\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\nContent-Length: 3\r\n\r\nabc",
            b"POST /pub/a HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"POST /pub/a HTTP/1.1\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n",
            b"POST /pub/a HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n",
            b"POST /pub/a HTTP/1.1\r\nContent-Length: -1\r\n\r\n",
            b"POST /pub/a HTTP/1.1\r\nContent-Length: +5\r\n\r\nhello",
            b"POST /pub/a HTTP/1.1\r\nContent-Length: 5, 5\r\n\r\nhello",
            b"POST /pub/a HTTP/1.1\r\nContent-Length:\r\n\r\n",
            too_big.as_bytes(),
            long_head.as_bytes(),
            b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
            b"GET /sub/a HTTP/1.1\r\nAccept: text/event-stream\r\nBad\x01Name: v\r\n\r\n",
        ] {
            assert!(
                matches!(take(other, 16 * 1024, peer()), Head::Other),
                "{}",
                String::from_utf8_lossy(other)
            );
        }
    }
}
