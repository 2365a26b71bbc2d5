//! The delayed view (SPEC §5, `subscribe_delayed`): every event this worker
//! fanned out waits here, in id order, until it is `auth.delay_ms` old; then
//! it is released to the worker's delayed subscribers — the same `Bytes`
//! frame the real-time subscribers were sent, never re-encoded. Released in
//! batches by the worker's timer tick (and by the fan-out, which pops what
//! is due on its way), so its cost is one queue pop per event per worker
//! plus the delayed subscribers' own enqueues.
//!
//! Bounded by `history.max_bytes` of frames: when a burst would hold more,
//! the oldest events leave unreleased, and the worker sends its delayed
//! subscribers on those topics `resync` (`history_expired`) instead of a
//! silent gap.

use std::collections::VecDeque;

use crate::event::Event;

/// Events waiting to come of age, oldest first.
#[derive(Debug)]
pub(crate) struct DelayLine {
    delay_ns: u64,
    max_bytes: usize,
    events: VecDeque<Event>,
    bytes: usize,
    /// Highest id that left the line (released or dropped): the hand-over
    /// point between a delayed subscription's catch-up and its live part.
    released_upto: u64,
}

impl DelayLine {
    /// An empty line that holds events `delay_ms` and at most `max_bytes`
    /// of frames.
    pub(crate) fn new(delay_ms: u64, max_bytes: usize) -> Self {
        DelayLine {
            delay_ns: delay_ms.saturating_mul(1_000_000),
            max_bytes,
            events: VecDeque::new(),
            bytes: 0,
            released_upto: 0,
        }
    }

    /// Highest id released (or dropped).
    pub(crate) fn released_upto(&self) -> u64 {
        self.released_upto
    }

    /// Events waiting.
    pub(crate) fn len(&self) -> usize {
        self.events.len()
    }

    /// Appends fanned-out events (in id order); returns those that the
    /// byte bound pushed out before their time, oldest first.
    pub(crate) fn push(&mut self, events: &[Event]) -> Vec<Event> {
        for ev in events {
            self.bytes += ev.frame.len();
            self.events.push_back(ev.clone());
        }
        let mut dropped = Vec::new();
        while self.bytes > self.max_bytes {
            let Some(ev) = self.pop() else { break };
            dropped.push(ev);
        }
        dropped
    }

    /// Pops every event at least the delay old at `now_ns`, oldest first.
    /// An event is released only after every older one: ids stay in order.
    pub(crate) fn due(&mut self, now_ns: u64) -> Vec<Event> {
        let mut out = Vec::new();
        while self
            .events
            .front()
            .is_some_and(|e| e.born_ns.saturating_add(self.delay_ns) <= now_ns)
        {
            out.extend(self.pop());
        }
        out
    }

    fn pop(&mut self) -> Option<Event> {
        let ev = self.events.pop_front()?;
        self.bytes -= ev.frame.len();
        self.released_upto = self.released_upto.max(ev.id);
        Some(ev)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;

    fn ev(id: u64, born_ms: u64) -> Event {
        Event {
            id,
            topic: Arc::from("t"),
            frame: Bytes::from(vec![b'x'; 10]),
            born_ns: born_ms * 1_000_000,
        }
    }

    fn ids(v: &[Event]) -> Vec<u64> {
        v.iter().map(|e| e.id).collect()
    }

    #[test]
    fn releases_in_id_order_never_before_the_delay() {
        let mut line = DelayLine::new(100, 1 << 20);
        assert!(line
            .push(&[ev(1, 0), ev(2, 5), ev(3, 4), ev(4, 50)])
            .is_empty());
        // (now ms, released ids, released_upto)
        let steps: [(u64, &[u64], u64); 5] = [
            (99, &[], 0),
            (100, &[1], 1),
            // 3 is old enough but waits behind 2: never out of order.
            (104, &[], 1),
            (105, &[2, 3], 3),
            (1000, &[4], 4),
        ];
        for (now, want, upto) in steps {
            assert_eq!(ids(&line.due(now * 1_000_000)), want, "at {now} ms");
            assert_eq!(line.released_upto(), upto);
        }
        assert_eq!(line.len(), 0);
    }

    #[test]
    fn the_byte_bound_drops_the_oldest_and_reports_them() {
        let mut line = DelayLine::new(100, 25);
        assert!(line.push(&[ev(1, 0), ev(2, 0)]).is_empty());
        assert_eq!(ids(&line.push(&[ev(3, 0), ev(4, 0)])), vec![1, 2]);
        assert_eq!(line.released_upto(), 2);
        assert_eq!(ids(&line.due(100_000_000)), vec![3, 4]);
    }
}
