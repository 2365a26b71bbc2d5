//! `Stats`: the counters and histograms that the subscriber and publisher
//! tasks of one thread update (`Cell`s: one thread, no atomics on the hot
//! path), the wakers that let the run wait on them, and the hand-back of
//! the storm thread's figures (`Tally`) into the main thread's.

use std::cell::{Cell, RefCell};

use hdrhistogram::Histogram;

use crate::notify::{LocalNotify, SlotNotify};

/// Storm phases (`Stats::phase`; 0 = calm, before the drop).
pub(crate) const DROP: u8 = 1;
pub(crate) const RECONNECT: u8 = 2;
/// The run is over: the storm thread hands back its figures.
pub(crate) const END: u8 = 3;

/// A histogram of µs from 1 µs to 60 s, three significant digits.
pub(crate) type Hist = RefCell<Option<Histogram<u64>>>;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) delivered: Cell<u64>,
    pub(crate) lost: Cell<u64>,
    pub(crate) dup: Cell<u64>,
    pub(crate) reordered: Cell<u64>,
    /// Events of a topic the subscriber did not subscribe to.
    pub(crate) misrouted: Cell<u64>,
    pub(crate) published: Cell<u64>,
    /// Bytes of the subscribers' bodies as read, and as decoded (--gzip).
    pub(crate) wire_bytes: Cell<u64>,
    pub(crate) plain_bytes: Cell<u64>,
    /// Events the throttled subscribers (--max-rate) received.
    pub(crate) throttled_received: Cell<u64>,
    pub(crate) publish_errors: Cell<u64>,
    pub(crate) connected: Cell<usize>,
    pub(crate) connect_errors: Cell<usize>,
    pub(crate) done_subscribers: Cell<usize>,
    /// Set once the publish phase is measured: subscribers that have every
    /// event hold their connections open until then, so that thousands of
    /// them closing at once neither delays the last events of the run nor
    /// counts as delivery work.
    pub(crate) hang_up: Cell<bool>,
    pub(crate) hang_up_wait: SlotNotify,
    /// Subscribers waiting for `hang_up`, and those that have closed their
    /// connections after it.
    pub(crate) holding: Cell<usize>,
    pub(crate) hung_up: Cell<usize>,
    /// Publishing connections that have sent everything and read every answer.
    pub(crate) publishers_done: Cell<usize>,
    /// Events missing from streams that ended before delivering them all.
    pub(crate) ended_short: Cell<u64>,
    pub(crate) latency_us: Hist,
    pub(crate) ttfb_us: Hist,
    pub(crate) changed: LocalNotify,
    /// Publish request to its answer, from when it was due (rate-paced) or
    /// sent (flat out).
    pub(crate) ack_us: Hist,
    /// Reading subscribers whose stream ended before they had every event
    /// (the server closed it; a resumer's own drop does not count).
    pub(crate) disconnected: Cell<usize>,
    /// Resume storm: raw samples to cut into windows afterwards, as
    /// (publish or due time, latency) in µs since the run's base.
    pub(crate) keep_samples: Cell<bool>,
    pub(crate) ack_samples: RefCell<Vec<(u64, u64)>>,
    pub(crate) stayer_samples: RefCell<Vec<(u64, u64)>>,
    pub(crate) phase: Cell<u8>,
    /// The main thread's timer lag, as (when, lag) in µs: how late the load
    /// generator itself was.
    pub(crate) lag: RefCell<Vec<(u64, u64)>>,
    pub(crate) storm: SlotNotify,
    pub(crate) resumers_dropped: Cell<usize>,
    pub(crate) resumers_reconnected: Cell<usize>,
    pub(crate) resumers_caught_up: Cell<usize>,
    pub(crate) resumers_exact: Cell<usize>,
    pub(crate) resume_failed: Cell<usize>,
    pub(crate) resyncs: Cell<u64>,
    pub(crate) replayed: Cell<u64>,
    pub(crate) resume_ttfb_us: Hist,
    pub(crate) catchup_us: Hist,
}

