//! The journal's thread, `ringcast-journal`: takes the batches the order
//! sequenced off its ring, appends them to the newest segment, hands the
//! bytes to the kernel every 2 ms while batches come (so a killed process
//! loses at most what was still in the ring: about 2 ms of events) and makes them durable with
//! `fdatasync` at least every `history.fsync_ms` (so a machine that loses
//! power loses at most that much). It also keeps the id reservation ahead
//! of the order, rolls segments and deletes the old ones the history
//! bounds no longer need. Nothing here is on the fan-out path: workers
//! never wait for the disk; the order only checks that the ring has room
//! and that the reservation covers the ids it gives out.
//!
//! A write or `fdatasync` that fails stops the ids (publishes are refused
//! with 503), and the journal retries in a new segment every second; the
//! events whose durability is unknown are recorded as a gap, so a resume
//! that would cross them after a restart is told (`resync`).

use std::collections::VecDeque;
use std::fs::File;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::Ordering::{Acquire, Relaxed, Release};
use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::record;
use super::recovery::SegmentInfo;
use super::segment::{self, SegmentHeader, HEADER_BYTES};
use super::{wall_ns, Retention};
use crate::event::now_ns;
use crate::sequencer::ring::{Msg, RingRx};

/// Bytes gathered before they are written even if the ring is not empty.
const FLUSH_AT: usize = 1 << 20;

/// How often the writer looks at its ring while batches come: what a
/// killed process may lose beyond what was already written.
const POLL_EVERY: Duration = Duration::from_millis(2);

/// Empty looks at the ring (of POLL_EVERY each) before the writer parks on
/// its doorbell instead.
const IDLE_AFTER: u32 = 50;

/// How often a failed journal tries again.
const RETRY_EVERY: Duration = Duration::from_secs(1);

/// The writer's state; `run` consumes it on its own thread.
pub(super) struct Writer {
    pub(super) dir: PathBuf,
    pub(super) lineage: u64,
    pub(super) file: Option<File>,
    /// Closed segments, oldest first, then the one being appended to.
    pub(super) segments: VecDeque<SegmentInfo>,
    pub(super) buf: Vec<u8>,
    pub(super) rx: RingRx,
    /// Shared with the order: ids up to this may be given out.
    pub(super) reserved: Arc<AtomicU64>,
    /// Shared with the order: the disk refused a write; refuse publishes.
    pub(super) failed: Arc<AtomicBool>,
    pub(super) fsync_every: Duration,
    /// How far ahead of the wall clock the reservation is kept.
    pub(super) reserve_ahead_ns: u64,
    pub(super) segment_max: u64,
    pub(super) retention: Retention,
    /// Highest event id handed to the kernel.
    pub(super) written_id: u64,
    /// Highest event id made durable.
    pub(super) durable_id: u64,
    /// Bytes handed to the kernel since the last `fdatasync`.
    pub(super) dirty: bool,
    pub(super) last_sync: Instant,
    /// After a failure: the last id known durable; the next batch written
    /// records the gap from it.
    pub(super) gap_from: Option<u64>,
    /// Set when the writer has written its close record (or given up).
    pub(super) finished: Arc<AtomicBool>,
    /// The order's handle is gone without a close: stop, as a crash would.
    pub(super) abandoned: Arc<AtomicBool>,
    /// Consecutive turns that found the ring empty.
    pub(super) idle_turns: u32,
}

impl Writer {
    /// Records this process's start (`gap_from`: the last id of a crashed
    /// predecessor, else 0) and its first reservation, durably.
    pub(super) fn start(&mut self, first_id: u64, gap_from: u64) -> std::io::Result<()> {
        record::put_start(&mut self.buf, first_id, gap_from);
        self.flush()?;
        self.sync()
    }

