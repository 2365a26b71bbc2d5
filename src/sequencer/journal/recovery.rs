//! Reading the journal back at start-up: every segment in order, every
//! whole record, handing each batch of events to the caller (which keeps
//! what the history bounds allow). A torn or corrupt record is never
//! served: the newest segment is cut at its last whole record (a write the
//! crash interrupted); in an older segment the rest of that segment is cut
//! and the ids it may have held become a gap, so a resume that would cross
//! them is told (`resync`).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;

use super::record::{self, Read, Record};
use super::segment::{self, SegmentHeader, HEADER_BYTES};

/// One segment, as the writer's retention needs it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentInfo {
    pub(crate) index: u64,
    pub(crate) path: PathBuf,
    /// Frame bytes of the events it holds (what the history's byte bound
    /// counts).
    pub(crate) frame_bytes: u64,
    /// Wall-clock time of its newest event (0: none).
    pub(crate) newest_wall_ns: u64,
    /// Bytes of the file.
    pub(crate) len: u64,
}

/// What the journal held.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// The first id the journal ever gave out (0: the journal is empty).
    pub(crate) lineage: u64,
    /// Events with ids up to this may have been in segments deleted by
    /// retention (0: none was).
    pub(crate) floor: u64,
    /// Ids lost between two records: `(from, to)`, both exclusive.
    pub(crate) gaps: Vec<(u64, u64)>,
    /// Highest event id read (0: none).
    pub(crate) last_id: u64,
    /// Highest reservation read.
    pub(crate) reserved: u64,
    /// The last record is a graceful stop's.
    pub(crate) clean: bool,
    /// The segments left, oldest first.
    pub(crate) segments: Vec<SegmentInfo>,
    /// What was cut off, one line each, for the log.
    pub(crate) cut: Vec<String>,
}

/// One recovered batch: consecutive ids from `first_id`, sequenced at
/// `wall_ns`, `(topic, frame)` each.
pub(crate) struct Batch<'a> {
    pub(crate) first_id: u64,
    pub(crate) wall_ns: u64,
    pub(crate) events: &'a [(Arc<str>, Bytes)],
}

