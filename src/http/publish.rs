//! `POST /publish`: validate the body (raw or ndjson), hand the events to
//! the sequencer over its bounded queue (full means 503), wait for the
//! acknowledgement that they are on every worker's ring, answer the ids.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;

use super::error::HttpError;
use super::head::Head;
use super::publish_body::{parse_publish_ndjson, parse_publish_raw};
use super::response;
use super::router::Answer;
use crate::sequencer::{PublishReq, SeqMsg};
use crate::worker::{Ack, Worker};

pub(super) async fn publish(
    w: &Worker,
    head: &Head,
    body: BytesMut,
    cors: &str,
    keep_alive: bool,
) -> Answer {
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
    let events = if head.ndjson {
        parse_publish_ndjson(&body, cfg.limits.max_event_bytes)?
    } else {
        // The data becomes the event's `String`: free when the body was
        // decoded into its own buffer (chunked), one copy when it shares
        // the connection's read buffer.
        vec![parse_publish_raw(
            head.query(),
            Vec::from(body),
            cfg.limits.max_event_bytes,
        )?]
    };
    let many = head.ndjson;
    let cell = Rc::new(Ack::default());
    let token = w.acks.borrow_mut().insert(cell.clone()) as u32;
    let req = SeqMsg::Publish(PublishReq {
        origin: Some(w.idx),
        token,
        events,
    });
    if let Err(e) = w.shared.seq_tx.try_send(req) {
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
    let (first, count) = cell.wait().await;
    w.acks.borrow_mut().remove(token as usize);
    let v = if many {
        let ids: Vec<String> = (first..first + count as u64)
            .map(|i| i.to_string())
            .collect();
        serde_json::json!({ "ids": ids })
    } else {
        serde_json::json!({ "id": first.to_string() })
    };
    Ok((
        200,
        response::full(
            200,
            "application/json",
            cors,
            v.to_string().as_bytes(),
            keep_alive,
            false,
        ),
    ))
}
