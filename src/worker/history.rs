//! Bounded per-topic history and last-value cache, one per worker: the
//! events this worker has fanned out go in (the same `Bytes` frames its
//! subscribers are sent, never a copy), replays and snapshots for its own
//! resuming subscribers come out. No lock: the worker is the only thread
//! that touches it, and the hand-over from replay to live is exact by
//! construction — the index holds precisely what the worker has fanned out.
//!
//! Bounds: at most `history.per_topic` events per topic, `history.max_bytes`
//! of frames over all topics, and nothing older than `history.max_age_ms`.
//! Every worker applies the same bounds to the same stream, so the frames
//! count once in memory; the index (one [`Event`] handle, 64 B, per retained
//! event) counts once per worker. The globally oldest event is found through
//! an ordered index of each topic's oldest id, so eviction by bytes or age
//! is O(log topics).
//!
//! Lookups: an exact pattern is one hash lookup; a wildcard pattern walks a
//! token trie of the topics that still hold events, so its cost follows
//! the topics it matches, not how many topics are retained. A topic whose log
//! empties (byte or age eviction) becomes a tombstone kept apart, which
//! remembers the highest id it evicted: a replay after id `a` is provably
//! complete only if no matching topic evicted anything newer than `a`.
//! Tombstones are looked at only by a resume older than the newest of them;
//! when they pile up they are folded into one conservative watermark.
//!
//! Re-measure: `cargo bench --bench history` (`history_replay/*`).

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

use crate::config;
use crate::event::Event;
use crate::topic::{is_wildcard, matches, TopicMap};

/// Tombstones kept before they are folded into the watermark.
const MAX_TOMBSTONES: usize = 100_000;

#[derive(Debug, Default, Clone)]
struct TopicLog {
    /// Never empty: an emptied log becomes a tombstone.
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

/// The history of one worker.
#[derive(Debug, Clone)]
pub struct History {
    per_topic: usize,
    max_bytes: usize,
    max_age_ns: u64,
    /// Topics that hold at least one event.
    topics: TopicMap<Arc<str>, TopicLog>,
    /// The same topics by token, for wildcard lookups.
    trie: TopicTrie,
    /// Topics emptied by eviction → the highest id each evicted.
    tombstones: TopicMap<Arc<str>, u64>,
    /// At least the highest id of any tombstone: a resume newer than this
    /// never needs to look at them.
    tombstones_upto: u64,
    /// Oldest retained id of each topic → topic.
    fronts: BTreeMap<u64, Arc<str>>,
    bytes: usize,
    /// Highest id appended.
    last_id: u64,
    /// Highest id evicted from a topic whose tombstone was folded away.
    forgotten_upto: u64,
    /// Events younger than this are not evicted by the per-topic count:
    /// the delayed view still needs them (`auth.delay_ms`; 0 = none).
    keep_young_ns: u64,
    /// Ids lost to a crash or a cut journal record, `(from, to)`
    /// exclusive, oldest first (`history.dir`): a replay that would cross
    /// one stops at `from` and the client is told.
    gaps: Vec<(u64, u64)>,
}

/// A subscription's patterns split by how history finds them.
struct Lookup<'a> {
    /// Exact topics not also matched by a wildcard pattern.
    exact: Vec<&'a str>,
    /// Wildcard patterns.
    wild: Vec<&'a str>,
}

impl<'a> Lookup<'a> {
    fn new(patterns: &'a [Box<str>]) -> Self {
        let (wild, exact): (Vec<&str>, Vec<&str>) =
            patterns.iter().map(|p| &**p).partition(|p| is_wildcard(p));
        let exact = exact
            .into_iter()
            .filter(|t| !wild.iter().any(|w| matches(w, t)))
            .collect();
        Lookup { exact, wild }
    }

    fn wild_matches(&self, topic: &str) -> bool {
        self.wild.iter().any(|w| matches(w, topic))
    }
}

/// The retained topics by token: a wildcard pattern visits only the
/// branches it can match.
#[derive(Debug, Default, Clone)]
struct TopicTrie {
    children: TopicMap<Box<str>, TopicTrie>,
    /// The topic that ends here, if any.
    topic: Option<Arc<str>>,
}

impl TopicTrie {
    fn insert(&mut self, topic: &Arc<str>) {
        let mut node = self;
        for tok in topic.split('.') {
            node = node.children.entry(tok.into()).or_default();
        }
        node.topic = Some(topic.clone());
    }

    /// Removes `topic`, pruning the branches it leaves empty.
    fn remove(&mut self, topic: &str) {
        let tokens: Vec<&str> = topic.split('.').collect();
        self.remove_path(&tokens);
    }