pub(crate) fn hist() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds")
}

/// Records `v` µs, clamped into the histogram's range.
pub(crate) fn record(h: &Hist, v: u64) {
    if let Some(h) = h.borrow_mut().as_mut() {
        let _ = h.record(v.clamp(1, 60_000_000));
    }
}

/// The q-quantile in ms; none while empty.
pub(crate) fn quantile_ms(h: &Hist, q: f64) -> Option<f64> {
    h.borrow()
        .as_ref()
        .filter(|h| !h.is_empty())
        .map(|h| h.value_at_quantile(q) as f64 / 1000.0)
}

/// p-quantile in ms of the samples whose time falls in `[from, to)` µs,
/// with how many there were.
pub(crate) fn window_ms(
    samples: &[(u64, u64)],
    from: u64,
    to: u64,
    q: f64,
) -> (Option<f64>, usize) {
    let mut h = hist();
    for &(t, v) in samples {
        if t >= from && t < to {
            let _ = h.record(v.clamp(1, 60_000_000));
        }
    }
    let n = h.len() as usize;
    ((n > 0).then(|| h.value_at_quantile(q) as f64 / 1000.0), n)
}

/// The storm thread's figures, added to the main thread's at the end.
pub(crate) struct Tally {
    counts: Vec<u64>,
    hists: Vec<Histogram<u64>>,
}

impl Stats {
    /// Fresh counters, with `slots` storm waiters.
    pub(crate) fn new(slots: usize) -> Stats {
        let stats = Stats {
            storm: SlotNotify::with_slots(slots),
            ..Stats::default()
        };
        for h in [
            &stats.latency_us,
            &stats.ttfb_us,
            &stats.ack_us,
            &stats.resume_ttfb_us,
            &stats.catchup_us,
        ] {
            *h.borrow_mut() = Some(hist());
        }
        stats
    }

    /// The counters and histograms a subscriber updates, in one order for
    /// `tally` and `merge`.
    fn subscriber_counters(&self) -> [&Cell<u64>; 8] {
        [
            &self.delivered,
            &self.lost,
            &self.dup,
            &self.reordered,
            &self.misrouted,
            &self.ended_short,
            &self.resyncs,
            &self.replayed,
        ]
    }
    fn subscriber_gauges(&self) -> [&Cell<usize>; 9] {
        [
            &self.connected,
            &self.connect_errors,
            &self.done_subscribers,
            &self.disconnected,
            &self.resumers_dropped,
            &self.resumers_reconnected,
            &self.resumers_caught_up,
            &self.resumers_exact,
            &self.resume_failed,
        ]
    }
    fn subscriber_hists(&self) -> [&Hist; 4] {
        [
            &self.latency_us,
            &self.ttfb_us,
            &self.resume_ttfb_us,
            &self.catchup_us,
        ]
    }

    /// Takes what the subscribers of this thread counted, to send to
    /// another thread.
    pub(crate) fn tally(&self) -> Tally {
        let mut counts: Vec<u64> = self.subscriber_counters().iter().map(|c| c.get()).collect();
        counts.extend(self.subscriber_gauges().iter().map(|c| c.get() as u64));
        let hists = self
            .subscriber_hists()
            .iter()
            .map(|h| h.borrow_mut().take().unwrap_or_else(hist))
            .collect();
        Tally { counts, hists }
    }

    /// Adds another thread's `tally` to these counters.
    pub(crate) fn merge(&self, t: Tally) {
        let mut counts = t.counts.into_iter();
        for c in self.subscriber_counters() {
            c.set(c.get() + counts.next().unwrap_or(0));
        }
        for c in self.subscriber_gauges() {
            c.set(c.get() + counts.next().unwrap_or(0) as usize);
        }
        for (h, other) in self.subscriber_hists().into_iter().zip(t.hists) {
            if let Some(h) = h.borrow_mut().as_mut() {
                let _ = h.add(&other);
            }
        }
    }
}
