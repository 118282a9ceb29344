//! Stdout behind a bounded, lossy buffer that one background thread writes out.
//!
//! A request thread appends its line to a shared buffer under a mutex and goes
//! on; the writer thread swaps the buffer for an empty one and writes what it took
//! with one `write(2)`. A stalled stdout never stalls a request: past
//! [`CAPACITY_BYTES`] lines are dropped and counted (`pulse_log_lines_dropped_total`).
//!
//! Why not `tracing-appender`'s non-blocking writer, which Pulse used before: it
//! copies every line into a fresh `Vec` sent through a channel, so each line was
//! an allocation on the request thread, a free on the writer thread, and often a
//! futex wake of a writer parked on the channel. At saturation (`make bench`'s
//! throughput rounds, two cores) those wakes and cross-thread frees were the
//! largest cost of the access log that instruction counts do not see. Here a
//! line is a copy into a buffer that is reused, and a request thread wakes the
//! writer only when the writer sleeps on an empty buffer: under load the writer
//! is busy or pausing ([`GATHER_PAUSE`]) and nobody wakes it; idle, the first
//! line still reaches stdout at once.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Bytes waiting for stdout beyond which lines are dropped (and counted): about
/// 8,000 access lines, a tenth of a second at the benchmark's saturation rate.
pub const CAPACITY_BYTES: usize = 2 * 1024 * 1024;

/// How long the writer waits after a write before taking the next batch, so that
/// under load one write carries many lines (a lone line is not delayed: it wakes
/// a writer that sleeps on an empty buffer).
pub const GATHER_PAUSE: Duration = Duration::from_millis(1);

/// How long the exit flush waits for a stalled stdout before giving up.
const EXIT_PATIENCE: Duration = Duration::from_secs(1);

#[derive(Default)]
struct State {
    pending: Vec<u8>,
    /// The writer sleeps on `wake` because `pending` was empty.
    writer_waiting: bool,
    /// Set at exit: write out what is pending, then stop.
    closing: bool,
    /// Set by the writer once it has written everything after `closing`.
    finished: bool,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    /// Wakes the writer (a line into an empty buffer, or the exit).
    wake: Condvar,
    /// Wakes the exit flush once the writer finished.
    done: Condvar,
    dropped: AtomicU64,
}

impl Shared {
    /// The state, even if a thread panicked while holding it: a log buffer is
    /// always consistent (appends are whole), so poisoning changes nothing.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The writing end, cloned into every layer that logs (a `MakeWriter`).
#[derive(Clone)]
pub struct LogQueue {
    shared: Arc<Shared>,
}

/// Lines dropped because the buffer was full, readable from anywhere.
#[derive(Clone)]
pub struct DroppedCounter {
    shared: Arc<Shared>,
}

impl DroppedCounter {
    /// Lines dropped so far.
    pub fn count(&self) -> u64 {
        self.shared.dropped.load(Ordering::Relaxed)
    }
}

/// Stops the writer at exit after writing out what is pending (waiting up to a
/// second for a stalled stdout); dropping it does the same.
pub struct WriterGuard {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

/// Starts the writer thread on `out` and returns the writing end, the dropped
/// count and the guard that flushes at exit.
pub fn start<W: Write + Send + 'static>(
    out: W,
    thread_name: &str,
) -> std::io::Result<(LogQueue, DroppedCounter, WriterGuard)> {
    let shared = Arc::new(Shared::default());
    let writer = Arc::clone(&shared);
    let thread = std::thread::Builder::new()
        .name(thread_name.to_owned())
        .spawn(move || write_out(&writer, out))?;
    Ok((
        LogQueue {
            shared: Arc::clone(&shared),
        },
        DroppedCounter {
            shared: Arc::clone(&shared),
        },
        WriterGuard {
            shared,
            thread: Some(thread),
        },
    ))
}

/// The writer thread: takes the whole buffer, writes it, pauses, again; at exit
/// writes what is left and says so.
fn write_out<W: Write>(shared: &Shared, mut out: W) {
    let mut batch = Vec::new();
    loop {
        let closing = {
            let mut state = shared.lock();
            while state.pending.is_empty() && !state.closing {
                state.writer_waiting = true;
                state = shared.wake.wait(state).unwrap_or_else(|p| p.into_inner());
            }
            state.writer_waiting = false;
            std::mem::swap(&mut state.pending, &mut batch);
            state.closing
        };
        // Nothing to do about a failing stdout but to go on: the lines are lost.
        let _ = out.write_all(&batch).and_then(|()| out.flush());
        batch.clear();
        if closing && shared.lock().pending.is_empty() {
            break;
        }
        if !closing {
            std::thread::sleep(GATHER_PAUSE);
        }
    }
    shared.lock().finished = true;
    shared.done.notify_all();
}

impl WriterGuard {
    /// Writes out what is pending and stops the writer (at most a second).
    pub fn flush_and_stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        let mut state = self.shared.lock();
        state.closing = true;
        self.shared.wake.notify_one();
        let (state, timeout) = self
            .shared
            .done
            .wait_timeout_while(state, EXIT_PATIENCE, |s| !s.finished)
            .unwrap_or_else(|p| p.into_inner());
        drop(state);
        // A writer stuck on a stalled stdout is left behind: the process is exiting.
        if !timeout.timed_out() {
            let _ = thread.join();
        }
    }
}

