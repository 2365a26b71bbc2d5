//! `POST /publish`: validate the body (raw or ndjson), hand the events to
//! the sequencer over its bounded queue (full means 503), wait for the
//! acknowledgement that they are on every worker's ring, answer the ids.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use std::time::Instant;

use bytes::BytesMut;

use super::credentials::authenticate;
use super::error::HttpError;
use super::head::Head;
use super::publish_body::{parse_publish_ndjson, parse_publish_raw};
use super::response;
use super::router::Answer;
use crate::auth::RateVerdict;
use crate::event::NewEvent;
use crate::sequencer::link::{Link, Publish as ClusterPublish, Request};
use crate::sequencer::order::{Full, Order};
use crate::sequencer::reply::Reply;
use crate::sequencer::{Ingest, PublishReq, SeqMsg};
use crate::worker::{Ack, ReplyBox, Worker};

pub(super) async fn publish(
    w: &Worker,
    conn: u64,
    head: &Head,
    body: BytesMut,
    cors: &str,
    keep_alive: bool,
) -> Answer {
    // The request (head and body) has been read: the `sequenced` stage
    // starts here.
    let read_ns = crate::event::now_ns();
    let cfg = &w.shared.cfg;
    if w.shared.draining.load(Relaxed) {
        return Err(HttpError::Unavailable("the server is shutting down", 1));
    }
    if w.shared.over_capacity() {
        return Err(HttpError::Unavailable(
            "the server is at limits.max_connections",
            1,
        ));
    }
    let grant = authenticate(w, conn, head)?;
    // The events' data are slices of the body (no copy) until the frames
    // are encoded.
    let body = body.freeze();
    let mut events = if head.ndjson {
        parse_publish_ndjson(&body, cfg.limits.max_event_bytes)?
    } else {
        vec![parse_publish_raw(
            head.query(),
            body,
            cfg.limits.max_event_bytes,
        )?]
    };
    if let Some(g) = &grant {
        if !events.iter().all(|ev| g.may_publish(&ev.topic)) {
            return Err(HttpError::Forbidden(
                "the token's publish claim does not cover this topic; nothing was published",
            ));
        }
        let n = events.len() as u64;
        if let RateVerdict::Limited(wait) = w.shared.publish_rate.take(&g.holder, n, Instant::now())
        {
            let secs = wait.as_secs_f64().ceil().clamp(1.0, 3600.0) as u32;
            return Err(HttpError::RateLimited(
                "this token is over limits.publish_rate_per_token",
                secs,
            ));
        }
        let ns = g.namespace();
        for ev in &mut events {
            ev.topic = format!("{ns}{}", ev.topic).into();
        }
    }
    let many = head.ndjson;
    let body = match &w.shared.ingest {
        Ingest::Worker(order) => {
            let (first, count) = sequence_here(w, order, events, read_ns).await?;
            ack_body((0..u64::from(count)).map(|i| first + i), many)
        }
        Ingest::Thread(tx) => {
            let (first, count) = sequence_on_thread(w, tx, events, read_ns).await?;
            ack_body((0..u64::from(count)).map(|i| first + i), many)
        }
        Ingest::Cluster(link) => {
            let key = idempotency_key(head)?;
            let ids = publish_to_cluster(w, link, events, key).await?;
            ack_body(ids.into_iter(), many)
        }
    };
    Ok((
        200,
        response::full(200, "application/json", cors, &body, keep_alive, false),
    ))
}

/// `Idempotency-Key`: 1 to 128 printable ASCII characters without spaces
/// (it becomes a NATS message id); anything else is a 400.
fn idempotency_key(head: &Head) -> Result<Option<Box<str>>, HttpError> {
    let Some(k) = head.idempotency_key() else {
        return Ok(None);
    };
    let k = k.trim();
    if k.is_empty() || k.len() > 128 || !k.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(HttpError::BadRequest(
            "bad_idempotency_key",
            "Idempotency-Key must be 1 to 128 printable ASCII characters without spaces",
        ));
    }
    Ok(Some(k.into()))
}

