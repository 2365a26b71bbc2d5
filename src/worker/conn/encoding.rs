//! A connection's compression (SPEC §3, `sse.compression`): the stream's
//! gzip state, and its membership of its topic's shared compressor. The
//! queue then holds wire bytes: an event is compressed as it is queued,
//! once per topic for a member (the same `Bytes` for every member), once
//! per stream otherwise.

use std::cell::RefCell;
use std::rc::Rc;

use bytes::Bytes;

use super::Conn;
use crate::event::Event;
use crate::gzip::group::Group;
use crate::gzip::StreamEncoder;
use crate::worker::queued::Queued;

/// A topic's shared compressor, as a worker and its members hold it.
pub(crate) type SharedGroup = Rc<RefCell<Group>>;

impl Conn {
    /// Makes this stream's body one gzip member, written with `encoder`.
    pub(crate) fn set_encoder(&self, encoder: StreamEncoder) {
        *self.gzip.borrow_mut() = Some(Box::new(encoder));
        self.compressed.set(true);
    }

    /// True for a compressed stream.
    pub(crate) fn is_compressed(&self) -> bool {
        self.compressed.get()
    }

    /// Plaintext of this stream's own (a catch-up, a heartbeat, `retry:`)
    /// as wire bytes: compressed on a compressed stream, else as it is. A
    /// member's shared compressor must then start its next segment afresh:
    /// this stream's decoder has more history than the others'.
    pub(crate) fn encode(&self, plain: &Bytes) -> Bytes {
        let member = self
            .group
            .borrow()
            .as_ref()
            .map(|g| g.borrow_mut().reset_next())
            .is_some();
        match self.gzip.borrow_mut().as_mut() {
            Some(e) => {
                let wire = e.compress(plain);
                if member {
                    // The group's segments reach this decoder between its
                    // own pieces, unseen by its own compressor: the next
                    // own piece must not refer back across them.
                    e.release();
                }
                wire
            }
            None => plain.clone(),
        }
    }

    /// Queues event `ev` (the caller checked the bound): its shared
    /// segment for a member of its topic's group, else its frame
    /// (compressed here on a compressed stream).
    pub(crate) fn push_event(&self, ev: &Event, topic: Option<std::sync::Arc<str>>) {
        let group = self.group.borrow();
        let Some(g) = group.as_ref() else {
            drop(group);
            self.push(Queued {
                frame: ev.frame.clone(),
                born_ns: ev.born_ns,
                topic,
            });
            return;
        };
        let seg = g.borrow_mut().segment(ev.id, &ev.frame);
        drop(group);
        if let Some(e) = self.gzip.borrow_mut().as_mut() {
            e.sent_segment(&seg);
        }
        self.push_wire(Queued {
            frame: seg.bytes,
            born_ns: ev.born_ns,
            topic,
        });
    }

    /// Joins its topic's shared compressor: from now on every event of the
    /// topic is queued as the group's segment. Its own compressor, which
    /// wrote its catch-up, is given back.
    pub(crate) fn join_group(&self, group: SharedGroup) {
        {
            let mut g = group.borrow_mut();
            g.members += 1;
            // This stream's decoder holds its own catch-up as history.
            g.reset_next();
        }
        *self.group.borrow_mut() = Some(group);
        if let Some(e) = self.gzip.borrow_mut().as_mut() {
            e.release();
        }
    }

    /// Leaves its group, if in one; the group, if this was its last member.
    pub(crate) fn leave_group(&self) -> Option<SharedGroup> {
        let g = self.group.borrow_mut().take()?;
        let members = {
            let mut inner = g.borrow_mut();
            inner.members = inner.members.saturating_sub(1);
            inner.members
        };
        (members == 0).then_some(g)
    }

    /// Gives back this stream's own compressor (an idle stream keeps none).
    pub(crate) fn release_compressor(&self) {
        if let Some(e) = self.gzip.borrow_mut().as_mut() {
            e.release();
        }
    }

    /// Queues bytes that go as they are, before the body: the response
    /// head, the gzip header.
    pub(crate) fn push_identity(&self, bytes: Bytes) {
        self.push_wire(Queued {
            frame: bytes,
            born_ns: 0,
            topic: None,
        });
    }

    /// Queues the end of the gzip member (a graceful end: drain, expiry).
    pub(crate) fn push_trailer(&self) {
        let trailer = self.gzip.borrow().as_ref().map(|e| e.trailer());
        if let Some(t) = trailer {
            self.push_wire(Queued {
                frame: t,
                born_ns: 0,
                topic: None,
            });
        }
    }
}
