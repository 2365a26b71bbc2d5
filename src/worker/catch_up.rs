//! What a new subscriber receives before the live stream: the events it
//! missed (after its `Last-Event-ID`), or a `resync` and a fresh start, and
//! the last-value snapshot when asked. Read from this worker's own history
//! without a lock, up to the last event the worker fanned out; everything
//! after that reaches the subscriber through the ring, so replay and live
//! meet with no gap and no duplicate.

use std::sync::atomic::Ordering::Acquire;

use super::history::Gap;
use super::Worker;
use crate::event::Event;

/// The catch-up of one subscription.
#[derive(Debug)]
pub(crate) struct CatchUp {
    /// Replayed events sent before the `resync`: what history holds up to
    /// ids that were lost (a crash), so the client reads all it can before
    /// it is told.
    pub(crate) before_resync: Vec<Event>,
    /// Replayed events, or the snapshot, in id order.
    pub(crate) events: Vec<Event>,
    /// Why continuity could not be proven, if so.
    pub(crate) resync: Option<&'static str>,
    /// Id after which live events are new to this client.
    pub(crate) resume_after: u64,
}

impl Worker {
    /// Decides between replay, resync (+ snapshot) and plain snapshot for a
    /// subscription on `patterns`. The caller registers the subscription in
    /// the same turn (no await in between), so `last_seen` is the exact
    /// hand-over point.
    pub(crate) fn catch_up(
        &self,
        patterns: &[Box<str>],
        last_event_id: Option<&str>,
        snapshot: bool,
    ) -> CatchUp {
        self.catch_up_to(self.last_seen.get(), patterns, last_event_id, snapshot)
    }

    /// The catch-up of a delayed-only subscription (`subscribe_delayed`):
    /// the same decisions, up to the last event released to the delayed
    /// view, which it returns beside the catch-up (the hand-over point).
    /// The snapshot is then the newest value at least `auth.delay_ms` old.
    pub(crate) fn catch_up_delayed(
        &self,
        patterns: &[Box<str>],
        last_event_id: Option<&str>,
        snapshot: bool,
    ) -> (u64, CatchUp) {
        self.release_delayed();
        let upto = self
            .delay_line
            .as_ref()
            .map_or(0, |l| l.borrow().released_upto());
        (
            upto,
            self.catch_up_to(upto, patterns, last_event_id, snapshot),
        )
    }

    /// Cluster mode, after a catch-up from JetStream that ended at
    /// `after`: the rest from this worker's history, up to the last event
    /// it fanned out (nothing when it has not read that far: its ring then
    /// brings what follows `after`).
    pub(crate) fn catch_up_after(&self, patterns: &[Box<str>], after: u64) -> CatchUp {
        let upto = self.last_seen.get();
        if after >= upto {
            return CatchUp {
                before_resync: Vec::new(),
                events: Vec::new(),
                resync: None,
                resume_after: after,
            };
        }
        match self.history.borrow().replay(patterns, after, upto) {
            Ok(events) => CatchUp {
                before_resync: Vec::new(),
                events,
                resync: None,
                resume_after: after,
            },
            // Evicted while JetStream was read: continuity is lost.
            Err(Gap::Expired) => CatchUp {
                before_resync: Vec::new(),
                events: Vec::new(),
                resync: Some("history_expired"),
                resume_after: 0,
            },
        }
    }