/// How much longer than `cluster.publish_timeout_ms` a worker waits for
/// the bridge's answer before it answers 503 itself (the bridge answers
/// by the timeout plus its grace).
const BRIDGE_SLACK: std::time::Duration = std::time::Duration::from_secs(3);

/// Cluster mode: hands the events to the bridge, which publishes them
/// into JetStream, and waits for its answer: the ids, or a 503.
async fn publish_to_cluster(
    w: &Worker,
    link: &Link,
    events: Vec<NewEvent>,
    key: Option<Box<str>>,
) -> Result<Vec<u64>, HttpError> {
    const UNREACHABLE: HttpError = HttpError::Unavailable(
        "the cluster's NATS JetStream is unreachable; retry shortly",
        1,
    );
    if !link.is_connected() {
        w.shared.global.publish_rejected.fetch_add(1, Relaxed);
        return Err(UNREACHABLE);
    }
    let cell = Rc::new(ReplyBox::default());
    let token = w.replies.borrow_mut().insert(cell.clone()) as u32;
    let req = Request::Publish(ClusterPublish {
        origin: Some(w.idx),
        token,
        events,
        key,
    });
    if link.send(req).is_err() {
        w.replies.borrow_mut().remove(token as usize);
        w.shared.global.publish_rejected.fetch_add(1, Relaxed);
        return Err(HttpError::Unavailable(
            "publish queue is full; retry shortly",
            1,
        ));
    }
    let wait =
        std::time::Duration::from_millis(w.shared.cfg.cluster.publish_timeout_ms) + BRIDGE_SLACK;
    let reply = monoio::select! {
        r = cell.take() => Some(r),
        _ = Box::pin(monoio::time::sleep(wait)) => None,
    };
    w.replies.borrow_mut().remove(token as usize);
    match reply {
        Some(Reply::Published(Ok(ids))) => Ok(ids),
        Some(Reply::Published(Err(refusal))) => {
            w.shared.global.publish_rejected.fetch_add(1, Relaxed);
            Err(HttpError::Unavailable(
                refusal.message,
                refusal.retry_after_s,
            ))
        }
        _ => {
            w.shared.global.publish_rejected.fetch_add(1, Relaxed);
            Err(UNREACHABLE)
        }
    }
}

/// Hands the events to the sequencer thread and waits for its
/// acknowledgement: the first id and the count.
async fn sequence_on_thread(
    w: &Worker,
    tx: &crossbeam_channel::Sender<SeqMsg>,
    events: Vec<NewEvent>,
    read_ns: u64,
) -> Result<(u64, u32), HttpError> {
    let cell = Rc::new(Ack::default());
    let token = w.acks.borrow_mut().insert(cell.clone()) as u32;
    let req = SeqMsg::Publish(PublishReq {
        origin: Some(w.idx),
        token,
        events,
        read_ns,
    });
    if let Err(e) = tx.try_send(req) {
        w.acks.borrow_mut().remove(token as usize);
        w.shared.global.publish_rejected.fetch_add(1, Relaxed);
        return Err(match e {
            crossbeam_channel::TrySendError::Full(_) => {
                HttpError::Unavailable("publish queue is full; retry shortly", 1)
            }
            crossbeam_channel::TrySendError::Disconnected(_) => {
                HttpError::Unavailable("the server is shutting down", 1)
            }
        });
    }
    let ack = cell.wait().await;
    w.acks.borrow_mut().remove(token as usize);
    Ok(ack)
}

