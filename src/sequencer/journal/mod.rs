//! History on disk (`history.dir`, SPEC §3 "Restarts keep continuity"):
//! the order's batches in, an append-only segmented log with a checksum
//! per record out; read back at start-up so that a restarted process keeps
//! its history, its snapshots and its ids.
//!
//! - **Append.** The order pushes each sequenced batch (the same
//!   `Arc<[Event]>` the workers get) onto the journal's bounded ring, like
//!   a worker's: a full ring refuses the publish (back-pressure), never a
//!   loss. One thread ([`writer`]) writes them; nothing on the fan-out path
//!   touches the disk, and a publish is answered without waiting for it.
//! - **Durability.** Bytes go to the kernel every 2 ms while batches come
//!   (a `kill -9` loses at most what was still in the ring) and are made
//!   durable by `fdatasync` at least every `history.fsync_ms` (a power cut
//!   loses at most that).
//! - **Ids never go back.** Ids follow the wall clock in nanoseconds (see
//!   `sequencer::stamp`), and the journal persists a reservation ahead of
//!   them: the order gives out no id above the last durable reservation,
//!   and a restarted process starts above both the reservation and the
//!   last id — whatever the clock did meanwhile.
//! - **Crashes are never silent.** A process records at its start where
//!   the previous one stopped: after a graceful stop (a close record
//!   after every event), nothing is missing; after a crash, the ids between
//!   the last event read back and the new first id are a gap, kept in the
//!   journal, and a resume that would cross it gets `resync` (`epoch`).
//!   A torn or corrupt record ([`record`]) is cut off ([`recovery`]).
//! - **Bounded.** Segments ([`segment`]) are deleted whole once the history
//!   bounds (`max_age_ms`, `max_bytes`) have let go of every event in them:
//!   the directory holds at most about `history.max_bytes` of frames plus
//!   one segment.
//!
//! Why a log of our own and not an embedded store: the history needs an
//! append, one sequential read at start-up and the deletion of whole old
//! segments — no lookups, no updates. A key-value store (sled, redb, fjall)
//! would add a write-ahead log under our log, compaction, and its own
//! threads for what is here one `write` per batch and one `fdatasync` per
//! period.

use std::path::Path;
use std::sync::atomic::Ordering::{Acquire, Relaxed};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::StartError;
use crate::event::{now_ns, Event};
use crate::sequencer::ring::{ring, Msg, RingTx};

mod record;
mod recovery;
mod segment;
mod writer;

/// Nanoseconds since the Unix epoch on the wall clock.
pub(crate) fn wall_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// What the history bounds keep, as the journal's retention sees them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Retention {
    /// `history.max_bytes` of frames.
    pub(crate) max_bytes: u64,
    /// `history.max_age_ms` (plus `auth.delay_ms` with delayed grants), in
    /// ns; 0: no age bound.
    pub(crate) max_age_ns: u64,
}

/// How the journal is set up.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Settings<'a> {
    pub(crate) dir: &'a Path,
    pub(crate) fsync_ms: u64,
    pub(crate) retention: Retention,
    /// The ring's bounds (`server.ingest_ring_slots`, `_bytes`).
    pub(crate) ring_slots: usize,
    pub(crate) ring_bytes: usize,
}

/// What start-up learned from the journal.
#[derive(Debug, Clone)]
pub struct Restored {
    /// The first id the journal ever gave out: older ids are from another
    /// epoch.
    pub lineage: u64,
    /// Events up to this id may have been deleted by retention.
    pub floor: u64,
    /// Ids lost to crashes and cut records, `(from, to)` exclusive.
    pub gaps: Vec<(u64, u64)>,
    /// The id this process starts from.
    pub next_id: u64,
    /// The last event read back (0: none).
    pub last_id: u64,
}

