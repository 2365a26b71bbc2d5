use std::sync::Arc;

use bytes::Bytes;

use super::queue::Conflated;
use super::*;
use crate::frame::HEARTBEAT;
use crate::worker::batch::Batch;

fn conn(total: &Rc<Cell<usize>>) -> Conn {
    Conn::new(1, 0, 1, 0, total.clone())
}

fn item(topic: Option<&str>, frame: &'static str) -> Queued {
    Queued {
        frame: Bytes::from_static(frame.as_bytes()),
        born_ns: topic.map_or(0, |_| 1),
        topic: topic.map(Arc::from),
    }
}

fn queued(c: &Conn) -> Vec<String> {
    c.queue
        .borrow()
        .iter()
        .map(|q| String::from_utf8(q.frame.to_vec()).unwrap())
        .collect()
}

#[test]
fn conflate_keeps_the_newest_event_per_topic_in_order() {
    type Case = (
        &'static str,
        &'static [(Option<&'static str>, &'static str)],
        &'static [&'static str],
        u64,
    );
    let cases: &[Case] = &[
        ("empty", &[], &[], 0),
        (
            "distinct topics stay",
            &[(Some("a"), "a1"), (Some("b"), "b1")],
            &["a1", "b1"],
            0,
        ),
        (
            "newest per topic, in queue order",
            &[
                (Some("a"), "a1"),
                (Some("b"), "b11"),
                (Some("a"), "a222"),
                (Some("c"), "c1"),
                (Some("b"), "b2"),
            ],
            &["a222", "c1", "b2"],
            2,
        ),
        (
            "non-event bytes stay where they were",
            &[
                (None, "head"),
                (Some("a"), "a1"),
                (None, "beat"),
                (Some("a"), "a22"),
                (None, "head"),
            ],
            &["head", "beat", "a22", "head"],
            1,
        ),
    ];
    for &(name, queue, kept, dropped) in cases {
        let total = Rc::new(Cell::new(0));
        let other = conn(&total);
        other.push_raw(Bytes::from_static(b"other's bytes"));
        let c = conn(&total);
        for &(topic, frame) in queue {
            c.push(item(topic, frame));
        }
        let done = c.conflate();
        assert_eq!(done.dropped, dropped, "{name}: dropped");
        assert_eq!(queued(&c), kept, "{name}: kept");
        let kept_bytes: usize = kept.iter().map(|s| s.len()).sum();
        assert_eq!(done.queued_bytes, kept_bytes, "{name}: queued bytes");
        assert_eq!(c.pending(), kept_bytes, "{name}: conn pending");
        assert_eq!(
            total.get(),
            kept_bytes + other.pending(),
            "{name}: worker pending"
        );
    }
}

#[test]
fn conflation_leaves_a_write_in_flight_alone_and_says_what_is_queued() {
    let total = Rc::new(Cell::new(0));
    let c = conn(&total);
    for frame in ["a1", "a22"] {
        c.push(item(Some("a"), frame));
    }
    let mut batch = Batch::new();
    c.begin_write(0, &mut batch, usize::MAX);
    for frame in ["a333", "a4444"] {
        c.push(item(Some("a"), frame));
    }
    let done = c.conflate();
    assert_eq!(
        done,
        Conflated {
            dropped: 1,
            queued_bytes: 5
        }
    );
    assert_eq!(queued(&c), ["a4444"]);
    assert_eq!(
        c.pending(),
        2 + 3 + 5,
        "the write in flight is still unsent"
    );
}

#[test]
fn the_fields_queueing_touches_come_first() {
    use std::mem::offset_of;
    // What `push` and the slow check read ends with `sent_total`; the
    // write loop's fields follow. Both within the first 160 bytes.
    let hot_end = offset_of!(Conn, last_progress) + 8;
    assert!(hot_end <= 160, "hot fields end at {hot_end}");
    for cold in [
        offset_of!(Conn, id),
        offset_of!(Conn, patterns),
        offset_of!(Conn, expires_at),
    ] {
        assert!(
            cold >= offset_of!(Conn, last_progress),
            "a cold field among the hot ones"
        );
    }
}

#[test]
fn claim_id_takes_each_id_once_and_in_order() {
    let c = conn(&Rc::new(Cell::new(0)));
    c.set_last_id(5);
    for (id, claimed) in [
        (5, false),
        (3, false),
        (6, true),
        (6, false),
        (9, true),
        (7, false),
    ] {
        assert_eq!(c.claim_id(id), claimed, "id {id}");
    }
}

