//! What `GET /stats` reports: each worker publishes a snapshot of its own
//! tables (connections, queued bytes, the patterns with the most
//! subscribers and the history depth of each) into [`Shared`], refreshed
//! every [`REFRESH`] while someone has asked for `/stats` in the last
//! minute, so an unwatched server spends nothing on it.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Worker;

/// How often a watched worker refreshes its snapshot.
pub(crate) const REFRESH: Duration = Duration::from_millis(500);
/// How long one `/stats` request keeps the snapshots fresh.
pub(crate) const WATCHED_FOR: Duration = Duration::from_secs(60);
/// Patterns kept per worker (the `top` query is capped at this).
pub(crate) const MAX_TOP: usize = 100;

/// One pattern's line.
#[derive(Debug, Clone, serde::Serialize)]
pub(crate) struct PatternStats {
    pub(crate) pattern: String,
    pub(crate) subscribers: usize,
    /// Events retained for this exact topic (0 for wildcard patterns).
    pub(crate) history_depth: usize,
}

/// One worker's snapshot.
#[derive(Debug, Default, Clone)]
pub(crate) struct WorkerStats {
    pub(crate) taken: Option<Instant>,
    pub(crate) connections: usize,
    pub(crate) subscribers: usize,
    pub(crate) queued_bytes: usize,
    pub(crate) history_bytes: usize,
    pub(crate) history_events: usize,
    /// Events waiting for the delayed view (`subscribe_delayed`).
    pub(crate) delayed_waiting: usize,
    /// At most [`MAX_TOP`], most subscribers first.
    pub(crate) top: Vec<PatternStats>,
}

/// Every worker's snapshot, and until when they are kept fresh.
#[derive(Debug)]
pub(crate) struct StatsBoard {
    pub(crate) workers: Vec<Mutex<WorkerStats>>,
    watched_until: Mutex<Option<Instant>>,
}

impl StatsBoard {
    /// Empty snapshots for `n` workers.
    pub(crate) fn new(n: usize) -> Self {
        StatsBoard {
            workers: (0..n).map(|_| Mutex::new(WorkerStats::default())).collect(),
            watched_until: Mutex::new(None),
        }
    }

    /// Someone asked: keep the snapshots fresh for a while.
    pub(crate) fn watch(&self) {
        *self.watched_until.lock().unwrap() = Some(Instant::now() + WATCHED_FOR);
    }

    fn watched(&self) -> bool {
        self.watched_until
            .lock()
            .unwrap()
            .is_some_and(|t| Instant::now() < t)
    }

    /// True when every worker's snapshot is younger than `age`.
    pub(crate) fn fresh(&self, age: Duration) -> bool {
        self.workers
            .iter()
            .all(|w| w.lock().unwrap().taken.is_some_and(|t| t.elapsed() < age))
    }
}

impl Worker {
    /// This worker's snapshot, now.
    pub(crate) fn stats(&self) -> WorkerStats {
        let history = self.history.borrow();
        let mut counts = self.subs.borrow().counts();
        counts.extend(self.delayed_subs.borrow().counts());
        let mut top: Vec<PatternStats> = counts
            .into_iter()
            .map(|(pattern, subscribers)| PatternStats {
                history_depth: history.depth(&pattern),
                pattern,
                subscribers,
            })
            .collect();
        top.sort_by(|a, b| {
            b.subscribers
                .cmp(&a.subscribers)
                .then(a.pattern.cmp(&b.pattern))
        });
        top.truncate(MAX_TOP);
        WorkerStats {
            taken: Some(Instant::now()),
            connections: self.metrics.connections_active.load(Relaxed).max(0) as usize,
            subscribers: self.metrics.subscribers_active.load(Relaxed).max(0) as usize,
            queued_bytes: self.pending.get(),
            history_bytes: history.bytes(),
            history_events: history.len(),
            delayed_waiting: self.delay_line.as_ref().map_or(0, |l| l.borrow().len()),
            top,
        }
    }

    /// Refreshes this worker's snapshot while `/stats` is watched.
    pub(crate) async fn publish_stats(self: std::rc::Rc<Self>) {
        while !self.draining.get() {
            if self.shared.stats.watched() {
                let s = self.stats();
                *self.shared.stats.workers[self.idx].lock().unwrap() = s;
            }
            monoio::time::sleep(REFRESH).await;
        }
    }
}
