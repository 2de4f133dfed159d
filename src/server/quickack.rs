//! A TCP stream that acknowledges every segment at once.
//!
//! OpenSSH's client sets TCP_NODELAY only for interactive sessions, so during key exchange
//! its next small packet waits (Nagle) for our ACK of its previous one. Linux delays that
//! ACK up to 40 ms when we have nothing to send, which is what a non-interactive
//! `ssh host command` spends most of its time on. TCP_QUICKACK is not sticky (the kernel
//! drops back to delayed ACKs on its own), so it is re-armed after every read.
//!
//! It can also be cut from outside (`cut`): its reads end and its writes fail, so whatever
//! task owns it (russh runs a session in a task of its own) ends and the socket closes.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use std::future::Future;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};

pub struct QuickAck(TcpStream, Pin<Box<WaitForCancellationFutureOwned>>);

impl QuickAck {
    /// The stream, and what cuts it.
    pub fn new(stream: TcpStream) -> (QuickAck, CancellationToken) {
        let _ = stream.set_nodelay(true);
        let cut = CancellationToken::new();
        let quick = QuickAck(stream, Box::pin(cut.clone().cancelled_owned()));
        quick.arm();
        (quick, cut)
    }

    fn arm(&self) {
        let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
    }

    /// Whether it was cut (polled, so a cut wakes the task that waits on it).
    fn is_cut(&mut self, cx: &mut Context<'_>) -> bool {
        self.1.as_mut().poll(cx).is_ready()
    }
}

fn cut() -> io::Error {
    io::Error::new(io::ErrorKind::ConnectionAborted, "the connection was cut")
}

impl AsyncRead for QuickAck {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(cut()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.0).poll_read(cx, buf);
        if matches!(polled, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.arm();
        }
        polled
    }
}

impl AsyncWrite for QuickAck {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.0).poll_write(cx, data)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }

    fn poll_write_vectored(mut self: Pin<&mut Self>, cx: &mut Context<'_>, bufs: &[io::IoSlice<'_>]) -> Poll<io::Result<usize>> {
        if self.is_cut(cx) {
            return Poll::Ready(Err(cut()));
        }
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}
