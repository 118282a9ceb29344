//! The TCP stream of one connection, watched: whether it is between requests
//! ([`Idle`]), and a bound on how long a write may make no progress
//! (`--write-timeout`). hyper has no write timeout; without one a client that
//! stops reading its response (slow read) holds a connection and a task forever.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Sleep;

/// Whether a connection is between requests: a response was written and no
/// byte has arrived since. A new connection is not idle: a client that opens
/// one and sends nothing is what the header read timeout is for.
#[derive(Debug, Default)]
pub struct Idle(AtomicBool);

impl Idle {
    /// Whether the connection waits for its next request.
    pub fn get(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    fn set(&self, idle: bool) {
        self.0.store(idle, Ordering::Relaxed);
    }
}

/// The message of the error a stalled write ends with, to tell it apart.
const WRITE_STALLED: &str = "response write made no progress within --write-timeout";

/// A TCP stream that records whether it is [`Idle`] and fails a write that
/// stays blocked for longer than its timeout.
pub struct Watched {
    inner: TcpStream,
    activity: Arc<Idle>,
    write_timeout: Duration,
    /// Armed while a write is blocked; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
}

impl Watched {
    /// Watches `inner`.
    pub fn new(inner: TcpStream, activity: Arc<Idle>, write_timeout: Duration) -> Self {
        Self {
            inner,
            activity,
            write_timeout,
            stalled: None,
        }
    }

    /// Whether hyper ended a connection because a write stalled.
    pub fn is_write_timeout(err: &hyper::Error) -> bool {
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                return io.kind() == io::ErrorKind::TimedOut && io.to_string() == WRITE_STALLED;
            }
            source = cause.source();
        }
        false
    }

    /// After a write attempt: progress disarms the timer; a blocked write arms it
    /// (once) and fails when it fires.
    fn watch<T>(&mut self, cx: &mut Context<'_>, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        if poll.is_ready() {
            self.stalled = None;
            return poll;
        }
        let timeout = self.write_timeout;
        let timer = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(timeout)));
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => {
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WRITE_STALLED)))
            }
            Poll::Pending => Poll::Pending,
        }
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let poll = Pin::new(&mut self.inner).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.set(false);
        }
        poll
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.set(true);
        }
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(poll, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.set(true);
        }
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