impl Drop for WriterGuard {
    fn drop(&mut self) {
        self.flush_and_stop();
    }
}

/// One line's writer, as `MakeWriter` hands it out.
pub struct LineWriter<'a> {
    shared: &'a Shared,
}

impl Write for LineWriter<'_> {
    /// Appends `line` whole, or drops it whole when the buffer is full: callers
    /// write one complete line per call (the JSON layer and the text formatter
    /// both format into a buffer first), so lines stay whole and in order.
    fn write(&mut self, line: &[u8]) -> std::io::Result<usize> {
        let mut state = self.shared.lock();
        if state.closing && state.finished || state.pending.len() + line.len() > CAPACITY_BYTES {
            drop(state);
            self.shared.dropped.fetch_add(1, Ordering::Relaxed);
            return Ok(line.len());
        }
        state.pending.extend_from_slice(line);
        if state.writer_waiting {
            state.writer_waiting = false;
            self.shared.wake.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogQueue {
    type Writer = LineWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LineWriter {
            shared: &self.shared,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tracing_subscriber::fmt::MakeWriter as _;

    /// An output the test can read, and stall.
    #[derive(Clone, Default)]
    struct Sink {
        bytes: Arc<Mutex<Vec<u8>>>,
        stalled: Arc<Mutex<()>>,
    }

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _stall = self.stalled.lock().unwrap_or_else(|p| p.into_inner());
            self.bytes
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    fn written(sink: &Sink) -> String {
        String::from_utf8_lossy(&sink.bytes.lock().expect("sink")).into_owned()
    }

    #[test]
    fn lines_arrive_whole_in_order_and_at_exit() {
        let sink = Sink::default();
        let (queue, dropped, mut guard) = start(sink.clone(), "test-log-writer").expect("thread");
        let mut expected = String::new();
        for i in 0..10_000 {
            let line = format!("line {i}\n");
            queue
                .make_writer()
                .write_all(line.as_bytes())
                .expect("write");
            expected.push_str(&line);
        }
        guard.flush_and_stop();
        assert_eq!(written(&sink), expected);
        assert_eq!(dropped.count(), 0);
    }

    #[test]
    fn a_lone_line_is_written_at_once() {
        let sink = Sink::default();
        let (queue, _dropped, _guard) = start(sink.clone(), "test-log-writer").expect("thread");
        std::thread::sleep(Duration::from_millis(20)); // the writer sleeps on an empty buffer
        queue.make_writer().write_all(b"hello\n").expect("write");
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        while written(&sink).is_empty() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(written(&sink), "hello\n");
    }

    #[test]
    fn a_stalled_stdout_drops_and_counts_lines_instead_of_blocking() {
        let sink = Sink::default();
        let stall = sink.stalled.lock().expect("stall");
        let (queue, dropped, mut guard) = start(sink.clone(), "test-log-writer").expect("thread");
        let line = vec![b'x'; 1023]
            .into_iter()
            .chain([b'\n'])
            .collect::<Vec<_>>();
        let lines = 3 * CAPACITY_BYTES / line.len();
        for _ in 0..lines {
            queue.make_writer().write_all(&line).expect("never blocks");
        }
        // At most the batch the writer took plus one full buffer were kept.
        assert!(
            dropped.count() as usize >= lines - 2 * CAPACITY_BYTES / line.len(),
            "dropped {}",
            dropped.count()
        );
        drop(stall);
        guard.flush_and_stop();
        let kept = written(&sink).len() / line.len();
        assert_eq!(kept as u64 + dropped.count(), lines as u64);
    }
}
