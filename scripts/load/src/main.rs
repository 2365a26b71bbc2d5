//! `ringcast-load`: a bounded load generator for SSE fan-out servers
//! (ringcast, or nchan for a side-by-side run). It opens N real SSE
//! connections over loopback, publishes at a fixed rate or as fast as
//! acknowledged with K requests in flight, and reports connect rate, time to
//! first byte, deliveries/s, publish-to-receive latency percentiles, lost /
//! duplicated / reordered events, server CPU per million deliveries and
//! server RSS per connection. Each event carries its topic index, a
//! per-topic sequence number and a send timestamp. Streams may be
//! close-delimited (ringcast) or chunked (nchan). Every run stops by itself.

mod notify;

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use monoio::io::{AsyncReadRent, AsyncWriteRentExt, Splitable};
use monoio::net::TcpStream;
use notify::LocalNotify;

#[derive(Parser, Debug, Clone)]
#[command(name = "ringcast-load", about = "Bounded SSE fan-out load generator")]
struct Args {
    /// Server address.
    #[arg(long, default_value = "127.0.0.1:8080")]
    addr: SocketAddr,
    /// Subscriber connections.
    #[arg(long, default_value_t = 100)]
    subscribers: usize,
    /// Topics; subscriber i listens to topic i % topics.
    #[arg(long, default_value_t = 1)]
    topics: usize,
    /// Events to publish in all.
    #[arg(long, default_value_t = 1000)]
    events: u64,
    /// Events per second over all topics; 0 = as fast as acknowledged.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Publish requests in flight, one per publishing connection (each
    /// connection keeps its own per-topic sequence, so order is checked per
    /// publisher, which is the order a server can promise).
    #[arg(long, default_value_t = 1)]
    inflight: usize,
    /// Requests pipelined on each publishing connection.
    #[arg(long, default_value_t = 1)]
    pipeline: usize,
    /// Spread subscriber connections over this many 127.0.0.x source
    /// addresses (0 = only when one address's ephemeral ports run out).
    #[arg(long, default_value_t = 0)]
    source_ips: usize,
    /// Payload bytes per event (at least the header).
    #[arg(long, default_value_t = 100)]
    size: usize,
    /// Percentage of subscribers that never read after connecting.
    #[arg(long, default_value_t = 0.0)]
    stalled_pct: f64,
    /// Concurrent connection attempts while connecting subscribers.
    #[arg(long, default_value_t = 256)]
    connect_concurrency: usize,
    /// Server kind: "ringcast" or "nchan" (URL layout).
    #[arg(long, default_value = "ringcast")]
    server: String,
    /// Server PID for CPU and RSS figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Give up after this many seconds in all.
    #[arg(long, default_value_t = 60)]
    timeout_s: u64,
    /// Only connect (connection storm / idle memory); publish nothing.
    #[arg(long)]
    connect_only: bool,
    /// With --connect-only: hold the connections this long before taking
    /// the server's RSS (lets it settle).
    #[arg(long, default_value_t = 0.0)]
    hold_s: f64,
    /// Print one JSON line instead of text.
    #[arg(long)]
    json: bool,
}

impl Args {
    fn sub_path(&self, topic: usize) -> String {
        match self.server.as_str() {
            "nchan" => format!("/sub/t{topic}"),
            _ => format!("/events?topic=load.t{topic}"),
        }
    }
    fn pub_path(&self, topic: usize) -> String {
        match self.server.as_str() {
            "nchan" => format!("/pub/t{topic}"),
            _ => format!("/publish?topic=load.t{topic}"),
        }
    }
}

#[derive(Default)]
struct Stats {
    delivered: Cell<u64>,
    lost: Cell<u64>,
    dup: Cell<u64>,
    reordered: Cell<u64>,
    published: Cell<u64>,
    publish_errors: Cell<u64>,
    connected: Cell<usize>,
    connect_errors: Cell<usize>,
    done_subscribers: Cell<usize>,
    /// Publishing connections that have sent everything and read every answer.
    publishers_done: Cell<usize>,
    /// Events missing from streams that ended before delivering them all.
    ended_short: Cell<u64>,
    latency_us: RefCell<Option<Histogram<u64>>>,
    ttfb_us: RefCell<Option<Histogram<u64>>>,
    changed: LocalNotify,
}

fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

fn record(h: &RefCell<Option<Histogram<u64>>>, v: u64) {
    if let Some(h) = h.borrow_mut().as_mut() {
        let _ = h.record(v.clamp(1, 60_000_000));
    }
}