/// The order's handle on the journal.
#[derive(Debug)]
pub(crate) struct Journal {
    ring: RingTx,
    reserved: Arc<AtomicU64>,
    failed: Arc<AtomicBool>,
    finished: Arc<AtomicBool>,
    /// Set when this handle is dropped without a close: the writer stops
    /// where it is, as if the process had died (tests of crashes).
    abandoned: Arc<AtomicBool>,
    /// Held for the process's life: one process per directory.
    _lock: std::fs::File,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Why the journal cannot take a batch now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refusal {
    /// Its ring is full or the reservation not yet extended: retry shortly.
    Busy,
    /// The disk refused a write: publishes fail until it works again.
    Failed,
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.abandoned
            .store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Journal {
    /// Whether a batch whose last id is `last_id` may be sequenced now.
    pub(crate) fn admit(&self, last_id: u64) -> Result<(), Refusal> {
        if self.failed.load(Relaxed) {
            Err(Refusal::Failed)
        } else if last_id > self.reserved.load(Acquire) || !self.ring.has_room(1) {
            Err(Refusal::Busy)
        } else {
            Ok(())
        }
    }

    /// Appends a sequenced batch (after [`Journal::admit`], under the
    /// order's lock).
    pub(crate) fn append(&self, batch: Arc<[Event]>) {
        self.ring.push(Msg::Events(batch));
    }

    /// The graceful stop: after every batch appended, a close record.
    pub(crate) fn close(&self) {
        self.ring.push(Msg::Drain);
    }

    /// Waits up to `timeout` for the close record to be durable; true when
    /// it is.
    pub(crate) fn wait_closed(&self, timeout: Duration) -> bool {
        let until = Instant::now() + timeout;
        while !self.finished.load(Acquire) {
            if Instant::now() >= until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        if let Some(h) = self.thread.lock().expect("journal thread").take() {
            let _ = h.join();
        }
        true
    }
}

/// Opens the journal in `s.dir` (made if missing): reads it back, calling
/// `restore` with each batch of events in id order, cuts what is torn,
/// records where this process starts, and starts the writer thread.
pub(crate) fn open(
    s: Settings<'_>,
    mut restore: impl FnMut(&[Event]),
) -> Result<(Journal, Restored), StartError> {
    let dir = s.dir;
    let fatal = |what: &str, e: std::io::Error| {
        StartError::Fatal(format!("history.dir {}: {what}: {e}", dir.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| fatal("cannot create it", e))?;
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join("lock"))
        .map_err(|e| fatal("cannot open its lock file", e))?;
    if let Err(e) = lock.try_lock() {
        return Err(StartError::Fatal(format!(
            "history.dir {} is in use by another process ({e})",
            dir.display()
        )));
    }
    let started = Instant::now();
    let wall_now = wall_ns();
    let mono_now = now_ns();
    let mut events = 0u64;
    let scan = recovery::scan(dir, |b| {
        let born_ns = mono_now.saturating_sub(wall_now.saturating_sub(b.wall_ns));
        let batch: Vec<Event> = b
            .events
            .iter()
            .enumerate()
            .map(|(i, (topic, frame))| Event {
                id: b.first_id + i as u64,
                topic: topic.clone(),
                frame: frame.clone(),
                born_ns,
            })
            .collect();
        events += batch.len() as u64;
        restore(&batch);
    })
    .map_err(|e| fatal("cannot read it", e))?;
    for line in &scan.cut {
        tracing::warn!("history.dir: {line}");
    }
    let next_id = wall_ns()
        .max(scan.reserved.saturating_add(1))
        .max(scan.last_id.saturating_add(1));
    let lineage = if scan.lineage == 0 {
        next_id
    } else {
        scan.lineage
    };
    let crashed = !scan.clean && !scan.segments.is_empty();
    let mut gaps = scan.gaps;
    if crashed {
        gaps.push((scan.last_id, next_id));
    }
    let reserve_ahead_ns =
        Duration::from_millis(s.fsync_ms.saturating_mul(4).max(5_000)).as_nanos() as u64;
    let segment_max = (s.retention.max_bytes / 4).clamp(1 << 20, 64 << 20);
    let mut segments: std::collections::VecDeque<_> = scan.segments.into();
    let file = match segments.back() {
        Some(last) if last.len < segment_max => {
            segment::open_append(&last.path).map_err(|e| fatal("cannot append to it", e))?
        }
        _ => {
            let index = segments.back().map_or(1, |s| s.index + 1);
            let f = segment::create(dir, &segment::SegmentHeader { lineage, index })
                .map_err(|e| fatal("cannot write to it", e))?;
            segments.push_back(recovery::SegmentInfo {
                index,
                path: segment::path(dir, index),
                frame_bytes: 0,
                newest_wall_ns: 0,
                len: segment::HEADER_BYTES as u64,
            });
            f
        }
    };
    let reserved = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicBool::new(false));
    let finished = Arc::new(AtomicBool::new(false));
    let abandoned = Arc::new(AtomicBool::new(false));
    let (tx, rx) = ring(s.ring_slots, s.ring_bytes);
    let mut w = writer::Writer {
        dir: dir.to_path_buf(),
        lineage,
        file: Some(file),
        segments,
        buf: Vec::with_capacity(1 << 20),
        rx,
        reserved: reserved.clone(),
        failed: failed.clone(),
        fsync_every: Duration::from_millis(s.fsync_ms.max(1)),
        reserve_ahead_ns,
        segment_max,
        retention: s.retention,
        written_id: next_id - 1,
        durable_id: next_id - 1,
        dirty: false,
        last_sync: Instant::now(),
        gap_from: None,
        finished: finished.clone(),
        abandoned: abandoned.clone(),
        idle_turns: 0,
    };
    // This process's start and first reservation are durable before any
    // id is given out.
    w.start(next_id, if crashed { scan.last_id } else { 0 })
        .map_err(|e| fatal("cannot write to it", e))?;
    let thread = std::thread::Builder::new()
        .name("ringcast-journal".into())
        .spawn(move || w.run())
        .map_err(|e| StartError::Fatal(format!("cannot start the journal thread: {e}")))?;
    tracing::info!(
        dir = %dir.display(),
        events,
        last_id = scan.last_id,
        next_id,
        clean = !crashed,
        ms = started.elapsed().as_millis() as u64,
        "history.dir: journal read back"
    );
    Ok((
        Journal {
            ring: tx,
            reserved,
            failed,
            finished,
            abandoned,
            _lock: lock,
            thread: Mutex::new(Some(thread)),
        },
        Restored {
            lineage,
            floor: scan.floor,
            gaps,
            next_id,
            last_id: scan.last_id,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn dir(name: &str) -> std::path::PathBuf {
        let d =
            std::env::temp_dir().join(format!("ringcast-journal-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        d
    }

    fn settings(d: &Path) -> Settings<'_> {
        Settings {
            dir: d,
            fsync_ms: 5,
            retention: Retention {
                max_bytes: 1 << 30,
                max_age_ns: 0,
            },
            ring_slots: 64,
            ring_bytes: 1 << 20,
        }
    }

    fn batch(first: u64, n: u64) -> Arc<[Event]> {
        (first..first + n)
            .map(|id| Event {
                id,
                topic: Arc::from("q.a"),
                frame: Bytes::from(format!("id: {id}\ndata: x\n\n")),
                born_ns: now_ns(),
            })
            .collect::<Vec<_>>()
            .into()
    }

    fn reopen(d: &Path) -> (Journal, Restored, Vec<u64>) {
        let mut ids = Vec::new();
        let (j, r) = open(settings(d), |b| ids.extend(b.iter().map(|e| e.id))).unwrap();
        (j, r, ids)
    }

    /// Writes the batches, waiting until the reservation covers them.
    fn append(j: &Journal, first: u64, n: u64) {
        let until = Instant::now() + Duration::from_secs(5);
        while j.admit(first + n - 1).is_err() {
            assert!(
                Instant::now() < until,
                "the reservation never covered {first}"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
        j.append(batch(first, n));
    }

    #[test]
    fn a_graceful_stop_keeps_everything_and_ids_go_on_above() {
        let d = dir("graceful");
        let (j, r, ids) = reopen(&d);
        assert!(ids.is_empty() && r.gaps.is_empty());
        let first = r.next_id;
        append(&j, first, 3);
        append(&j, first + 10, 2);
        j.close();
        assert!(j.wait_closed(Duration::from_secs(5)));
        drop(j);
        let (j, r, ids) = reopen(&d);
        assert_eq!(
            ids,
            vec![first, first + 1, first + 2, first + 10, first + 11]
        );
        assert!(
            r.gaps.is_empty(),
            "a clean stop loses nothing: {:?}",
            r.gaps
        );
        assert_eq!(r.lineage, first);
        assert_eq!(r.last_id, first + 11);
        assert!(r.next_id > first + 11);
        j.close();
        assert!(j.wait_closed(Duration::from_secs(5)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_crash_leaves_a_gap_up_to_the_next_start_and_ids_never_go_back() {
        let d = dir("crash");
        let (j, r, _) = reopen(&d);
        let first = r.next_id;
        append(&j, first, 2);
        // Wait until the writer has the batch on disk, then "crash":
        // the writer thread is left behind without a close record (its
        // directory lock goes with the handle).
        let until = Instant::now() + Duration::from_secs(5);
        while std::fs::read_dir(&d)
            .unwrap()
            .filter_map(|e| e.ok())
            .map(|e| e.metadata().unwrap().len())
            .sum::<u64>()
            < 150
        {
            assert!(Instant::now() < until);
            std::thread::sleep(Duration::from_millis(2));
        }
        let reserved = j.reserved.load(Acquire);
        let writer = j.thread.lock().unwrap().take().unwrap();
        drop(j);
        writer.join().unwrap();
        let (j2, r2, ids) = reopen(&d);
        assert_eq!(ids, vec![first, first + 1]);
        assert_eq!(r2.last_id, first + 1);
        assert!(
            r2.next_id > reserved,
            "above the reservation, whatever the clock says"
        );
        assert_eq!(r2.gaps, vec![(first + 1, r2.next_id)]);
        j2.close();
        assert!(j2.wait_closed(Duration::from_secs(5)));
        drop(j2);
        // The gap stays known across the next (clean) restart.
        let (j3, r3, _) = reopen(&d);
        assert_eq!(r3.gaps, vec![(first + 1, r2.next_id)]);
        j3.close();
        assert!(j3.wait_closed(Duration::from_secs(5)));
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn one_process_per_directory() {
        let d = dir("lock");
        let (j, _, _) = reopen(&d);
        let second = open(settings(&d), |_| {});
        assert!(
            matches!(&second, Err(StartError::Fatal(m)) if m.contains("in use")),
            "{second:?}"
        );
        j.close();
        assert!(j.wait_closed(Duration::from_secs(5)));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
