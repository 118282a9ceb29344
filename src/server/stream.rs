//! The TCP stream of one connection, watched: where it is between requests
//! ([`Activity`]), a bound on how long a write may make no progress
//! (`--write-timeout`), and a lingering close.
//!
//! hyper has no write timeout; without one a client that stops reading its
//! response (slow read) holds a connection and a task forever.
//!
//! The lingering close is nginx's: a server that answers before it has read the
//! whole request (a 413 for an upload it refuses, a request head too large) and
//! then closes its socket with unread bytes in it makes the kernel send a reset,
//! and a reset makes the client's kernel throw away the answer it had not read
//! yet: the client sees "broken pipe" or "connection reset" instead of the 413.
//! So when hyper shuts the connection down, the write side is closed first (the
//! client reads the whole answer, then end of stream) and what the client still
//! sends is read and thrown away until it closes its side, for a bounded time and
//! number of bytes.

use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::{Instant, Sleep};

/// Longest a lingering close reads what the client still sends.
pub const LINGER_TIME: Duration = Duration::from_secs(5);
/// A lingering close ends when the client has sent nothing for this long: it
/// has stopped sending, so closing no longer resets anything.
pub const LINGER_IDLE: Duration = Duration::from_secs(1);
/// Most bytes a lingering close reads and throws away (at loopback speed an
/// upload could otherwise keep a core busy for all of [`LINGER_TIME`]).
pub const LINGER_BYTES: usize = 64 * 1024 * 1024;

const FRESH: u8 = 0;
const BUSY: u8 = 1;
const IDLE: u8 = 2;
const CLOSING: u8 = 3;

/// Where a connection is between requests. A new connection is fresh (not
/// idle: a client that opens one and sends nothing is what the header read
/// timeout is for); a byte read makes it busy; a response written with no byte
/// read since makes it idle (waiting on keep-alive for the next request); the
/// lingering close makes it closing.
#[derive(Debug, Default)]
pub struct Activity {
    state: AtomicU8,
    /// How many times the state changed: two equal [`Activity::snapshot`]s mean
    /// nothing happened in between.
    changes: AtomicU32,
}

/// The [`Activity`] of a connection at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Snapshot {
    state: u8,
    changes: u32,
}

impl Snapshot {
    /// Whether no request was under way: nothing had arrived since the
    /// connection opened or since its last response. Closing such a connection
    /// loses no request (but one whose first byte is on the wire at that instant).
    pub fn is_waiting(self) -> bool {
        matches!(self.state, FRESH | IDLE)
    }
}

impl Activity {
    /// Whether the connection waits for its next request: a response was
    /// written and no byte has arrived since.
    pub fn is_idle(&self) -> bool {
        self.state.load(Ordering::Relaxed) == IDLE
    }

