//! Process lifecycle around the workers: waiting for SIGTERM/SIGINT, the
//! drain that follows (readyz 503 → listeners closed → queues flushed →
//! randomised `retry:` → close → exit 0 within `server.shutdown_timeout_ms`),
//! and systemd's readiness protocol.

use std::time::Duration;

use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::runtime::Server;

/// Installs the signal handlers. Call before the workers start so a signal
/// arriving during start-up is not lost.
pub fn signals() -> std::io::Result<Signals> {
    Signals::new([SIGTERM, SIGINT])
}

/// Blocks until a signal arrives, then drains `server`. Returns whether
/// every worker finished within the timeout.
pub fn run_until_signal(server: Server, mut signals: Signals, timeout: Duration) -> bool {
    let sig = signals.forever().next().unwrap_or(SIGTERM);
    tracing::info!(signal = sig, "shutdown: draining");
    notify_systemd("STOPPING=1");
    server.begin_shutdown();
    let clean = server.wait(timeout);
    if clean {
        tracing::info!("shutdown complete");
    } else {
        tracing::warn!(
            timeout_ms = timeout.as_millis() as u64,
            "shutdown timeout reached; closing remaining connections"
        );
    }
    clean
}

/// Sends `state` to systemd's notify socket when running under
/// `Type=notify`; does nothing otherwise.
pub fn notify_systemd(state: &str) {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let Ok(sock) = std::os::unix::net::UnixDatagram::unbound() else {
        return;
    };
    let bytes = path.as_encoded_bytes();
    let res = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), std::path::Path::new(&path))
    };
    if let Err(e) = res {
        tracing::warn!(error = %e, "sd_notify failed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sd_notify_reaches_the_socket() {
        let dir = std::env::temp_dir().join(format!("ringcast-notify-{}", std::process::id()));
        let _ = std::fs::remove_file(&dir);
        let rx = std::os::unix::net::UnixDatagram::bind(&dir).unwrap();
        std::env::set_var("NOTIFY_SOCKET", &dir);
        notify_systemd("READY=1");
        std::env::remove_var("NOTIFY_SOCKET");
        let mut buf = [0u8; 32];
        let n = rx.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        std::fs::remove_file(&dir).unwrap();
    }
}
