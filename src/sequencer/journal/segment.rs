//! The journal's files: a directory of segments, each named by its index
//! (`00000000000000000007.rcj`, so names sort in write order) and opened by
//! a header that names the journal's lineage (the first id it ever gave
//! out, carried from segment to segment). Only the newest segment is
//! appended to; an older one is deleted whole once every event it holds is
//! past the history bounds.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// The first bytes of every segment.
const MAGIC: &[u8; 8] = b"RCJOURN1";

/// Bytes of a segment header: magic, lineage, index, reserved.
pub(crate) const HEADER_BYTES: usize = 32;

const SUFFIX: &str = ".rcj";

/// One segment as read from its header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SegmentHeader {
    /// The first id the journal ever gave out: ids below it are from
    /// before this journal (another epoch).
    pub(crate) lineage: u64,
    /// Position in the journal (the file name).
    pub(crate) index: u64,
}

impl SegmentHeader {
    fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        b[..8].copy_from_slice(MAGIC);
        b[8..16].copy_from_slice(&self.lineage.to_le_bytes());
        b[16..24].copy_from_slice(&self.index.to_le_bytes());
        b
    }

    /// The header at the start of `data`, if it is one.
    pub(crate) fn parse(data: &[u8]) -> Option<SegmentHeader> {
        let h = data.get(..HEADER_BYTES)?;
        if &h[..8] != MAGIC {
            return None;
        }
        Some(SegmentHeader {
            lineage: u64::from_le_bytes(h[8..16].try_into().ok()?),
            index: u64::from_le_bytes(h[16..24].try_into().ok()?),
        })
    }
}

/// The path of segment `index` in `dir`.
pub(crate) fn path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}{SUFFIX}"))
}

/// The segments in `dir`, by index, oldest first. Files that are not
/// segments are left alone.
pub(crate) fn list(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(SUFFIX)) else {
            continue;
        };
        if stem.len() == 20 && stem.bytes().all(|b| b.is_ascii_digit()) {
            if let Ok(i) = stem.parse::<u64>() {
                out.push((i, entry.path()));
            }
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Creates segment `header.index` in `dir` with its header written and
/// made durable, with the directory entry; the file is positioned for
/// appending.
pub(crate) fn create(dir: &Path, header: &SegmentHeader) -> std::io::Result<File> {
    let p = path(dir, header.index);
    let mut f = OpenOptions::new().create_new(true).append(true).open(&p)?;
    f.write_all(&header.to_bytes())?;
    f.sync_data()?;
    sync_dir(dir)?;
    Ok(f)
}

/// Opens an existing segment for appending.
pub(crate) fn open_append(p: &Path) -> std::io::Result<File> {
    OpenOptions::new().append(true).open(p)
}

/// Makes the directory's entries (a created or deleted segment) durable.
pub(crate) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_and_names_round_trip_and_sort() {
        let dir = std::env::temp_dir().join(format!("ringcast-seg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for i in [10u64, 2, 1] {
            create(
                &dir,
                &SegmentHeader {
                    lineage: 42,
                    index: i,
                },
            )
            .unwrap();
        }
        std::fs::write(dir.join("notes.txt"), "not a segment").unwrap();
        std::fs::write(dir.join("12.rcj"), "a short name").unwrap();
        let got = list(&dir).unwrap();
        assert_eq!(
            got.iter().map(|(i, _)| *i).collect::<Vec<_>>(),
            vec![1, 2, 10]
        );
        let data = std::fs::read(&got[2].1).unwrap();
        assert_eq!(
            SegmentHeader::parse(&data),
            Some(SegmentHeader {
                lineage: 42,
                index: 10
            })
        );
        assert_eq!(SegmentHeader::parse(b"RCJOURN1 too short"), None);
        assert!(create(
            &dir,
            &SegmentHeader {
                lineage: 42,
                index: 1
            }
        )
        .is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
