//! One connection's HTTP/1.1 exchange: read a request head (bounded in size
//! and time), route it, answer it; keep-alive and pipelining for everything
//! but `/events`, which hands the connection over to [`crate::stream`].

use std::net::SocketAddr;
use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use crate::conn::{CloseReason, Conn, Phase, Queued};
use crate::error::HttpError;
use crate::frame;
use crate::request::{self, BodyKind, Chunked, Head, Method};
use crate::response;
use crate::sequencer::{PublishReq, SeqMsg};
use crate::worker::{AckCell, Worker};

/// Removes the connection from its worker however the task ends.
pub struct Registration {
    w: Rc<Worker>,
    conn: Rc<Conn>,
    ip: Option<std::net::IpAddr>,
}

impl Registration {
    /// The worker that owns the connection.
    pub fn worker(&self) -> &Worker {
        &self.w
    }

    /// The connection's shared state.
    pub fn conn(&self) -> &Conn {
        &self.conn
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.w.unregister(&self.conn);
        if let Some(ip) = self.ip {
            self.w.shared.release_ip(ip);
        }
        tracing::debug!(conn = self.conn.id, "closed");
    }
}

/// What reading more bytes produced.
enum Read {
    Data(Vec<u8>),
    Closed,
    Killed(CloseReason),
}

async fn read_more(stream: &mut TcpStream, conn: &Conn, mut buf: Vec<u8>, limit: usize) -> Read {
    if buf.capacity() - buf.len() < 1024 {
        let want = (buf.capacity() * 2).clamp(4096, limit.max(4096) + 4096);
        buf.reserve(want.saturating_sub(buf.len()).max(1024));
    }
    let len = buf.len();
    let cap = buf.capacity();
    monoio::select! {
        (res, slice) = stream.read(buf.slice_mut(len..cap)) => match res {
            Ok(0) | Err(_) => Read::Closed,
            Ok(_) => Read::Data(slice.into_inner()),
        },
        why = conn.killed() => Read::Killed(why),
    }
}

/// Serves one accepted connection until it closes.
pub async fn serve(w: Rc<Worker>, mut stream: TcpStream, peer: SocketAddr) {
    // TCP_NODELAY is inherited from the listener (see accept.rs).
    let conn = w.register();
    let ip = w.shared.track_ip(peer.ip());
    let over_ip_limit = ip.is_none() && w.shared.cfg.limits.max_connections_per_ip > 0;
    let reg = Registration {
        w: w.clone(),
        conn: conn.clone(),
        ip,
    };
    tracing::debug!(conn = conn.id, %peer, worker = w.idx, "accepted");
    let cfg = &w.shared.cfg;
    let max_head = cfg.limits.max_header_bytes;
    let mut buf: Vec<u8> = Vec::with_capacity(1024);
    loop {
        conn.phase.set(Phase::Request);
        if w.draining.get() && buf.is_empty() {
            return;
        }
        w.arm_header(&conn);
        let head = loop {
            match request::parse_head(&buf) {
                Ok(Some(h)) if h.len <= max_head => break h,
                Ok(Some(_)) => return fail(&w, &mut stream, &conn, head_too_large(), "").await,
                Ok(None) if buf.len() > max_head => {
                    return fail(&w, &mut stream, &conn, head_too_large(), "").await;
                }
                Ok(None) => {}
                Err(e) => return fail(&w, &mut stream, &conn, e, "").await,
            }
            match read_more(&mut stream, &conn, buf, max_head).await {
                Read::Data(b) => buf = b,
                Read::Closed => return,
                Read::Killed(CloseReason::HeaderTimeout) => {
                    return fail(&w, &mut stream, &conn, HttpError::Timeout, "").await;
                }
                Read::Killed(_) => return,
            }
        };
        conn.phase.set(Phase::Busy);
        let cors = response::cors_headers(&cfg.cors, head.origin.as_deref());
        if over_ip_limit && !is_ops_path(&head.path) {
            return fail(
                &w,
                &mut stream,
                &conn,
                HttpError::RateLimited("too many connections from this address", 1),
                &cors,
            )
            .await;
        }
        if head.path == "/events" && matches!(head.method, Method::Get | Method::Head) {
            w.disarm_header(&conn);
            // The request buffer is not needed by a stream; an idle
            // subscriber should not carry kilobytes of it for its lifetime.
            drop(buf);
            let streaming =
                Box::pin(crate::stream::subscribe(&w, &conn, stream, head, &cors)).await;
            if let Some(stream) = streaming {
                // The stream lives on in a task of its own that holds only
                // what streaming needs: this task's request-handling state
                // (kilobytes) is freed now, not at disconnect.
                monoio::spawn(crate::stream::run(reg, stream));
            }
            return;
        }
        // Read the body, if any, under the same deadline as the head.
        let body = match read_body(&w, &mut stream, &conn, &head, buf).await {
            Ok((body, rest)) => {
                buf = rest;
                body
            }
            Err(Some(e)) => return fail(&w, &mut stream, &conn, e, &cors).await,
            Err(None) => return,
        };
        w.disarm_header(&conn);
        let keep_alive = head.keep_alive && !w.draining.get();
        let out = match route(&w, &head, body, &cors).await {
            Ok((status, bytes)) => {
                w.metrics.response(status);
                bytes
            }
            Err(e) => {
                w.metrics.response(e.status());
                response::error(&e, &cors, keep_alive)
            }
        };
        let (res, _) = stream.write_all(out).await;
        if res.is_err() || !keep_alive {
            return;
        }
    }
}

