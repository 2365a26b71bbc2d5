//! `ringcast-floor`: the physical floor of a fan-out benchmark (issue 11).
//!
//! It stands where ringcast stands, on the same port layout, so the same
//! `ringcast-load` run drives it over the same loopback sockets: it answers
//! `GET /events?topic=T` with ringcast's response head (less its request
//! id and `retry:` line), and for every
//! `POST /publish?topic=T` it encodes the event once with ringcast's own
//! frame encoder (the same bytes on the wire) and acknowledges it. What it
//! leaves out is every piece of server logic: no io_uring, no rings, no
//! history, no timers, no policies, no metrics. One thread on epoll; after
//! each batch of readiness events it writes the acknowledgements, then one
//! `writev` per subscriber of every frame queued for it since its last
//! write. So a subscriber's write carries the frames that arrived while the
//! previous pass ran, as ringcast's do, and the CPU it takes per delivery is
//! what the kernel asks for those writes plus a hash lookup and a queue
//! push: the least any server can spend on the same load.
//!
//! With `--write-delay-ms W` a subscriber's write waits until W ms after
//! the first event queued for it, as ringcast's `sse.write_delay_ms` holds
//! it, so that the coalescing window can be judged against the floor too.
//!
//! Every second in which subscribers were written to, it prints the
//! subscriber writes and the frames they carried so far to stderr.
//!
//! Bounded: a subscriber with more than `--max-queued` frames unwritten is
//! closed (the load generator then reports it), a request head larger than
//! 16 KiB or a body larger than 1 MiB closes its connection, and the process
//! exits after `--max-s` seconds.

use std::collections::{HashMap, VecDeque};
use std::io::{ErrorKind, IoSlice, Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use clap::Parser;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

#[derive(Parser, Debug)]
#[command(
    name = "ringcast-floor",
    about = "A plain epoll + writev fan-out loop with no server logic: the floor for ringcast-load"
)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:8080")]
    listen: SocketAddr,
    /// Frames queued for one subscriber before it is closed.
    #[arg(long, default_value_t = 65_536)]
    max_queued: usize,
    /// Exit after this many seconds.
    #[arg(long, default_value_t = 600)]
    max_s: u64,
    /// Hold a subscriber's write until this long after the first event
    /// queued for it (ringcast's `sse.write_delay_ms`; 0 = write at once).
    #[arg(long, default_value_t = 0)]
    write_delay_ms: u64,
}

const LISTENER: Token = Token(usize::MAX);
const HEAD_MAX: usize = 16 * 1024;
const BODY_MAX: usize = 1 << 20;
/// Buffers per `writev` (Linux's IOV_MAX is 1024).
const IOV: usize = 512;

/// ringcast's response head for an event stream (`event_stream_head` in
/// `src/http/response.rs`) without the `X-Request-ID` header, and without
/// the `retry:` line ringcast sends after it: some 60 bytes once per
/// connection, nothing per event.
const SSE_HEAD: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n\r\n";

struct Conn {
    sock: TcpStream,
    inbuf: Vec<u8>,
    /// Bytes to write, in order; `sent` of the first are written.
    out: VecDeque<Bytes>,
    sent: usize,
    /// In the dirty list already.
    dirty: bool,
    subscriber: bool,
}

struct Floor {
    poll: Poll,
    conns: Vec<Option<Conn>>,
    /// Topic name → index into `subs`.
    topics: HashMap<Box<str>, usize>,
    /// Subscriber connections of each topic.
    subs: Vec<Vec<usize>>,
    /// Connections with bytes to write: publishers (acknowledgements) go
    /// first, then subscribers, each when its write is due (in due order:
    /// every hold is the same window).
    dirty_pub: Vec<usize>,
    dirty_sub: VecDeque<(usize, Instant)>,
    next_id: u64,
    max_queued: usize,
    /// `--write-delay-ms`.
    window: Duration,
    /// When the last `epoll_wait` returned.
    now: Instant,
    /// Subscriber `writev`s that wrote something, and the event frames
    /// they completed: reported on stderr each second, so that a run can
    /// tell coalescing (frames per write) from cheaper writes.
    sub_writes: u64,
    sub_frames: u64,
}

