//! Per-subscriber update rates (`max_rate=R`, SPEC §3): for each topic a
//! subscription gets at most one event every `1/R` seconds. An event that
//! comes sooner is held — the shared `Bytes` of the newest one only, never
//! a copy — and goes out when its topic's interval ends, replacing (and
//! counting as skipped) any it found held; a topic quiet for an interval
//! sends its next event at once; topics never wait for each other.
//!
//! State, per throttled subscription: one slot per topic that had an event
//! within the last interval (when it may send next, and the held frame),
//! and a queue of `(when, topic)` to look at again — a held frame to
//! release, or a quiet slot to forget — in time order, since every interval
//! is the same `1/R` and time only moves forward. The worker's timer wheel
//! holds one entry per subscription, for the head of that queue. An event
//! costs a map lookup and at most one queue push: no allocation once a
//! topic's slot exists.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::Bytes;

use crate::topic::TopicMap;

/// What [`Throttle::offer`] decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Offer {
    /// Send it now.
    Now,
    /// Held until its topic's interval ends.
    Held,
    /// Held in place of an older held event, which is skipped.
    Replaced,
}

/// One topic's state.
#[derive(Debug)]
struct Slot {
    /// Not before this (ns on the process clock) may the topic send again.
    next_ns: u64,
    /// The newest event waiting for `next_ns`.
    held: Option<Bytes>,
}

/// The rate limit of one subscription.
#[derive(Debug)]
pub(crate) struct Throttle {
    interval_ns: u64,
    slots: TopicMap<Arc<str>, Slot>,
    /// Topics to look at again, by time (non-decreasing).
    due: VecDeque<(u64, Arc<str>)>,
}

impl Throttle {
    /// At most one event per topic every `interval_ns`.
    pub(crate) fn new(interval_ns: u64) -> Self {
        Throttle {
            interval_ns: interval_ns.max(1),
            slots: TopicMap::default(),
            due: VecDeque::new(),
        }
    }

    /// The interval of `rate` events per second.
    pub(crate) fn interval_of(rate: f64) -> u64 {
        (1e9 / rate).round() as u64
    }

    fn sent(&mut self, topic: &Arc<str>, now_ns: u64) {
        let next_ns = now_ns + self.interval_ns;
        match self.slots.get_mut(topic) {
            Some(s) => s.next_ns = next_ns,
            None => {
                self.slots.insert(
                    topic.clone(),
                    Slot {
                        next_ns,
                        held: None,
                    },
                );
            }
        }
        self.due.push_back((next_ns, topic.clone()));
    }

    /// An event of `topic` (its frame) at `now_ns`.
    pub(crate) fn offer(&mut self, topic: &Arc<str>, frame: &Bytes, now_ns: u64) -> Offer {
        match self.slots.get_mut(topic) {
            Some(s) if s.held.is_some() => {
                s.held = Some(frame.clone());
                Offer::Replaced
            }
            Some(s) if now_ns < s.next_ns => {
                // Its release is already queued: at `next_ns`.
                s.held = Some(frame.clone());
                Offer::Held
            }
            _ => {
                self.sent(topic, now_ns);
                Offer::Now
            }
        }
    }

    /// Records that `topic` was sent at `now_ns` outside [`Throttle::offer`]
    /// (a snapshot or a resume's catch-up), so its next event waits.
    pub(crate) fn note_sent(&mut self, topic: &Arc<str>, now_ns: u64) {
        self.sent(topic, now_ns);
    }

    /// Releases, in order, the held frames whose interval has ended by
    /// `now_ns` (each with its topic), and forgets the topics that stayed
    /// quiet for a whole interval.
    pub(crate) fn release(&mut self, now_ns: u64, out: &mut Vec<(Arc<str>, Bytes)>) {
        while self.due.front().is_some_and(|(at, _)| *at <= now_ns) {
            let (_, topic) = self.due.pop_front().expect("a due entry");
            let Some(s) = self.slots.get_mut(&topic) else {
                continue;
            };
            if s.next_ns > now_ns {
                // Sent again since: a later entry stands for it.
                continue;
            }
            match s.held.take() {
                Some(frame) => {
                    out.push((topic.clone(), frame));
                    self.sent(&topic, now_ns);
                }
                None => {
                    self.slots.remove(&topic);
                }
            }
        }
    }

