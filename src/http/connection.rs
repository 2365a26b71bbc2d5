//! One connection's HTTP/1.1 exchange: read a request head (bounded in size
//! and time), read its body, route it, answer it; keep-alive and pipelining
//! for everything but `/events`, which turns the connection into an event
//! stream owned by the worker.

use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;

use bytes::{Buf, BytesMut};
use monoio::buf::IoBufMut;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt};
use monoio::net::TcpStream;

use super::chunked::ChunkedDecoder;
use super::error::HttpError;
use super::head::{parse_head, BodyKind, Head, Method};
use super::{events, response, router};
use crate::worker::conn::{CloseReason, Conn, Phase};
use crate::worker::{Registration, Worker};

/// What reading more bytes produced.
enum Read {
    /// More bytes were appended to the buffer.
    Data,
    Closed,
    Killed(CloseReason),
}

/// Appends what the socket has to `buf`. The read owns the buffer while the
/// kernel fills it, so `buf` is left empty unless the read completes.
async fn read_more(stream: &mut TcpStream, conn: &Conn, buf: &mut BytesMut, limit: usize) -> Read {
    let mut owned = std::mem::take(buf);
    if owned.capacity() - owned.len() < 1024 {
        let want = (owned.capacity() * 2).clamp(4096, limit.max(4096) + 4096);
        owned.reserve(want.saturating_sub(owned.len()).max(1024));
    }
    let len = owned.len();
    let cap = owned.capacity();
    monoio::select! {
        (res, slice) = stream.read(owned.slice_mut(len..cap)) => match res {
            Ok(0) | Err(_) => Read::Closed,
            Ok(_) => {
                *buf = slice.into_inner();
                Read::Data
            }
        },
        why = conn.killed() => Read::Killed(why),
    }
}