    /// Runs until the order's drain marker, then writes the close record.
    pub(super) fn run(mut self) {
        let mut last_error: Option<Instant> = None;
        loop {
            if self.abandoned.load(Acquire) {
                return;
            }
            if self.failed.load(Relaxed) {
                if !self.recover() {
                    if last_error.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        tracing::error!(
                            dir = %self.dir.display(),
                            "history.dir still cannot be written; publishes are refused (503)"
                        );
                        last_error = Some(Instant::now());
                    }
                    std::thread::sleep(RETRY_EVERY);
                    continue;
                }
                tracing::warn!(dir = %self.dir.display(), "history.dir writable again; publishes accepted");
            }
            match self.turn() {
                Ok(true) => {}
                Ok(false) => break,
                Err(e) => self.fail("write", e),
            }
        }
        self.finished.store(true, Release);
    }

    /// Takes what the ring holds, writes it, syncs and rolls when due, then
    /// waits for more. `Ok(false)`: the drain marker was written.
    fn turn(&mut self) -> std::io::Result<bool> {
        let mut took = false;
        while let Some(msg) = self.rx.try_pop() {
            took = true;
            match msg {
                Msg::Events(batch) => {
                    let Some(first) = batch.first() else { continue };
                    if let Some(from) = self.gap_from.take() {
                        record::put_start(&mut self.buf, first.id, from);
                    }
                    let n = batch.len();
                    // When the order sequenced it, on the wall clock.
                    let at = wall_ns().saturating_sub(now_ns().saturating_sub(first.born_ns));
                    record::put_batch(
                        &mut self.buf,
                        first.id,
                        at,
                        n,
                        batch.iter().map(|e| (&*e.topic, &e.frame[..])),
                    );
                    let seg = self.segments.back_mut().expect("a current segment");
                    seg.frame_bytes += batch.iter().map(|e| e.frame.len() as u64).sum::<u64>();
                    seg.newest_wall_ns = seg.newest_wall_ns.max(at);
                    self.written_id = batch[n - 1].id;
                    if self.buf.len() >= FLUSH_AT {
                        self.flush()?;
                    }
                }
                Msg::Drain => {
                    if let Some(from) = self.gap_from.take() {
                        // Nothing written since a failure: the ids after the
                        // last durable one are unknown up to the close.
                        record::put_start(&mut self.buf, self.written_id + 1, from);
                    }
                    record::put_close(&mut self.buf, self.written_id);
                    self.flush()?;
                    self.sync()?;
                    return Ok(false);
                }
                _ => {}
            }
        }
        self.flush()?;
        let now = Instant::now();
        let reserve_due = self.reserved.load(Acquire) < wall_ns() + self.reserve_ahead_ns / 2;
        if (self.dirty && now >= self.last_sync + self.fsync_every) || reserve_due {
            self.sync()?;
        }
        if self
            .segments
            .back()
            .is_some_and(|s| s.len >= self.segment_max)
        {
            self.roll()?;
        }
        self.retire();
        let next_sync = if self.dirty {
            (self.last_sync + self.fsync_every).saturating_duration_since(now)
        } else {
            self.fsync_every
        };
        // While batches come, look again every POLL_EVERY without the
        // doorbell: a doorbell wakes this thread once per publish (a futex
        // call on the publishing worker, 28% more CPU per event at 100
        // events a batch). Once the ring has stayed empty for IDLE_AFTER,
        // park on the doorbell until the next batch.
        self.idle_turns = if took { 0 } else { self.idle_turns + 1 };
        let wait = next_sync.min(Duration::from_millis(100));
        if self.idle_turns < IDLE_AFTER {
            std::thread::sleep(wait.min(POLL_EVERY));
        } else {
            self.rx.wait_blocking(wait);
        }
        Ok(true)
    }

    /// Hands the gathered bytes to the kernel.
    fn flush(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let file = self.file.as_mut().expect("an open segment");
        file.write_all(&self.buf)?;
        let seg = self.segments.back_mut().expect("a current segment");
        seg.len += self.buf.len() as u64;
        self.buf.clear();
        self.dirty = true;
        Ok(())
    }

    /// Makes everything written durable, extending the reservation first
    /// when it runs short, and publishes both.
    fn sync(&mut self) -> std::io::Result<()> {
        let mut upto = self.reserved.load(Acquire);
        let want = wall_ns() + self.reserve_ahead_ns;
        if upto < want - self.reserve_ahead_ns / 2 {
            upto = want;
            record::put_reserve(&mut self.buf, upto);
            self.flush()?;
        }
        if self.dirty {
            self.file.as_ref().expect("an open segment").sync_data()?;
            self.dirty = false;
        }
        self.last_sync = Instant::now();
        self.durable_id = self.written_id;
        self.reserved.store(upto, Release);
        Ok(())
    }

    /// Starts the next segment.
    fn roll(&mut self) -> std::io::Result<()> {
        if self.file.is_some() {
            self.sync()?;
        }
        let index = self.segments.back().map_or(1, |s| s.index + 1);
        let file = segment::create(
            &self.dir,
            &SegmentHeader {
                lineage: self.lineage,
                index,
            },
        )?;
        self.file = Some(file);
        self.segments.push_back(SegmentInfo {
            index,
            path: segment::path(&self.dir, index),
            frame_bytes: 0,
            newest_wall_ns: 0,
            len: HEADER_BYTES as u64,
        });
        Ok(())
    }

    /// Deletes the oldest segments whose events the history bounds have
    /// let go: all older than `history.max_age_ms`, or behind at least
    /// `history.max_bytes` of newer frames. The segment being written is
    /// never deleted.
    fn retire(&mut self) {
        let now = wall_ns();
        while self.segments.len() > 1 {
            let oldest = &self.segments[0];
            let newer_bytes: u64 = self.segments.iter().skip(1).map(|s| s.frame_bytes).sum();
            let too_old = self.retention.max_age_ns > 0
                && oldest.newest_wall_ns > 0
                && now.saturating_sub(oldest.newest_wall_ns) > self.retention.max_age_ns;
            if !(too_old || newer_bytes >= self.retention.max_bytes) {
                break;
            }
            match std::fs::remove_file(&oldest.path) {
                Ok(()) => {
                    tracing::debug!(segment = %oldest.path.display(), "journal segment retired");
                    self.segments.pop_front();
                }
                Err(e) => {
                    tracing::warn!(segment = %oldest.path.display(), error = %e, "cannot delete a journal segment");
                    break;
                }
            }
        }
    }

    /// A write or sync failed: stop the ids until a new segment takes
    /// writes again.
    fn fail(&mut self, what: &str, e: std::io::Error) {
        tracing::error!(
            dir = %self.dir.display(),
            error = %e,
            "history.dir: journal {what} failed; publishes are refused until it works again"
        );
        self.failed.store(true, Relaxed);
        self.file = None;
        self.buf.clear();
        self.dirty = false;
        self.gap_from.get_or_insert(self.durable_id);
    }

    /// Tries a new segment after a failure; true when it took the write.
    fn recover(&mut self) -> bool {
        let next = self.segments.back().map_or(1, |s| s.index + 1);
        match self.roll() {
            Ok(()) => {
                self.failed.store(false, Relaxed);
                true
            }
            Err(_) => {
                // A segment made only in part is made again next time.
                let _ = std::fs::remove_file(segment::path(&self.dir, next));
                false
            }
        }
    }
}
