//! The event-stream side of a connection: register its patterns, send the
//! head and `retry:` at once, then loop — wait for queued frames, write them
//! all in one vectored write, account the progress — until the client goes,
//! the server closes it (slow, stalled) or shutdown has flushed it.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt, OwnedReadHalf, Splitable};
use monoio::net::TcpStream;

use crate::conn::{Conn, Phase, Queued, REPLAYED};
use crate::frame;
use crate::history::Gap;
use crate::http::{jittered_retry_ms, queue_raw, shed_bytes, Registration};
use crate::request::{self, Head, Method};
use crate::response;
use crate::sequencer::{epoch_first_id, now_ns, Event};
use crate::worker::Worker;
use crate::write::Batch;

/// Handles `GET`/`HEAD /events` on `conn`: answers refusals and errors
/// itself, or registers the subscription, queues the head, `retry:` and
/// catch-up, and hands back the stream for [`run`].
pub async fn subscribe(
    w: &Worker,
    conn: &Conn,
    mut stream: TcpStream,
    head: Head,
    cors: &str,
) -> Option<TcpStream> {
    let cfg = &w.shared.cfg;
    let q = match request::parse_subscribe(&head.query, cfg.limits.topics_per_subscription) {
        Ok(q) => q,
        Err(e) => {
            w.metrics.response(e.status());
            let _ = stream.write_all(response::error(&e, cors, false)).await;
            return None;
        }
    };
    let refusal = if w.draining.get() || w.shared.draining.load(Relaxed) {
        Some("draining")
    } else if w.shared.over_capacity() {
        Some("over capacity")
    } else {
        None
    };
    if let Some(why) = refusal {
        w.shared.global.shed.fetch_add(1, Relaxed);
        w.metrics.response(200);
        tracing::debug!(conn = conn.id, why, "subscription turned away");
        let _ = stream.write_all(shed_bytes(w, cors, why)).await;
        return None;
    }
    w.metrics.response(200);
    if head.method == Method::Head {
        let _ = stream
            .write_all(response::event_stream_head(cors).into_bytes())
            .await;
        return None;
    }
    let mut prelude = response::event_stream_head(cors).into_bytes();
    prelude.extend_from_slice(&frame::retry(cfg.sse.retry_ms, None));
    queue_raw(conn, Bytes::from(prelude));
    let last_event_id = head
        .last_event_id
        .filter(|s| !s.is_empty())
        .or(q.last_event_id);
    let patterns: Vec<Box<str>> = q.patterns.into_iter().map(String::into_boxed_str).collect();
    // No await from here to the registration below: `upto` is exactly the
    // last event this worker fanned out, so history covers everything up to
    // it and the ring brings everything after it.
    let upto = w.last_seen.get();
    let catch_up = catch_up(w, &patterns, last_event_id.as_deref(), q.snapshot, upto);
    if let Some(reason) = catch_up.resync {
        tracing::debug!(conn = conn.id, reason, "resync");
        w.metrics.resyncs.fetch_add(1, Relaxed);
        queue_raw(conn, resync_frame(reason));
    }
    for ev in &catch_up.events {
        conn.push(Queued {
            frame: ev.frame.clone(),
            born_ns: REPLAYED,
            topic: Some(ev.topic.clone()),
        });
    }
    conn.last_id.set(catch_up.resume_after.max(upto));
    {
        let mut subs = w.subs.borrow_mut();
        for p in &patterns {
            subs.insert(p, conn.key);
        }
    }
    *conn.patterns.borrow_mut() = patterns;
    conn.phase.set(Phase::Stream);
    w.metrics.subscribers_active.fetch_add(1, Relaxed);
    w.arm_heartbeat(conn);
    tracing::debug!(
        conn = conn.id,
        topics = conn.patterns.borrow().len(),
        "subscribed"
    );
    Some(stream)
}