    /// True when this node is left empty.
    fn remove_path(&mut self, tokens: &[&str]) -> bool {
        match tokens.split_first() {
            None => self.topic = None,
            Some((tok, rest)) => {
                if let Some(child) = self.children.get_mut(*tok) {
                    if child.remove_path(rest) {
                        self.children.remove(*tok);
                    }
                }
            }
        }
        self.topic.is_none() && self.children.is_empty()
    }

    /// Calls `f` with every topic that the pattern `tokens` matches.
    fn for_each_match<'a>(&'a self, tokens: &[&str], f: &mut impl FnMut(&'a Arc<str>)) {
        match tokens.split_first() {
            None => {
                if let Some(t) = &self.topic {
                    f(t);
                }
            }
            Some((&">", _)) => {
                for child in self.children.values() {
                    child.for_each_topic(f);
                }
            }
            Some((&"*", rest)) => {
                for child in self.children.values() {
                    child.for_each_match(rest, f);
                }
            }
            Some((tok, rest)) => {
                if let Some(child) = self.children.get(*tok) {
                    child.for_each_match(rest, f);
                }
            }
        }
    }

    /// Calls `f` with every topic at or below this node.
    fn for_each_topic<'a>(&'a self, f: &mut impl FnMut(&'a Arc<str>)) {
        if let Some(t) = &self.topic {
            f(t);
        }
        for child in self.children.values() {
            child.for_each_topic(f);
        }
    }
}

impl History {
    /// An empty history with the configured bounds.
    pub fn new(cfg: &config::History) -> Self {
        History {
            per_topic: cfg.per_topic.max(1),
            max_bytes: cfg.max_bytes,
            max_age_ns: cfg.max_age_ms.saturating_mul(1_000_000),
            topics: TopicMap::default(),
            trie: TopicTrie::default(),
            tombstones: TopicMap::default(),
            tombstones_upto: 0,
            fronts: BTreeMap::new(),
            bytes: 0,
            last_id: 0,
            forgotten_upto: 0,
            keep_young_ns: 0,
            gaps: Vec::new(),
        }
    }

    /// What the journal knows beyond the events it handed back
    /// (`history.dir`): events up to `floor` may have been deleted, and the
    /// ids of each gap were lost.
    pub fn restore_marks(&mut self, floor: u64, gaps: &[(u64, u64)]) {
        self.forgotten_upto = self.forgotten_upto.max(floor);
        self.gaps = gaps.to_vec();
        self.gaps.sort_unstable();
    }

    /// Where a replay after `after` must stop because ids after it were
    /// lost: the `from` of the first gap it would cross.
    pub fn gap_after(&self, after: u64) -> Option<u64> {
        self.gaps
            .iter()
            .find(|&&(_, to)| after < to)
            .map(|&(from, _)| from)
    }

    /// The retention of a server with delayed grants (SPEC §5): every event
    /// is kept `delay_ms` longer than `history.max_age_ms`, and the
    /// per-topic count evicts only events older than `delay_ms`; only
    /// `history.max_bytes` bounds what the delayed view has not passed yet.
    pub fn with_delay(mut self, delay_ms: u64) -> Self {
        let delay_ns = delay_ms.saturating_mul(1_000_000);
        self.keep_young_ns = delay_ns;
        if self.max_age_ns > 0 {
            self.max_age_ns = self.max_age_ns.saturating_add(delay_ns);
        }
        self
    }

    /// Events retained on the topics `pattern` matches (an exact topic or
    /// a wildcard pattern), for `/stats`.
    pub fn depth(&self, pattern: &str) -> usize {
        if !is_wildcard(pattern) {
            return self.topics.get(pattern).map_or(0, |l| l.events.len());
        }
        let patterns = [Box::<str>::from(pattern)];
        self.wild_logs(&Lookup::new(&patterns))
            .iter()
            .map(|l| l.events.len())
            .sum()
    }

    /// Highest id ever appended.
    pub fn last_id(&self) -> u64 {
        self.last_id
    }

