//! A client connection as the server sees it once accepted: a plain TCP
//! stream, or TLS over one. Everything above the accept loop (hyper, the
//! event-stream writer, the WebSocket after its upgrade) reads and writes
//! a [`Stream`] and cannot tell which it has.
//!
//! The event-stream fast path peeks at the first request head before
//! deciding who serves the connection. TCP can peek in the kernel; TLS
//! cannot, so on TLS the first decrypted bytes are kept here and handed to
//! whoever reads next.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An accepted connection, plain or TLS.
pub enum Stream {
    Plain(TcpStream),
    Tls(Box<Tls>),
}

/// A TLS connection and the bytes already read from it by [`Stream::peek`].
pub struct Tls {
    stream: TlsStream<TcpStream>,
    peeked: BytesMut,
}

impl Stream {
    /// A TLS connection after its handshake.
    pub fn tls(stream: TlsStream<TcpStream>) -> Self {
        Self::Tls(Box::new(Tls {
            stream,
            peeked: BytesMut::new(),
        }))
    }

    /// Whether the client chose HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls(tls) => tls.stream.get_ref().1.alpn_protocol() == Some(super::tls::ALPN_H2),
        }
    }

    /// Reads the first bytes without consuming them: the next read returns
    /// them again. Waits only if nothing has arrived yet.
    pub async fn peek(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.peek(buf).await,
            Self::Tls(tls) => {
                if tls.peeked.is_empty() {
                    tls.peeked.reserve(buf.len());
                    let Tls { stream, peeked } = &mut **tls;
                    let mut limited = (&mut *stream).take(buf.len() as u64);
                    limited.read_buf(peeked).await?;
                }
                let n = tls.peeked.len().min(buf.len());
                buf[..n].copy_from_slice(&tls.peeked[..n]);
                Ok(n)
            }
        }
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Self::Tls(tls) => {
                if tls.peeked.is_empty() {
                    return Pin::new(&mut tls.stream).poll_read(cx, buf);
                }
                let n = tls.peeked.len().min(buf.remaining());
                buf.put_slice(&tls.peeked[..n]);
                tls.peeked.advance(n);
                if tls.peeked.is_empty() {
                    // Give the buffer back: the connection may live for hours.
                    tls.peeked = BytesMut::new();
                }
                Poll::Ready(Ok(()))
            }
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Self::Tls(tls) => Pin::new(&mut tls.stream).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Self::Tls(tls) => Pin::new(&mut tls.stream).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Self::Plain(tcp) => tcp.is_write_vectored(),
            Self::Tls(tls) => tls.stream.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Self::Tls(tls) => Pin::new(&mut tls.stream).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Self::Tls(tls) => Pin::new(&mut tls.stream).poll_shutdown(cx),
        }
    }
}