/// What a new subscriber receives before the live stream.
struct CatchUp {
    /// Replayed events, or the snapshot, in id order.
    events: Vec<Event>,
    /// Why continuity could not be proven, if so.
    resync: Option<&'static str>,
    /// Id after which live events are new to this client.
    resume_after: u64,
}

/// Decides between replay, resync (+ snapshot) and plain snapshot.
fn catch_up(
    w: &Worker,
    patterns: &[Box<str>],
    last_event_id: Option<&str>,
    snapshot: bool,
    upto: u64,
) -> CatchUp {
    let h = w.shared.history.lock().expect("history lock");
    let fresh = |resync| CatchUp {
        events: if snapshot {
            h.snapshot(patterns, upto)
        } else {
            Vec::new()
        },
        resync,
        resume_after: 0,
    };
    let Some(raw) = last_event_id else {
        return fresh(None);
    };
    let Ok(id) = raw.trim().parse::<u64>() else {
        return fresh(Some("invalid_id"));
    };
    if id < epoch_first_id() {
        return fresh(Some("epoch"));
    }
    if id > h.last_id() {
        return fresh(Some("unknown_id"));
    }
    match h.replay(patterns, id, upto) {
        Ok(events) => CatchUp {
            events,
            resync: None,
            resume_after: id,
        },
        Err(Gap::Expired) => fresh(Some("history_expired")),
    }
}

/// The `event: resync` frame, which has no id (it is not part of the stream's
/// order) so a client's Last-Event-ID stays that of its last real event.
pub fn resync_frame(reason: &str) -> Bytes {
    let data = serde_json::json!({ "reason": reason }).to_string();
    Bytes::from(format!(
        "event: {}\ndata: {data}\n\n",
        request::RESYNC_EVENT
    ))
}

/// Reads (and ignores) whatever the client sends, to notice when it goes.
async fn watch_eof(mut rd: OwnedReadHalf<TcpStream>) {
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

/// The write loop of one event stream, as a task of its own; dropping the
/// registration at the end unsubscribes and frees the connection.
pub async fn run(reg: Registration, stream: TcpStream) {
    write_loop(reg.worker(), reg.conn(), stream).await;
}

async fn write_loop(w: &Worker, conn: &Conn, stream: TcpStream) {
    let (rd, mut wr) = stream.into_split();
    let eof = watch_eof(rd);
    let mut eof = std::pin::pin!(eof);
    let mut batch = Batch::new();
    let mut retry_sent = false;
    loop {
        if let Some(why) = conn.close.get() {
            tracing::debug!(conn = conn.id, reason = why.as_str(), "closing stream");
            break;
        }
        let idle = batch.is_empty() && conn.queue.borrow().is_empty();
        if idle && conn.draining.get() {
            if retry_sent {
                break;
            }
            queue_raw(
                conn,
                frame::retry(jittered_retry_ms(w.shared.cfg.sse.retry_ms), None),
            );
            retry_sent = true;
            continue;
        }
        if idle {
            batch.release();
            conn.release_idle_queue();
            let gone = monoio::select! {
                _ = &mut eof => true,
                _ = conn.work() => false,
            };
            if gone {
                tracing::debug!(conn = conn.id, "client went away");
                break;
            }
            continue;
        }
        let now = w.now_tick();
        if batch.is_empty() {
            conn.last_progress.set(now);
        }
        batch.fill(&mut conn.queue.borrow_mut());
        conn.writing.set(true);
        conn.last_write.set(now);
        w.arm_stall(conn);
        let result = monoio::select! {
            r = wr.writev(batch) => Some(r),
            _ = conn.killed() => None,
        };
        conn.writing.set(false);
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
                conn.sub_pending(n);
                m.frames_delivered.fetch_add(p.frames, Relaxed);
                m.bytes_written.fetch_add(n as u64, Relaxed);
                conn.last_progress.set(w.now_tick());
            }
            _ => {
                tracing::debug!(conn = conn.id, "write failed; client gone");
                break;
            }
        }
    }
    let _ = wr.shutdown().await;
}
