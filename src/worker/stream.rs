//! The event-stream side of a connection, once `/events` has registered it:
//! loop — wait for queued frames, write them all in one vectored write,
//! account the progress — until the client goes, the server closes it
//! (slow, stalled) or shutdown has flushed it and said `retry:`.

use std::sync::atomic::Ordering::Relaxed;

use monoio::io::{AsyncReadRent, AsyncWriteRent, OwnedReadHalf, OwnedWriteHalf, Splitable};
use monoio::net::TcpStream;

use super::batch::Batch;
use super::conn::Conn;
use super::local::yield_now;
use super::queued::{Queued, REPLAYED};
use super::{Registration, Worker};
use crate::event::now_ns;
use crate::frame;

/// Reads (and ignores) whatever the client sends, to notice when it goes.
async fn watch_eof(rd: &mut OwnedReadHalf<TcpStream>) {
    let mut buf = Vec::with_capacity(64);
    loop {
        let (res, b) = rd.read(buf).await;
        buf = b;
        buf.clear();
        match res {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// Counts a subscriber write in flight in `Worker::writes_in_flight`
/// for as long as it lives.
struct InFlight<'a>(&'a Worker);

impl<'a> InFlight<'a> {
    fn new(w: &'a Worker) -> Self {
        w.writes_in_flight.set(w.writes_in_flight.get() + 1);
        InFlight(w)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        let n = &self.0.writes_in_flight;
        n.set(n.get().saturating_sub(1));
    }
}

/// The write loop of one event stream, as a task of its own; dropping the
/// registration at the end unsubscribes and frees the connection.
///
/// Not an `async fn`: an async fn keeps its arguments in its task for its
/// whole life besides the locals it moves them into (`reg` twice, the
/// 80-byte `TcpStream` twice, over nested calls), 240 of the task's 968
/// bytes on every idle subscriber. The block below borrows what it captures
/// in place, and the stream is split before the task is made.
pub(crate) fn run(reg: Registration, stream: TcpStream) -> impl std::future::Future<Output = ()> {
    let (mut rd, mut wr) = stream.into_split();
    async move {
        let w = reg.worker();
        let conn = reg.conn();
        let client_gone = {
            // Pinned in the task itself (not boxed: one cold allocation less
            // to reach on every write), and dropped at the end of this block,
            // which ends its borrow of the read half before the halves are
            // joined.
            let eof = std::pin::pin!(watch_eof(&mut rd));
            stream_frames(w, conn, &mut wr, eof).await
        };
        close(w, rd, wr, client_gone).await;
    }
}

/// Closes a stream whose loop has ended.
async fn close(
    w: &Worker,
    rd: OwnedReadHalf<TcpStream>,
    mut wr: OwnedWriteHalf<TcpStream>,
    client_gone: bool,
) {
    // Closing costs the kernel a good deal: on loopback the whole FIN
    // exchange (or the RST) runs in the closing thread, 20-30 µs a socket.
    // When thousands of clients go at once, they close in groups of
    // STORM_GROUP: a permit is held across one yield, so every other task
    // (acknowledgements, the ring drain, live writes) runs between groups.
    let permit = w.storm_gate.acquire().await;
    if !client_gone {
        // The server ends the stream (drain, slow, stalled): a graceful FIN
        // after what was written.
        let _ = wr.shutdown().await;
    }
    // Joined again, the halves close without a second shutdown (dropping
    // the write half alone would send a FIN synchronously).
    if let Ok(stream) = rd.reunite(wr) {
        if client_gone {
            // The client has gone (EOF or a failed write): nothing is left
            // to deliver, so reset instead of the FIN/ACK exchange, which
            // costs both ends more and leaves the client a TIME_WAIT.
            crate::sys::reset_on_close(&stream);
        }
        drop(stream);
    }
    yield_now().await;
    drop(permit);
}

/// Writes queued frames until the stream ends; true when the client went
/// (EOF or a failed write), false when the server ends it.
async fn stream_frames(
    w: &Worker,
    conn: &Conn,
    wr: &mut OwnedWriteHalf<TcpStream>,
    mut eof: std::pin::Pin<&mut impl std::future::Future<Output = ()>>,
) -> bool {
    let mut client_gone = false;
    let mut batch = Batch::new();
    let mut retry_sent = false;
    let window = w.shared.cfg.sse.write_delay_ms;
    let write_cap = w.bound().write_cap();
    // The coalescing window was already given to the frames queued now.
    let mut held = false;
    loop {
        if let Some(why) = conn.closed() {
            tracing::debug!(conn = conn.id, request_id = %conn.request_id(), reason = why.as_str(), "closing stream");
            break;
        }
        let idle = batch.is_empty() && !conn.has_queued();
        if idle && conn.is_draining() {
            if retry_sent {
                break;
            }
            conn.push_raw(frame::retry(
                frame::jittered_retry_ms(w.shared.cfg.sse.retry_ms),
                None,
            ));
            // A compressed stream ends its gzip member properly.
            conn.push_trailer();
            retry_sent = true;
            continue;
        }
        if idle {
            batch.release();
            conn.release_idle_queue();
            let gone = monoio::select! {
                _ = eof.as_mut() => true,
                _ = conn.work() => false,
            };
            if gone {
                tracing::debug!(conn = conn.id, request_id = %conn.request_id(), "client went away");
                client_gone = true;
                break;
            }
            continue;
        }
        let fresh = batch.is_empty();
        let front = if fresh { conn.front_live_born() } else { None };
        if window > 0
            && !held
            && front.is_some()
            && !conn.is_draining()
            && conn.pending() < w.shared.cfg.sse.max_pending_bytes / 2
        {
            // sse.write_delay_ms: let more events join this write, until
            // the worker's next flush tick (at most the window away).
            held = true;
            w.flush.hold(now_ns());
            monoio::select! {
                _ = w.flush.released() => {}
                _ = conn.killed() => {}
            }
            continue;
        }
        if let Some(born) = front {
            w.metrics
                .stage_write_submitted
                .observe_ns(now_ns().saturating_sub(born));
        }
        conn.begin_write(w.now_tick(), &mut batch, write_cap);
        w.timers.arm_stall(conn);
        let in_flight = InFlight::new(w);
        let result = monoio::select! {
            r = wr.writev(batch) => Some(r),
            _ = conn.killed() => None,
        };
        drop(in_flight);
        let sent = match &result {
            Some((Ok(n), _)) => *n,
            _ => 0,
        };
        conn.end_write(sent, w.now_tick());
        held = false;
        if sent > 0 {
            // A fan-out held back for a backlog re-judges it now.
            w.room.notify();
        }
        let Some((res, b)) = result else { break };
        batch = b;
        match res {
            Ok(n) if n > 0 => {
                let t = now_ns();
                let m = &w.metrics;
                let p = batch.advance(n, |q: &Queued| {
                    if q.born_ns != 0 && q.born_ns != REPLAYED {
                        m.observe_latency_ns(t.saturating_sub(q.born_ns));
                    }
                });
                m.frames_delivered.fetch_add(p.frames, Relaxed);
                m.bytes_written.fetch_add(n as u64, Relaxed);
                // A busy worker may not reach its timers for a while.
                w.flush.fire_if_due(t);
            }
            _ => {
                tracing::debug!(conn = conn.id, request_id = %conn.request_id(), "write failed; client gone");
                client_gone = true;
                break;
            }
        }
    }
    client_gone
}