    /// When [`Throttle::release`] has something to do next.
    pub(crate) fn next_due(&self) -> Option<u64> {
        self.due.front().map(|(at, _)| *at)
    }

    /// Topics with state (for the memory bound's test).
    #[cfg(test)]
    fn slots(&self) -> usize {
        self.slots.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;

    fn frame(s: &'static str) -> Bytes {
        Bytes::from_static(s.as_bytes())
    }

    fn released(t: &mut Throttle, now: u64) -> Vec<(String, Bytes)> {
        let mut out = Vec::new();
        t.release(now, &mut out);
        out.into_iter().map(|(t, f)| (t.to_string(), f)).collect()
    }

    #[test]
    fn a_burst_sends_its_first_event_now_and_its_last_when_the_interval_ends() {
        let a: Arc<str> = Arc::from("q.a");
        let mut t = Throttle::new(100 * MS);
        assert_eq!(t.offer(&a, &frame("1"), 0), Offer::Now);
        assert_eq!(t.offer(&a, &frame("2"), 10 * MS), Offer::Held);
        assert_eq!(t.offer(&a, &frame("3"), 20 * MS), Offer::Replaced);
        assert_eq!(t.next_due(), Some(100 * MS));
        assert!(released(&mut t, 99 * MS).is_empty(), "never early");
        assert_eq!(released(&mut t, 100 * MS), vec![("q.a".into(), frame("3"))]);
        // The release counts as a send: the next event waits again.
        assert_eq!(t.offer(&a, &frame("4"), 150 * MS), Offer::Held);
        assert_eq!(released(&mut t, 200 * MS), vec![("q.a".into(), frame("4"))]);
        // Quiet for a whole interval: forgotten, and the next event goes now.
        assert!(released(&mut t, 300 * MS).is_empty());
        assert_eq!(t.slots(), 0, "no state for a quiet topic");
        assert_eq!(t.next_due(), None);
        assert_eq!(t.offer(&a, &frame("5"), 310 * MS), Offer::Now);
    }

    #[test]
    fn topics_never_wait_for_each_other() {
        let (a, b): (Arc<str>, Arc<str>) = (Arc::from("q.a"), Arc::from("q.b"));
        let mut t = Throttle::new(100 * MS);
        assert_eq!(t.offer(&a, &frame("a1"), 0), Offer::Now);
        assert_eq!(t.offer(&a, &frame("a2"), 5 * MS), Offer::Held);
        assert_eq!(
            t.offer(&b, &frame("b1"), 50 * MS),
            Offer::Now,
            "b's first at once"
        );
        assert_eq!(t.offer(&b, &frame("b2"), 60 * MS), Offer::Held);
        assert_eq!(
            released(&mut t, 100 * MS),
            vec![("q.a".into(), frame("a2"))]
        );
        assert_eq!(
            released(&mut t, 150 * MS),
            vec![("q.b".into(), frame("b2"))]
        );
    }

    #[test]
    fn a_timer_that_fires_late_never_sends_twice_in_an_interval() {
        let a: Arc<str> = Arc::from("q.a");
        let mut t = Throttle::new(100 * MS);
        assert_eq!(t.offer(&a, &frame("1"), 0), Offer::Now);
        // The slot's interval has passed but its entry has not fired yet:
        // the event goes now, and the stale entry later releases nothing.
        assert_eq!(t.offer(&a, &frame("2"), 130 * MS), Offer::Now);
        assert_eq!(t.offer(&a, &frame("3"), 140 * MS), Offer::Held);
        assert!(released(&mut t, 140 * MS).is_empty());
        assert_eq!(released(&mut t, 230 * MS), vec![("q.a".into(), frame("3"))]);
    }

    #[test]
    fn a_catch_up_counts_as_a_send() {
        let a: Arc<str> = Arc::from("q.a");
        let mut t = Throttle::new(100 * MS);
        t.note_sent(&a, 0);
        assert_eq!(t.offer(&a, &frame("live"), MS), Offer::Held);
        assert_eq!(Throttle::interval_of(2.0), 500 * MS);
        assert_eq!(Throttle::interval_of(0.2), 5_000 * MS);
    }
}
