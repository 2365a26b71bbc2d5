//! `POST /publish`: validate the body (raw or ndjson) and the token, hand
//! the events to the worker's publish (the order, or the cluster bridge),
//! answer the ids — or 503 when the publish was refused.

use std::sync::atomic::Ordering::Relaxed;

use std::time::Instant;

use bytes::BytesMut;

use super::credentials::authenticate;
use super::error::HttpError;
use super::head::Head;
use super::publish_body::{parse_publish_ndjson, parse_publish_raw};
use super::response::{self, Answer};
use crate::auth::RateVerdict;
use crate::sequencer::Ingest;
use crate::worker::Worker;

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
    let key = match w.shared.ingest {
        Ingest::Cluster(_) => idempotency_key(head)?,
        Ingest::Worker(_) => None,
    };
    let ids = w
        .publish(events, read_ns, key)
        .await
        .map_err(|r| HttpError::Unavailable(r.message, r.retry_after_s))?;
    let body = ack_body(ids.ids().into_iter(), many);
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

/// The acknowledgement: `{"id":"<id>"}` for a raw publish (the first of
/// `ids`), `{"ids":["<id>",...]}` for a batch, each ending in a newline (so
/// that a terminal prompt after `curl` starts on a line of its own). Ids
/// are decimal, so nothing needs escaping and the JSON is written straight
/// into one buffer sized for the longest ids.
fn ack_body(ids: impl Iterator<Item = u64>, many: bool) -> Vec<u8> {
    // A u64 is at most 20 digits; each id also takes two quotes and a comma.
    let mut out = Vec::with_capacity(11 + 23 * if many { ids.size_hint().0 } else { 1 });
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
        out.extend_from_slice(b"]}\n");
    } else {
        out.extend_from_slice(b"{\"id\":\"");
        crate::frame::push_decimal(&mut out, ids.next().unwrap_or(0));
        out.extend_from_slice(b"\"}\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ack_bytes() {
        let cases: &[(u64, u32, bool, &str)] = &[
            (7, 1, false, "{\"id\":\"7\"}\n"),
            (u64::MAX, 1, false, "{\"id\":\"18446744073709551615\"}\n"),
            (7, 1, true, "{\"ids\":[\"7\"]}\n"),
            (9, 3, true, "{\"ids\":[\"9\",\"10\",\"11\"]}\n"),
            (1, 0, true, "{\"ids\":[]}\n"),
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
        let mut out = v.to_string().into_bytes();
        out.push(b'\n');
        out
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
