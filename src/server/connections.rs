//! The accept loop: every TCP connection is served by hyper's HTTP/1 server.
//!
//! `axum::serve` gives no access to hyper's connection settings, and the one
//! that matters here is the header read timeout: without it a client that sends
//! a request head one byte at a time (slowloris) holds a connection and a task
//! forever. Here also: the number of open connections is bounded
//! (`--max-connections`); request bodies the application leaves unread are
//! settled (`body.rs`); connections close lingering (`stream.rs`); and a drain
//! lets every connection finish what it was asked before it closes.

use std::future::Future;
use std::io;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use futures::FutureExt as _;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use super::body::Serve;
use super::stream::{Activity, Watched};

use crate::telemetry::Metrics;
use crate::telemetry::labels::MetricLabel;

/// Largest request head (request line and headers) hyper reads; larger gets 431.
/// hyper's own bound (its read buffer, about 408 KiB) is not exact: a head that
/// arrives in one read may pass it by the size of that read.
pub const MAX_HEAD_BYTES: usize = 64 * 1024;

/// Most header fields in a request head; more gets 431 (hyper's default, stated).
pub const MAX_HEADERS: usize = 100;

/// While draining, a connection with no request under way is closed once it has
/// stayed so for this long: a request already on its way (a client that has just
/// connected, or reused a keep-alive connection) still gets in and is answered.
pub const DRAIN_GRACE: Duration = Duration::from_secs(1);

/// `--max-connections`, shared by every listener of the process: a permit per
/// open connection, and the count of connections refused for want of one.
#[derive(Debug, Clone)]
pub struct ConnectionLimit {
    permits: Arc<Semaphore>,
    max: usize,
    rejected: Arc<AtomicU64>,
}

impl ConnectionLimit {
    /// At most `max` connections open at once.
    pub fn new(max: usize) -> Self {
        Self {
            permits: Arc::new(Semaphore::new(max.min(Semaphore::MAX_PERMITS))),
            max,
            rejected: Arc::default(),
        }
    }

    /// Connections open now.
    pub fn open(&self) -> u64 {
        self.max.saturating_sub(self.permits.available_permits()) as u64
    }

    /// Connections refused so far.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// A permit for one more connection, or `None` (counted) at the limit.
    fn admit(&self) -> Option<OwnedSemaphorePermit> {
        let permit = self.permits.clone().try_acquire_owned().ok();
        if permit.is_none() {
            self.rejected.fetch_add(1, Ordering::Relaxed);
        }
        permit
    }
}

/// Serves `app` on `listener`, one hyper connection per client.
pub struct Connections {
    listener: TcpListener,
    server: Server,
}

/// What serves the connections of one listener.
struct Server {
    service: Serve,
    builder: http1::Builder,
    write_timeout: Duration,
    metrics: Arc<Metrics>,
    limit: ConnectionLimit,
    /// Turns `true` when the drain starts; closed when every connection has ended.
    drain: watch::Sender<bool>,
}

/// The connections still open when accepting stopped.
pub struct Draining(watch::Sender<bool>);

impl Draining {
    /// Asks every connection to finish (see [`drain`]) and completes when all
    /// have closed.
    pub async fn finished(self) {
        let _ = self.0.send(true);
        self.0.closed().await;
    }
}

impl Connections {
    /// Connections on `listener` answered by `app`, at most as many as `limit`
    /// admits. A connection whose next request head is not complete within
    /// `header_read_timeout`, or whose response makes no progress for
    /// `write_timeout`, is closed.
    pub fn new(
        listener: TcpListener,
        app: Router,
        header_read_timeout: Duration,
        write_timeout: Duration,
        limit: ConnectionLimit,
        metrics: Arc<Metrics>,
    ) -> Self {
        let mut builder = http1::Builder::new();
        // The timer is what makes hyper's header read timeout work at all.
        builder
            .timer(TokioTimer::new())
            .header_read_timeout(header_read_timeout)
            .max_header_size(MAX_HEAD_BYTES)
            .max_headers(MAX_HEADERS);
        Self {
            listener,
            server: Server {
                service: Serve::new(app),
                builder,
                write_timeout,
                metrics,
                limit,
                drain: watch::Sender::new(false),
            },
        }
    }

    /// Accepts connections until `stop` completes, then takes the connections
    /// the kernel has already completed off the listener's queue and closes it:
    /// new connections are refused while the open ones drain.
    pub async fn accept_until(self, stop: impl Future<Output = ()>) -> Draining {
        let Self { listener, server } = self;
        let mut stop = pin!(stop);
        loop {
            let stream = tokio::select! {
                accepted = listener.accept() => match accepted {
                    Ok((stream, _peer)) => stream,
                    Err(err) => {
                        accept_failed(err).await;
                        continue;
                    }
                },
                () = &mut stop => break,
            };
            server.admit(stream);
        }
        // Closing the listener resets every connection still queued on it: a
        // client that has connected and sent its request would get no answer.
        // So accept until the queue is empty, asking the socket itself (tokio's
        // readiness may not have seen the last arrivals yet), close it at once,
        // then serve what was taken.
        match listener.into_std() {
            Ok(listener) => {
                let queued = take_queue(&listener);
                drop(listener);
                if !queued.is_empty() {
                    tracing::debug!(
                        connections = queued.len(),
                        "served from the closing listener's queue"
                    );
                }
                for stream in queued {
                    server.admit(stream);
                }
            }
            Err(err) => {
                tracing::warn!(error = %err, "could not empty the listener's queue before closing it")
            }
        }
        Draining(server.drain)
    }
}

