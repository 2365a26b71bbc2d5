//! ringcast: a Server-Sent Events fan-out engine on io_uring.
//!
//! # Layout
//!
//! The stages, in the order an event meets them. Imports flow one way,
//! down this list's stage folders: `runtime` → `http` → `demo`, `worker` →
//! `cluster` → `sequencer` → the shared vocabulary (`event`, `topic`, `frame`, `config`,
//! `ops`, `error`, `sys`), which imports no stage.
//!
//! - [`config`]: the one configuration tree (defaults, TOML, env, flags).
//! - [`runtime`]: launch — the pinned worker threads (monoio, io_uring or
//!   legacy), the journal read back with `history.dir` — and the running
//!   `Server` and its drain.
//! - `http`: a worker's connections: accept (`SO_REUSEPORT`), the request
//!   head and body, routing, the `/publish` handler (which asks its worker
//!   to publish), and the `/events` handler that turns a connection into a
//!   stream (catch-up from history, then registration).
//! - [`event`]: an event as published ([`event::NewEvent`]) and as sequenced
//!   ([`event::Event`]); ids and clocks.
//! - [`topic`]: topic and pattern syntax, matching.
//! - `gzip`: compressed event streams — gzip framing, per-topic shared
//!   compressors, CRC combining (pure).
//! - [`sequencer`]: the single order of events — ids that follow the wall
//!   clock and one encoding per event ([`frame`]), kept by the publishing
//!   worker under a lock (`sequencer::order`); one bounded ingest ring per
//!   worker with its doorbell ([`sequencer::ring`]); and with
//!   `history.dir` the journal that keeps history across restarts
//!   ([`sequencer::journal`]).
//! - [`worker`]: one core — drains its ring, matches events against its
//!   subscription table ([`worker::sub_table`]), appends frame handles to
//!   the matching connections' queues under the slow-subscriber bound
//!   ([`worker::fanout`], [`worker::conn`]), writes each queue in one
//!   vectored write, and keeps the deadlines on a timer wheel.
//! - [`ops`]: metrics, sd_notify, signals.
//! - `demo`: the `--demo` simulated quote feed and its page.
//! - [`sys`]: the few raw system calls, with their safety proofs.
//!
//! - `auth`: tokens → grants (pure; used by `http` and `worker`).
//!
//! - `cluster`: cluster mode on NATS JetStream — the bridge thread that
//!   takes the sequencer's place (consumes the stream, feeds the same
//!   rings) and serves the workers' publishes and catch-up reads. It sits
//!   between `worker` and `sequencer`: it imports `sequencer` (the rings,
//!   the link's requests and replies), and only `runtime` imports it.

#![deny(unsafe_code)]
#![warn(clippy::undocumented_unsafe_blocks)]

mod auth;
mod cluster;
pub mod config;
mod demo;
pub mod error;
pub mod event;
pub mod frame;
pub mod gzip;
mod http;
pub mod ops;
pub mod runtime;
pub mod sequencer;
pub mod sys;
mod topic;
pub mod worker;