    /// Bytes of frames held.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Every event held, in id order.
    pub fn all_events(&self) -> Vec<Event> {
        let mut out: Vec<Event> = self
            .topics
            .values()
            .flat_map(|l| l.events.iter().cloned())
            .collect();
        out.sort_unstable_by_key(|e| e.id);
        out
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
            let mut log = match self.topics.get_mut(&ev.topic) {
                Some(log) => log,
                None => {
                    let evicted_upto = self.tombstones.remove(&ev.topic).unwrap_or(0);
                    self.fronts.insert(ev.id, ev.topic.clone());
                    self.trie.insert(&ev.topic);
                    self.topics.entry(ev.topic.clone()).or_insert(TopicLog {
                        events: VecDeque::new(),
                        evicted_upto,
                    })
                }
            };
            log.events.push_back(ev.clone());
            self.bytes += ev.frame.len();
            while log.events.len() > self.per_topic
                && log
                    .events
                    .front()
                    .is_some_and(|e| now_ns.saturating_sub(e.born_ns) >= self.keep_young_ns)
            {
                self.pop_front_of(&ev.topic.clone());
                match self.topics.get_mut(&ev.topic) {
                    Some(l) => log = l,
                    None => break,
                }
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
        if self.tombstones.len() > MAX_TOMBSTONES {
            self.forgotten_upto = self.forgotten_upto.max(self.tombstones_upto);
            self.tombstones = TopicMap::default();
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
            None => {
                self.topics.remove(topic);
                self.trie.remove(topic);
                self.tombstones.insert(topic.clone(), ev.id);
                self.tombstones_upto = self.tombstones_upto.max(ev.id);
            }
        }
    }

    /// The live logs the wildcard patterns match, each once, found through
    /// the topic trie.
    fn wild_logs(&self, lookup: &Lookup<'_>) -> Vec<&TopicLog> {
        let mut found: Vec<&Arc<str>> = Vec::new();
        for w in &lookup.wild {
            let tokens: Vec<&str> = w.split('.').collect();
            self.trie.for_each_match(&tokens, &mut |t| found.push(t));
        }
        if lookup.wild.len() > 1 {
            found.sort_unstable_by_key(|t| Arc::as_ptr(t) as *const u8 as usize);
            found.dedup_by_key(|t| Arc::as_ptr(t) as *const u8 as usize);
        }
        found.iter().filter_map(|t| self.topics.get(*t)).collect()
    }

    /// Every live log the patterns match, each once; `Err` when a matching
    /// topic evicted something after `after` (a gap).
    fn matching(&self, patterns: &[Box<str>], after: u64) -> Result<Vec<&TopicLog>, Gap> {
        if self.forgotten_upto > after {
            return Err(Gap::Expired);
        }
        let lookup = Lookup::new(patterns);
        let mut logs = Vec::new();
        for t in &lookup.exact {
            if let Some(log) = self.topics.get(*t) {
                logs.push(log);
            } else if self.tombstones.get(*t).is_some_and(|&e| e > after) {
                return Err(Gap::Expired);
            }
        }
        if !lookup.wild.is_empty() {
            logs.extend(self.wild_logs(&lookup));
            if self.tombstones_upto > after
                && self
                    .tombstones
                    .iter()
                    .any(|(t, &e)| e > after && lookup.wild_matches(t))
            {
                return Err(Gap::Expired);
            }
        }
        if logs.iter().any(|log| log.evicted_upto > after) {
            return Err(Gap::Expired);
        }
        Ok(logs)
    }

    /// Every retained event on `patterns` with `after < id <= upto`, in id
    /// order, or the proof that some were evicted.
    pub fn replay(&self, patterns: &[Box<str>], after: u64, upto: u64) -> Result<Vec<Event>, Gap> {
        let mut out = Vec::new();
        for log in self.matching(patterns, after)? {
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
        let lookup = Lookup::new(patterns);
        let exact = lookup.exact.iter().filter_map(|t| self.topics.get(*t));
        let wild = self.wild_logs(&lookup);
        let mut out: Vec<Event> = exact
            .chain(wild)
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
            ..Default::default()
        }
    }

    #[test]
    fn gaps_and_the_floor_restored_from_the_journal() {
        let mut h = History::new(&cfg(10, 1 << 20, 0));
        h.append(&[ev(50, "a", 0), ev(60, "a", 0), ev(90, "a", 0)], 0);
        h.restore_marks(40, &[(80, 85), (60, 70)]);
        assert_eq!(h.gap_after(10), Some(60));
        assert_eq!(h.gap_after(69), Some(60));
        assert_eq!(h.gap_after(70), Some(80));
        assert_eq!(h.gap_after(85), None);
        // Below the floor, events may have been deleted: expired.
        assert_eq!(h.replay(&pats(&["a"]), 30, 99).unwrap_err(), Gap::Expired);
        assert_eq!(ids(&h.replay(&pats(&["a"]), 40, 60).unwrap()), vec![50, 60]);
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
    fn with_a_delay_the_count_spares_events_younger_than_it() {
        let mut h = History::new(&cfg(2, 1 << 20, 1000)).with_delay(100);
        let ms = 1_000_000;
        h.append(
            &[ev(1, "a", 0), ev(2, "a", 10 * ms), ev(3, "a", 20 * ms)],
            50 * ms,
        );
        assert_eq!(h.depth("a"), 3, "all younger than the delay");
        h.append(&[ev(4, "a", 120 * ms)], 125 * ms);
        // 1 and 2 are older than 100 ms and over the count of two: gone;
        // 3 and 4 are within it.
        assert_eq!(ids(&h.replay(&pats(&["a"]), 2, 9).unwrap()), vec![3, 4]);
        // Age: max_age (1 s) plus the delay.
        h.enforce(1_105 * ms);
        assert_eq!(h.depth("a"), 2);
        h.enforce(1_121 * ms);
        assert_eq!(h.depth("a"), 1);
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
        // /stats: depth over what a pattern matches.
        assert_eq!(
            [
                h.depth("a.x"),
                h.depth("a.>"),
                h.depth("*.x"),
                h.depth(">"),
                h.depth("z")
            ],
            [2, 3, 3, 5, 0]
        );
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

    #[test]
    fn the_topic_trie_agrees_with_matching_every_topic() {
        let topics = [
            "q.a", "q.b", "q.a.x", "q.a.y", "q.b.x", "r.a.x", "q", "q.a.x.z",
        ];
        let mut h = History::new(&cfg(10, 1 << 20, 0));
        let evs: Vec<Event> = topics
            .iter()
            .enumerate()
            .map(|(i, t)| ev(i as u64 + 1, t, 0))
            .collect();
        h.append(&evs, 0);
        let patterns = [
            "q.*", "q.>", "*.a.x", "*.*.x", ">", "*", "q.*.x", "q.a.>", "x.>", "q.*.*.z",
        ];
        for p in patterns {
            let mut want: Vec<u64> = evs
                .iter()
                .filter(|e| matches(p, &e.topic))
                .map(|e| e.id)
                .collect();
            want.sort_unstable();
            let got = ids(&h.replay(&pats(&[p]), 0, 99).unwrap());
            assert_eq!(got, want, "{p}");
        }
        // Emptied topics leave the trie, and nothing else goes with them.
        let mut h = History::new(&cfg(10, 1 << 20, 1));
        h.append(&[ev(1, "q.a.x", 0), ev(2, "q.a", 2_000_000)], 2_000_000);
        assert_eq!(ids(&h.snapshot(&pats(&["q.>"]), 9)), vec![2]);
        assert!(h.trie.children["q"].children["a"].children.is_empty());
    }

    #[test]
    fn exact_and_wildcard_patterns_overlap_without_duplicates() {
        let mut h = History::new(&cfg(10, 1 << 20, 0));
        h.append(&[ev(1, "a.x", 0), ev(2, "a.y", 0), ev(3, "a.x", 0)], 0);
        let both = pats(&["a.x", "a.*", "a.x.z"]);
        assert_eq!(ids(&h.replay(&both, 0, 9).unwrap()), vec![1, 2, 3]);
        assert_eq!(ids(&h.snapshot(&both, 9)), vec![2, 3]);
        assert_eq!(ids(&h.snapshot(&pats(&["a.x"]), 2)), vec![1]);
        assert!(h.snapshot(&pats(&["nope"]), 9).is_empty());
    }

    #[test]
    fn tombstones_prove_gaps_for_exact_and_wildcard_resumes() {
        // Age eviction empties topic "a" (id 1) but keeps "b" (id 5).
        let mut h = History::new(&cfg(100, 1 << 20, 1));
        h.append(&[ev(1, "a", 0), ev(5, "b", 2_000_000)], 2_000_000);
        assert_eq!(h.len(), 1);
        for p in [&["a"][..], &["*"][..], &[">"][..]] {
            assert_eq!(
                h.replay(&pats(p), 0, 9).unwrap_err(),
                Gap::Expired,
                "{p:?} after 0"
            );
            assert!(h.replay(&pats(p), 1, 9).is_ok(), "{p:?} after 1");
        }
        // Topic "c" never evicted anything: an old id is fine for it alone.
        assert!(h.replay(&pats(&["c"]), 0, 9).unwrap().is_empty());
        // A revived topic keeps what its tombstone proved.
        h.append(&[ev(6, "a", 2_000_000)], 2_000_000);
        assert_eq!(h.replay(&pats(&["a"]), 0, 9).unwrap_err(), Gap::Expired);
        assert_eq!(ids(&h.replay(&pats(&["a"]), 1, 9).unwrap()), vec![6]);
    }
}
