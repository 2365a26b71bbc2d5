//! A connection's four deadlines, each a field or two and a rule for
//! what a fired timer-wheel entry means: the request head's, the
//! heartbeat's (silence since the last write), the write stall's (no
//! progress since the write began) and the token's expiry. The wheel
//! (`timers.rs`) keeps one entry per armed deadline and asks these.

use super::Conn;
use crate::frame::HEARTBEAT;

/// What a fired header or stall timer entry found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Expiry {
    /// The deadline no longer applies (disarmed, no write in flight): the
    /// entry is let go.
    Off,
    /// The deadline has passed: the connection is to be closed.
    Passed,
    /// The deadline moved later: the entry goes back in the wheel at this
    /// tick.
    Rearm(u64),
}

/// What a fired heartbeat timer entry did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Heartbeat {
    /// The connection is closing: the heartbeat cycle ends.
    Stop,
    /// A heartbeat frame was queued; the next check is at `next`.
    Sent {
        /// Tick of the next check.
        next: u64,
    },
    /// Nothing queued; the next check is at `at`.
    Wait {
        /// Tick of the next check.
        at: u64,
    },
}

impl Conn {
    /// Moves the token-expiry deadline to tick `at`; true when the caller
    /// must put an entry in the wheel (none is there yet).
    pub(crate) fn arm_expiry(&self, at: u64) -> bool {
        self.expires_at.set(at.max(1));
        !self.expiry_armed.replace(true)
    }

    /// Fired token-expiry entry at tick `now`.
    pub(crate) fn on_expiry_timer(&self, now: u64) -> Expiry {
        let at = self.expires_at.get();
        if at == 0 || self.closed().is_some() || self.is_draining() {
            self.expiry_armed.set(false);
            Expiry::Off
        } else if now >= at {
            self.expiry_armed.set(false);
            Expiry::Passed
        } else {
            Expiry::Rearm(at)
        }
    }

    /// Starts (or moves) the request-head deadline to tick `deadline`
    /// (never 0, which means disarmed). True when the caller must put a
    /// header entry in the wheel: none is there yet. An entry already there
    /// re-arms itself at the moved deadline when it fires.
    pub(crate) fn arm_header(&self, deadline: u64) -> bool {
        debug_assert!(deadline > 0, "a header deadline of 0 means disarmed");
        self.header_deadline.set(deadline);
        !self.header_armed.replace(true)
    }

    /// Stops the request-head deadline; the wheel entry is let go when it
    /// fires.
    pub(crate) fn disarm_header(&self) {
        self.header_deadline.set(0);
    }

    /// The header entry fired at tick `now`.
    pub(crate) fn on_header_timer(&self, now: u64) -> Expiry {
        let due = self.header_deadline.get();
        let expiry = if due == 0 {
            Expiry::Off
        } else if now >= due {
            Expiry::Passed
        } else {
            Expiry::Rearm(due)
        };
        self.header_armed.set(matches!(expiry, Expiry::Rearm(_)));
        expiry
    }

    /// Tick at which a stream silent since its last write needs a
    /// heartbeat, `every` ticks being `sse.heartbeat_ms`.
    pub(crate) fn heartbeat_at(&self, every: u64) -> u64 {
        self.last_write.get() + every
    }

    /// The heartbeat entry fired at tick `now`: after `every` ticks of
    /// silence a heartbeat frame is queued — only when nothing is being
    /// written and the queue is empty, since any frame keeps the stream
    /// alive as well — and the next check comes `every` ticks later.
    pub(crate) fn on_heartbeat_timer(&self, now: u64, every: u64) -> Heartbeat {
        if self.closed().is_some() {
            return Heartbeat::Stop;
        }
        let due = self.heartbeat_at(every);
        if now < due {
            return Heartbeat::Wait { at: due };
        }
        let next = now + every;
        if self.writing.get() || self.has_queued() {
            return Heartbeat::Wait { at: next };
        }
        self.push_raw(HEARTBEAT.clone());
        Heartbeat::Sent { next }
    }

    /// Tick at which a write without progress since `last_progress` has
    /// stalled, `limit` ticks being `sse.write_stall_ms`.
    pub(super) fn stall_at(&self, limit: u64) -> u64 {
        self.last_progress.get() + limit
    }

    /// Arms the stall check of a write in flight: the tick to put a stall
    /// entry in the wheel at, or `None` when one is there already (it
    /// re-arms itself from the last progress when it fires).
    pub(crate) fn arm_stall(&self, limit: u64) -> Option<u64> {
        (!self.stall_armed.replace(true)).then(|| self.stall_at(limit))
    }

    /// The stall entry fired at tick `now`: a write in flight that made no
    /// progress for `limit` ticks has stalled.
    pub(crate) fn on_stall_timer(&self, now: u64, limit: u64) -> Expiry {
        let expiry = if !self.writing.get() {
            Expiry::Off
        } else if now >= self.stall_at(limit) {
            Expiry::Passed
        } else {
            Expiry::Rearm(self.stall_at(limit))
        };
        self.stall_armed.set(matches!(expiry, Expiry::Rearm(_)));
        expiry
    }
}
