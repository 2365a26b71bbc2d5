//! `ringcast-load`: a bounded load generator for SSE fan-out servers
//! (ringcast, or nchan for a side-by-side run). It opens N real SSE
//! connections over loopback, publishes at a fixed rate or as fast as
//! acknowledged with K requests in flight, and reports connect rate, time to
//! first byte, deliveries/s, publish-to-receive latency percentiles, lost /
//! duplicated / reordered / misrouted events, the server's CPU per delivery,
//! connect and close, and its RSS growth per connection. Each event carries
//! its topic index, its publisher, a per-(publisher, topic) sequence number
//! and a send timestamp. Streams may be close-delimited (ringcast) or
//! chunked (nchan). Every run stops by itself (--timeout-s).
//! docs/load-generator.md is the manual: every flag and every report field.
//!
//! # Layout
//!
//! A run, in the order it happens:
//!
//! - `args`: the flags, one group per concern, and what cannot be combined
//! - `layout`: which node, topics and URLs each connection uses (pure)
//! - `plan`: every subscriber decided up front: expected events, stalled,
//!   source address, storm role
//! - `run`: the phases: connect, publish, hang up; CPU read at each edge
//! - `net`: loopback sockets from many source addresses; growing reads
//! - `subscriber`: one SSE stream, from connect to close (and resume)
//! - `sse`: response heads, de-chunking, frames and lines (pure)
//! - `tracker`: one subscriber's checks: loss, duplicates, order, routing,
//!   latency
//! - `publisher`: one publishing connection, paced or flat out, and its
//!   acknowledgements
//! - `stats`, `notify`: the counters the tasks of a thread share, and the
//!   wakers of tasks waiting on them
//! - `storm`: the resume storm's thread and timeline
//! - `procfs`, `metrics`: the server seen from /proc and from its /metrics
//! - `report`, `storm_report`, `fig`: the grouped, rounded report
//!
//! Subscribers that have every event keep their connections open until the
//! publish phase is measured; then all of them close and the server's CPU
//! for the closing is reported on its own (`server.cpu_us_per_close`), so
//! that thousands of closes (10-20 µs of server CPU each) do not land in
//! the last events' latency or in the CPU per delivery.

mod args;
mod fig;
mod layout;
mod metrics;
mod net;
mod notify;
mod plan;
mod procfs;
mod publisher;
mod report;
mod run;
mod sse;
mod stats;
mod storm;
mod storm_report;
mod subscriber;
mod tracker;

use std::rc::Rc;

use clap::Parser;

fn main() {
    let args = args::Args::parse();
    if let Err(why) = args.check() {
        eprintln!("ringcast-load: {why}");
        std::process::exit(2);
    }
    net::raise_nofile();
    let report = run::block_on(run::run(Rc::new(args.clone())));
    println!("{}", report.to_json(args.json));
}
