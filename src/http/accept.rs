//! Listeners: one `SO_REUSEPORT` socket per worker on the same address, so
//! the kernel spreads connections and a connection never leaves the worker
//! that accepted it; and each worker's accept loop.

use std::net::{SocketAddr, TcpListener as StdListener};
use std::rc::Rc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::error::StartError;
use crate::worker::Worker;

/// Listen backlog: connection storms queue here instead of being refused.
const BACKLOG: i32 = 4096;

fn socket(addr: SocketAddr, reuse_port: bool) -> std::io::Result<Socket> {
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    s.set_reuse_address(true)?;
    if reuse_port {
        s.set_reuse_port(true)?;
        // Accepted sockets inherit TCP_NODELAY from the listener on Linux,
        // which saves a setsockopt per connection; frames are written whole,
        // so Nagle would only delay the second of two quick writes.
        s.set_tcp_nodelay(true)?;
        defer_accept(&s, DEFER_ACCEPT_S)?;
    }
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    Ok(s)
}

/// Seconds the kernel may hold a connection whose request has not arrived.
const DEFER_ACCEPT_S: libc::c_int = 5;

/// `TCP_DEFER_ACCEPT`: the kernel hands over a connection once its first
/// bytes (the request) have arrived, so the first read completes at once
/// instead of arming a poll and waking the worker a second time. A client
/// that sends nothing is still accepted after the period (and then meets
/// `limits.header_timeout_ms`).
fn defer_accept(s: &Socket, seconds: libc::c_int) -> std::io::Result<()> {
    use std::os::fd::AsFd;
    crate::sys::set_int_sockopt(
        s.as_fd(),
        libc::IPPROTO_TCP,
        libc::TCP_DEFER_ACCEPT,
        seconds,
    )
}

/// Binds `n` listeners on `addr`. A port already used by anyone (even
/// another ringcast with SO_REUSEPORT) is an error: a probe socket without
/// SO_REUSEPORT binds first, which fails if the port is taken, and fixes the
/// port when `addr` asks for port 0.
pub(crate) fn bind(
    addr: SocketAddr,
    n: usize,
) -> Result<(Vec<StdListener>, SocketAddr), StartError> {
    let fatal = |e: std::io::Error| StartError::Fatal(format!("cannot listen on {addr}: {e}"));
    let probe = socket(addr, false).map_err(fatal)?;
    let actual = probe
        .local_addr()
        .map_err(fatal)?
        .as_socket()
        .ok_or_else(|| StartError::Fatal(format!("cannot listen on {addr}: not an IP address")))?;
    drop(probe);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let s = socket(actual, true)
            .map_err(|e| StartError::Fatal(format!("cannot listen on {actual}: {e}")))?;
        s.listen(BACKLOG)
            .map_err(|e| StartError::Fatal(format!("cannot listen on {actual}: {e}")))?;
        out.push(s.into());
    }
    Ok((out, actual))
}

/// Accepts until the worker drains, spawning one task per connection.
pub(crate) async fn accept_loop(w: Rc<Worker>, listener: monoio::net::TcpListener) {
    loop {
        // On a worker carrying live traffic, connections are accepted at
        // the storm gate's pace (the rest wait in the listen backlog).
        w.storm_gate.token().await;
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = w.lifecycle.until(|| w.draining.get()) => None,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                monoio::spawn(super::connection::serve(w.clone(), stream, peer));
                w.kick_drain();
            }
            Some(Err(e)) => {
                // EMFILE/ENFILE and friends: back off briefly instead of spinning.
                tracing::warn!(worker = w.idx, error = %e, "accept failed");
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!(worker = w.idx, "listener closed");
}
