//! A running server as `main` sees it: its address, its driver, and the
//! drain that ends it (readyz 503 → listeners closed → queues flushed →
//! randomised `retry:` → close → workers joined).

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use crate::ops::notify::notify_systemd;
use crate::sequencer::Ingest;
use crate::worker::Shared;

/// A running server.
#[derive(Debug)]
pub struct Server {
    pub(crate) shared: Arc<Shared>,
    pub(crate) addr: SocketAddr,
    /// Duplicates of the workers' listeners (see `accept::stop_listening`).
    pub(crate) stoppers: Vec<socket2::Socket>,
    pub(crate) workers: Vec<JoinHandle<()>>,
    /// One message per worker thread that has finished.
    pub(crate) done: Receiver<usize>,
    pub(crate) driver: &'static str,
}

impl Server {
    /// The address every worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The configuration it runs with.
    pub fn config(&self) -> &crate::config::Config {
        &self.shared.cfg
    }

    /// "io_uring" or "legacy".
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// SIGHUP: takes the secret and keys of a freshly loaded `[auth]`
    /// section; open connections stay, new requests use the new keys. A
    /// reload that fails keeps the old keys and logs why.
    pub fn reload_auth(&self, fresh: &crate::config::Config) {
        let Some(auth) = &self.shared.auth else {
            if fresh.auth.enabled() {
                tracing::warn!("SIGHUP: auth cannot be turned on by a reload; restart ringcast");
            } else {
                tracing::info!("SIGHUP: auth is off; nothing to reload");
            }
            return;
        };
        match auth.reload(&fresh.auth) {
            Ok(()) => tracing::info!(keys = %auth.describe(), "SIGHUP: auth keys reloaded"),
            Err(e) => {
                tracing::warn!(error = %e, "SIGHUP: auth keys reload failed; keeping the old keys")
            }
        }
    }

    /// Drains and stops the server; true when every worker finished within
    /// `timeout` (`server.shutdown_timeout_ms`).
    pub fn shutdown(self, timeout: Duration) -> bool {
        notify_systemd("STOPPING=1");
        self.begin_shutdown();
        let clean = self.wait(timeout);
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

    /// Starts draining: publishes are refused and `/readyz` answers 503 at
    /// once, the listeners stop listening (a new connection is refused, never
    /// accepted and left without an answer), and the drain marker goes
    /// through the order, so every event acknowledged before it reaches the
    /// workers (and the journal) first.
    fn begin_shutdown(&self) {
        if !self.shared.draining.swap(true, Relaxed) {
            for l in &self.stoppers {
                crate::http::accept::stop_listening(l);
            }
            self.shared.ingest.drain();
        }
    }

    /// Waits until every worker has drained, or `timeout` passes. True when
    /// all finished.
    fn wait(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut left = self.workers.len();
        while left > 0 {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            match self.done.recv_timeout(deadline - now) {
                Ok(_) => left -= 1,
                Err(_) => break,
            }
        }
        if left == 0 {
            for h in self.workers {
                let _ = h.join();
            }
        }
        // The journal's close record, even when connections were cut: a
        // restart then knows nothing is missing after the last event. It
        // was asked for at the start of the drain and takes milliseconds.
        let journal = match &self.shared.ingest {
            Ingest::Worker(order) => {
                let rest = deadline.saturating_duration_since(Instant::now());
                order.wait_journal(rest.max(Duration::from_secs(2)))
            }
            Ingest::Cluster(_) => true,
        };
        if !journal {
            tracing::warn!("history.dir: the journal did not close in time; a restart will treat this stop as a crash");
        }
        left == 0 && journal
    }
}