enum Request<'a> {
    Subscribe(&'a str),
    Publish(&'a str, &'a [u8]),
    Bad,
}

/// Parses one complete request at the front of `buf`: what it is and its
/// length, or None while incomplete.
fn parse(buf: &[u8]) -> Option<(Request<'_>, usize)> {
    let Some(he) = buf.windows(4).position(|w| w == b"\r\n\r\n") else {
        // No head end within HEAD_MAX bytes: refused, not waited for.
        return (buf.len() > HEAD_MAX).then_some((Request::Bad, buf.len()));
    };
    let he = he + 4;
    let Ok(head) = std::str::from_utf8(&buf[..he]) else {
        return Some((Request::Bad, he));
    };
    let mut lines = head.split("\r\n");
    let mut first = lines.next().unwrap_or("").split(' ');
    let (method, target) = (first.next().unwrap_or(""), first.next().unwrap_or(""));
    let len = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    if len > BODY_MAX {
        return Some((Request::Bad, he));
    }
    if buf.len() < he + len {
        return None;
    }
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let topic = query.strip_prefix("topic=").filter(|t| !t.contains('&'));
    let req = match (method, path, topic) {
        ("GET", "/events", Some(t)) => Request::Subscribe(t),
        ("POST", "/publish", Some(t)) => Request::Publish(t, &buf[he..he + len]),
        _ => Request::Bad,
    };
    Some((req, he + len))
}

fn ack(id: u64) -> Bytes {
    let body = format!("{{\"id\":\"{id}\"}}");
    Bytes::from(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))
}

impl Floor {
    /// Queues `bytes` for `c`; an event frame (`hold`) starts the
    /// subscriber's window if it had nothing queued.
    fn queue(&mut self, c: usize, bytes: Bytes, hold: bool) {
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        if conn.out.len() >= self.max_queued {
            self.close(c);
            return;
        }
        conn.out.push_back(bytes);
        if !conn.dirty {
            conn.dirty = true;
            if conn.subscriber {
                let due = if hold {
                    self.now + self.window
                } else {
                    self.now
                };
                self.dirty_sub.push_back((c, due));
            } else {
                self.dirty_pub.push(c);
            }
        }
    }

    fn close(&mut self, c: usize) {
        if let Some(mut conn) = self.conns[c].take() {
            let _ = self.poll.registry().deregister(&mut conn.sock);
        }
    }

