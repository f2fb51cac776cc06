//! A minimal HTTP/1.1 publisher for `herald bench publish --raw-http`: one
//! kept-alive connection per publisher, each request written in one call,
//! each answer read by its `Content-Length` (or its chunks). With reqwest,
//! the generator reached 99 % of its core before either server did, so the
//! publish scenario measured the generator.

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::BenchError;

/// Most bytes of an answer's head.
const MAX_HEAD: usize = 16 * 1024;

/// One publisher's connection to one publish URL.
pub struct RawPublisher {
    url: String,
    addr: std::net::SocketAddr,
    /// `POST PATH HTTP/1.1` and the Host header, ready to be followed by
    /// the body's length.
    request_head: String,
    tcp: Option<TcpStream>,
    buf: BytesMut,
}

impl RawPublisher {
    /// For `url` (http://, loopback); connects at the first publish.
    pub fn new(url: &str) -> Result<Self, BenchError> {
        let addr = super::target::socket_addr(url)?;
        let parsed = super::target::check_loopback(url)?;
        let mut path = parsed.path().to_owned();
        if let Some(query) = parsed.query() {
            path = format!("{path}?{query}");
        }
        Ok(Self {
            url: url.to_owned(),
            addr,
            request_head: format!("POST {path} HTTP/1.1\r\nHost: {addr}\r\n"),
            tcp: None,
            buf: BytesMut::with_capacity(4096),
        })
    }

    /// Posts `body` and reads the answer; an answer other than 2xx is an error.
    pub async fn post(&mut self, body: &[u8]) -> Result<(), BenchError> {
        let io = |e: std::io::Error| BenchError::connect(&self.url, e);
        if self.tcp.is_none() {
            let tcp = TcpStream::connect(self.addr).await.map_err(io)?;
            let _ = tcp.set_nodelay(true);
            self.tcp = Some(tcp);
            self.buf.clear();
        }
        let mut request = Vec::with_capacity(self.request_head.len() + 32 + body.len());
        request.extend_from_slice(self.request_head.as_bytes());
        request.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        request.extend_from_slice(body);
        let Some(tcp) = self.tcp.as_mut() else {
            return Err(BenchError::connect(&self.url, "not connected"));
        };
        tcp.write_all(&request).await.map_err(io)?;
        let answer = read_answer(tcp, &mut self.buf).await;
        let answer = match answer {
            Ok(answer) => answer,
            Err(error) => {
                self.tcp = None;
                return Err(BenchError::connect(&self.url, error));
            }
        };
        if answer.closes {
            self.tcp = None;
        }
        if (200..300).contains(&answer.status) {
            Ok(())
        } else {
            Err(BenchError::Publish {
                url: self.url.clone(),
                status: answer.status,
                body: String::from_utf8_lossy(&answer.body).into_owned(),
            })
        }
    }
}

struct Answer {
    status: u16,
    body: Vec<u8>,
    closes: bool,
}

/// Reads one answer off `tcp`, using and keeping `buf` for what arrives.
async fn read_answer(tcp: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<Answer> {
    let bad = |what: &str| std::io::Error::new(std::io::ErrorKind::InvalidData, what.to_owned());
    let (status, head_len, length, chunked, closes) = loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut response = httparse::Response::new(&mut headers);
        match response.parse(buf) {
            Ok(httparse::Status::Complete(head_len)) => {
                let header = |name: &str| {
                    response
                        .headers
                        .iter()
                        .find(|h| h.name.eq_ignore_ascii_case(name))
                        .and_then(|h| std::str::from_utf8(h.value).ok())
                };
                let length = header("content-length").and_then(|v| v.trim().parse().ok());
                let chunked = header("transfer-encoding").is_some_and(|v| v.contains("chunked"));
                let closes = header("connection").is_some_and(|v| v.contains("close"));
                break (
                    response.code.unwrap_or(0),
                    head_len,
                    length,
                    chunked,
                    closes,
                );
            }
            Ok(httparse::Status::Partial) if buf.len() < MAX_HEAD => {}
            Ok(httparse::Status::Partial) => return Err(bad("answer head too long")),
            Err(_) => return Err(bad("not an HTTP answer")),
        }
        fill(tcp, buf).await?;
    };
    buf.advance(head_len);
    let body = if chunked {
        let mut body = Vec::new();
        loop {
            let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
                fill(tcp, buf).await?;
                continue;
            };
            let size_text = std::str::from_utf8(&buf[..line_end]).map_err(|_| bad("chunk size"))?;
            let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("").trim(), 16)
                .map_err(|_| bad("chunk size"))?;
            while buf.len() < line_end + 2 + size + 2 {
                fill(tcp, buf).await?;
            }
            body.extend_from_slice(&buf[line_end + 2..line_end + 2 + size]);
            buf.advance(line_end + 2 + size + 2);
            if size == 0 {
                break body;
            }
        }
    } else {
        let length = length.unwrap_or(0);
        while buf.len() < length {
            fill(tcp, buf).await?;
        }
        buf.split_to(length).to_vec()
    };
    Ok(Answer {
        status,
        body,
        closes,
    })
}

async fn fill(tcp: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<()> {
    buf.reserve(4096);
    if tcp.read_buf(buf).await? == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    Ok(())
}
