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
use std::time::Duration;

use crate::auth::{Access, Grant};
use crate::config::Compression;
use crate::frame;
use crate::gzip::StreamEncoder;
use crate::sequencer::link::{Fetch, Link, Request};
use crate::sequencer::reply::{FetchNext, Reply};
use crate::worker::conn::Conn;
use crate::worker::queued::{Queued, REPLAYED};
use crate::worker::{CatchUp, StormPermit, Worker};

/// Handles `GET`/`HEAD /events` on `conn`: answers refusals and errors
/// itself, or registers the subscription, queues the head, `retry:` and
/// catch-up, and hands back the stream for [`run`].
pub(super) async fn subscribe<'w>(
    w: &'w Worker,
    conn: &Conn,
    mut stream: TcpStream,
    head: Head,
    cors: &str,
    permit: &mut Option<StormPermit<'w>>,
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
    let refusal = if w.is_draining() || w.shared.draining.load(Relaxed) {
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
    let compression_on = cfg.sse.compression == Compression::Gzip;
    let gzip = compression_on && head.accepts_gzip;
    let encoding = response::encoding_headers(compression_on, gzip);
    if head.method == Method::Head {
        let _ = stream
            .write_all(response::event_stream_head(cors, encoding).into_bytes())
            .await;
        return None;
    }
    if gzip {
        conn.set_encoder(StreamEncoder::new(w.gzip_budget()));
    }
    if let Some(interval_ns) =
        throttle_interval(q.max_rate, grant.as_ref().and_then(|g| g.max_rate))
    {
        conn.set_throttle(interval_ns);
    }
    let response_head = Bytes::from(response::event_stream_head(cors, encoding).into_bytes());
    let retry = frame::retry(cfg.sse.retry_ms, None);
    let last_event_id = head
        .last_event_id()
        .filter(|s| !s.is_empty())
        .or(q.last_event_id.as_deref());
    // Cluster mode: what this node's history cannot prove (older events,
    // an id it has not read yet, the snapshot) is read from JetStream
    // first, written straight to the socket slice by slice; the resume
    // point it ends at is where the node's own history takes over below.
    let mut resume = None;
    if let Some(link) = w.shared.cluster().filter(|_| !delayed) {
        let local = w.catch_up(&patterns, last_event_id, q.snapshot);
        if let Some((after, resync)) = remote_catch_up_needed(&local, last_event_id, q.snapshot) {
            // Waiting on JetStream is not work for this core: let the rest
            // of a connection storm through meanwhile, and queue again for
            // the registration.
            drop(permit.take());
            let fetched = from_jetstream(
                w,
                conn,
                link,
                &mut stream,
                (&response_head, &retry),
                &patterns,
                after,
                resync,
                q.snapshot,
            )
            .await;
            *permit = w.storm_gate.acquire().await;
            match fetched {
                Remote::Resume(r) => resume = Some(r),
                Remote::Gone => return None,
                Remote::Unavailable => {
                    w.shared.global.shed.fetch_add(1, Relaxed);
                    let _ = stream
                        .write_all(shed_bytes(w, cors, "cluster unavailable"))
                        .await;
                    return None;
                }
            }
        }
    }
    if resume.is_none() {
        conn.push_identity(response_head);
        if conn.is_compressed() {
            conn.push_identity(StreamEncoder::header());
        }
        conn.push_raw(retry);
    }
    // No await from here to the registration below: `upto` is exactly the
    // last event this worker fanned out (or, for a delayed subscription,
    // released to its delayed view), so its history covers everything up
    // to it and the ring (or the delay line) brings everything after it.
    let (upto, catch_up) = if let Some(r) = resume {
        (w.last_seen(), w.catch_up_after(&patterns, r))
    } else if delayed {
        w.catch_up_delayed(&patterns, last_event_id, q.snapshot)
    } else {
        (
            w.last_seen(),
            w.catch_up(&patterns, last_event_id, q.snapshot),
        )
    };
    // The head shares the request buffer's memory; the stream keeps only
    // the patterns, copied above.
    drop(head);
    let mut catch_up = catch_up;
    if conn.is_throttled() {
        // A throttled resume gets each topic's newest event, and the live
        // stream's next event of that topic waits for its interval.
        newest_per_topic(&mut catch_up.before_resync);
        newest_per_topic(&mut catch_up.events);
        let now = crate::event::now_ns();
        for ev in catch_up.before_resync.iter().chain(&catch_up.events) {
            conn.throttle_note_sent(&ev.topic, now);
        }
    }
    for ev in &catch_up.before_resync {
        conn.push(Queued {
            frame: ev.frame.clone(),
            born_ns: REPLAYED,
            topic: Some(ev.topic.clone()),
        });
    }
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
    let expires = grant.map(|g| (g.exp_ms.saturating_add(cfg.auth.leeway_ms), unix_ms()));
    w.start_stream(
        conn,
        patterns,
        delayed,
        catch_up.resume_after.max(upto),
        expires,
    );
    tracing::debug!(conn = conn.id, request_id = %conn.request_id(), topics = conn.pattern_count(), "subscribed");
    Some(stream)
}

/// The interval of a subscription's `max_rate`: the smaller of the asked
/// and the granted rate, the granted one when none was asked.
fn throttle_interval(asked: Option<f64>, granted: Option<f64>) -> Option<u64> {
    let rate = match (asked, granted) {
        (Some(a), Some(g)) => a.min(g),
        (a, g) => a.or(g)?,
    };
    Some(crate::worker::throttle_interval(rate))
}

