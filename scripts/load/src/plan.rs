//! `Plan`: every subscriber of the run decided before the first connect:
//! its topics' event count, whether it stalls, its source address, its part
//! in a resume storm, and which thread connects it. Also what the report
//! needs to know about them (readers, deliveries expected).

use std::net::Ipv4Addr;

use crate::args::Args;
use crate::net;

/// A subscriber's part in a resume storm.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Role {
    /// No storm.
    Plain,
    /// Stays connected; its latency is the "live" figure.
    Stayer,
    /// Drops and resumes with Last-Event-ID.
    Resumer,
}

/// One subscriber to open.
pub(crate) struct SubSpec {
    pub(crate) idx: usize,
    /// Events it should receive.
    pub(crate) expected: u64,
    /// Never reads after the response head.
    pub(crate) stalled: bool,
    /// Source address to connect from, if spreading.
    pub(crate) source: Option<Ipv4Addr>,
    pub(crate) role: Role,
}

pub(crate) struct Plan {
    /// The subscribers the main thread connects, in index order.
    pub(crate) main: Vec<SubSpec>,
    /// The resumers of a storm, which the storm thread connects.
    pub(crate) resumers: Vec<SubSpec>,
    /// Subscribers that read (all but the stalled ones), resumers included.
    pub(crate) readers: usize,
    /// Deliveries the readers should get in all.
    pub(crate) expected: u64,
    /// 127.0.0.x source addresses the subscribers are spread over.
    pub(crate) source_ips: usize,
}

impl Plan {
    pub(crate) fn new(args: &Args) -> Plan {
        let load = &args.load;
        let stalled_every = if load.stalled_pct > 0.0 {
            (100.0 / load.stalled_pct).round().max(1.0) as usize
        } else {
            0
        };
        // Topic t gets every topics-th event, starting at event t.
        let per_topic = |t: usize| -> u64 {
            let (e, tt) = (load.events, load.topics as u64);
            e / tt + u64::from((t as u64) < e % tt)
        };
        // Storm roles, spread evenly over the symbols: subscribers come in
        // rounds of one per symbol (or topic), and whole rounds are resumers
        // or stayers.
        let round = match args.market.venues {
            0 => load.topics,
            _ => args.symbols(),
        }
        .max(1);
        let role_of = |i: usize| -> Role {
            if !args.storm.on() {
                return Role::Plain;
            }
            let (j, p) = ((i / round) as f64, args.storm.resumers_pct / 100.0);
            if ((j + 1.0) * p).floor() > (j * p).floor() {
                Role::Resumer
            } else {
                Role::Stayer
            }
        };
        let source_ips = net::source_ips(load.source_ips, load.subscribers);
        let mut plan = Plan {
            main: Vec::new(),
            resumers: Vec::new(),
            readers: 0,
            expected: 0,
            source_ips,
        };
        for idx in 0..load.subscribers {
            let stalled = stalled_every > 0 && idx % stalled_every == stalled_every - 1;
            let expected = args.sub_topics(idx).into_iter().map(per_topic).sum();
            if !stalled {
                plan.readers += 1;
                plan.expected += expected;
            }
            let spec = SubSpec {
                idx,
                expected,
                stalled,
                source: net::source_of(idx, source_ips),
                role: role_of(idx),
            };
            match spec.role {
                Role::Resumer => plan.resumers.push(spec),
                _ => plan.main.push(spec),
            }
        }
        plan
    }
}