/// Serves one accepted connection until it closes.
///
/// Its task is allocated per connection, so the sleeps of the request
/// path are boxed (`Box::pin(monoio::time::sleep(..))`): monoio's `Sleep`
/// is 640 bytes aligned to 128, and one held inline made this task 2,944
/// bytes aligned to 128, which glibc serves with `memalign`, leaving a
/// free fragment before and after each one that long-lived allocations
/// then fill (the test below keeps it off).
pub(crate) async fn serve(w: Rc<Worker>, mut stream: TcpStream, peer: SocketAddr) {
    // TCP_NODELAY is inherited from the listener (see accept.rs).
    let peer_ip = peer.ip().to_canonical();
    let per_ip_limit = w.shared.cfg.limits.max_connections_per_ip > 0;
    // A connection from a trusted proxy is counted per request, under the
    // client address that request's X-Forwarded-For names (SPEC §5): not at
    // accept, and not while it idles between requests (a proxy's pooled
    // upstream connection carries requests of many clients).
    let via_proxy = w.shared.trusted.contains(peer_ip);
    let ip = if via_proxy {
        None
    } else {
        w.shared.track_ip(peer_ip)
    };
    let mut over_ip_limit = !via_proxy && ip.is_none() && per_ip_limit;
    let mut reg = Registration::new(w.clone(), ip);
    let conn = reg.conn().clone();
    tracing::debug!(conn = conn.id, %peer, worker = w.idx, "accepted");
    // The client address last logged for a proxied connection.
    let mut client: Option<IpAddr> = None;
    let cfg = &w.shared.cfg;
    let max_head = cfg.limits.max_header_bytes;
    // Heads and bodies are split off the front of this buffer as `Bytes`;
    // once a request's pieces are dropped, the buffer reuses its memory.
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        conn.set_phase(Phase::Request);
        if w.is_draining() && buf.is_empty() {
            return;
        }
        w.arm_header(&conn);
        let head = loop {
            match parse_head(&mut buf) {
                Ok(Some(h)) if h.len() <= max_head => break h,
                Ok(Some(_)) => return fail(&w, &mut stream, &conn, head_too_large(), "").await,
                Ok(None) if buf.len() > max_head => {
                    return fail(&w, &mut stream, &conn, head_too_large(), "").await;
                }
                Ok(None) => {}
                Err(e) => return fail(&w, &mut stream, &conn, e, "").await,
            }
            match read_more(&mut stream, &conn, &mut buf, max_head).await {
                Read::Data => {}
                Read::Closed => return,
                Read::Killed(CloseReason::HeaderTimeout) => {
                    return fail(&w, &mut stream, &conn, HttpError::Timeout, "").await;
                }
                Read::Killed(_) => return,
            }
        };
        conn.set_phase(Phase::Busy);
        if via_proxy {
            let addr = w.shared.trusted.client_addr(peer_ip, head.forwarded_for());
            if client != Some(addr) {
                tracing::debug!(conn = conn.id, client = %addr, %peer, "client address from proxy");
                client = Some(addr);
            }
            if per_ip_limit {
                over_ip_limit = !reg.attribute(addr);
            }
        }
        conn.set_request_id(head.request_id());
        // Every answer names its request: the proxy's id, or this
        // connection's (the `conn` field of its log lines).
        let mut cors = response::cors_headers(&cfg.cors, head.origin());
        {
            use std::fmt::Write as _;
            let _ = write!(cors, "X-Request-ID: {}\r\n", conn.request_id());
        }
        if over_ip_limit && !is_ops_path(head.path()) {
            tracing::debug!(
                conn = conn.id,
                client = %client.unwrap_or(peer_ip),
                "over limits.max_connections_per_ip"
            );
            return fail(
                &w,
                &mut stream,
                &conn,
                HttpError::RateLimited("too many connections from this address", 1),
                &cors,
            )
            .await;
        }
        if head.path() == "/events" && matches!(head.method, Method::Get | Method::Head) {
            w.disarm_header(&conn);
            // The request buffer is not needed by a stream; an idle
            // subscriber should not carry kilobytes of it for its lifetime.
            // `head` shares its allocation: `subscribe` copies out what the
            // stream needs and drops it before the stream starts.
            drop(buf);
            // A reconnect storm sets up subscriptions in groups, with the
            // ring drain running in between (see Worker::storm_gate).
            let mut permit = w.storm_gate.acquire().await;
            let streaming = Box::pin(events::subscribe(
                &w,
                &conn,
                stream,
                head,
                &cors,
                &mut permit,
            ))
            .await;
            drop(permit);
            if let Some(stream) = streaming {
                // The stream lives on in a task of its own that holds only
                // what streaming needs: this task's request-handling state
                // (kilobytes) is freed now, not at disconnect.
                monoio::spawn(crate::worker::run_stream(reg, stream));
            }
            return;
        }
        // Read the body, if any, under the same deadline as the head.
        let body = match read_body(&w, &mut stream, &conn, &head, &mut buf).await {
            Ok(body) => body,
            Err(Some(e)) => return fail(&w, &mut stream, &conn, e, &cors).await,
            Err(None) => return,
        };
        w.disarm_header(&conn);
        let keep_alive = head.keep_alive && !w.is_draining();
        // An answer that says `Connection: close` closes: nothing after it
        // on this connection runs (a client that believes the header sends
        // its next request again elsewhere).
        let (out, close) = match router::route(&w, conn.id, &head, body, &cors).await {
            Ok((status, bytes)) => {
                w.metrics.response(status);
                (bytes, !keep_alive)
            }
            Err(e) => {
                w.metrics.response(e.status());
                let close = !keep_alive || e.closes();
                (response::error(&e, &cors, keep_alive), close)
            }
        };
        let res = if w.writes_in_flight() >= ANSWER_AHEAD_OF {
            write_response_now(&mut stream, out).await
        } else {
            stream.write_all(out).await.0.map(|_| ())
        };
        if res.is_err() || close {
            return;
        }
        if via_proxy {
            reg.unattribute();
        }
    }
}

/// Subscriber writes in flight from which an answer is sent at once
/// ([`write_response_now`]) rather than queued behind them.
const ANSWER_AHEAD_OF: usize = 4096;