/// Every connection on `listener`'s queue, taken without waiting.
fn take_queue(listener: &std::net::TcpListener) -> Vec<TcpStream> {
    let mut queued = Vec::new();
    loop {
        match listener.accept() {
            Ok((stream, _peer)) => {
                // Accepted sockets do not inherit the listener's non-blocking mode.
                match stream
                    .set_nonblocking(true)
                    .and_then(|()| TcpStream::from_std(stream))
                {
                    Ok(stream) => queued.push(stream),
                    Err(err) => {
                        tracing::debug!(error = %err, "a queued connection could not be served")
                    }
                }
            }
            Err(err) if err.kind() == io::ErrorKind::Interrupted => {}
            // A client that gave up while queued.
            Err(err) if err.kind() == io::ErrorKind::ConnectionAborted => {}
            // WouldBlock: the queue is empty. Anything else: nothing more to take.
            Err(_) => return queued,
        }
    }
}

impl Server {
    fn admit(&self, stream: TcpStream) {
        match self.limit.admit() {
            Some(permit) => self.serve(stream, permit),
            None => {
                // Closed at once: an accepted connection costs a descriptor and a
                // task, and past the limit the process has none to spare.
                tracing::debug!(
                    max = self.limit.max,
                    "connection closed: --max-connections are open"
                );
                drop(stream);
            }
        }
    }

    fn serve(&self, stream: TcpStream, permit: OwnedSemaphorePermit) {
        // Small JSON answers: do not wait for Nagle to fill a segment.
        let _ = stream.set_nodelay(true);
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(Watched::new(stream, activity.clone(), self.write_timeout));
        let connection = self.builder.serve_connection(io, self.service.clone());
        let mut draining = self.drain.subscribe();
        let metrics = self.metrics.clone();
        tokio::spawn(async move {
            let mut connection = pin!(connection);
            let ended = tokio::select! {
                ended = connection.as_mut() => ended,
                // A closed channel (the drain was abandoned) is a drain too.
                _ = draining.wait_for(|drain| *drain).map(drop) => drain(connection, &activity).await,
            };
            if let Err(err) = ended {
                connection_failed(&err, &activity, &metrics);
            }
            // The permit and the drain's receiver go last, once the socket is closed.
            drop(permit);
            drop(draining);
        });
    }
}

/// Finishes a connection while the process shuts down.
///
/// hyper's own graceful shutdown closes a connection at once when it has no
/// request under way by hyper's count, and hyper counts a request only once its
/// head is parsed: one whose bytes are in the socket, or half read, is lost. So
/// the connection is left to run: every answer says `Connection: close` while
/// shutting down (the drain layer), after which hyper closes it; and one that
/// has had no request under way for a whole [`DRAIN_GRACE`] (an idle keep-alive
/// connection, or one opened and never used) is closed here.
async fn drain<F>(mut connection: Pin<&mut F>, activity: &Activity) -> F::Output
where
    F: Future<Output = hyper::Result<()>>,
{
    let mut before = activity.snapshot();
    loop {
        if let Ok(ended) = tokio::time::timeout(DRAIN_GRACE, connection.as_mut()).await {
            return ended;
        }
        let now = activity.snapshot();
        if now == before && now.is_waiting() {
            return Ok(());
        }
        before = now;
    }
}

/// A connection closed for what its client did, before any route ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ConnectionFailure {
    /// A response write that made no progress within `--write-timeout`.
    WriteTimeout,
    /// A request head not complete within `--header-read-timeout`.
    HeaderTimeout,
    /// A request hyper could not parse (it answered 400, 414 or 431 itself).
    MalformedRequest,
}

impl MetricLabel for ConnectionFailure {
    fn metric_label(&self) -> &'static str {
        match self {
            Self::WriteTimeout => "write_timeout",
            Self::HeaderTimeout => "header_timeout",
            Self::MalformedRequest => "malformed_request",
        }
    }
}

/// Counts the connection failures a client caused; the rest (resets, clients
/// that hang up) are normal on the internet and only logged at debug.
fn connection_failed(err: &hyper::Error, activity: &Activity, metrics: &Metrics) {
    let kind = if Watched::is_write_timeout(err) {
        // A client that stopped reading its response (slow read).
        ConnectionFailure::WriteTimeout
    } else if err.is_timeout() {
        // hyper's header timer also runs while a keep-alive connection waits
        // for its next request: closing an idle connection is not an error.
        if activity.is_idle() {
            tracing::trace!("idle keep-alive connection closed");
            return;
        }
        // A request head that did not arrive within `--header-read-timeout`.
        ConnectionFailure::HeaderTimeout
    } else if err.is_parse() {
        // hyper answered 400, 414 or 431 itself, before any route ran.
        ConnectionFailure::MalformedRequest
    } else {
        tracing::debug!(error = %err, "connection ended with an error");
        return;
    };
    tracing::debug!(error = %err, error_type = kind.metric_label(), "connection closed");
    metrics.api_error(&kind);
}

/// Accept errors are per connection (the client went away) or per process
/// (out of file descriptors); the second kind must not spin the loop.
async fn accept_failed(err: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        err.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!(error = %err, "accept failed; retrying in 1s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}
