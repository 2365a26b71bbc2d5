//! ringcast: a Server-Sent Events fan-out engine on io_uring.
//!
//! # Layout
//!
//! The path of one event, in file order:
//!
//! - [`config`]: the one configuration tree (defaults, TOML, env, flags).
//! - [`runtime`]: worker threads (monoio, io_uring or legacy, pinned) and
//!   the process-wide [`runtime::Shared`] state.
//! - [`accept`]: one `SO_REUSEPORT` listener per worker, the accept loop.
//! - [`http`]: one connection's HTTP/1.1 exchange: head, body, routing.
//! - [`request`]: bytes → typed requests (httparse, queries, publish bodies).
//! - [`topic`]: topic and pattern syntax, matching.
//! - [`sequencer`]: the single order of events: id, encode once, fan to rings.
//! - [`frame`]: SSE frame encoding into `Bytes`.
//! - [`history`]: bounded per-topic history and last values, replay.
//! - [`ingest`]: per-worker bounded rings and their doorbell.
//! - [`fanout`]: ring → matching subscribers' queues, with the pending bound.
//! - [`subscribe`]: the worker-local subscription table (hash + token trie).
//! - [`conn`]: one connection's shared state: queue, deadlines, waker.
//! - [`stream`]: the event-stream write loop of a subscriber.
//! - [`write`]: vectored-write batches and partial-write bookkeeping.
//! - [`timer`]: the hashed timer wheel (heartbeat, header, stall).
//! - [`worker`]: one core's loop tying the above together.
//! - [`metrics`]: per-worker counters and Prometheus rendering.
//! - [`response`]: response bytes (event-stream head, JSON, CORS).
//! - [`error`]: request and start-up errors.
//! - [`demo`]: the `--demo` simulated quote feed and page.
//! - [`shutdown`]: signals, drain, sd_notify.
//! - [`sys`]: the few raw system calls, with their safety proofs.

#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

pub mod accept;
pub mod config;
pub mod conn;
pub mod demo;
pub mod error;
pub mod fanout;
pub mod frame;
pub mod history;
pub mod http;
pub mod ingest;
pub mod metrics;
pub mod request;
pub mod response;
pub mod runtime;
pub mod sequencer;
pub mod shutdown;
pub mod stream;
pub mod subscribe;
pub mod sys;
pub mod timer;
pub mod topic;
pub mod worker;
pub mod write;
