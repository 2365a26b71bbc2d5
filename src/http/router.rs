//! Routing: a request head (and its body) in, a whole response out, for
//! every path but the `/events` stream (see [`super::events`]): the CORS
//! preflight, `/publish`, the health, readiness and metrics endpoints, and
//! the demo page.

use std::sync::atomic::Ordering::Relaxed;

use bytes::BytesMut;

use super::error::HttpError;
use super::head::{Head, Method};
use super::{publish, response};
use crate::worker::Worker;

/// A status and the whole response, or the error to answer.
pub(super) type Answer = Result<(u16, Vec<u8>), HttpError>;

pub(super) async fn route(w: &Worker, head: &Head, body: BytesMut, cors: &str) -> Answer {
    let keep_alive = head.keep_alive && !w.draining.get();
    let head_only = head.method == Method::Head;
    let get_like = matches!(head.method, Method::Get | Method::Head);
    let json = |status: u16, v: &serde_json::Value| {
        (
            status,
            response::full(
                status,
                "application/json",
                cors,
                v.to_string().as_bytes(),
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
            publish::publish(w, head, body, cors, keep_alive).await
        }
        "/publish" => Err(HttpError::MethodNotAllowed("POST, OPTIONS")),
        "/healthz" if get_like => Ok(json(200, &serde_json::json!({"status": "ok"}))),
        "/readyz" if get_like => {
            if w.shared.draining.load(Relaxed) {
                Ok(json(503, &serde_json::json!({"status": "draining"})))
            } else {
                Ok(json(200, &serde_json::json!({"status": "ready"})))
            }
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
        "/healthz" | "/readyz" | "/metrics" => Err(HttpError::MethodNotAllowed("GET, HEAD")),
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