/// Writes a response first with one non-blocking `send` straight from this
/// task, then, for whatever the socket did not take, through the runtime.
/// An answer (a publish acknowledgement above all) almost always fits the
/// socket buffer at once, and then leaves now rather than at the worker's
/// next io_uring submission, behind the thousands of subscriber writes
/// queued before it. On 10k subscribers of one topic that wait held
/// flat-out publishers back: each write carried about 6 frames, where a
/// plain loop that answers first gets 14 (benches/results/performance/floor/).
/// Only then: with few writes in flight a system call per answer costs more
/// than the submission it saves (16 publishers to 10 subscribers: 35% fewer
/// publishes when every answer went this way).
async fn write_response_now(stream: &mut TcpStream, out: Vec<u8>) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let sent = match crate::sys::send_now(stream.as_raw_fd(), &out) {
        Ok(n) => n,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => 0,
        Err(e) => return Err(e),
    };
    if sent == out.len() {
        return Ok(());
    }
    let rest = if sent == 0 { out } else { out[sent..].to_vec() };
    stream.write_all(rest).await.0.map(|_| ())
}

fn head_too_large() -> HttpError {
    HttpError::HeadersTooLarge("request head is larger than limits.max_header_bytes")
}

fn is_ops_path(path: &str) -> bool {
    matches!(path, "/healthz" | "/readyz" | "/metrics")
}

/// Reads the request body named by `head` from `buf` (which starts right
/// after the head) and the socket; leaves in `buf` the bytes after the body
/// (the next pipelined request).
async fn read_body(
    w: &Worker,
    stream: &mut TcpStream,
    conn: &Conn,
    head: &Head,
    buf: &mut BytesMut,
) -> Result<BytesMut, Option<HttpError>> {
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
        return Ok(BytesMut::new());
    }
    if head.expect_continue {
        let (res, _) = stream
            .write_all(&b"HTTP/1.1 100 Continue\r\n\r\n"[..])
            .await;
        res.map_err(|_| None)?;
    }
    w.arm_header(conn);
    let mut chunked = ChunkedDecoder::new(limit);
    loop {
        match head.body {
            BodyKind::Length(n) if buf.len() >= n => return Ok(buf.split_to(n)),
            BodyKind::Chunked => {
                // The decoder keeps what it consumed; only an incomplete
                // line stays in `buf` to meet the next read.
                let used = chunked.decode(buf).map_err(Some)?;
                buf.advance(used);
                if chunked.is_done() {
                    return Ok(chunked.into_body());
                }
            }
            _ => {}
        }
        match read_more(stream, conn, buf, limit).await {
            Read::Data => {}
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
        request_id = %conn.request_id(),
        status = e.status(),
        error = e.code(),
        "request failed"
    );
    w.metrics.response(e.status());
    let _ = stream.write_all(response::error(&e, cors, false)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The alignment and size of what `f` returns, without calling it.
    fn output_layout<F, A, B, C, R>(_: F) -> (usize, usize)
    where
        F: FnOnce(A, B, C) -> R,
    {
        (std::mem::align_of::<R>(), std::mem::size_of::<R>())
    }

    /// A connection's task needs no over-aligned allocation (see `serve`):
    /// nothing in the request path holds a 128-aligned future inline.
    #[test]
    fn a_connection_task_is_not_over_aligned() {
        let (align, size) = output_layout(serve);
        assert!(
            align <= 16,
            "serve's future is aligned to {align} ({size} bytes)"
        );
    }

    /// An answer far larger than a socket takes at once: the direct send
    /// takes what fits, the runtime writes the rest, and the reader gets
    /// every byte in order, on both drivers.
    #[test]
    fn an_answer_larger_than_the_socket_takes_arrives_whole_and_in_order() {
        for uring in [true, false] {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let body: Vec<u8> = (0..32u32 << 20).map(|i| (i % 251) as u8).collect();
            let expect = body.clone();
            let reader = std::thread::spawn(move || {
                let (mut s, _) = listener.accept().expect("accept");
                let mut got = Vec::new();
                std::io::Read::read_to_end(&mut s, &mut got).expect("read");
                got
            });
            let run = async move {
                let mut stream = TcpStream::connect(addr).await.expect("connect");
                write_response_now(&mut stream, body).await.expect("write");
            };
            if uring {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .build()
                    .expect("io_uring runtime")
                    .block_on(run);
            } else {
                monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .build()
                    .expect("legacy runtime")
                    .block_on(run);
            }
            let got = reader.join().expect("reader");
            assert_eq!(got.len(), expect.len(), "uring={uring}");
            assert!(got == expect, "bytes differ (uring={uring})");
        }
    }
}
