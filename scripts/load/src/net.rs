//! Loopback sockets at scale: connecting from many 127.0.0.x source
//! addresses (one address runs out of ephemeral ports near 28k
//! connections), shrinking a stalled subscriber's receive buffer, growing
//! the descriptor table up front, and reading into a buffer that grows.

use std::net::{Ipv4Addr, SocketAddr};

use monoio::io::AsyncReadRent;
use monoio::net::TcpStream;

/// Connects to `addr`, from `source` (any free port) when given: past one
/// address's ephemeral ports, a loopback client needs more source addresses.
/// A stalled subscriber also shrinks its receive buffer (when `rcvbuf` is
/// given), like a stuck mobile client, so the server's writes block soon.
pub(crate) async fn connect_from(
    addr: SocketAddr,
    source: Option<Ipv4Addr>,
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

/// How many 127.0.0.x source addresses `subscribers` connections need, or
/// `asked` (--source-ips) when given; at most 127.0.0.1-127.0.0.254. Each
/// address is given a quarter of the ephemeral range: ports of earlier runs
/// linger in TIME-WAIT for a minute, and connect() slows to a crawl
/// searching a nearly full range.
pub(crate) fn source_ips(asked: usize, subscribers: usize) -> usize {
    if asked > 0 {
        asked
    } else {
        subscribers.div_ceil((ephemeral_ports() / 4).max(1))
    }
    .clamp(1, 254)
}

/// The source address of subscriber `idx` when spreading over `spread`
/// addresses; none (the kernel's choice) with one.
pub(crate) fn source_of(idx: usize, spread: usize) -> Option<Ipv4Addr> {
    (spread > 1).then(|| Ipv4Addr::new(127, 0, 0, 1 + (idx % spread) as u8))
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

/// Raises the open-files limit and grows the descriptor table to it at
/// once: growing it later, by doubling as sockets open, waits for an RCU
/// grace period (10-30 ms) whenever the process has a second thread (the
/// storm thread, io_uring's workers), which would count against the
/// server's connect figures.
pub(crate) fn raise_nofile() {
    if let Ok(n) = ringcast::sys::raise_nofile_limit() {
        let _ = ringcast::sys::reserve_descriptors((n as usize).min(1 << 18));
    }
}

/// Reads once from `r`, appending to `buf` (growing it by 64 KiB when less
/// than 4 KiB is free); returns the read's result and the buffer.
pub(crate) async fn read_appending<R: AsyncReadRent>(
    r: &mut R,
    mut buf: Vec<u8>,
) -> (std::io::Result<usize>, Vec<u8>) {
    if buf.capacity() - buf.len() < 4096 {
        buf.reserve(64 * 1024);
    }
    let len = buf.len();
    let cap = buf.capacity();
    let (res, slice) = r
        .read(monoio::buf::IoBufMut::slice_mut(buf, len..cap))
        .await;
    (res, slice.into_inner())
}
