//! Bounded per-topic history and last-value cache: sequenced events in (from
//! the sequencer, the same `Bytes` frames the workers send, never a copy),
//! replays and snapshots out (to a worker whose subscriber resumes).
//!
//! Bounds: at most `history.per_topic` events per topic, `history.max_bytes`
//! of frames over all topics, and nothing older than `history.max_age_ms`.
//! The globally oldest event is found through an ordered index of each
//! topic's oldest id, so eviction by bytes or age is O(log topics).
//!
//! Continuity: every topic remembers the highest id it ever evicted. A
//! replay after id `a` is provably complete only if no matching topic has
//! evicted anything newer than `a`; otherwise the caller must resync. A
//! topic whose log empties stays as a small tombstone for that reason; when
//! tombstones pile up they are folded into one conservative watermark.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;

use crate::config;
use crate::event::Event;
use crate::topic::matches;

/// Tombstones kept before they are folded into the watermark.
const MAX_TOMBSTONES: usize = 100_000;

#[derive(Debug, Default)]
struct TopicLog {
    events: VecDeque<Event>,
    /// Highest id evicted from this topic (0 = none).
    evicted_upto: u64,
}

/// Why a resume cannot be served from history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gap {
    /// Events after the client's id were evicted.
    Expired,
}

/// The history of one server.
#[derive(Debug)]
pub struct History {
    per_topic: usize,
    max_bytes: usize,
    max_age_ns: u64,
    topics: HashMap<Arc<str>, TopicLog>,
    /// Oldest retained id of each non-empty topic → topic.
    fronts: BTreeMap<u64, Arc<str>>,
    bytes: usize,
    tombstones: usize,
    /// Highest id appended.
    last_id: u64,
    /// Highest id evicted from a topic whose tombstone was folded away.
    forgotten_upto: u64,
}

impl History {
    /// An empty history with the configured bounds.
    pub fn new(cfg: &config::History) -> Self {
        History {
            per_topic: cfg.per_topic.max(1),
            max_bytes: cfg.max_bytes,
            max_age_ns: cfg.max_age_ms.saturating_mul(1_000_000),
            topics: HashMap::new(),
            fronts: BTreeMap::new(),
            bytes: 0,
            tombstones: 0,
            last_id: 0,
            forgotten_upto: 0,
        }
    }

    /// Highest id ever appended.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Bytes of frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Events held.
    pub fn len(&self) -> usize {
        self.topics.values().map(|l| l.events.len()).sum()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.fronts.is_empty()
    }

    /// Appends sequenced events (in id order), then enforces the bounds as of
    /// `now_ns`.
    pub fn append(&mut self, events: &[Event], now_ns: u64) {
        for ev in events {
            self.last_id = self.last_id.max(ev.id);
            let log = match self.topics.get_mut(&ev.topic) {
                Some(log) => log,
                None => self.topics.entry(ev.topic.clone()).or_default(),
            };
            if log.events.is_empty() {
                if log.evicted_upto != 0 {
                    self.tombstones -= 1;
                }
                self.fronts.insert(ev.id, ev.topic.clone());
            }
            log.events.push_back(ev.clone());
            self.bytes += ev.frame.len();
            if log.events.len() > self.per_topic {
                self.pop_front_of(&ev.topic.clone());
            }
        }
        self.enforce(now_ns);
    }

    /// Evicts by bytes and age.
    pub fn enforce(&mut self, now_ns: u64) {
        while let Some((_, topic)) = self.fronts.first_key_value() {
            let topic = topic.clone();
            let oldest_born = self.topics[&topic].events.front().map_or(0, |e| e.born_ns);
            let too_old =
                self.max_age_ns > 0 && now_ns.saturating_sub(oldest_born) > self.max_age_ns;
            if self.bytes > self.max_bytes || too_old {
                self.pop_front_of(&topic);
            } else {
                break;
            }
        }
        if self.tombstones > MAX_TOMBSTONES {
            let mut forgotten = self.forgotten_upto;
            self.topics.retain(|_, log| {
                if log.events.is_empty() {
                    forgotten = forgotten.max(log.evicted_upto);
                    false
                } else {
                    true
                }
            });
            self.forgotten_upto = forgotten;
            self.tombstones = 0;
        }
    }

    fn pop_front_of(&mut self, topic: &Arc<str>) {
        let Some(log) = self.topics.get_mut(topic) else {
            return;
        };
        let Some(ev) = log.events.pop_front() else {
            return;
        };
        self.fronts.remove(&ev.id);
        self.bytes -= ev.frame.len();
        log.evicted_upto = ev.id;
        match log.events.front() {
            Some(next) => {
                self.fronts.insert(next.id, topic.clone());
            }
            None => self.tombstones += 1,
        }
    }