    fn accept(&mut self, listener: &TcpListener) {
        loop {
            match listener.accept() {
                Ok((mut sock, _)) => {
                    let _ = sock.set_nodelay(true);
                    let c = self.conns.len();
                    if self
                        .poll
                        .registry()
                        .register(&mut sock, Token(c), Interest::READABLE | Interest::WRITABLE)
                        .is_err()
                    {
                        continue;
                    }
                    self.conns.push(Some(Conn {
                        sock,
                        inbuf: Vec::new(),
                        out: VecDeque::new(),
                        sent: 0,
                        dirty: false,
                        subscriber: false,
                    }));
                    // The request may be in already: read it now.
                    self.read(c);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                // EMFILE and the like: the backlog waits for a close.
                Err(_) => return,
            }
        }
    }

    /// Reads what `c` has and serves every complete request in it.
    fn read(&mut self, c: usize) {
        let mut closed = false;
        {
            let Some(conn) = self.conns[c].as_mut() else {
                return;
            };
            let mut chunk = [0u8; 16 * 1024];
            loop {
                match conn.sock.read(&mut chunk) {
                    Ok(0) => {
                        closed = true;
                        break;
                    }
                    // A subscriber sends nothing after its request.
                    Ok(_) if conn.subscriber => {}
                    // More unserved than one largest request: a client
                    // this floor does not serve; the buffer stays bounded.
                    Ok(_) if conn.inbuf.len() > HEAD_MAX + BODY_MAX => {
                        closed = true;
                        break;
                    }
                    Ok(n) => conn.inbuf.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == ErrorKind::Interrupted => {}
                    Err(_) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        if closed {
            self.close(c);
            return;
        }
        self.serve(c);
    }

    fn serve(&mut self, c: usize) {
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        let mut inbuf = std::mem::take(&mut conn.inbuf);
        let mut used = 0;
        let mut bad = false;
        while let Some((req, len)) = parse(&inbuf[used..]) {
            used += len;
            match req {
                Request::Subscribe(topic) => {
                    if let Some(conn) = self.conns[c].as_mut() {
                        conn.subscriber = true;
                    }
                    let n = self.subs.len();
                    let t = *self.topics.entry(topic.into()).or_insert(n);
                    if t == n {
                        self.subs.push(Vec::new());
                    }
                    self.subs[t].push(c);
                    self.queue(c, Bytes::from_static(SSE_HEAD), false);
                    break;
                }
                Request::Publish(topic, body) => {
                    self.next_id += 1;
                    let id = self.next_id;
                    let frame = ringcast::frame::encode(id, None, body);
                    if let Some(&t) = self.topics.get(topic) {
                        for i in 0..self.subs[t].len() {
                            let s = self.subs[t][i];
                            self.queue(s, frame.clone(), true);
                        }
                    }
                    self.queue(c, ack(id), false);
                }
                Request::Bad => {
                    bad = true;
                    break;
                }
            }
        }
        if bad || (inbuf.len() - used > HEAD_MAX + BODY_MAX) {
            self.close(c);
            return;
        }
        inbuf.drain(..used);
        if let Some(conn) = self.conns[c].as_mut() {
            if !conn.subscriber {
                conn.inbuf = inbuf;
            }
        }
    }

    /// Writes what `c` has queued with as few `writev`s as the socket takes.
    fn flush(&mut self, c: usize) {
        let Some(conn) = self.conns[c].as_mut() else {
            return;
        };
        conn.dirty = false;
        let mut failed = false;
        while !conn.out.is_empty() {
            let mut iov: Vec<IoSlice<'_>> = Vec::with_capacity(IOV.min(conn.out.len()));
            for (i, b) in conn.out.iter().take(IOV).enumerate() {
                iov.push(IoSlice::new(if i == 0 { &b[conn.sent..] } else { b }));
            }
            match conn.sock.write_vectored(&iov) {
                Ok(mut n) => {
                    drop(iov);
                    if conn.subscriber && n > 0 {
                        self.sub_writes += 1;
                    }
                    while n > 0 {
                        let left = conn.out[0].len() - conn.sent;
                        if n >= left {
                            n -= left;
                            if conn.subscriber {
                                self.sub_frames += 1;
                            }
                            conn.out.pop_front();
                            conn.sent = 0;
                        } else {
                            conn.sent += n;
                            n = 0;
                        }
                    }
                }
                // The writable edge comes back when there is room.
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    failed = true;
                    break;
                }
            }
        }
        if failed {
            self.close(c);
        }
    }

    fn flush_dirty(&mut self) {
        let mut list = std::mem::take(&mut self.dirty_pub);
        for &c in &list {
            self.flush(c);
        }
        list.clear();
        self.dirty_pub = list;
        let now = Instant::now();
        while let Some(&(c, due)) = self.dirty_sub.front() {
            if due > now {
                break;
            }
            self.dirty_sub.pop_front();
            self.flush(c);
        }
    }

    /// When the next held write is due, if one is.
    fn next_due(&self) -> Option<Instant> {
        self.dirty_sub.front().map(|&(_, due)| due)
    }
}

/// Backlog of the listener, as ringcast's and the compared nginx's (4096).
const BACKLOG: i32 = 4096;

fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    use socket2::{Domain, Socket, Type};
    let s = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
    s.set_reuse_address(true)?;
    s.set_tcp_nodelay(true)?;
    s.bind(&addr.into())?;
    s.listen(BACKLOG)?;
    s.set_nonblocking(true)?;
    Ok(TcpListener::from_std(s.into()))
}

fn main() {
    let args = Args::parse();
    let _ = ringcast::sys::raise_nofile_limit();
    let mut listener = match bind(args.listen) {
        Ok(l) => l,
        Err(e) => {
            eprintln!("ringcast-floor: cannot listen on {}: {e}", args.listen);
            std::process::exit(1);
        }
    };
    let poll = Poll::new().expect("epoll");
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .expect("register the listener");
    eprintln!(
        "ringcast-floor listening on http://{}",
        listener.local_addr().unwrap_or(args.listen)
    );
    let mut floor = Floor {
        poll,
        conns: Vec::new(),
        topics: HashMap::new(),
        subs: Vec::new(),
        dirty_pub: Vec::new(),
        dirty_sub: VecDeque::new(),
        next_id: 0,
        max_queued: args.max_queued,
        window: Duration::from_millis(args.write_delay_ms),
        now: Instant::now(),
        sub_writes: 0,
        sub_frames: 0,
    };
    let mut next_report = Instant::now() + Duration::from_secs(1);
    let mut reported = 0;
    let mut events = Events::with_capacity(1024);
    let end = Instant::now() + Duration::from_secs(args.max_s);
    loop {
        let now = Instant::now();
        if now >= end {
            return;
        }
        let wake = floor.next_due().map_or(end, |due| due.clamp(now, end));
        if let Err(e) = floor.poll.poll(&mut events, Some(wake - now)) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            eprintln!("ringcast-floor: epoll: {e}");
            std::process::exit(1);
        }
        floor.now = Instant::now();
        for ev in events.iter() {
            let c = ev.token();
            if c == LISTENER {
                floor.accept(&listener);
                continue;
            }
            if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                floor.read(c.0);
            }
            if ev.is_writable() {
                if let Some(conn) = floor.conns[c.0].as_mut() {
                    if !conn.out.is_empty() && !conn.dirty {
                        conn.dirty = true;
                        if conn.subscriber {
                            // Room again for bytes already due.
                            floor.dirty_sub.push_front((c.0, floor.now));
                        } else {
                            floor.dirty_pub.push(c.0);
                        }
                    }
                }
            }
        }
        floor.flush_dirty();
        if floor.now >= next_report {
            next_report = floor.now + Duration::from_secs(1);
            if floor.sub_writes != reported {
                reported = floor.sub_writes;
                // The SSE head counts as a frame: one per subscriber.
                eprintln!(
                    "ringcast-floor: subscriber writes {} frames {}",
                    floor.sub_writes, floor.sub_frames
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_subscribe_publish_and_refuses_the_rest() {
        let sub = b"GET /events?topic=load.t3 HTTP/1.1\r\nHost: x\r\n\r\n";
        assert!(matches!(parse(sub), Some((Request::Subscribe("load.t3"), n)) if n == sub.len()));
        let publ = b"POST /publish?topic=a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxyzGET";
        match parse(publ) {
            Some((Request::Publish("a", b"xyz"), n)) => assert_eq!(n, publ.len() - 3),
            _ => panic!("publish not parsed"),
        }
        assert!(parse(b"POST /publish?topic=a HTTP/1.1\r\nContent-Length: 3\r\n\r\nxy").is_none());
        assert!(parse(b"GET /events HTTP/1.1\r\n").is_none());
        let endless = [b'a'; HEAD_MAX + 1];
        assert!(matches!(parse(&endless), Some((Request::Bad, _))));
        assert!(parse(&endless[..HEAD_MAX]).is_none());
        assert!(matches!(
            parse(b"GET /events?topic=a&topic=b HTTP/1.1\r\n\r\n"),
            Some((Request::Bad, _))
        ));
        assert!(matches!(
            parse(b"DELETE /x HTTP/1.1\r\n\r\n"),
            Some((Request::Bad, _))
        ));
    }
}