/// How long a publish waits for room in a full ring (worker-side order)
/// before it is answered 503.
const FULL_RING_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// Sequences the events on this worker (`server.sequencer = "worker"`).
/// Answered at once, unless this worker's fan-out is held back or behind:
/// then it waits for the acknowledgement its own ring drain takes behind
/// the events (a message to itself: no thread hop), so a held-back worker
/// slows its publishers instead of letting them fill the rings. While a
/// ring is full (the workers are behind) it waits outside the order's
/// lock, retrying every millisecond, and gives up with 503 after
/// `FULL_RING_WAIT`.
async fn sequence_here(
    w: &Worker,
    order: &Order,
    mut events: Vec<NewEvent>,
    read_ns: u64,
) -> Result<(u64, u32), HttpError> {
    let cell = Rc::new(Ack::default());
    let token = w.acks.borrow_mut().insert(cell.clone()) as u32;
    let give_up = Instant::now() + FULL_RING_WAIT;
    loop {
        let behind = w.fanout_behind();
        match order.sequence(events, read_ns, Some(w.idx), behind.then_some(token)) {
            Ok(ack) => {
                w.inbox.notify();
                let ack = if behind { cell.wait().await } else { ack };
                w.acks.borrow_mut().remove(token as usize);
                return Ok(ack);
            }
            Err(Full(back)) => events = back,
        }
        if Instant::now() >= give_up || w.shared.draining.load(Relaxed) {
            w.acks.borrow_mut().remove(token as usize);
            w.shared.global.publish_rejected.fetch_add(1, Relaxed);
            return Err(HttpError::Unavailable(
                "the workers are behind (ingest rings full); retry shortly",
                1,
            ));
        }
        // This worker's own ring drain runs meanwhile.
        Box::pin(monoio::time::sleep(std::time::Duration::from_millis(1))).await;
    }
}

/// The acknowledgement: `{"id":"<id>"}` for a raw publish (the first of
/// `ids`), `{"ids":["<id>",...]}` for a batch. Ids are decimal, so nothing
/// needs escaping and the JSON is written straight into one buffer sized
/// for the longest ids.
fn ack_body(ids: impl Iterator<Item = u64>, many: bool) -> Vec<u8> {
    // A u64 is at most 20 digits; each id also takes two quotes and a comma.
    let mut out = Vec::with_capacity(10 + 23 * if many { ids.size_hint().0 } else { 1 });
    let mut ids = ids;
    if many {
        out.extend_from_slice(b"{\"ids\":[");
        for (i, id) in ids.enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.push(b'"');
            crate::frame::push_decimal(&mut out, id);
            out.push(b'"');
        }
        out.extend_from_slice(b"]}");
    } else {
        out.extend_from_slice(b"{\"id\":\"");
        crate::frame::push_decimal(&mut out, ids.next().unwrap_or(0));
        out.extend_from_slice(b"\"}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bytes() {
        let cases: &[(u64, u32, bool, &str)] = &[
            (7, 1, false, r#"{"id":"7"}"#),
            (u64::MAX, 1, false, r#"{"id":"18446744073709551615"}"#),
            (7, 1, true, r#"{"ids":["7"]}"#),
            (9, 3, true, r#"{"ids":["9","10","11"]}"#),
            (1, 0, true, r#"{"ids":[]}"#),
        ];
        for &(first, count, many, want) in cases {
            assert_eq!(
                std::str::from_utf8(&ack_body((0..u64::from(count)).map(|i| first + i), many))
                    .unwrap(),
                want
            );
        }
    }

    /// The bytes serde_json wrote before `ack_body` replaced it.
    fn ack_via_serde(first: u64, count: u32, many: bool) -> Vec<u8> {
        let v = if many {
            let ids: Vec<String> = (first..first + u64::from(count))
                .map(|i| i.to_string())
                .collect();
            serde_json::json!({ "ids": ids })
        } else {
            serde_json::json!({ "id": first.to_string() })
        };
        v.to_string().into_bytes()
    }

    proptest::proptest! {
        #[test]
        fn ack_matches_serde_json(
            first in proptest::prelude::any::<u64>(),
            count in 1u32..64,
            many in proptest::prelude::any::<bool>(),
        ) {
            let first = first.min(u64::MAX - u64::from(count));
            proptest::prop_assert_eq!(ack_body((0..u64::from(count)).map(|i| first + i), many), ack_via_serde(first, count, many));
        }
    }
}