fn head_too_large() -> HttpError {
    HttpError::HeadersTooLarge("request head is larger than limits.max_header_bytes")
}

fn is_ops_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Reads the request body named by `head` from `buf` and the socket; returns
/// the body and the bytes after it (the next pipelined request).
async fn read_body(
    w: &Worker,
    stream: &mut TcpStream,
    conn: &Conn,
    head: &Head,
    mut buf: Vec<u8>,
) -> Result<(Vec<u8>, Vec<u8>), Option<HttpError>> {
    let limit = w.shared.cfg.limits.max_body_bytes;
    let too_large = HttpError::TooLarge(
        "body_too_large",
        "request body is larger than limits.max_body_bytes",
    );
    if let BodyKind::Length(n) = head.body {
        if n > limit {
            return Err(Some(too_large));
        }
    }
    if head.body == BodyKind::None {
        buf.drain(..head.len);
        return Ok((Vec::new(), buf));
    }
    if head.expect_continue {
        let (res, _) = stream
            .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..])
            .await;
        res.map_err(|_| None)?;
    }
    w.arm_header(conn);
    loop {
        match head.body {
            BodyKind::Length(n) if buf.len() >= head.len + n => {
                let rest = buf.split_off(head.len + n);
                buf.drain(..head.len);
                return Ok((buf, rest));
            }
            BodyKind::Chunked => {
                match request::decode_chunked(&buf[head.len..], limit).map_err(Some)? {
                    Chunked::Done(body, used) => {
                        let rest = buf.split_off(head.len + used);
                        return Ok((body, rest));
                    }
                    Chunked::Partial => {}
                }
            }
            _ => {}
        }
        let cap = head.len + limit + 4096;
        match read_more(stream, conn, buf, cap).await {
            Read::Data(b) => buf = b,
            Read::Closed => return Err(None),
            Read::Killed(CloseReason::HeaderTimeout) => return Err(Some(HttpError::Timeout)),
            Read::Killed(_) => return Err(None),
        }
    }
}

/// Answers an error and closes.
async fn fail(w: &Worker, stream: &mut TcpStream, conn: &Conn, e: HttpError, cors: &str) {
    tracing::debug!(
        conn = conn.id,
        status = e.status(),
        error = e.code(),
        "request failed"
    );
    w.metrics.response(e.status());
    let _ = stream.write_all(response::error(&e, cors, false)).await;
}

type Answer = Result<(u16, Vec<u8>), HttpError>;

async fn route(w: &Worker, head: &Head, body: Vec<u8>, cors: &str) -> Answer {
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
    match head.path.as_str() {
        "/events" | "/publish" if head.method == Method::Options => Ok((
            204,
            response::preflight(cors, head.acr_headers.as_deref(), keep_alive),
        )),
        "/events" => Err(HttpError::MethodNotAllowed("GET, HEAD, OPTIONS")),
        "/publish" if head.method == Method::Post => publish(w, head, body, cors, keep_alive).await,
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

async fn publish(w: &Worker, head: &Head, body: Vec<u8>, cors: &str, keep_alive: bool) -> Answer {
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
        request::parse_publish_ndjson(&body, cfg.limits.max_event_bytes)?
    } else {
        vec![request::parse_publish_raw(
            &head.query,
            body,
            cfg.limits.max_event_bytes,
        )?]
    };
    let many = head.ndjson;
    let cell = Rc::new(AckCell::default());
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

/// A `retry:` hint spread over `[retry_ms, 3 * retry_ms]`, so that clients
/// sent away together do not come back together.
pub fn jittered_retry_ms(retry_ms: u64) -> u64 {
    retry_ms + fastrand::u64(0..=retry_ms.saturating_mul(2))
}

/// The bytes that turn a subscriber away without stranding a browser: 200,
/// a randomised `retry:` and the reason as a comment, then close.
pub fn shed_bytes(w: &Worker, cors: &str, why: &str) -> Bytes {
    let mut v = response::event_stream_head(cors).into_bytes();
    v.extend_from_slice(&frame::retry(
        jittered_retry_ms(w.shared.cfg.sse.retry_ms),
        Some(why),
    ));
    Bytes::from(v)
}

/// Queues raw non-event bytes on a connection.
pub fn queue_raw(conn: &Conn, bytes: Bytes) {
    conn.push(Queued {
        frame: bytes,
        born_ns: 0,
        topic: None,
    });
}