#[test]
fn kill_drops_the_queue_and_keeps_the_first_reason() {
    let total = Rc::new(Cell::new(0));
    let c = conn(&total);
    c.push(item(Some("a"), "a1"));
    c.push_raw(Bytes::from_static(b"raw"));
    c.kill(CloseReason::Slow);
    c.kill(CloseReason::Stall);
    assert_eq!(c.closed(), Some(CloseReason::Slow));
    assert!(!c.has_queued());
    assert_eq!((c.pending(), total.get()), (0, 0));
}

#[test]
fn discard_unsent_also_forgets_a_write_in_flight() {
    let total = Rc::new(Cell::new(0));
    let c = conn(&total);
    c.push_raw(Bytes::from_static(b"0123456789"));
    let mut batch = Batch::new();
    c.begin_write(1, &mut batch, usize::MAX);
    assert!(!c.has_queued());
    assert_eq!((c.pending(), total.get()), (10, 10), "in flight is unsent");
    c.push_raw(Bytes::from_static(b"abc"));
    c.discard_unsent();
    assert!(!c.has_queued());
    assert_eq!((c.pending(), total.get()), (0, 0));
}

#[test]
fn header_deadline_arms_once_and_zero_means_disarmed() {
    // (deadline armed, disarmed after, fired at) → what the entry does.
    let cases = [
        (10, false, 10, Expiry::Passed),
        (10, false, 11, Expiry::Passed),
        (10, false, 9, Expiry::Rearm(10)),
        (10, true, 11, Expiry::Off),
        (10, true, 9, Expiry::Off),
    ];
    for (deadline, disarm, now, want) in cases {
        let c = conn(&Rc::new(Cell::new(0)));
        assert!(c.arm_header(deadline), "the first arm schedules");
        assert!(!c.arm_header(deadline), "an entry is in the wheel already");
        if disarm {
            c.disarm_header();
        }
        assert_eq!(c.on_header_timer(now), want, "{deadline} {disarm} {now}");
        let entry_kept = matches!(want, Expiry::Rearm(_));
        assert_eq!(c.arm_header(20), !entry_kept, "{deadline} {disarm} {now}");
    }
    let c = conn(&Rc::new(Cell::new(0)));
    c.arm_header(10);
    c.arm_header(30);
    assert_eq!(
        c.on_header_timer(10),
        Expiry::Rearm(30),
        "a moved deadline re-arms the old entry"
    );
}

#[test]
fn heartbeat_only_into_silence() {
    const EVERY: u64 = 100;
    #[derive(Clone, Copy)]
    enum Setup {
        Idle,
        Queued,
        Writing,
        /// A write started at 80 and finished.
        WroteAt80,
        Closed,
    }
    let cases = [
        (Setup::Idle, 50, Heartbeat::Wait { at: 100 }),
        (Setup::Idle, 100, Heartbeat::Sent { next: 200 }),
        (Setup::Idle, 130, Heartbeat::Sent { next: 230 }),
        (Setup::Queued, 100, Heartbeat::Wait { at: 200 }),
        (Setup::Writing, 100, Heartbeat::Wait { at: 200 }),
        (Setup::WroteAt80, 100, Heartbeat::Wait { at: 180 }),
        (Setup::WroteAt80, 180, Heartbeat::Sent { next: 280 }),
        (Setup::Closed, 100, Heartbeat::Stop),
    ];
    for (i, (setup, now, want)) in cases.into_iter().enumerate() {
        let c = conn(&Rc::new(Cell::new(0)));
        let mut batch = Batch::new();
        match setup {
            Setup::Idle => {}
            Setup::Queued => c.push_raw(Bytes::from_static(b"x")),
            Setup::Writing => {
                c.push_raw(Bytes::from_static(b"x"));
                c.begin_write(0, &mut batch, usize::MAX);
            }
            Setup::WroteAt80 => {
                c.push_raw(Bytes::from_static(b"x"));
                c.begin_write(80, &mut batch, usize::MAX);
                c.end_write(1, 81);
            }
            Setup::Closed => c.kill(CloseReason::Shutdown),
        }
        let before = c.queue.borrow().len();
        assert_eq!(c.on_heartbeat_timer(now, EVERY), want, "case {i}");
        let added = c.queue.borrow().len() - before;
        let sent = matches!(want, Heartbeat::Sent { .. });
        assert_eq!(added, usize::from(sent), "case {i}: frames queued");
        if sent {
            assert_eq!(c.queue.borrow()[0].frame, HEARTBEAT, "case {i}");
        }
    }
}

