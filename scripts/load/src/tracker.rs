//! `Tracker`: what one subscriber checks in its stream, kept across a
//! resume. Every event's data is `L <topic> <publisher> <seq> <sent µs>
//! <padding>`; the tracker keeps the last sequence per (topic, publisher)
//! and counts gaps (lost), repeats (duplicated), going back (reordered),
//! a topic it did not subscribe to (misrouted), and the publish-to-receive
//! latency, into the thread's `Stats`.

use std::time::Instant;

use crate::plan::Role;
use crate::sse::{frame_end, lines};
use crate::stats::{record, Stats};

pub(crate) struct Tracker {
    /// The topics this subscriber should receive, sorted.
    topics: Vec<u64>,
    publishers: u64,
    /// Last sequence seen, at `slot of the topic * publishers + publisher`.
    last_seq: Vec<u64>,
    pub(crate) received: u64,
    role: Role,
    /// This subscriber's own gaps, duplicates and reorders.
    pub(crate) faults: u64,
    pub(crate) resyncs: u64,
    /// The id of the last event received (resumers only).
    pub(crate) last_id: Vec<u8>,
    /// When a resumer reconnected (µs since base): events published before
    /// it are the replay.
    pub(crate) resumed_at_us: Option<u64>,
    pub(crate) caught_up: bool,
}

impl Tracker {
    pub(crate) fn new(role: Role, topics: &[usize], publishers: usize) -> Self {
        let mut topics: Vec<u64> = topics.iter().map(|&t| t as u64).collect();
        topics.sort_unstable();
        topics.dedup();
        let publishers = publishers.max(1) as u64;
        Self {
            last_seq: vec![0; topics.len() * publishers as usize],
            topics,
            publishers,
            received: 0,
            role,
            faults: 0,
            resyncs: 0,
            last_id: Vec::new(),
            resumed_at_us: None,
            caught_up: false,
        }
    }

    /// A resumer before its resume: it drops its stream at the storm's drop.
    pub(crate) fn awaits_drop(&self) -> bool {
        self.role == Role::Resumer && self.resumed_at_us.is_none()
    }

    /// Checks every complete frame at the front of `body` and removes it;
    /// an incomplete frame stays for the next read.
    pub(crate) fn take_frames(&mut self, body: &mut Vec<u8>, stats: &Stats, base: Instant) {
        let mut start = 0;
        while let Some(end) = frame_end(&body[start..]) {
            for line in lines(&body[start..start + end]) {
                self.line(line, stats, base);
            }
            start += end + 2;
        }
        body.drain(..start);
    }

    fn line(&mut self, line: &[u8], stats: &Stats, base: Instant) {
        if let Some(id) = line.strip_prefix(b"id: ") {
            if self.role == Role::Resumer {
                self.last_id.clear();
                self.last_id.extend_from_slice(id);
            }
            return;
        }
        if line == b"event: resync" {
            self.resyncs += 1;
            stats.resyncs.set(stats.resyncs.get() + 1);
            return;
        }
        let Some(payload) = line.strip_prefix(b"data: ") else {
            return;
        };
        let mut it = payload.split(|&b| b == b' ');
        if it.next() != Some(b"L") {
            return;
        }
        let num = |x: Option<&[u8]>| -> u64 {
            x.and_then(|v| std::str::from_utf8(v).ok())
                .and_then(|v| v.parse().ok())
                .unwrap_or(0)
        };
        let topic = num(it.next());
        let publisher = num(it.next());
        let seq = num(it.next());
        let ts = num(it.next());
        let slot = match self.topics.binary_search(&topic) {
            Ok(i) if publisher < self.publishers => {
                i * self.publishers as usize + publisher as usize
            }
            _ => {
                // Not one of its topics (or not a publisher of this run):
                // the server routed it wrongly.
                stats.misrouted.set(stats.misrouted.get() + 1);
                self.faults += 1;
                return;
            }
        };
        let last = &mut self.last_seq[slot];
        let now = base.elapsed().as_micros() as u64;
        let latency = now.saturating_sub(ts);
        record(&stats.latency_us, latency);
        stats.delivered.set(stats.delivered.get() + 1);
        self.received += 1;
        if seq == *last {
            stats.dup.set(stats.dup.get() + 1);
            self.faults += 1;
        } else if seq < *last {
            stats.reordered.set(stats.reordered.get() + 1);
            self.faults += 1;
        } else {
            if seq > *last + 1 {
                stats.lost.set(stats.lost.get() + (seq - *last - 1));
                self.faults += 1;
            }
            *last = seq;
        }
        match (self.role, self.resumed_at_us) {
            (Role::Stayer, _) => stats.stayer_samples.borrow_mut().push((ts, latency)),
            (Role::Resumer, Some(at)) if ts < at => stats.replayed.set(stats.replayed.get() + 1),
            (Role::Resumer, Some(at)) if !self.caught_up => {
                // The first event published after the reconnect: the
                // replay is over, the live stream has begun.
                self.caught_up = true;
                record(&stats.catchup_us, now.saturating_sub(at));
                stats
                    .resumers_caught_up
                    .set(stats.resumers_caught_up.get() + 1);
                stats.changed.notify();
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Tracker;
    use crate::plan::Role;
    use crate::stats::Stats;
    use std::time::Instant;

    /// Two topics, two publishers: each fault is counted where it happened,
    /// and an incomplete frame waits for the rest.
    #[test]
    fn counts_each_fault() {
        let stats = Stats::new(0);
        let mut t = Tracker::new(Role::Plain, &[3, 1], 2);
        let mut body = b"data: L 1 0 1 0 x\n\n\
            data: L 1 0 1 0 x\n\n\
            data: L 3 1 1 0 x\n\n\
            data: L 3 1 4 0 x\n\n\
            data: L 3 1 2 0 x\n\n\
            data: L 2 0 1 0 x\n\n\
            event: resync\ndata: {}\n\n\
            data: L 1 0 2"
            .to_vec();
        t.take_frames(&mut body, &stats, Instant::now());
        assert_eq!(body, b"data: L 1 0 2", "the incomplete frame stays");
        assert_eq!(stats.delivered.get(), 5, "misrouted is not a delivery");
        assert_eq!(stats.dup.get(), 1);
        assert_eq!(stats.lost.get(), 2, "3 -> 4 skipped two");
        assert_eq!(stats.reordered.get(), 1);
        assert_eq!(stats.misrouted.get(), 1);
        assert_eq!(stats.resyncs.get(), 1);
        assert_eq!((t.received, t.faults, t.resyncs), (5, 4, 1));
    }
}
