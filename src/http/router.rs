//! Routing: a request head (and its body) in, a whole response out, for
//! every path but the `/events` stream (see [`super::events`]): the CORS
//! preflight, `/publish`, the health, readiness and metrics endpoints, and
//! the demo page.

use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;

use super::error::HttpError;
use super::head::{Head, Method};
use super::publish;
use super::response::{self, Answer};
use crate::worker::Worker;

pub(super) async fn route(
    w: &Worker,
    conn: u64,
    head: &Head,
    body: BytesMut,
    cors: &str,
) -> Answer {
    let keep_alive = head.keep_alive && !w.is_draining();
    let head_only = head.method == Method::Head;
    let get_like = matches!(head.method, Method::Get | Method::Head);
    let json = |status: u16, v: &serde_json::Value| {
        let mut body = v.to_string();
        body.push('\n');
        (
            status,
            response::full(
                status,
                "application/json",
                cors,
                body.as_bytes(),
                keep_alive,
                head_only,
            ),
        )
    };
    match head.path() {
        "/events" | "/publish" if head.method == Method::Options => Ok((
            204,
            response::preflight(cors, head.acr_headers(), keep_alive),
        )),
        "/events" => Err(HttpError::MethodNotAllowed("GET, HEAD, OPTIONS")),
        "/publish" if head.method == Method::Post => {
            publish::publish(w, conn, head, body, cors, keep_alive).await
        }
        "/publish" => Err(HttpError::MethodNotAllowed("POST, OPTIONS")),
        "/healthz" if get_like => Ok(json(200, &serde_json::json!({"status": "ok"}))),
        "/readyz" if get_like => {
            if w.shared.draining.load(Relaxed) {
                Ok(json(503, &serde_json::json!({"status": "draining"})))
            } else if w.shared.cluster().is_some_and(|l| !l.is_connected()) {
                Ok(json(
                    503,
                    &serde_json::json!({"status": "nats_unreachable"}),
                ))
            } else {
                Ok(json(200, &serde_json::json!({"status": "ready"})))
            }
        }
        "/stats" if get_like => {
            let top = form_urlencoded::parse(head.query().as_bytes())
                .find(|(k, _)| k == "top")
                .and_then(|(_, v)| v.parse::<usize>().ok())
                .unwrap_or(20)
                .min(crate::worker::stats::MAX_TOP);
            Ok(json(200, &stats(w, top).await))
        }
        "/metrics" if get_like => {
            let text = w.shared.render_metrics();
            Ok((
                200,
                response::full(
                    200,
                    "text/plain; version=0.0.4; charset=utf-8",
                    "",
                    text.as_bytes(),
                    keep_alive,
                    head_only,
                ),
            ))
        }
        "/healthz" | "/readyz" | "/metrics" | "/stats" => {
            Err(HttpError::MethodNotAllowed("GET, HEAD"))
        }
        "/" if w.shared.cfg.demo.enabled && get_like => {
            let page = crate::demo::PAGE.as_bytes();
            Ok((
                200,
                response::full(
                    200,
                    "text/html; charset=utf-8",
                    "",
                    page,
                    keep_alive,
                    head_only,
                ),
            ))
        }
        _ => Err(HttpError::NotFound),
    }
}

/// `GET /stats`: asks every worker for fresh snapshots (waiting up to two
/// refresh periods for them) and merges them.
async fn stats(w: &Worker, top: usize) -> serde_json::Value {
    use crate::worker::stats::{PatternStats, REFRESH};
    let board = &w.shared.stats;
    board.watch();
    let fresh = REFRESH * 3;
    // This worker's own snapshot needs no wait.
    *board.workers[w.idx].lock().unwrap() = w.stats();
    let deadline = std::time::Instant::now() + REFRESH * 2 + std::time::Duration::from_millis(100);
    while !board.fresh(fresh) && std::time::Instant::now() < deadline {
        Box::pin(monoio::time::sleep(std::time::Duration::from_millis(20))).await;
    }
    let snaps: Vec<_> = board
        .workers
        .iter()
        .map(|s| s.lock().unwrap().clone())
        .collect();
    let mut merged: std::collections::HashMap<String, PatternStats> = Default::default();
    for s in &snaps {
        for p in &s.top {
            let e = merged
                .entry(p.pattern.clone())
                .or_insert_with(|| PatternStats {
                    pattern: p.pattern.clone(),
                    subscribers: 0,
                    history_depth: 0,
                });
            e.subscribers += p.subscribers;
            // Each worker keeps its own copy of the same history.
            e.history_depth = e.history_depth.max(p.history_depth);
        }
    }
    let mut patterns: Vec<PatternStats> = merged.into_values().collect();
    patterns.sort_by(|a, b| {
        b.subscribers
            .cmp(&a.subscribers)
            .then(a.pattern.cmp(&b.pattern))
    });
    patterns.truncate(top);
    let workers: Vec<serde_json::Value> = snaps
        .iter()
        .enumerate()
        .map(|(i, s)| {
            serde_json::json!({
                "worker": i,
                "connections": s.connections,
                "subscribers": s.subscribers,
                "queued_bytes": s.queued_bytes,
                "history_bytes": s.history_bytes,
                "history_events": s.history_events,
                "delayed_waiting": s.delayed_waiting,
                "age_ms": s.taken.map(|t| t.elapsed().as_millis() as u64),
            })
        })
        .collect();
    serde_json::json!({ "top": patterns, "workers": workers })
}
