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

/// How long a start waits for a port held by a listener that is going
/// away: a process killed while an io_uring accept was pending keeps its
/// listening socket until the kernel's io_uring teardown has run, 5-16 ms
/// after the process is reaped (measured; a graceful stop closes its
/// listeners itself, see [`stop_listening`]).
const BIND_RETRY_FOR: Duration = Duration::from_millis(1500);

/// Binds `n` listeners on `addr`. A port already used by anyone (even
/// another ringcast with SO_REUSEPORT) is an error: a probe socket without
/// SO_REUSEPORT binds first, which fails if the port is taken, and fixes the
/// port when `addr` asks for port 0. A port in use is tried again every
/// few milliseconds for [`BIND_RETRY_FOR`], so that a node restarted right
/// after a crash binds as soon as the kernel lets go of the old listener.
pub(crate) fn bind(
    addr: SocketAddr,
    n: usize,
) -> Result<(Vec<StdListener>, SocketAddr), StartError> {
    let fatal = |e: std::io::Error| StartError::Fatal(format!("cannot listen on {addr}: {e}"));
    let until = std::time::Instant::now() + BIND_RETRY_FOR;
    let probe = loop {
        match socket(addr, false) {
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < until =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            other => break other.map_err(fatal)?,
        }
    };
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

/// Takes `listener` (a duplicate of a worker's) out of the listening
/// state at once, for the drain: new connections are refused from then on
/// (the balancer moves on), and those queued but not accepted yet are
/// reset rather than left without an answer. Closing the descriptor would
/// not do it: a pending io_uring accept holds the socket open.
pub(crate) fn stop_listening(listener: &Socket) {
    if let Err(e) = listener.shutdown(std::net::Shutdown::Both) {
        tracing::debug!(error = %e, "listener shutdown");
    }
}

/// Connections taken from the listen backlog at once after each accept.
const ACCEPT_BURST: usize = 64;

/// Accepts the connections already waiting in `listener`'s backlog, up to
/// `max` and as many as the storm gate has tokens for, without waiting;
/// `nonblocking` as the runtime's driver needs. Returns them in arrival
/// order. The runtime's accept completes one connection per turn of the
/// worker's event loop, and a turn that writes to 10k subscribers lasts
/// 100 ms or more: 16 publishers connecting then waited 16 turns (2.3 s)
/// before the last one's first request was read.
pub(crate) fn accept_waiting(
    w: &Worker,
    listener: &monoio::net::TcpListener,
    nonblocking: bool,
    max: usize,
) -> Vec<(monoio::net::TcpStream, SocketAddr)> {
    use std::os::fd::AsRawFd;
    let mut out = Vec::new();
    while out.len() < max && !w.is_draining() && w.storm_gate.try_token() {
        match crate::sys::accept_waiting(listener.as_raw_fd(), nonblocking) {
            Ok(Some((std, peer))) => match monoio::net::TcpStream::from_std(std) {
                Ok(stream) => out.push((stream, peer)),
                Err(e) => {
                    tracing::warn!(worker = w.idx, error = %e, "cannot register an accepted connection")
                }
            },
            Ok(None) => {
                w.storm_gate.give_back();
                break;
            }
            Err(e) => {
                // EMFILE and friends: the accept loop meets it again and
                // backs off.
                w.storm_gate.give_back();
                tracing::debug!(worker = w.idx, error = %e, "accept failed");
                break;
            }
        }
    }
    out
}

/// Accepts until the worker drains, spawning one task per connection;
/// `nonblocking`: the runtime's driver is the legacy one, whose streams
/// must be non-blocking.
pub(crate) async fn accept_loop(
    w: Rc<Worker>,
    listener: monoio::net::TcpListener,
    nonblocking: bool,
) {
    loop {
        // On a worker carrying live traffic, connections are accepted at
        // the storm gate's pace (the rest wait in the listen backlog).
        w.storm_gate.token().await;
        let accepted = monoio::select! {
            r = listener.accept() => Some(r),
            _ = w.until_draining() => None,
        };
        match accepted {
            None => break,
            Some(Ok((stream, peer))) => {
                monoio::spawn(super::connection::serve(w.clone(), stream, peer));
                for (stream, peer) in accept_waiting(&w, &listener, nonblocking, ACCEPT_BURST) {
                    monoio::spawn(super::connection::serve(w.clone(), stream, peer));
                }
                w.kick_drain();
            }
            Some(Err(_)) if w.shared.draining.load(std::sync::atomic::Ordering::Relaxed) => {
                // The drain took the listener out of listening.
                break;
            }
            Some(Err(e)) => {
                // EMFILE/ENFILE and friends: back off briefly instead of
                // spinning, and log once a second at most.
                if let Some(suppressed) = w.shared.accept_log.admit() {
                    tracing::warn!(worker = w.idx, error = %e, suppressed, "accept failed");
                }
                monoio::time::sleep(Duration::from_millis(10)).await;
            }
        }
    }
    tracing::debug!(worker = w.idx, "listener closed");
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use monoio::io::{AsyncReadRent, AsyncWriteRentExt};

    use super::*;

    /// Whether the descriptor has O_NONBLOCK, from `/proc/self/fdinfo`.
    fn is_nonblocking(s: &monoio::net::TcpStream) -> bool {
        use std::os::fd::AsRawFd;
        let info = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", s.as_raw_fd())).unwrap();
        let flags = info
            .lines()
            .find_map(|l| l.strip_prefix("flags:"))
            .map(|v| u32::from_str_radix(v.trim(), 8).unwrap())
            .unwrap();
        flags & libc::O_NONBLOCK as u32 != 0
    }

    /// Connections waiting in the backlog are taken in one call (up to
    /// `max`), on both drivers, and each stream then reads and writes
    /// through the runtime; an empty backlog gives nothing back and keeps
    /// the gate's tokens.
    #[test]
    fn takes_the_waiting_connections_at_once_on_both_drivers() {
        for uring in [true, false] {
            let (mut listeners, addr) = bind("127.0.0.1:0".parse().unwrap(), 1).expect("bind");
            let listener = listeners.pop().unwrap();
            // Ten clients connect and send their request before the server
            // accepts any (TCP_DEFER_ACCEPT queues a connection once its
            // first bytes arrive, which on loopback is before send returns).
            let mut clients: Vec<std::net::TcpStream> = (0..10)
                .map(|i| {
                    let mut c = std::net::TcpStream::connect(addr).expect("connect");
                    c.write_all(format!("ping {i:02}").as_bytes())
                        .expect("send");
                    c
                })
                .collect();
            let run = async move {
                let w = Worker::for_test(crate::config::Config::default());
                let listener = monoio::net::TcpListener::from_std(listener).expect("register");
                let (first, _) = listener.accept().await.expect("accept");
                let mut streams = vec![first];
                let some = accept_waiting(&w, &listener, !uring, 4);
                assert_eq!(some.len(), 4, "at most max (uring={uring})");
                streams.extend(some.into_iter().map(|(s, _)| s));
                let rest = accept_waiting(&w, &listener, !uring, 64);
                assert_eq!(rest.len(), 5, "every waiting connection (uring={uring})");
                for (s, peer) in rest {
                    assert!(peer.ip().is_loopback());
                    assert_eq!(
                        is_nonblocking(&s),
                        !uring,
                        "the driver's mode (uring={uring})"
                    );
                    streams.push(s);
                }
                assert!(accept_waiting(&w, &listener, !uring, 64).is_empty());
                for mut s in streams {
                    let (res, buf) = s.read(Vec::with_capacity(16)).await;
                    assert_eq!(res.expect("read"), 7, "uring={uring}");
                    let mut answer = b"pong".to_vec();
                    answer.extend_from_slice(&buf[4..]);
                    s.write_all(answer).await.0.expect("write");
                }
            };
            if uring {
                monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                    .enable_timer()
                    .build()
                    .expect("io_uring runtime")
                    .block_on(run);
            } else {
                monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                    .enable_timer()
                    .build()
                    .expect("legacy runtime")
                    .block_on(run);
            }
            let mut seen: Vec<String> = clients
                .iter_mut()
                .map(|c| {
                    let mut got = [0u8; 7];
                    c.read_exact(&mut got).expect("answer");
                    String::from_utf8_lossy(&got).into_owned()
                })
                .collect();
            seen.sort();
            let want: Vec<String> = (0..10).map(|i| format!("pong {i:02}")).collect();
            assert_eq!(seen, want, "uring={uring}");
        }
    }
}
