//! Crashes and restarts (SPEC §3 "Restarts keep continuity"): ids that
//! never go back, history kept by `history.dir` across a SIGTERM, a crash
//! under a flood that is never silent, and a torn journal that is cut off
//! and never served.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use super::*;

fn journal_toml(dir: &TempDir) -> String {
    format!(
        "[history]\ndir = \"{}\"\nper_topic = 1000000\nmax_bytes = 1073741824\n",
        dir.path()
    )
}

/// Publishers flooding `topic` with ndjson batches until `stop`, from
/// `threads` connections; every acknowledged id is kept.
struct Flood {
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<u64>>>,
    count: Arc<AtomicU64>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(addr: SocketAddr, topic: &'static str, threads: usize, batch: usize) -> Flood {
        let stop = Arc::new(AtomicBool::new(false));
        let acked = Arc::new(Mutex::new(Vec::new()));
        let count = Arc::new(AtomicU64::new(0));
        let threads = (0..threads)
            .map(|t| {
                let (stop, acked, count) = (stop.clone(), acked.clone(), count.clone());
                std::thread::spawn(move || {
                    let mut n = 0;
                    while !stop.load(Ordering::SeqCst) {
                        let Some(ids) = publish_batch(addr, topic, batch, &format!("t{t}b{n}-"))
                        else {
                            break;
                        };
                        n += 1;
                        count.fetch_add(ids.len() as u64, Ordering::SeqCst);
                        acked.lock().unwrap().extend(ids);
                    }
                })
            })
            .collect();
        Flood {
            stop,
            acked,
            count,
            threads,
        }
    }

    /// Waits until `n` events were acknowledged.
    fn until(&self, n: u64) {
        eventually(Duration::from_secs(60), "the flood", || {
            self.count.load(Ordering::SeqCst) >= n
        });
    }

    /// Stops the publishers; every acknowledged id, sorted.
    fn finish(self) -> Vec<u64> {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
        let mut ids = self.acked.lock().unwrap().clone();
        ids.sort_unstable();
        ids
    }
}

/// The reproduction: a flood of ndjson batches put ids ahead of
/// the clock, and after `kill -9` the next process gave out lower ids, so
/// a client resuming with its last id silently skipped every event since.
/// Now the restarted process's ids are above every acknowledged one, and
/// that client is told (`resync` `epoch`: without `history.dir` a restart
/// is a new epoch).
#[test]
fn ids_never_go_back_after_a_crash_under_a_flood() {
    let listen = format!("127.0.0.1:{}", free_port());
    let args = ["--workers", "2", "--listen", listen.as_str()];
    let s = Server::start_with("", &args, &[]);
    let flood = Flood::start(s.addr(), "flood.a", 3, 10_000);
    flood.until(600_000);
    s.signal(libc::SIGKILL);
    drop(s);
    let acked = flood.finish();
    let newest = *acked.last().expect("acknowledged events");

    let s = Server::start_with("", &args, &[]);
    let after: Vec<u64> = (0..5)
        .map(|i| publish(s.addr(), "flood.a", None, &format!("after {i}")))
        .collect();
    assert!(
        after[0] > newest,
        "the restarted process gave out {} below the crashed one's {newest}",
        after[0]
    );
    let mut sub = Sse::open_with(
        s.addr(),
        "topic=flood.a",
        &[("Last-Event-ID", newest.to_string().as_str())],
    );
    wait_subscribers(&s, 1);
    let end = publish(s.addr(), "flood.a", None, "end");
    let frames = frames_until_end(&mut sub, "end");
    assert_eq!(
        frames,
        vec![
            Frame::Resync("epoch".into()),
            Frame::Event(end, "end".into())
        ],
        "told at once, then live"
    );
}

/// With `history.dir`, a SIGTERM and a start lose nothing: a resume within
/// the retained history continues with no gap and no `resync`, snapshots
/// are the same, and ids go on above the old ones.
#[test]
fn a_graceful_restart_keeps_history_and_snapshots() {
    let dir = TempDir::new("graceful");
    let toml = journal_toml(&dir);
    let mut s = Server::start(&toml);
    let mut sub = Sse::open(s.addr(), "topic=g.%3E");
    wait_subscribers(&s, 1);
    let ids: Vec<u64> = (0..5)
        .map(|i| {
            publish(
                s.addr(),
                &format!("g.{}", i % 2),
                None,
                &format!("before {i}"),
            )
        })
        .collect();
    let got: Vec<u64> = sub.take(5).iter().map(Event::id_u64).collect();
    assert_eq!(got, ids);
    s.kill_term();
    assert_eq!(s.wait_exit(TIMEOUT).and_then(|x| x.code()), Some(0));
    drop(sub);

    let s = Server::start(&toml);
    let mut resumed = Sse::open_with(
        s.addr(),
        "topic=g.%3E",
        &[("Last-Event-ID", ids[2].to_string().as_str())],
    );
    wait_subscribers(&s, 1);
    let end = publish(s.addr(), "g.0", None, "end");
    assert!(end > ids[4]);
    assert_eq!(
        frames_until_end(&mut resumed, "end"),
        vec![
            Frame::Event(ids[3], "before 3".into()),
            Frame::Event(ids[4], "before 4".into()),
            Frame::Event(end, "end".into()),
        ],
        "no gap, no resync, no duplicate across the restart"
    );
    let mut snap = Sse::open(s.addr(), "topic=g.%3E&snapshot=1");
    let got: Vec<(u64, String)> = snap
        .take(2)
        .into_iter()
        .map(|e| (e.id_u64(), e.data))
        .collect();
    assert_eq!(got, vec![(ids[3], "before 3".into()), (end, "end".into())]);
}