/// Incremental de-chunking of a `Transfer-Encoding: chunked` body.
#[derive(Default)]
struct Dechunk {
    /// Bytes left in the current chunk (0 = expecting a size line).
    left: usize,
    pending: Vec<u8>,
}

impl Dechunk {
    fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        loop {
            if self.left > 0 {
                let n = self.left.min(self.pending.len() - pos);
                out.extend_from_slice(&self.pending[pos..pos + n]);
                pos += n;
                self.left -= n;
                if self.left > 0 {
                    break;
                }
                // The CRLF after the chunk: consumed with the next size line.
                continue;
            }
            let rest = &self.pending[pos..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = std::str::from_utf8(&rest[..eol]).unwrap_or("").trim();
            pos += eol + 2;
            if line.is_empty() {
                continue;
            }
            let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16).unwrap_or(0);
            self.left = size;
        }
        self.pending.drain(..pos);
    }
}

/// Per-subscriber stream state: sequence tracking for one topic, per
/// publishing connection.
struct Tracker {
    last_seq: Vec<u64>,
    received: u64,
}

/// Position of the first `b` in `hay`, eight bytes at a time (the 2 KB
/// events of a burst are mostly scanning for line ends).
fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ pat;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return c.iter().position(|&y| y == b).map(|p| at + p);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&y| y == b)
        .map(|p| at + p)
}

/// The lines of a frame (split on `\n`).
fn lines(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(frame);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_byte(r, b'\n') {
            Some(p) => {
                rest = Some(&r[p + 1..]);
                Some(&r[..p])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// End of the next frame (its blank line) in `buf`, if complete.
fn frame_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = find_byte(&buf[from..], b'\n') {
        let at = from + p;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

fn parse_events(body: &mut Vec<u8>, t: &mut Tracker, stats: &Stats, base: Instant) {
    let mut start = 0;
    while let Some(end) = frame_end(&body[start..]) {
        let frame = &body[start..start + end];
        for line in lines(frame) {
            let Some(payload) = line.strip_prefix(b"data: ") else {
                continue;
            };
            let mut it = payload.split(|&b| b == b' ');
            if it.next() != Some(b"L") {
                continue;
            }
            let num = |x: Option<&[u8]>| -> u64 {
                x.and_then(|v| std::str::from_utf8(v).ok())
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0)
            };
            let _topic = num(it.next());
            let publisher = num(it.next()) as usize;
            let seq = num(it.next());
            let ts = num(it.next());
            if publisher >= t.last_seq.len() {
                t.last_seq.resize(publisher + 1, 0);
            }
            let last = &mut t.last_seq[publisher];
            let now = base.elapsed().as_micros() as u64;
            record(&stats.latency_us, now.saturating_sub(ts));
            stats.delivered.set(stats.delivered.get() + 1);
            t.received += 1;
            if seq == *last {
                stats.dup.set(stats.dup.get() + 1);
            } else if seq < *last {
                stats.reordered.set(stats.reordered.get() + 1);
            } else {
                if seq > *last + 1 {
                    stats.lost.set(stats.lost.get() + (seq - *last - 1));
                }
                *last = seq;
            }
        }
        start += end + 2;
    }
    body.drain(..start);
}

/// Connects to `addr`, from `source` (any free port) when given: past one
/// address's ephemeral ports, a loopback client needs more source addresses.
/// A stalled subscriber also shrinks its receive buffer (when `rcvbuf` is
/// given), like a stuck mobile client, so the server's writes block soon.
async fn connect_from(
    addr: SocketAddr,
    source: Option<std::net::Ipv4Addr>,
    rcvbuf: Option<usize>,
) -> std::io::Result<TcpStream> {
    if source.is_none() && rcvbuf.is_none() {
        return TcpStream::connect_addr(addr).await;
    }
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let sock = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP))?;
    if let Some(bytes) = rcvbuf {
        sock.set_recv_buffer_size(bytes)?;
    }
    if let Some(ip) = source {
        // The port is picked at connect time, per (source, destination),
        // so each source address has the whole ephemeral range; a bind to
        // port 0 would instead search the bound ports on every connect.
        use std::os::fd::AsFd;
        ringcast::sys::set_int_sockopt(
            sock.as_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            1,
        )?;
        sock.bind(&SockAddr::from(SocketAddr::from((ip, 0))))?;
    }
    sock.set_nonblocking(true)?;
    match sock.connect(&SockAddr::from(addr)) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    let stream = TcpStream::from_std(std::net::TcpStream::from(sock))?;
    stream.writable(false).await?;
    // A failed connect leaves the socket unconnected; this surfaces why not.
    stream.peer_addr()?;
    Ok(stream)
}

/// The ephemeral ports one source address can use toward one server port.
fn ephemeral_ports() -> usize {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut it = s.split_whitespace().map(|v| v.parse::<usize>().ok());
            Some(it.next()??..=it.next()??)
        })
        .map(|r| r.count())
        .unwrap_or(28_000)
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// One subscriber to open.
struct SubSpec {
    idx: usize,
    /// Events it should receive.
    expected: u64,
    /// Never reads after the response head.
    stalled: bool,
    /// Source address to connect from, if spreading.
    source: Option<std::net::Ipv4Addr>,
}