#[test]
fn stall_clock_runs_from_the_last_progress_of_a_write_in_flight() {
    const LIMIT: u64 = 30;
    // A 10-byte write starts at 0; `partial` sends 4 bytes at 20 and the
    // rest goes into a second write at 25; `done` ends the write.
    let cases = [
        (
            "no progress, before the limit",
            false,
            false,
            29,
            Expiry::Rearm(30),
        ),
        (
            "no progress, at the limit",
            false,
            false,
            30,
            Expiry::Passed,
        ),
        (
            "progress moves the deadline",
            true,
            false,
            30,
            Expiry::Rearm(50),
        ),
        (
            "stalled since the progress",
            true,
            false,
            50,
            Expiry::Passed,
        ),
        ("no write in flight", false, true, 100, Expiry::Off),
        ("finished after progress", true, true, 100, Expiry::Off),
    ];
    for (name, partial, done, now, want) in cases {
        let total = Rc::new(Cell::new(0));
        let c = conn(&total);
        let mut batch = Batch::new();
        c.push_raw(Bytes::from_static(b"0123456789"));
        c.begin_write(0, &mut batch, usize::MAX);
        assert_eq!(c.arm_stall(LIMIT), Some(30), "{name}: first arm");
        assert_eq!(c.arm_stall(LIMIT), None, "{name}: already armed");
        if partial {
            batch.advance(4, |_| {});
            c.end_write(4, 20);
            c.begin_write(25, &mut batch, usize::MAX);
            assert_eq!((c.pending(), total.get()), (6, 6), "{name}");
        }
        if done {
            c.end_write(0, 60);
        }
        assert_eq!(c.on_stall_timer(now, LIMIT), want, "{name}");
        let entry_kept = matches!(want, Expiry::Rearm(_));
        assert_eq!(c.arm_stall(LIMIT).is_some(), !entry_kept, "{name}: re-arm");
    }
}

#[test]
fn a_members_own_pieces_never_refer_back_across_the_groups_segments() {
    use crate::gzip::group::Group;
    use crate::gzip::{Budget, Deflater, StreamEncoder};
    let total = Rc::new(Cell::new(0usize));
    let c = conn(&total);
    let budget = Budget::new(1 << 30, 1);
    c.set_encoder(StreamEncoder::new(budget.clone()));
    c.push_identity(StreamEncoder::header());
    let scratch = Rc::new(RefCell::new(Deflater::new(1)));
    c.join_group(Rc::new(RefCell::new(Group::new(scratch, budget))));
    let topic: Arc<str> = Arc::from("quotes.NASDAQ.AAPL");
    let own = Bytes::from_static(
        b"data: {\"reason\":\"a piece of this stream's own, long enough to compress\"}\n\n",
    );
    let mut plain = Vec::new();
    for id in 1..=6u64 {
        let frame = Bytes::from(format!(
            "id: {id}\ndata: {{\"symbol\":\"AAPL\",\"bid\":189.1{id}}}\n\n"
        ));
        c.push_event(
            &crate::event::Event {
                id,
                topic: topic.clone(),
                frame: frame.clone(),
                born_ns: 1,
            },
            Some(topic.clone()),
        );
        plain.extend_from_slice(&frame);
        if id % 2 == 0 {
            // The same own piece twice, group segments between.
            c.push(Queued {
                frame: own.clone(),
                born_ns: 0,
                topic: None,
            });
            plain.extend_from_slice(&own);
        }
    }
    let wire: Vec<u8> = c
        .queue
        .borrow()
        .iter()
        .flat_map(|q| q.frame.to_vec())
        .collect();
    let mut dec = flate2::read::GzDecoder::new(&wire[..]);
    let mut out = Vec::new();
    // No trailer (the stream is still open): read what decodes.
    let _ = std::io::Read::read_to_end(&mut dec, &mut out);
    assert_eq!(
        String::from_utf8_lossy(&out),
        String::from_utf8_lossy(&plain)
    );
}