    /// The state now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            state: self.state.load(Ordering::Relaxed),
            changes: self.changes.load(Ordering::Relaxed),
        }
    }

    /// After a write: bytes written make the connection idle (if the answer is
    /// not complete, the next write follows at once, and each one counts as a
    /// change, so a drain sees progress); a blocked write means an answer is under
    /// way, however long the client takes to read it (`--write-timeout` bounds that).
    fn after_write(&self, poll: &Poll<io::Result<usize>>) {
        match poll {
            Poll::Ready(Ok(n)) if *n > 0 => {
                self.state.store(IDLE, Ordering::Relaxed);
                self.changes.fetch_add(1, Ordering::Relaxed);
            }
            Poll::Pending => self.set(BUSY),
            Poll::Ready(_) => {}
        }
    }

    fn set(&self, state: u8) {
        // A load first: every read and write lands here, and most change nothing.
        if self.state.load(Ordering::Relaxed) != state {
            self.state.store(state, Ordering::Relaxed);
            self.changes.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// The error a stalled write ends with, told apart by its type (inside the
/// `io::Error` hyper hands back), not by its message.
#[derive(Debug, thiserror::Error)]
#[error("response write made no progress within --write-timeout")]
struct WriteStalled;

/// How far the connection is in closing.
enum Closing {
    Open,
    /// The write side is shut; reading and discarding what the client still sends.
    Lingering(Box<Linger>),
    Closed,
}

struct Linger {
    /// The end of [`LINGER_TIME`].
    deadline: Pin<Box<Sleep>>,
    /// The end of [`LINGER_IDLE`], pushed back by every read.
    idle: Pin<Box<Sleep>>,
    discarded: usize,
    scratch: Box<[u8]>,
}

/// A TCP stream that records its [`Activity`], fails a write that stays
/// blocked for longer than its timeout, and closes lingering.
pub struct Watched {
    inner: TcpStream,
    activity: Arc<Activity>,
    write_timeout: Duration,
    /// Armed while a write is blocked; reset by any progress.
    stalled: Option<Pin<Box<Sleep>>>,
    closing: Closing,
}

impl Watched {
    /// Watches `inner`.
    pub fn new(inner: TcpStream, activity: Arc<Activity>, write_timeout: Duration) -> Self {
        Self {
            inner,
            activity,
            write_timeout,
            stalled: None,
            closing: Closing::Open,
        }
    }

    /// Whether hyper ended a connection because a write stalled.
    pub fn is_write_timeout(err: &hyper::Error) -> bool {
        let mut source = std::error::Error::source(err);
        while let Some(cause) = source {
            if let Some(io) = cause.downcast_ref::<io::Error>() {
                return io.get_ref().is_some_and(|inner| inner.is::<WriteStalled>());
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
                Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, WriteStalled)))
            }
            Poll::Pending => Poll::Pending,
        }
    }

    /// Reads and discards until the client closes its side, goes quiet for
    /// [`LINGER_IDLE`], or [`LINGER_TIME`] or [`LINGER_BYTES`] is reached.
    fn poll_linger(inner: &mut TcpStream, linger: &mut Linger, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            if linger.deadline.as_mut().poll(cx).is_ready()
                || linger.idle.as_mut().poll(cx).is_ready()
            {
                return Poll::Ready(());
            }
            let mut buf = ReadBuf::new(&mut linger.scratch);
            match Pin::new(&mut *inner).poll_read(cx, &mut buf) {
                Poll::Pending => return Poll::Pending,
                // End of stream or an error (a reset): nothing more will come.
                Poll::Ready(Err(_)) => return Poll::Ready(()),
                Poll::Ready(Ok(())) if buf.filled().is_empty() => return Poll::Ready(()),
                Poll::Ready(Ok(())) => {
                    linger.discarded += buf.filled().len();
                    if linger.discarded >= LINGER_BYTES {
                        return Poll::Ready(());
                    }
                    linger.idle.as_mut().reset(Instant::now() + LINGER_IDLE);
                }
            }
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
            self.activity.set(BUSY);
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
        self.activity.after_write(&poll);
        self.watch(cx, poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.after_write(&poll);
        self.watch(cx, poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, poll)
    }

    /// hyper calls this once the connection is done (its last answer flushed):
    /// the lingering close (see the module's documentation).
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            match &mut this.closing {
                Closing::Open => {
                    // A client that already went away: nothing to linger for.
                    this.activity.set(CLOSING);
                    if ready!(Pin::new(&mut this.inner).poll_shutdown(cx)).is_err() {
                        this.closing = Closing::Closed;
                        continue;
                    }
                    let now = Instant::now();
                    this.closing = Closing::Lingering(Box::new(Linger {
                        deadline: Box::pin(tokio::time::sleep_until(now + LINGER_TIME)),
                        idle: Box::pin(tokio::time::sleep_until(now + LINGER_IDLE)),
                        discarded: 0,
                        scratch: vec![0; 64 * 1024].into_boxed_slice(),
                    }));
                }
                Closing::Lingering(linger) => {
                    ready!(Self::poll_linger(&mut this.inner, linger, cx));
                    this.closing = Closing::Closed;
                }
                Closing::Closed => return Poll::Ready(Ok(())),
            }
        }
    }
}
