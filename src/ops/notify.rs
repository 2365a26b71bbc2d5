//! systemd's readiness protocol (`Type=notify`): `READY=1` once every worker
//! accepts, `STOPPING=1` when the drain begins. A no-op outside systemd.

use std::ffi::OsStr;

/// Sends `state` to systemd's notify socket (`$NOTIFY_SOCKET`) when running
/// under `Type=notify`; does nothing otherwise.
pub fn notify_systemd(state: &str) {
    if let Some(path) = std::env::var_os("NOTIFY_SOCKET") {
        if let Err(e) = send(&path, state) {
            tracing::warn!(error = %e, "sd_notify failed");
        }
    }
}

/// Sends `state` as one datagram to the socket at `path`; a leading `@`
/// names an abstract socket.
fn send(path: &OsStr, state: &str) -> std::io::Result<()> {
    let sock = std::os::unix::net::UnixDatagram::unbound()?;
    let bytes = path.as_encoded_bytes();
    if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_reaches_a_path_socket() {
        let dir = std::env::temp_dir().join(format!("ringcast-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let rx = std::os::unix::net::UnixDatagram::bind(&dir).unwrap();
        send(dir.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_file(&dir).unwrap();
    }

    #[test]
    fn state_reaches_an_abstract_socket() {
        use std::os::linux::net::SocketAddrExt;
        let name = format!("ringcast-notify-test-{}", std::process::id());
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let rx = std::os::unix::net::UnixDatagram::bind_addr(&addr).unwrap();
        send(OsStr::new(&format!("@{name}")), "STOPPING=1").unwrap();
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"STOPPING=1");
    }

    #[test]
    fn a_missing_socket_is_an_error_not_a_panic() {
        let path = std::env::temp_dir().join("ringcast-notify-nobody-listens");
        let _ = std::fs::remove_file(&path);
        assert!(send(path.as_os_str(), "READY=1").is_err());
    }
}