/// Keeps, in id order, only the newest event of each topic.
fn newest_per_topic(events: &mut Vec<crate::event::Event>) {
    let mut seen = std::collections::HashSet::new();
    let mut kept: Vec<crate::event::Event> = events
        .drain(..)
        .rev()
        .filter(|e| seen.insert(e.topic.clone()))
        .collect();
    kept.reverse();
    *events = kept;
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

/// Whether a cluster node must ask JetStream, given what its own history
/// decided: `Some((replay after this id, or fresh; the resync to send))`.
/// A snapshot always comes from JetStream (the newest value in the
/// cluster, never an older one this node happens to hold); a replay only
/// when this node's history cannot prove it.
fn remote_catch_up_needed(
    local: &CatchUp,
    last_event_id: Option<&str>,
    snapshot: bool,
) -> Option<(Option<u64>, Option<&'static str>)> {
    match local.resync {
        None if last_event_id.is_some() => None,
        None => snapshot.then_some((None, None)),
        Some("invalid_id") => snapshot.then_some((None, Some("invalid_id"))),
        // Older than this node's history, or not read here yet: JetStream
        // decides (replay, history_expired or epoch).
        Some(_) => last_event_id
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(|id| (Some(id), None)),
    }
}

/// How a catch-up from JetStream ended.
enum Remote {
    /// Written; live events after this id are new to the client.
    Resume(u64),
    /// The client went away, or a write stalled.
    Gone,
    /// JetStream could not be read: turn the subscriber away.
    Unavailable,
}

/// Reads the catch-up from JetStream through the bridge, one bounded slice
/// at a time, writing each (after the head and the `retry:`) before asking
/// for the next, so memory stays bounded however far back the client is.
#[allow(clippy::too_many_arguments)]
async fn from_jetstream(
    w: &Worker,
    conn: &Conn,
    link: &Link,
    stream: &mut TcpStream,
    (response_head, retry): (&Bytes, &Bytes),
    patterns: &[Box<str>],
    mut after: Option<u64>,
    mut resync: Option<&'static str>,
    snapshot: bool,
) -> Remote {
    let Some(slot) = w.reply_slot() else {
        return Remote::Unavailable;
    };
    let token = slot.token();
    let wait =
        Duration::from_millis(w.shared.cfg.cluster.publish_timeout_ms) + Duration::from_secs(3);
    let stall = Duration::from_millis(w.shared.cfg.sse.write_stall_ms);
    // The head (and gzip header) as they are; the body through the stream's
    // encoding, one piece per slice.
    let mut out = response_head.to_vec();
    if conn.is_compressed() {
        out.extend_from_slice(&StreamEncoder::header());
    }
    let mut plain = retry.to_vec();
    let mut first = true;
    let result = loop {
        let req = Request::Fetch(Fetch {
            origin: w.idx,
            token,
            patterns: patterns.to_vec(),
            after,
            snapshot: snapshot && first,
        });
        if link.send(req).is_err() {
            break Remote::Unavailable;
        }
        let Some(Reply::Fetched(mut f)) = w.reply_within(&slot, wait).await else {
            break Remote::Unavailable;
        };
        if f.next == FetchNext::Unavailable {
            break Remote::Unavailable;
        }
        if first {
            if let Some(r) = resync.take().or(f.resync) {
                tracing::debug!(conn = conn.id, request_id = %conn.request_id(), reason = r, "resync");
                w.metrics.resyncs.fetch_add(1, Relaxed);
                plain.extend_from_slice(&frame::resync(r));
            }
        }
        first = false;
        if conn.is_throttled() {
            // Each topic's newest of this slice (SPEC §3: a throttled
            // resume gets the newest event per topic).
            newest_per_topic(&mut f.events);
            let now = crate::event::now_ns();
            for ev in &f.events {
                conn.throttle_note_sent(&ev.topic, now);
            }
        }
        for ev in &f.events {
            plain.extend_from_slice(&ev.frame);
        }
        out.extend_from_slice(&conn.encode(&Bytes::from(std::mem::take(&mut plain))));
        let frames = f.events.len() as u64;
        let n = out.len();
        let written = monoio::select! {
            r = stream.write_all(std::mem::take(&mut out)) => r.0.is_ok(),
            _ = Box::pin(monoio::time::sleep(stall)) => false,
        };
        if !written {
            break Remote::Gone;
        }
        w.metrics.frames_delivered.fetch_add(frames, Relaxed);
        w.metrics.bytes_written.fetch_add(n as u64, Relaxed);
        match f.next {
            FetchNext::After(id) => after = Some(id),
            FetchNext::Resume(id) => break Remote::Resume(id),
            FetchNext::Unavailable => unreachable!("handled above"),
        }
    };
    result
}

/// The bytes that turn a subscriber away without stranding a browser: 200,
/// a randomised `retry:` and the reason as a comment, then close.
fn shed_bytes(w: &Worker, cors: &str, why: &str) -> Bytes {
    let mut v = response::event_stream_head(cors, "").into_bytes();
    v.extend_from_slice(&frame::retry(
        frame::jittered_retry_ms(w.shared.cfg.sse.retry_ms),
        Some(why),
    ));
    Bytes::from(v)
}
