//! Which stored messages are events: the rule every node applies to the
//! same stream, so every node delivers the same events (SPEC §8: a batch
//! is delivered whole or not at all; a publish answered 503 is never
//! delivered). See [`super::marker`] for the headers.
//!
//! - A message stored after its deadline is not an event.
//! - The parts of a batch are events only when the batch's last part is in
//!   the stream, on time. JetStream stores part `i` only right after part
//!   `i - 1`, so the last part proves all of them, and the parts sit at
//!   consecutive sequences.
//!
//! The live consumer reads every message in order ([`Gate`]): it holds a
//! batch's parts until the last one arrives (a batch is never split
//! around other events) and drops them when anything else comes first. A
//! catch-up read that skips messages (a filtered consumer, the
//! last-per-subject snapshot) judges a part by looking up its batch's last
//! part instead ([`part_proven`]).

use bytes::Bytes;

use super::marker::Marker;

/// One stored message, read back.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// Its stream sequence: the event id.
    pub(crate) seq: u64,
    /// Its subject.
    pub(crate) subject: Box<str>,
    /// Its headers.
    pub(crate) marker: Marker,
    /// When JetStream stored it, Unix ms.
    pub(crate) stored_ms: u64,
    /// The event data.
    pub(crate) data: Bytes,
}

/// The live consumer's rule, fed every message in stream order.
#[derive(Debug, Default)]
pub(crate) struct Gate {
    /// The parts of the batch being read, in order.
    held: Vec<Stored>,
}

impl Gate {
    /// Takes the next message; appends to `out` what is now deliverable.
    pub(crate) fn admit(&mut self, m: Stored, out: &mut Vec<Stored>) {
        if let Some(last) = self.held.last() {
            let next = last.marker.part.as_ref().zip(m.marker.part.as_ref());
            let continues = m.seq == last.seq + 1
                && next.is_some_and(|(a, b)| {
                    a.tag == b.tag && b.index == a.index + 1 && b.count == a.count
                });
            if continues {
                let done = m.marker.part.as_ref().is_some_and(|p| p.is_last());
                let on_time = m.marker.on_time(m.stored_ms);
                self.held.push(m);
                if done {
                    if on_time {
                        out.append(&mut self.held);
                    } else {
                        self.held.clear();
                    }
                }
                return;
            }
            // Something else came between two parts: that batch is broken
            // (its next part can never be stored) and delivered nowhere.
            self.held.clear();
        }
        match &m.marker.part {
            Some(p) if !p.is_last() => self.held.push(m),
            // A single event, or a last part whose earlier parts came
            // before this node started reading: it proves them.
            _ => {
                if m.marker.on_time(m.stored_ms) {
                    out.push(m);
                }
            }
        }
    }

    /// Sequence of the first held part, if a batch is being read.
    pub(crate) fn holding_from(&self) -> Option<u64> {
        self.held.first().map(|m| m.seq)
    }
}

/// Where the last part of `m`'s batch must be, when `m` is a part that is
/// not the last.
pub(crate) fn last_part_seq(m: &Stored) -> Option<u64> {
    let p = m.marker.part.as_ref().filter(|p| !p.is_last())?;
    Some(m.seq + u64::from(p.count - 1 - p.index))
}

/// For a catch-up read: is `m` an event? `last` is the message at
/// [`last_part_seq`] when `m` is a part that is not the last (`None` when
/// that sequence holds nothing).
pub(crate) fn part_proven(m: &Stored, last: Option<&Stored>) -> bool {
    match &m.marker.part {
        Some(p) if !p.is_last() => last.is_some_and(|l| {
            l.marker
                .part
                .as_ref()
                .is_some_and(|lp| lp.tag == p.tag && lp.is_last() && lp.count == p.count)
                && l.marker.on_time(l.stored_ms)
        }),
        _ => m.marker.on_time(m.stored_ms),
    }
}

#[cfg(test)]
mod tests {
    use super::super::marker::Part;
    use super::*;

    fn msg(seq: u64, part: Option<(&str, u32, u32)>, late: bool) -> Stored {
        Stored {
            seq,
            subject: "s".into(),
            marker: Marker {
                event: None,
                deadline_ms: Some(100),
                part: part.map(|(t, i, n)| Part {
                    tag: t.into(),
                    index: i,
                    count: n,
                }),
            },
            stored_ms: if late { 101 } else { 100 },
            data: Bytes::new(),
        }
    }

    fn run(msgs: Vec<Stored>) -> Vec<u64> {
        let mut g = Gate::default();
        let mut out = Vec::new();
        for m in msgs {
            g.admit(m, &mut out);
        }
        out.iter().map(|m| m.seq).collect()
    }

    #[test]
    fn live_rule() {
        // (messages, delivered)
        let cases: Vec<(Vec<Stored>, Vec<u64>)> = vec![
            (vec![msg(1, None, false), msg(2, None, true)], vec![1]),
            // A whole batch, then a single.
            (
                vec![
                    msg(1, Some(("a", 0, 3)), false),
                    msg(2, Some(("a", 1, 3)), false),
                    msg(3, Some(("a", 2, 3)), false),
                    msg(4, None, false),
                ],
                vec![1, 2, 3, 4],
            ),
            // Broken by another publish: dropped, the other one kept.
            (
                vec![
                    msg(1, Some(("a", 0, 3)), false),
                    msg(2, None, false),
                    msg(3, Some(("b", 0, 2)), false),
                    msg(4, Some(("b", 1, 2)), false),
                ],
                vec![2, 3, 4],
            ),
            // Its last part stored late: dropped whole.
            (
                vec![
                    msg(1, Some(("a", 0, 2)), false),
                    msg(2, Some(("a", 1, 2)), true),
                ],
                vec![],
            ),
            // A new attempt right after a broken one.
            (
                vec![
                    msg(1, Some(("a.0", 0, 2)), false),
                    msg(2, Some(("a.1", 0, 2)), false),
                    msg(3, Some(("a.1", 1, 2)), false),
                ],
                vec![2, 3],
            ),
            // Started mid-batch: the tail is proven by its last part.
            (
                vec![
                    msg(5, Some(("a", 1, 3)), false),
                    msg(6, Some(("a", 2, 3)), false),
                ],
                vec![5, 6],
            ),
            // A gap in sequences (deleted messages) breaks the batch.
            (
                vec![
                    msg(1, Some(("a", 0, 2)), false),
                    msg(3, Some(("a", 1, 2)), false),
                ],
                vec![3],
            ),
        ];
        for (i, (msgs, want)) in cases.into_iter().enumerate() {
            assert_eq!(run(msgs), want, "case {i}");
        }
    }

    #[test]
    fn catch_up_rule_agrees_with_the_live_rule() {
        let part = msg(7, Some(("a", 0, 3)), false);
        assert_eq!(last_part_seq(&part), Some(9));
        let last = msg(9, Some(("a", 2, 3)), false);
        assert!(part_proven(&part, Some(&last)));
        assert!(!part_proven(&part, None));
        assert!(!part_proven(&part, Some(&msg(9, None, false))));
        assert!(!part_proven(&part, Some(&msg(9, Some(("b", 2, 3)), false))));
        assert!(!part_proven(&part, Some(&msg(9, Some(("a", 2, 3)), true))));
        assert!(part_proven(&last, None));
        assert!(!part_proven(&msg(1, None, true), None));
    }
}