/// Reads every segment of `dir`, oldest first, calling `on_batch` for
/// each batch of events in id order; cuts torn and corrupt data off the
/// files as it goes.
pub(crate) fn scan(dir: &Path, mut on_batch: impl FnMut(Batch<'_>)) -> std::io::Result<Scan> {
    let mut out = Scan::default();
    // Topics are interned: a retained event keeps a handle, not a copy.
    let mut topics: HashMap<Box<str>, Arc<str>> = HashMap::new();
    let files = segment::list(dir)?;
    let count = files.len();
    // A gap begins at the last id before a cut, and ends at the next id
    // the journal holds.
    let mut gap_from: Option<u64> = None;
    for (pos, (index, path)) in files.into_iter().enumerate() {
        let newest = pos + 1 == count;
        let data = std::fs::read(&path)?;
        let header = SegmentHeader::parse(&data).filter(|h| h.index == index);
        let Some(header) = header else {
            out.cut.push(format!(
                "{}: not a journal segment (bad header); removed",
                path.display()
            ));
            std::fs::remove_file(&path)?;
            gap_from.get_or_insert(out.last_id);
            continue;
        };
        if out.lineage == 0 {
            out.lineage = header.lineage;
            if index > 1 {
                out.floor = u64::MAX;
            }
        }
        let mut info = SegmentInfo {
            index,
            path: path.clone(),
            frame_bytes: 0,
            newest_wall_ns: 0,
            len: data.len() as u64,
        };
        let mut at = HEADER_BYTES;
        loop {
            match record::read(&data[at..]) {
                Read::End => break,
                Read::Torn(why) => {
                    out.cut.push(format!(
                        "{}: {why} at byte {at} of {}; cut there",
                        path.display(),
                        data.len()
                    ));
                    let f = std::fs::OpenOptions::new().write(true).open(&path)?;
                    f.set_len(at as u64)?;
                    f.sync_all()?;
                    info.len = at as u64;
                    if !newest {
                        gap_from.get_or_insert(out.last_id);
                    }
                    break;
                }
                Read::Record(rec, n) => {
                    at += n;
                    let first = match &rec {
                        Record::Batch { first_id, .. } | Record::Start { first_id, .. } => {
                            Some(*first_id)
                        }
                        _ => None,
                    };
                    if let Some(first) = first {
                        if out.floor == u64::MAX {
                            // The oldest segment left starts here: older
                            // ones were deleted.
                            out.floor = first.saturating_sub(1);
                        }
                        if let Some(from) = gap_from.take() {
                            out.gaps.push((from, first));
                        }
                    }
                    out.clean = matches!(rec, Record::Close { .. });
                    match rec {
                        Record::Batch {
                            first_id,
                            wall_ns,
                            events,
                        } => {
                            let n = events.len() as u64;
                            let events: Vec<(Arc<str>, Bytes)> = events
                                .into_iter()
                                .map(|(t, f)| {
                                    let t = topics.entry(t).or_insert_with_key(|k| Arc::from(&**k));
                                    (t.clone(), f)
                                })
                                .collect();
                            info.frame_bytes +=
                                events.iter().map(|(_, f)| f.len() as u64).sum::<u64>();
                            info.newest_wall_ns = info.newest_wall_ns.max(wall_ns);
                            if n > 0 {
                                out.last_id = out.last_id.max(first_id + n - 1);
                                on_batch(Batch {
                                    first_id,
                                    wall_ns,
                                    events: &events,
                                });
                            }
                        }
                        Record::Reserve { upto } => out.reserved = out.reserved.max(upto),
                        Record::Start { first_id, gap_from } => {
                            if gap_from != 0 {
                                out.gaps.push((gap_from, first_id));
                            }
                            out.last_id = out.last_id.max(first_id.saturating_sub(1));
                        }
                        Record::Close { last_id } => out.last_id = out.last_id.max(last_id),
                    }
                }
            }
        }
        out.segments.push(info);
    }
    if out.floor == u64::MAX {
        // The oldest segment held no id at all: trust nothing older than
        // what the journal knows.
        out.floor = out.last_id.max(out.reserved);
    }
    if let Some(from) = gap_from {
        // A cut with nothing after it: the next start closes the gap.
        out.clean = false;
        out.last_id = out.last_id.max(from);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::super::record::{put_batch, put_close, put_reserve, put_start};
    use super::*;
    use std::io::Write;

    fn dir(name: &str) -> PathBuf {
        let d =
            std::env::temp_dir().join(format!("ringcast-recovery-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn write_segment(d: &Path, index: u64, lineage: u64, body: &[u8]) -> PathBuf {
        let mut f = segment::create(d, &SegmentHeader { lineage, index }).unwrap();
        f.write_all(body).unwrap();
        segment::path(d, index)
    }

    fn batch(out: &mut Vec<u8>, first: u64, topics: &[&str]) {
        let frames: Vec<String> = (0..topics.len())
            .map(|i| format!("id: {}\n\n", first + i as u64))
            .collect();
        put_batch(
            out,
            first,
            first * 10,
            topics.len(),
            topics.iter().zip(&frames).map(|(t, f)| (*t, f.as_bytes())),
        );
    }

    fn ids_of(d: &Path) -> (Vec<u64>, Scan) {
        let mut ids = Vec::new();
        let scan = scan(d, |b| {
            ids.extend((0..b.events.len() as u64).map(|i| b.first_id + i));
        })
        .unwrap();
        (ids, scan)
    }

    #[test]
    fn a_clean_journal_reads_back_whole() {
        let d = dir("clean");
        let mut s1 = Vec::new();
        put_start(&mut s1, 100, 0);
        put_reserve(&mut s1, 1000);
        batch(&mut s1, 100, &["a", "b"]);
        write_segment(&d, 1, 100, &s1);
        let mut s2 = Vec::new();
        batch(&mut s2, 102, &["a"]);
        put_close(&mut s2, 102);
        write_segment(&d, 2, 100, &s2);
        let (ids, scan) = ids_of(&d);
        assert_eq!(ids, vec![100, 101, 102]);
        assert_eq!(
            (
                scan.lineage,
                scan.floor,
                scan.last_id,
                scan.reserved,
                scan.clean
            ),
            (100, 0, 102, 1000, true)
        );
        assert!(scan.gaps.is_empty() && scan.cut.is_empty());
        assert_eq!(scan.segments.len(), 2);
        assert_eq!(scan.segments[0].frame_bytes, 2 * "id: 100\n\n".len() as u64);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_torn_tail_is_cut_and_a_crash_is_not_clean() {
        let d = dir("torn");
        let mut s = Vec::new();
        put_start(&mut s, 100, 0);
        batch(&mut s, 100, &["a"]);
        let whole = HEADER_BYTES + s.len();
        batch(&mut s, 101, &["a", "b"]);
        s.truncate(s.len() - 3);
        let p = write_segment(&d, 1, 100, &s);
        let (ids, scan) = ids_of(&d);
        assert_eq!(ids, vec![100]);
        assert!(!scan.clean);
        assert_eq!(scan.last_id, 100);
        assert_eq!(scan.cut.len(), 1, "{:?}", scan.cut);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), whole as u64);
        // Read again: nothing more to cut.
        let (ids, scan) = ids_of(&d);
        assert_eq!(ids, vec![100]);
        assert!(scan.cut.is_empty());
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn corruption_in_an_older_segment_becomes_a_gap() {
        let d = dir("corrupt");
        let mut s1 = Vec::new();
        put_start(&mut s1, 100, 0);
        batch(&mut s1, 100, &["a"]);
        let good = s1.len();
        batch(&mut s1, 101, &["a"]);
        s1[good + 12] ^= 0x40;
        write_segment(&d, 1, 100, &s1);
        let mut s2 = Vec::new();
        batch(&mut s2, 105, &["b"]);
        put_start(&mut s2, 200, 105);
        batch(&mut s2, 200, &["b"]);
        write_segment(&d, 2, 100, &s2);
        let (ids, scan) = ids_of(&d);
        assert_eq!(ids, vec![100, 105, 200]);
        assert_eq!(scan.gaps, vec![(100, 105), (105, 200)]);
        assert!(!scan.clean);
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn deleted_segments_raise_the_floor() {
        let d = dir("floor");
        let mut s = Vec::new();
        batch(&mut s, 500, &["a"]);
        write_segment(&d, 4, 100, &s);
        let (_, scan) = ids_of(&d);
        assert_eq!((scan.lineage, scan.floor), (100, 499));
        std::fs::remove_dir_all(&d).unwrap();
    }
}
