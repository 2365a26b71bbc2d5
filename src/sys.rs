//! The process-level system calls that std does not wrap, each with its
//! safety argument.

/// Raises the soft open-files limit to the hard limit (tens of thousands of
/// subscribers need as many descriptors); returns the new soft limit.
#[allow(unsafe_code)]
pub fn raise_nofile_limit() -> std::io::Result<u64> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `lim` is a valid, writable rlimit that outlives the call.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        lim.rlim_cur = lim.rlim_max;
        // SAFETY: `lim` is a valid rlimit read from the kernel with only the
        // soft limit raised to the hard one, which an unprivileged process may do.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &lim) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
    }
    Ok(lim.rlim_cur)
}

/// Grows this process's descriptor table to hold at least `n` descriptors
/// now, while nothing waits on it; returns the table's size (`FDSize` in
/// `/proc/self/status`), or the error. The kernel otherwise grows the table
/// by doubling when a new descriptor needs it (at 256, 512, 1,024, ...
/// connections), and in a multi-threaded process each growth waits for an
/// RCU grace period (`synchronize_rcu` in `expand_fdtable`): 10-30 ms in
/// which that accept, and every other thread's, stands still. The table
/// never shrinks, so one growth at start-up saves every later one. `n` must
/// be below the soft open-files limit.
#[allow(unsafe_code)]
pub fn reserve_descriptors(n: usize) -> std::io::Result<usize> {
    use std::os::fd::AsRawFd;
    let probe = std::fs::File::open("/dev/null")?;
    let target = libc::c_int::try_from(n.saturating_sub(1)).unwrap_or(libc::c_int::MAX);
    // SAFETY: `probe` is open for the whole call; F_DUPFD_CLOEXEC only
    // creates a new descriptor (the lowest free one at or above `target`),
    // never touching one that is open, and takes no pointers.
    let fd = unsafe { libc::fcntl(probe.as_raw_fd(), libc::F_DUPFD_CLOEXEC, target) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` was created just above and is owned by nothing else, so
    // closing it cannot close a descriptor that someone else holds.
    unsafe { libc::close(fd) };
    Ok(descriptor_table_size().unwrap_or(n))
}

/// The size of this process's descriptor table (`FDSize` in
/// `/proc/self/status`), if the kernel reports it.
pub fn descriptor_table_size() -> Option<usize> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("FDSize:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Accepts one connection from the listening socket `fd` if one is
/// waiting (the listener must be non-blocking): `None` when the backlog is
/// empty. The stream is blocking unless `nonblocking` (io_uring does not
/// need the flag; the legacy epoll driver does).
#[allow(unsafe_code)]
pub fn accept_waiting(
    fd: std::os::fd::RawFd,
    nonblocking: bool,
) -> std::io::Result<Option<(std::net::TcpStream, std::net::SocketAddr)>> {
    // SAFETY: the caller passes the descriptor of a listener it holds for
    // the whole call, so the borrow cannot outlive the descriptor.
    let listener = unsafe { std::os::fd::BorrowedFd::borrow_raw(fd) };
    let (socket, addr) = match socket2::SockRef::from(&listener).accept() {
        Ok(v) => v,
        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Ok(None),
        Err(e) => return Err(e),
    };
    if nonblocking {
        socket.set_nonblocking(true)?;
    }
    let addr = addr
        .as_socket()
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::InvalidInput))?;
    Ok(Some((socket.into(), addr)))
}

/// Sets an integer socket option that `socket2` does not wrap
/// (`TCP_DEFER_ACCEPT`, `IP_BIND_ADDRESS_NO_PORT`).
#[allow(unsafe_code)]
pub fn set_int_sockopt(
    fd: std::os::fd::BorrowedFd<'_>,
    level: libc::c_int,
    name: libc::c_int,
    value: libc::c_int,
) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: `fd` is borrowed, so it stays open for the whole call; the
    // option value is a valid `c_int` on the stack and its exact size is
    // passed, which is what integer options read.
    let rc = unsafe {
        libc::setsockopt(
            fd.as_raw_fd(),
            level,
            name,
            (&value as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// One non-blocking send of `buf` on socket `fd` (`send` with
/// `MSG_DONTWAIT | MSG_NOSIGNAL`, whatever the socket's own mode): the bytes
/// the kernel took, `WouldBlock` when its buffer is full. The caller
/// guarantees that `fd` is the socket it means (open, not closed and reused
/// meanwhile): a stale descriptor is no memory hazard, but would write to a
/// stranger.
#[allow(unsafe_code)]
pub(crate) fn send_now(fd: std::os::fd::RawFd, buf: &[u8]) -> std::io::Result<usize> {
    // SAFETY: `buf` is readable memory of `buf.len()` bytes that outlives
    // the call; the kernel only reads it (send does not write the buffer).
    let n = unsafe {
        libc::send(
            fd,
            buf.as_ptr().cast(),
            buf.len(),
            libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
        )
    };
    if n < 0 {
        Err(std::io::Error::last_os_error())
    } else {
        Ok(n as usize)
    }
}

/// Makes the socket's close send a reset at once (`SO_LINGER` 0) instead of
/// the FIN/ACK exchange: for a client that has already gone.
#[allow(unsafe_code)]
pub(crate) fn reset_on_close(stream: &impl std::os::fd::AsRawFd) {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: `stream` is borrowed, so its descriptor stays open for the
    // whole call; the option value is a valid `linger` on the stack and its
    // exact size is passed, which is what SO_LINGER reads. A failure only
    // leaves the default (graceful) close, so its result is not needed.
    unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            (&linger as *const libc::linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        );
    }
}

#[cfg(test)]
mod tests {
    /// The soft and hard open-files limits as the kernel reports them.
    fn nofile_limits() -> (String, String) {
        let text = std::fs::read_to_string("/proc/self/limits").unwrap();
        let line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap();
        let mut f = line["Max open files".len()..].split_whitespace();
        (f.next().unwrap().to_owned(), f.next().unwrap().to_owned())
    }

    #[test]
    fn raises_the_soft_limit_to_the_hard_one() {
        let n = super::raise_nofile_limit().unwrap();
        let (soft, hard) = nofile_limits();
        assert_eq!(soft, hard, "soft limit left below the hard limit");
        let want = if hard == "unlimited" {
            libc::RLIM_INFINITY
        } else {
            hard.parse().unwrap()
        };
        assert_eq!(n, want);
    }

    #[test]
    fn reserves_a_descriptor_table_without_holding_a_descriptor() {
        super::raise_nofile_limit().unwrap();
        let before = super::descriptor_table_size().unwrap();
        let want = (before * 4).max(4096);
        let size = super::reserve_descriptors(want).unwrap();
        assert!(size >= want, "table of {size} after reserving {want}");
        assert_eq!(super::descriptor_table_size(), Some(size));
        // The descriptor that grew the table is closed again.
        let top = format!("/proc/self/fd/{}", want - 1);
        assert!(!std::path::Path::new(&top).exists(), "{top} left open");
    }

    #[test]
    fn sets_and_rejects_socket_options() {
        use std::os::fd::AsFd;
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        super::set_int_sockopt(l.as_fd(), libc::IPPROTO_TCP, libc::TCP_DEFER_ACCEPT, 5).unwrap();
        let unknown = super::set_int_sockopt(l.as_fd(), libc::IPPROTO_TCP, 9999, 1);
        assert!(unknown.is_err());
    }
}