/// `kill -9` in the middle of a flood, with `history.dir`: the subscriber
/// resumes on the restarted process with the last id it read, and either
/// gets every acknowledged event after it, in order, or `resync` before
/// the first event that follows a missing one; every event published after
/// the restart arrives, with ids above every one before.
#[test]
fn a_crash_under_a_flood_is_never_silent() {
    let dir = TempDir::new("crash");
    let toml = journal_toml(&dir);
    let s = Server::start(&toml);
    let mut sub = Sse::open(s.addr(), "topic=c.%3E");
    wait_subscribers(&s, 1);
    let reader = std::thread::spawn(move || {
        let mut last = 0;
        while let Some(ev) = sub.next_event() {
            last = ev.id_u64();
        }
        last
    });
    let flood = Flood::start(s.addr(), "c.x", 2, 2_000);
    flood.until(200_000);
    s.signal(libc::SIGKILL);
    drop(s);
    let before = flood.finish();
    let last = reader.join().unwrap();

    let s = Server::start(&toml);
    assert!(
        s.stderr.lock().unwrap().contains("clean=false"),
        "the journal knows it was a crash"
    );
    let mut resumed = Sse::open_with(
        s.addr(),
        "topic=c.%3E",
        &[("Last-Event-ID", last.to_string().as_str())],
    );
    wait_subscribers(&s, 1);
    let mut after: Vec<u64> = (0..3)
        .map(|i| publish(s.addr(), "c.y", None, &format!("after {i}")))
        .collect();
    after.push(publish(s.addr(), "c.y", None, "end"));
    assert!(
        after[0] > *before.last().unwrap(),
        "ids go on above the crash"
    );
    let frames = frames_until_end(&mut resumed, "end");
    let acked: Vec<u64> = before.iter().chain(&after).copied().collect();
    assert_never_silent(last, &acked, &frames);
    let tail: Vec<u64> = frames
        .iter()
        .filter_map(|f| match f {
            Frame::Event(id, _) if *id >= after[0] => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(tail, after, "everything published after the restart");
}

/// A torn write at the journal's end and a corrupt record are found by
/// their checksums and cut off: the restarted server never serves them,
/// and a resume that would cross what was cut is told.
#[test]
fn a_torn_or_corrupt_journal_tail_is_cut_and_never_served() {
    let dir = TempDir::new("torn");
    let toml = journal_toml(&dir);
    let s = Server::start(&toml);
    let ids: Vec<u64> = (0..20)
        .map(|i| publish(s.addr(), "t.a", None, &format!("before {i}")))
        .collect();
    // The journal has the last event once its bytes are in the file.
    let segment = || {
        let mut files: Vec<_> = std::fs::read_dir(&dir.0)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|x| x == "rcj"))
            .collect();
        files.sort();
        files.pop().expect("a journal segment")
    };
    eventually(TIMEOUT, "the last event in the journal", || {
        std::fs::read(segment())
            .unwrap()
            .windows(9)
            .any(|w| w == b"before 19")
    });
    s.signal(libc::SIGKILL);
    drop(s);
    let path = segment();
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.windows(9).position(|w| w == b"before 19").unwrap();
    bytes[at + 7] ^= 0x04; // "before 19" becomes "before 59" on disk
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3]); // and a torn write after it
    std::fs::write(&path, &bytes).unwrap();

    let s = Server::start(&toml);
    let log = s.stderr.lock().unwrap().clone();
    assert!(log.contains("checksum does not match"), "{log}");
    let mut resumed = Sse::open_with(
        s.addr(),
        "topic=t.a",
        &[("Last-Event-ID", ids[0].to_string().as_str())],
    );
    wait_subscribers(&s, 1);
    let end = publish(s.addr(), "t.a", None, "end");
    let frames = frames_until_end(&mut resumed, "end");
    let mut want: Vec<Frame> = (1..19)
        .map(|i| Frame::Event(ids[i], format!("before {i}")))
        .collect();
    want.push(Frame::Resync("epoch".into()));
    want.push(Frame::Event(end, "end".into()));
    assert_eq!(frames, want, "what is whole, then resync where the cut was");
}
