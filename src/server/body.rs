//! What becomes of a request body the application did not read.
//!
//! Many answers come before the body is read, or without reading it at all: a
//! 404 or 405, a GET route sent a body, a 413 for an announced upload, a timeout.
//! hyper, given such a body back, reads whatever of it is already buffered and,
//! when that is not all of it, stops reading and closes the connection after the
//! answer, without saying so: a keep-alive client whose body arrived a moment
//! after its head sends its next request into a closed connection.
//!
//! So every request body is handed to the application wrapped ([`RequestBody`]);
//! one dropped before its end comes back here, and once the answer is ready
//! [`Settle`] decides, before hyper writes it:
//!
//! - the answer already ends the connection (`Connection: close`: a 413, a
//!   drain): hyper stops reading and closes after it; the lingering close
//!   (`stream.rs`) reads the rest, so the client gets the answer, not a reset;
//! - the rest is announced by `Content-Length` and at most [`DRAIN_BYTES`], and
//!   the client did not ask `Expect: 100-continue` (then it may never send the
//!   body): the rest is read and discarded in the background, for at most
//!   [`DRAIN_TIME`], and the connection stays open for the next request;
//! - otherwise (a large or chunked rest, or one the client may not send): the
//!   answer says `Connection: close`, and the lingering close reads the rest.
//!
//! A connection is thus closed only after an answer that says so, or after its
//! body has been read, so the next request on it works. (The one exception is a
//! client that stops sending in the middle of a small body for [`DRAIN_TIME`]:
//! it has no next request to lose.)

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, Request, Response, header};
use http_body::{Body as _, Frame, SizeHint};
use hyper::body::Incoming;
use pin_project_lite::pin_project;
use tokio::sync::oneshot;
use tower::ServiceExt as _;
use tower::util::Oneshot;

/// Largest unread rest of a body read in the background to keep a connection
/// open; a larger one closes the connection after the answer.
pub const DRAIN_BYTES: u64 = 1024 * 1024;

/// Longest the background read of an unread rest may take.
pub const DRAIN_TIME: Duration = Duration::from_secs(2);

/// The hyper service of a connection: `app`, with request bodies wrapped.
#[derive(Debug, Clone)]
pub struct Serve {
    app: Router,
}

impl Serve {
    /// Serves `app`.
    pub fn new(app: Router) -> Self {
        Self { app }
    }
}

impl hyper::service::Service<Request<Incoming>> for Serve {
    type Response = Response<Body>;
    type Error = Infallible;
    type Future = Settle;

    fn call(&self, request: Request<Incoming>) -> Self::Future {
        let (parts, body) = request.into_parts();
        let expects_continue = parts
            .headers
            .get(header::EXPECT)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"100-continue"));
        // A request without a body (most of them) costs no channel.
        let (body, leftover) = if body.is_end_stream() {
            (RequestBody::new(body, None), None)
        } else {
            let (tx, rx) = oneshot::channel();
            (RequestBody::new(body, Some(tx)), Some(rx))
        };
        Settle {
            inner: self.app.clone().oneshot(Request::from_parts(parts, body)),
            leftover,
            expects_continue,
        }
    }
}

pin_project! {
    /// The answer of [`Serve`]: the application's, settled with what is left of
    /// the request body (see the module's documentation).
    pub struct Settle {
        #[pin]
        inner: Oneshot<Router, Request<RequestBody>>,
        leftover: Option<oneshot::Receiver<Incoming>>,
        expects_continue: bool,
    }
}

impl Future for Settle {
    type Output = Result<Response<Body>, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let mut response = ready!(this.inner.poll(cx))?;
        if let Some(leftover) = this.leftover.take() {
            settle(leftover, *this.expects_continue, &mut response);
        }
        Poll::Ready(Ok(response))
    }
}

fn settle(
    mut leftover: oneshot::Receiver<Incoming>,
    expects_continue: bool,
    response: &mut Response<Body>,
) {
    // Nothing came back: the body was read to its end, or it is still held (by
    // a streaming answer, say), and hyper settles it when it is dropped.
    let Ok(rest) = leftover.try_recv() else {
        return;
    };
    let closes = response
        .headers()
        .get(header::CONNECTION)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
    if closes {
        return;
    }
    match http_body::Body::size_hint(&rest).exact() {
        Some(left) if left <= DRAIN_BYTES && !expects_continue => {
            tokio::spawn(discard(rest));
        }
        _ => {
            response
                .headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("close"));
        }
    }
}

/// Reads `rest` to its end (hyper then reads the next request) or for at most
/// [`DRAIN_TIME`] (then hyper closes the connection).
async fn discard(mut rest: Incoming) {
    let read = std::future::poll_fn(|cx| {
        loop {
            match ready!(Pin::new(&mut rest).poll_frame(cx)) {
                Some(Ok(_)) => {}
                None | Some(Err(_)) => return Poll::Ready(()),
            }
        }
    });
    let _ = tokio::time::timeout(DRAIN_TIME, read).await;
}

/// A request body as the application sees it; dropped before its end, it
/// goes back to [`Serve`] instead of to hyper.
#[derive(Debug)]
pub struct RequestBody {
    inner: Option<Incoming>,
    done: bool,
    leftover: Option<oneshot::Sender<Incoming>>,
}

impl RequestBody {
    fn new(inner: Incoming, leftover: Option<oneshot::Sender<Incoming>>) -> Self {
        Self {
            inner: Some(inner),
            done: false,
            leftover,
        }
    }
}

impl http_body::Body for RequestBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        let Some(inner) = this.inner.as_mut() else {
            return Poll::Ready(None);
        };
        let frame = ready!(Pin::new(inner).poll_frame(cx));
        // A chunked body says it ended only here (its `is_end_stream` stays false).
        if matches!(frame, None | Some(Err(_))) {
            this.done = true;
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.done || self.inner.as_ref().is_none_or(Incoming::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.inner
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), Incoming::size_hint)
    }
}

impl Drop for RequestBody {
    fn drop(&mut self) {
        if self.is_end_stream() {
            return;
        }
        if let (Some(rest), Some(leftover)) = (self.inner.take(), self.leftover.take()) {
            // The receiver is gone only when the answer was settled already;
            // then hyper gets the body back (and closes if it must).
            let _ = leftover.send(rest);
        }
    }
}