async fn subscriber(
    args: Rc<Args>,
    stats: Rc<Stats>,
    spec: SubSpec,
    base: Instant,
    gate: Rc<Cell<usize>>,
) {
    let SubSpec {
        idx,
        expected,
        stalled,
        source,
    } = spec;
    let topic = idx % args.topics;
    let t0 = Instant::now();
    let rcvbuf = stalled.then_some(4096);
    let stream = match connect_from(args.addr, source, rcvbuf).await {
        Ok(s) => s,
        Err(_) => {
            stats.connect_errors.set(stats.connect_errors.get() + 1);
            gate.set(gate.get() - 1);
            stats.changed.notify();
            return;
        }
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let req = format!(
        "GET {} HTTP/1.1\r\nHost: load\r\nAccept: text/event-stream\r\n\r\n",
        args.sub_path(topic)
    );
    if wr.write_all(req.into_bytes()).await.0.is_err() {
        stats.connect_errors.set(stats.connect_errors.get() + 1);
        gate.set(gate.get() - 1);
        stats.changed.notify();
        return;
    }
    let mut buf = Vec::with_capacity(4096);
    let mut head_end = None;
    while head_end.is_none() {
        let (res, b) = rd.read(buf).await;
        buf = b;
        if !matches!(res, Ok(n) if n > 0) {
            stats.connect_errors.set(stats.connect_errors.get() + 1);
            gate.set(gate.get() - 1);
            stats.changed.notify();
            return;
        }
        head_end = find_head_end(&buf);
        if buf.len() == buf.capacity() {
            buf.reserve(4096);
        }
    }
    record(&stats.ttfb_us, t0.elapsed().as_micros() as u64);
    stats.connected.set(stats.connected.get() + 1);
    gate.set(gate.get() - 1);
    stats.changed.notify();
    let head_end = head_end.unwrap_or(0);
    let head = String::from_utf8_lossy(&buf[..head_end]).to_ascii_lowercase();
    let chunked = head.contains("transfer-encoding: chunked");
    if stalled || args.connect_only {
        // Hold the connection open, reading nothing, until the run ends.
        // (Not `std::future::pending()`: a monoio task that no waker refers
        // to is freed, which would drop, and so close, the connection. The
        // timer keeps this one's waker past the run's end.)
        monoio::time::sleep(Duration::from_secs(args.timeout_s + 60)).await;
    }
    let mut dechunk = Dechunk::default();
    let mut body = Vec::new();
    let mut tracker = Tracker {
        last_seq: Vec::new(),
        received: 0,
    };
    let rest = buf.split_off(head_end);
    if chunked {
        dechunk.feed(&rest, &mut body);
    } else {
        body.extend_from_slice(&rest);
    }
    parse_events(&mut body, &mut tracker, &stats, base);
    let mut rbuf = vec![0u8; 0];
    rbuf.reserve(64 * 1024);
    while tracker.received < expected {
        rbuf.clear();
        let (res, b) = rd.read(rbuf).await;
        rbuf = b;
        match res {
            Ok(n) if n > 0 => {
                if chunked {
                    dechunk.feed(&rbuf[..n], &mut body);
                } else {
                    body.extend_from_slice(&rbuf[..n]);
                }
                parse_events(&mut body, &mut tracker, &stats, base);
            }
            _ => {
                let missing = expected.saturating_sub(tracker.received);
                stats.ended_short.set(stats.ended_short.get() + missing);
                break;
            }
        }
    }
    stats.done_subscribers.set(stats.done_subscribers.get() + 1);
    stats.changed.notify();
}

/// One publishing connection: publishes every `conns`-th event (round-robin
/// over the topics), pipelining up to `window` requests. Each event carries
/// this connection's index and its own per-topic sequence number.
async fn publisher(
    args: Rc<Args>,
    stats: Rc<Stats>,
    conn_idx: usize,
    conns: usize,
    base: Instant,
    window: usize,
) {
    let Ok(stream) = TcpStream::connect_addr(args.addr).await else {
        stats.publish_errors.set(stats.publish_errors.get() + 1);
        return;
    };
    let _ = stream.set_nodelay(true);
    let (mut rd, mut wr) = stream.into_split();
    let outstanding = Rc::new(Cell::new(0usize));
    let acked = Rc::new(LocalNotify::default());
    let finished = Rc::new(Cell::new(false));
    let sent_all = Rc::new(Cell::new(0u64));
    // Response reader.
    let reader = {
        let (outstanding, acked, stats, finished, sent_all) = (
            outstanding.clone(),
            acked.clone(),
            stats.clone(),
            finished.clone(),
            sent_all.clone(),
        );
        monoio::spawn(async move {
            let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
            let mut got = 0u64;
            loop {
                // Parse complete responses in the buffer.
                while let Some(he) = find_head_end(&buf) {
                    let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
                    let len = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .and_then(|v| v.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if buf.len() < he + len {
                        break;
                    }
                    let ok = head.starts_with("http/1.1 2");
                    buf.drain(..he + len);
                    if ok {
                        stats.published.set(stats.published.get() + 1);
                    } else {
                        stats.publish_errors.set(stats.publish_errors.get() + 1);
                    }
                    got += 1;
                    outstanding.set(outstanding.get() - 1);
                    acked.notify();
                }
                if finished.get() && got >= sent_all.get() {
                    return;
                }
                if buf.capacity() - buf.len() < 4096 {
                    buf.reserve(64 * 1024);
                }
                let len = buf.len();
                let cap = buf.capacity();
                let (res, slice) = rd
                    .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
                    .await;
                buf = slice.into_inner();
                if !matches!(res, Ok(n) if n > 0) {
                    acked.notify();
                    return;
                }
            }
        })
    };
    let payload_pad = args.size.saturating_sub(40);
    let pad = "x".repeat(payload_pad);
    let mut seqs = vec![0u64; args.topics];
    let start = Instant::now();
    for e in 0..args.events {
        if e % conns as u64 != conn_idx as u64 {
            continue;
        }
        let topic = (e % args.topics as u64) as usize;
        if let Some(ns) = (e * 1_000_000_000).checked_div(args.rate) {
            let due = start + Duration::from_nanos(ns);
            let now = Instant::now();
            if due > now {
                monoio::time::sleep(due - now).await;
            }
        }
        while outstanding.get() >= window {
            let o = outstanding.clone();
            acked.until(move || o.get() < window).await;
        }
        seqs[topic] += 1;
        let ts = base.elapsed().as_micros() as u64;
        let data = format!("L {topic} {conn_idx} {} {ts} {pad}", seqs[topic]);
        let req = format!(
            "POST {} HTTP/1.1\r\nHost: load\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{data}",
            args.pub_path(topic),
            data.len()
        );
        outstanding.set(outstanding.get() + 1);
        sent_all.set(sent_all.get() + 1);
        if wr.write_all(req.into_bytes()).await.0.is_err() {
            stats.publish_errors.set(stats.publish_errors.get() + 1);
            break;
        }
    }
    finished.set(true);
    acked.notify();
    let _ = reader.await;
}

fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

fn raise_nofile() {
    let _ = ringcast::sys::raise_nofile_limit();
}

fn main() {
    let args = Args::parse();
    raise_nofile();
    let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(8192)
        .enable_timer()
        .build()
        .expect("runtime");
    let report = rt.block_on(run(Rc::new(args.clone())));
    if args.json {
        println!("{}", report);
    } else {
        let v: serde_json::Value = serde_json::from_str(&report).expect("report");
        for (k, val) in v.as_object().expect("object") {
            println!("{k:>28}: {val}");
        }
    }
}

async fn run(args: Rc<Args>) -> String {
    let stats = Rc::new(Stats::default());
    *stats.latency_us.borrow_mut() = Some(hist());
    *stats.ttfb_us.borrow_mut() = Some(hist());
    let base = Instant::now();
    let deadline = base + Duration::from_secs(args.timeout_s);
    let rss0 = args.server_pid.and_then(proc_rss_kib);
    let cpu_start = args.server_pid.and_then(proc_cpu_s);
    let self_start = proc_cpu_s(std::process::id());
    let n = args.subscribers;
    let stalled_every = if args.stalled_pct > 0.0 {
        (100.0 / args.stalled_pct).round().max(1.0) as usize
    } else {
        0
    };
    let per_topic = |t: usize| -> u64 {
        let e = args.events;
        let tt = args.topics as u64;
        e / tt + u64::from((t as u64) < e % tt)
    };
    // Source addresses: as many as the ephemeral port range needs, or as
    // asked; at most 127.0.0.1-127.0.0.254. Each address is given a quarter
    // of the range: ports of earlier runs linger in TIME-WAIT for a minute,
    // and connect() slows to a crawl searching a nearly full range.
    let spread = if args.source_ips > 0 {
        args.source_ips
    } else {
        n.div_ceil((ephemeral_ports() / 4).max(1))
    }
    .clamp(1, 254);
    // Connect, bounded concurrency.
    let gate = Rc::new(Cell::new(0usize));
    let t_connect = Instant::now();
    let mut readers = 0usize;
    let mut expected_total = 0u64;
    for i in 0..n {
        while gate.get() >= args.connect_concurrency {
            let g = gate.clone();
            let c = args.connect_concurrency;
            stats.changed.until(move || g.get() < c).await;
        }
        gate.set(gate.get() + 1);
        let stalled = stalled_every > 0 && i % stalled_every == stalled_every - 1;
        if !stalled {
            readers += 1;
            expected_total += per_topic(i % args.topics);
        }
        let source =
            (spread > 1).then(|| std::net::Ipv4Addr::new(127, 0, 0, 1 + (i % spread) as u8));
        let spec = SubSpec {
            idx: i,
            expected: per_topic(i % args.topics),
            stalled,
            source,
        };
        monoio::spawn(subscriber(
            args.clone(),
            stats.clone(),
            spec,
            base,
            gate.clone(),
        ));
    }
    {
        let s = stats.clone();
        let until = s.clone();
        monoio::select! {
            _ = until.changed.until(move || s.connected.get() + s.connect_errors.get() >= n) => {},
            _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
        }
    }
    let connect_s = t_connect.elapsed().as_secs_f64();
    let cpu_connect = args.server_pid.and_then(proc_cpu_s);
    let self_connect = proc_cpu_s(std::process::id());
    if args.connect_only && args.hold_s > 0.0 {
        monoio::time::sleep(Duration::from_secs_f64(args.hold_s)).await;
    }
    let rss1 = args.server_pid.and_then(proc_rss_kib);
    let cpu0 = args.server_pid.and_then(proc_cpu_s);
    let t_pub = Instant::now();
    let publish_s;
    if args.connect_only {
        publish_s = t_pub.elapsed().as_secs_f64();
    } else {
        let conns = args.inflight.max(1);
        let window = args.pipeline.max(1);
        for c in 0..conns {
            let (a, st) = (args.clone(), stats.clone());
            monoio::spawn(async move {
                publisher(a, st.clone(), c, conns, base, window).await;
                st.publishers_done.set(st.publishers_done.get() + 1);
                st.changed.notify();
            });
        }
        let s = stats.clone();
        let until = s.clone();
        monoio::select! {
            _ = until.changed.until(move || s.done_subscribers.get() >= readers) => {},
            _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
        }
        publish_s = t_pub.elapsed().as_secs_f64();
        // Every answer read, so `published` counts every acknowledged event
        // (bounded by the deadline like the rest).
        let s = stats.clone();
        let until = s.clone();
        monoio::select! {
            _ = until.changed.until(move || s.publishers_done.get() >= conns) => {},
            _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
        }
    }
    let cpu1 = args.server_pid.and_then(proc_cpu_s);
    let self_end = proc_cpu_s(std::process::id());
    // Busy share of one core, to tell which side limited a phase.
    let util = |a: Option<f64>, b: Option<f64>, secs: f64| match (a, b) {
        (Some(a), Some(b)) if secs > 0.0 => Some((b - a) / secs),
        _ => None,
    };
    let delivered = stats.delivered.get();
    let lat = stats.latency_us.borrow_mut().take().unwrap_or_else(hist);
    let ttfb = stats.ttfb_us.borrow_mut().take().unwrap_or_else(hist);
    let unfinished = readers.saturating_sub(stats.done_subscribers.get()) as u64;
    let cpu_per_conn_us = match (cpu_start, cpu_connect) {
        (Some(a), Some(b)) if stats.connected.get() > 0 => {
            Some((b - a) / stats.connected.get() as f64 * 1e6)
        }
        _ => None,
    };
    let cpu_per_m = match (cpu0, cpu1) {
        (Some(a), Some(b)) if delivered > 0 => Some((b - a) / delivered as f64 * 1e6),
        _ => None,
    };
    let rss_per_conn = match (rss0, rss1) {
        (Some(a), Some(b)) if stats.connected.get() > 0 => {
            Some((b.saturating_sub(a) as f64 * 1024.0) / stats.connected.get() as f64)
        }
        _ => None,
    };
    serde_json::json!({
        "server": args.server,
        "subscribers": n,
        "source_ips": spread,
        "publishers": args.inflight.max(1),
        "connected": stats.connected.get(),
        "connect_errors": stats.connect_errors.get(),
        "connects_per_s": stats.connected.get() as f64 / connect_s,
        "server_cpu_us_per_connect": cpu_per_conn_us,
        "server_connects_per_cpu_s": cpu_per_conn_us.filter(|us| *us > 0.0).map(|us| 1e6 / us),
        "connect_server_core_util": util(cpu_start, cpu_connect, connect_s),
        "connect_loadgen_core_util": util(self_start, self_connect, connect_s),
        "publish_server_core_util": util(cpu0, cpu1, publish_s),
        "publish_loadgen_core_util": util(self_connect, self_end, publish_s),
        "ttfb_p50_ms": ttfb.value_at_quantile(0.5) as f64 / 1000.0,
        "ttfb_p99_ms": ttfb.value_at_quantile(0.99) as f64 / 1000.0,
        "topics": args.topics,
        "events": args.events,
        "published": stats.published.get(),
        "publish_errors": stats.publish_errors.get(),
        "delivered": delivered,
        "deliveries_per_s": delivered as f64 / publish_s,
        "latency_p50_ms": lat.value_at_quantile(0.5) as f64 / 1000.0,
        "latency_p90_ms": lat.value_at_quantile(0.9) as f64 / 1000.0,
        "latency_p99_ms": lat.value_at_quantile(0.99) as f64 / 1000.0,
        "latency_p999_ms": lat.value_at_quantile(0.999) as f64 / 1000.0,
        "latency_max_ms": lat.max() as f64 / 1000.0,
        // Lost: skipped in a stream that went on, or missing from a stream
        // that ended. Not yet delivered when the run's time ran out is
        // reported apart (a slow server, not a lossy one).
        "lost": stats.lost.get() + stats.ended_short.get(),
        "sequence_gaps": stats.lost.get(),
        "undelivered_at_deadline": if args.connect_only { 0 } else {
            expected_total.saturating_sub(delivered - stats.dup.get() - stats.reordered.get())
                .saturating_sub(stats.lost.get() + stats.ended_short.get())
        },
        "unfinished_subscribers": unfinished,
        "duplicated": stats.dup.get(),
        "reordered": stats.reordered.get(),
        "server_cpu_s_per_million_deliveries": cpu_per_m,
        "server_rss_bytes_per_connection": rss_per_conn,
        "publish_seconds": publish_s,
    })
    .to_string()
}

#[cfg(test)]
mod tests {
    use super::{find_byte, frame_end, lines};

    #[test]
    fn finds_bytes_and_frames() {
        let hay: Vec<u8> = (0..40u8).map(|i| b'a' + i % 20).collect();
        for (i, &b) in hay.iter().enumerate() {
            let want = hay.iter().position(|&y| y == b);
            assert_eq!(find_byte(&hay, b), want, "byte {i}");
        }
        assert_eq!(find_byte(&hay, b'\n'), None);
        assert_eq!(find_byte(b"", b'\n'), None);
        assert_eq!(frame_end(b"id: 1\ndata: x\n\nid: 2"), Some(13));
        assert_eq!(frame_end(b"id: 1\ndata: x\n"), None);
        let frame = b"id: 1\n\ndata: L 0 0 1 2 xxxxxxxxxxxxxxxxxxxx";
        let got: Vec<&[u8]> = lines(frame).collect();
        assert_eq!(got, frame.split(|&b| b == b'\n').collect::<Vec<_>>());
    }
}