    fn catch_up_to(
        &self,
        upto: u64,
        patterns: &[Box<str>],
        last_event_id: Option<&str>,
        snapshot: bool,
    ) -> CatchUp {
        let h = self.history.borrow();
        let fresh = |resync, before_resync| CatchUp {
            before_resync,
            events: if snapshot {
                h.snapshot(patterns, upto)
            } else {
                Vec::new()
            },
            resync,
            resume_after: 0,
        };
        let Some(raw) = last_event_id else {
            return fresh(None, Vec::new());
        };
        let Ok(id) = raw.trim().parse::<u64>() else {
            return fresh(Some("invalid_id"), Vec::new());
        };
        match self.shared.cluster() {
            // Cluster mode: ids are stream sequences, and this worker's
            // history starts where the node began reading the stream;
            // anything older is JetStream's to serve (the caller asks it).
            Some(link) if id < link.floor.load(Acquire) => {
                return fresh(Some("history_expired"), Vec::new());
            }
            Some(_) => {}
            None if id < self.shared.epoch_first => return fresh(Some("epoch"), Vec::new()),
            None => {}
        }
        // Ids after `from` were lost (a crash, with `history.dir`): the
        // client gets what is kept up to there, then `resync`.
        if let Some(from) = h.gap_after(id) {
            return match h.replay(patterns, id, from.min(upto)) {
                Ok(before) => fresh(Some("epoch"), before),
                Err(Gap::Expired) => fresh(Some("history_expired"), Vec::new()),
            };
        }
        // An id this worker has not fanned out yet (another worker is ahead)
        // is still known once the order has given it out.
        if id > upto.max(self.shared.issued.load(Acquire)) {
            return fresh(Some("unknown_id"), Vec::new());
        }
        match h.replay(patterns, id, upto) {
            Ok(events) => CatchUp {
                before_resync: Vec::new(),
                events,
                resync: None,
                resume_after: id,
            },
            Err(Gap::Expired) => fresh(Some("history_expired"), Vec::new()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::sync::Arc;

    use bytes::Bytes;

    use super::*;
    use crate::config::Config;

    fn ev(id: u64, topic: &str) -> Event {
        Event {
            id,
            topic: Arc::from(topic),
            frame: Bytes::from(format!("id: {id}\n\n")),
            born_ns: crate::event::now_ns(),
        }
    }

    fn pats(p: &[&str]) -> Vec<Box<str>> {
        p.iter().map(|s| (*s).into()).collect()
    }

    #[test]
    fn decides_between_replay_resync_and_snapshot() {
        let w = Worker::for_test(Config::default());
        let first = w.shared.epoch_first;
        let (a, b, c) = (first + 1, first + 2, first + 3);
        w.fan_out(&[ev(a, "q.a"), ev(b, "q.b"), ev(c, "q.a")], usize::MAX, 0);
        w.shared.issued.store(c + 5, Relaxed);
        let p = pats(&["q.a"]);
        let id = |n: u64| Some(n.to_string());
        // (last-event-id, snapshot) → (ids, resync, resume_after)
        type Case = (Option<String>, bool, Vec<u64>, Option<&'static str>, u64);
        let cases: Vec<Case> = vec![
            (None, false, vec![], None, 0),
            (None, true, vec![c], None, 0),
            (id(a), false, vec![c], None, a),
            (id(c), false, vec![], None, c),
            // Given out by the sequencer, not yet fanned out here (another
            // worker is ahead): known, resumes after it, replays nothing.
            (id(c + 5), false, vec![], None, c + 5),
            (id(c + 6), true, vec![c], Some("unknown_id"), 0),
            (id(first - 1), false, vec![], Some("epoch"), 0),
            (Some("x1".into()), false, vec![], Some("invalid_id"), 0),
        ];
        for (last, snapshot, ids, resync, after) in cases {
            let got = w.catch_up(&p, last.as_deref(), snapshot);
            let got_ids: Vec<u64> = got.events.iter().map(|e| e.id).collect();
            assert_eq!(
                (got_ids, got.resync, got.resume_after),
                (ids, resync, after),
                "{last:?} snapshot={snapshot}"
            );
        }
    }

    #[test]
    fn a_resume_across_lost_ids_gets_what_is_kept_then_resync() {
        let w = Worker::for_test(Config::default());
        let first = w.shared.epoch_first;
        let (a, b, c) = (first + 1, first + 2, first + 50);
        w.fan_out(&[ev(a, "q.a"), ev(b, "q.a"), ev(c, "q.a")], usize::MAX, 0);
        // A crash lost the ids between b and c.
        w.history.borrow_mut().restore_marks(0, &[(b, c)]);
        let p = pats(&["q.a"]);
        let got = w.catch_up(&p, Some(&a.to_string()), true);
        let ids = |v: &[Event]| v.iter().map(|e| e.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&got.before_resync),
            vec![b],
            "what is kept up to the loss"
        );
        assert_eq!(got.resync, Some("epoch"));
        assert_eq!(ids(&got.events), vec![c], "then the snapshot");
        assert_eq!(got.resume_after, 0);
        // Inside the lost range: told at once.
        let got = w.catch_up(&p, Some(&(b + 3).to_string()), false);
        assert!(got.before_resync.is_empty());
        assert_eq!(got.resync, Some("epoch"));
        // After it: an ordinary replay.
        let got = w.catch_up(&p, Some(&c.to_string()), false);
        assert_eq!((got.resync, got.resume_after), (None, c));
    }
}