    fn matching<'a>(&'a self, patterns: &'a [Box<str>]) -> impl Iterator<Item = &'a TopicLog> + 'a {
        self.topics
            .iter()
            .filter(move |(t, _)| patterns.iter().any(|p| matches(p, t)))
            .map(|(_, log)| log)
    }

    /// Every retained event on `patterns` with `after < id <= upto`, in id
    /// order, or the proof that some were evicted.
    pub fn replay(&self, patterns: &[Box<str>], after: u64, upto: u64) -> Result<Vec<Event>, Gap> {
        if self.forgotten_upto > after {
            return Err(Gap::Expired);
        }
        let mut out = Vec::new();
        for log in self.matching(patterns) {
            if log.evicted_upto > after {
                return Err(Gap::Expired);
            }
            let start = log.events.partition_point(|e| e.id <= after);
            out.extend(
                log.events
                    .iter()
                    .skip(start)
                    .take_while(|e| e.id <= upto)
                    .cloned(),
            );
        }
        out.sort_unstable_by_key(|e| e.id);
        Ok(out)
    }

    /// The newest event (id `<= upto`) of every topic matching `patterns`,
    /// oldest first: the last-value snapshot.
    pub fn snapshot(&self, patterns: &[Box<str>], upto: u64) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .matching(patterns)
            .filter_map(|log| log.events.iter().rev().find(|e| e.id <= upto).cloned())
            .collect();
        out.sort_unstable_by_key(|e| e.id);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn cfg(per_topic: usize, max_bytes: usize, max_age_ms: u64) -> config::History {
        config::History {
            per_topic,
            max_bytes,
            max_age_ms,
        }
    }

    fn ev(id: u64, topic: &str, born_ns: u64) -> Event {
        Event {
            id,
            topic: topic.into(),
            frame: Bytes::from(vec![b'x'; 10]),
            born_ns,
        }
    }

    fn pats(p: &[&str]) -> Vec<Box<str>> {
        p.iter().map(|s| (*s).into()).collect()
    }

    fn ids(v: &[Event]) -> Vec<u64> {
        v.iter().map(|e| e.id).collect()
    }

    #[test]
    fn replay_across_topics_in_order() {
        let mut h = History::new(&cfg(10, 1 << 20, 0));
        h.append(
            &[
                ev(1, "a.x", 0),
                ev(2, "b.x", 0),
                ev(3, "a.y", 0),
                ev(4, "c", 0),
                ev(5, "a.x", 0),
            ],
            0,
        );
        assert_eq!(ids(&h.replay(&pats(&["a.>"]), 1, 5).unwrap()), vec![3, 5]);
        assert_eq!(
            ids(&h.replay(&pats(&["a.>", "b.*"]), 0, 4).unwrap()),
            vec![1, 2, 3]
        );
        assert_eq!(ids(&h.snapshot(&pats(&["*.x"]), 5)), vec![2, 5]);
        assert_eq!(h.bytes(), 50);
    }

    #[test]
    fn per_topic_bound_and_gap_detection() {
        let mut h = History::new(&cfg(2, 1 << 20, 0));
        h.append(
            &[ev(1, "a", 0), ev(2, "a", 0), ev(3, "b", 0), ev(4, "a", 0)],
            0,
        );
        assert_eq!(h.bytes(), 30);
        assert_eq!(ids(&h.replay(&pats(&["a"]), 2, 9).unwrap()), vec![4]);
        assert_eq!(h.replay(&pats(&["a"]), 0, 9).unwrap_err(), Gap::Expired);
        // Topic b lost nothing, so an old id is still fine for it alone.
        assert_eq!(ids(&h.replay(&pats(&["b"]), 0, 9).unwrap()), vec![3]);
    }

    #[test]
    fn byte_and_age_bounds_evict_globally_oldest() {
        let mut h = History::new(&cfg(100, 30, 0));
        h.append(
            &[ev(1, "a", 0), ev(2, "b", 0), ev(3, "a", 0), ev(4, "c", 0)],
            0,
        );
        assert_eq!(h.bytes(), 30);
        assert_eq!(h.replay(&pats(&["a"]), 0, 9).unwrap_err(), Gap::Expired);
        assert_eq!(ids(&h.replay(&pats(&[">"]), 1, 9).unwrap()), vec![2, 3, 4]);

        let mut h = History::new(&cfg(100, 1 << 20, 1));
        h.append(&[ev(1, "a", 0), ev(2, "b", 1_500_000)], 1_500_000);
        assert_eq!(h.replay(&pats(&["a"]), 0, 9).unwrap_err(), Gap::Expired);
        assert_eq!(ids(&h.replay(&pats(&["b"]), 0, 9).unwrap()), vec![2]);
        h.enforce(10_000_000);
        assert!(h.is_empty());
        assert_eq!(h.bytes(), 0);
        assert_eq!(h.replay(&pats(&["b"]), 1, 9).unwrap_err(), Gap::Expired);
        assert_eq!(
            ids(&h.replay(&pats(&["b"]), 2, 9).unwrap()),
            Vec::<u64>::new()
        );
    }
}
