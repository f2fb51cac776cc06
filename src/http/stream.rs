//! A client connection as the server sees it once accepted: a plain TCP
//! stream, or TLS over one. Everything above the accept loop (hyper, the
//! event-stream writer, the WebSocket after its upgrade) reads and writes
//! a [`Stream`] and cannot tell which it has.
//!
//! The lean HTTP/1 path (`lean`) reads request heads itself before
//! deciding who serves the connection; what it read but does not serve is
//! put back with [`Stream::unread`], and hyper reads it first.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, BytesMut};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;

/// An accepted connection, plain or TLS, with any bytes put back in front.
pub struct Stream {
    io: Io,
    unread: BytesMut,
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

impl Stream {
    /// A plain TCP connection.
    pub fn plain(stream: TcpStream) -> Self {
        Self {
            io: Io::Plain(stream),
            unread: BytesMut::new(),
        }
    }

    /// A TLS connection after its handshake.
    pub fn tls(stream: TlsStream<TcpStream>) -> Self {
        Self {
            io: Io::Tls(Box::new(stream)),
            unread: BytesMut::new(),
        }
    }

    /// Whether the client chose HTTP/2 by ALPN.
    pub fn is_h2(&self) -> bool {
        match &self.io {
            Io::Plain(_) => false,
            Io::Tls(tls) => tls.get_ref().1.alpn_protocol() == Some(super::tls::ALPN_H2),
        }
    }

    /// Puts `bytes`, read from this stream but not used, back in front of
    /// it: the next reads return them first.
    pub fn unread(&mut self, mut bytes: BytesMut) {
        if !self.unread.is_empty() {
            bytes.extend_from_slice(&self.unread);
        }
        self.unread = bytes;
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            if this.unread.is_empty() {
                // Give the buffer back: the connection may live for hours.
                this.unread = BytesMut::new();
            }
            return Poll::Ready(Ok(()));
        }
        match &mut this.io {
            Io::Plain(tcp) => Pin::new(tcp).poll_read(cx, buf),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write(cx, buf),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_write(cx, buf),
        }
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        match &mut self.get_mut().io {
            Io::Plain(tcp) => Pin::new(tcp).poll_write_vectored(cx, bufs),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_write_vectored(cx, bufs),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match &self.io {
            Io::Plain(tcp) => tcp.is_write_vectored(),
            Io::Tls(tls) => tls.is_write_vectored(),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(tcp) => Pin::new(tcp).poll_flush(cx),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match &mut self.get_mut().io {
            Io::Plain(tcp) => Pin::new(tcp).poll_shutdown(cx),
            Io::Tls(tls) => Pin::new(&mut **tls).poll_shutdown(cx),
        }
    }
}
