//! The guard that ties a connection to its worker: created when the
//! connection is accepted, it unregisters the connection (subscriptions,
//! queue, counts, per-IP slot) however the connection's task ends.

use std::net::IpAddr;
use std::rc::Rc;

use super::conn::Conn;
use super::Worker;

/// Removes the connection from its worker when dropped.
pub(crate) struct Registration {
    w: Rc<Worker>,
    conn: Rc<Conn>,
    /// The client address counted against `limits.max_connections_per_ip`.
    ip: Option<IpAddr>,
}

impl Registration {
    /// Registers a new connection on `w`; `ip` is the address it was
    /// counted under, if the per-IP limit is on.
    pub(crate) fn new(w: Rc<Worker>, ip: Option<IpAddr>) -> Self {
        let conn = w.register();
        Registration { w, conn, ip }
    }

    /// The worker that owns the connection.
    pub(crate) fn worker(&self) -> &Rc<Worker> {
        &self.w
    }

    /// The connection's shared state.
    pub(crate) fn conn(&self) -> &Rc<Conn> {
        &self.conn
    }

    /// Counts the connection under `ip` from now on (a trusted proxy named
    /// the client, SPEC §5): releases the address it was counted under, if
    /// another, and counts it under `ip`. False when `ip` is at
    /// `limits.max_connections_per_ip`; the connection is then counted
    /// nowhere, like one refused at accept.
    pub(crate) fn attribute(&mut self, ip: IpAddr) -> bool {
        if self.ip == Some(ip) {
            return true;
        }
        self.unattribute();
        self.ip = self.w.shared.track_ip(ip);
        self.ip.is_some()
    }

    /// Stops counting the connection under any address (a proxied
    /// connection idling between requests).
    pub(crate) fn unattribute(&mut self) {
        if let Some(old) = self.ip.take() {
            self.w.shared.release_ip(old);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        self.w.unregister(&self.conn);
        if let Some(ip) = self.ip {
            self.w.shared.release_ip(ip);
        }
        tracing::debug!(conn = self.conn.id, request_id = %self.conn.request_id(), "closed");
        self.w.kick_drain();
    }
}
