//! Stopping and starting (SPEC §7): a drain held up by a subscriber that
//! never reads still answers or refuses every new connection at once, and
//! a node restarted right after it stopped or crashed binds its port.

use std::net::TcpStream;

use super::*;

/// A subscriber that never reads, with a small receive buffer, so that
/// what the server queues for it stays queued.
fn stuck_subscriber(addr: SocketAddr, topic: &str) -> socket2::Socket {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.connect(&addr.into()).unwrap();
    let req = format!("GET /events?topic={topic} HTTP/1.1\r\nHost: t\r\n\r\n");
    let mut w: &socket2::Socket = &s;
    w.write_all(req.as_bytes()).unwrap();
    s
}

/// What a new connection meets: refused, or an answer (any bytes, or a
/// close) within a second — never an accepted connection left silent.
fn met_at_once(addr: SocketAddr, request: &str) -> &'static str {
    let mut c = match TcpStream::connect(addr) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => return "refused",
        Err(e) => panic!("connect: {e}"),
        Ok(c) => c,
    };
    c.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let _ = c.write_all(request.as_bytes());
    let mut buf = [0u8; 256];
    match c.read(&mut buf) {
        Ok(0) => "closed",
        Ok(_) => "answered",
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => "reset",
        Err(e) => panic!("{request:?}: accepted and left without an answer ({e})"),
    }
}

/// The reproduction: one subscriber that never reads holds the
/// drain; connections to /readyz, /events and /publish were accepted by
/// the kernel and never answered. Now the listeners stop listening at the
/// start of the drain.
#[test]
fn a_held_drain_refuses_or_answers_every_new_connection_at_once() {
    let mut s = Server::start(
        "[sse]\nmax_pending_bytes = 67108864\nslow_grace_ms = 60000\nwrite_stall_ms = 60000\n\
         [server]\nshutdown_timeout_ms = 6000\n",
    );
    let _stuck = stuck_subscriber(s.addr(), "big");
    wait_subscribers(&s, 1);
    let payload = "x".repeat(60_000);
    let mut p = Publisher::new(s.addr());
    for _ in 0..200 {
        p.publish("big", &payload);
    }
    // Megabytes wait for the stuck subscriber: the drain will be held.
    eventually(TIMEOUT, "bytes queued for the stuck subscriber", || {
        let stats = get(s.addr(), "/stats").json();
        stats["workers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|w| w["queued_bytes"].as_u64().unwrap())
            .sum::<u64>()
            > 1 << 20
    });
    drop(p);
    s.kill_term();
    let started = Instant::now();
    for req in [
        "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n",
        "GET /events?topic=x HTTP/1.1\r\nHost: t\r\n\r\n",
        "POST /publish?topic=x HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\n\r\nx",
    ] {
        // Until the signal has been handled a connection is served as
        // usual; from then on it must be refused or answered at once.
        for _ in 0..20 {
            met_at_once(s.addr(), req);
        }
    }
    assert!(
        s.wait_exit(Duration::ZERO).is_none() && started.elapsed() < Duration::from_secs(5),
        "the drain was still held while the new connections were met"
    );
    assert_eq!(
        met_at_once(s.addr(), "GET /readyz HTTP/1.1\r\nHost: t\r\n\r\n"),
        "refused"
    );
    let status = s
        .wait_exit(Duration::from_secs(10))
        .expect("exits after its timeout");
    assert_eq!(status.code(), Some(0));
}

/// The reproduction: 5 of 5 restarts right after `kill -9` exited
/// with "Address already in use" (the crashed process's io_uring accept
/// held its listener for a few milliseconds more). Now every restart, after
/// a crash or a SIGTERM, on io_uring and on the legacy driver, binds within
/// a second.
#[test]
fn an_immediate_restart_binds_every_time() {
    let listen = format!("127.0.0.1:{}", free_port());
    for (i, driver) in [
        "io_uring", "io_uring", "io_uring", "io_uring", "io_uring", "legacy",
    ]
    .iter()
    .enumerate()
    {
        let env = [("RINGCAST_SERVER_IO_DRIVER", *driver)];
        let t = Instant::now();
        let mut s = Server::start_with("", &["--workers", "2", "--listen", &listen], &env);
        assert!(
            t.elapsed() < Duration::from_secs(1),
            "restart {i} took {:?} to listen",
            t.elapsed()
        );
        assert_eq!(get(s.addr(), "/healthz").status, 200);
        if i % 3 == 2 {
            s.kill_term();
        } else {
            s.signal(libc::SIGKILL);
        }
        s.wait_exit(TIMEOUT).expect("the old process is gone");
    }
}
