//! `GET /events`: validate the query, turn the subscriber away (200 +
//! `retry:`) when draining or over capacity, else queue the head and
//! `retry:`, the catch-up (replay after Last-Event-ID, resync, snapshot)
//! and register the patterns in the worker's table — all in one turn, so
//! the catch-up and the live stream meet with no gap and no duplicate.

use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use super::credentials::{authenticate, unix_ms};
use super::error::HttpError;
use super::head::{Head, Method};
use super::query::parse_subscribe;
use super::response;
use crate::auth::{Access, Grant};
use crate::frame;
use crate::worker::conn::{Conn, Phase, Queued, REPLAYED};
use crate::worker::Worker;

/// Handles `GET`/`HEAD /events` on `conn`: answers refusals and errors
/// itself, or registers the subscription, queues the head, `retry:` and
/// catch-up, and hands back the stream for [`run`].
pub(super) async fn subscribe(
    w: &Worker,
    conn: &Conn,
    mut stream: TcpStream,
    head: Head,
    cors: &str,
) -> Option<TcpStream> {
    let cfg = &w.shared.cfg;
    let checked = parse_subscribe(head.query(), cfg.limits.topics_per_subscription)
        .and_then(|q| Ok((authorize(w, conn, &head, &q.patterns)?, q)));
    let ((grant, delayed, patterns), q) = match checked {
        Ok(v) => v,
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
        tracing::debug!(conn = conn.id, request_id = %conn.request_id(), why, "subscription turned away");
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
    conn.push_raw(Bytes::from(prelude));
    let last_event_id = head
        .last_event_id()
        .filter(|s| !s.is_empty())
        .or(q.last_event_id.as_deref());
    // No await from here to the registration below: `upto` is exactly the
    // last event this worker fanned out (or, for a delayed subscription,
    // released to its delayed view), so its history covers everything up
    // to it and the ring (or the delay line) brings everything after it.
    let (upto, catch_up) = if delayed {
        w.catch_up_delayed(&patterns, last_event_id, q.snapshot)
    } else {
        (
            w.last_seen.get(),
            w.catch_up(&patterns, last_event_id, q.snapshot),
        )
    };
    // The head shares the request buffer's memory; the stream keeps only
    // the patterns, copied above.
    drop(head);
    if let Some(reason) = catch_up.resync {
        tracing::debug!(conn = conn.id, request_id = %conn.request_id(), reason, "resync");
        w.metrics.resyncs.fetch_add(1, Relaxed);
        conn.push_raw(frame::resync(reason));
    }
    for ev in &catch_up.events {
        conn.push(Queued {
            frame: ev.frame.clone(),
            born_ns: REPLAYED,
            topic: Some(ev.topic.clone()),
        });
    }
    conn.set_last_id(catch_up.resume_after.max(upto));
    {
        let mut subs = if delayed {
            w.delayed_subs.borrow_mut()
        } else {
            w.subs.borrow_mut()
        };
        for p in &patterns {
            subs.insert(p, conn.key);
        }
    }
    conn.set_patterns(patterns, delayed);
    conn.set_phase(Phase::Stream);
    w.metrics.subscribers_active.fetch_add(1, Relaxed);
    w.timers.arm_heartbeat(conn);
    if let Some(g) = grant {
        w.timers
            .arm_expiry(conn, g.exp_ms.saturating_add(cfg.auth.leeway_ms), unix_ms());
    }
    tracing::debug!(conn = conn.id, request_id = %conn.request_id(), topics = conn.pattern_count(), "subscribed");
    Some(stream)
}

/// The subscription's patterns as the worker keeps them (qualified with
/// the token's namespace while auth is on), whether they are read delayed,
/// and the grant; 401 without a valid token, 403 for a pattern no grant
/// covers, 400 for a mix of real-time and delayed patterns (one
/// `Last-Event-ID` cannot position two time-shifted views).
type Authorized = (Option<Grant>, bool, Vec<Box<str>>);

fn authorize(
    w: &Worker,
    conn: &Conn,
    head: &Head,
    patterns: &[String],
) -> Result<Authorized, HttpError> {
    let Some(grant) = authenticate(w, conn.id, head)? else {
        let plain = patterns.iter().map(|p| p.as_str().into()).collect();
        return Ok((None, false, plain));
    };
    let (mut real_time, mut delayed) = (false, false);
    for p in patterns {
        match grant.subscribe_access(p) {
            Access::RealTime => real_time = true,
            Access::Delayed => delayed = true,
            Access::Denied => {
                return Err(HttpError::Forbidden(
                    "the token's subscribe and subscribe_delayed claims do not cover this pattern",
                ))
            }
        }
    }
    if real_time && delayed {
        return Err(HttpError::BadRequest(
            "mixed_delay",
            "this subscription mixes real-time and delayed-only patterns; open one stream for each",
        ));
    }
    let ns = grant.namespace();
    let qualified = patterns
        .iter()
        .map(|p| format!("{ns}{p}").into_boxed_str())
        .collect();
    Ok((Some(grant), delayed, qualified))
}

/// The bytes that turn a subscriber away without stranding a browser: 200,
/// a randomised `retry:` and the reason as a comment, then close.
fn shed_bytes(w: &Worker, cors: &str, why: &str) -> Bytes {
    let mut v = response::event_stream_head(cors).into_bytes();
    v.extend_from_slice(&frame::retry(
        frame::jittered_retry_ms(w.shared.cfg.sse.retry_ms),
        Some(why),
    ));
    Bytes::from(v)
}
