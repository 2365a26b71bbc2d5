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
    /// Asks for --max-rate: reads and counts, expects nothing exact.
    pub(crate) throttled: bool,
    /// Source address to connect from, if spreading.
    pub(crate) source: Option<Ipv4Addr>,
    pub(crate) role: Role,
}

pub(crate) struct Plan {
    /// The subscribers the main thread connects, in index order.
    pub(crate) main: Vec<SubSpec>,
    /// The resumers of a storm, which the storm thread connects.
    pub(crate) resumers: Vec<SubSpec>,
    /// Subscribers that read every event (all but the stalled and the
    /// throttled ones), resumers included.
    pub(crate) readers: usize,
    /// Deliveries the readers should get in all.
    pub(crate) expected: u64,
    /// 127.0.0.x source addresses the subscribers are spread over.
    pub(crate) source_ips: usize,
    /// Subscribers asking for --max-rate.
    pub(crate) throttled: usize,
}

impl Plan {
    pub(crate) fn new(args: &Args) -> Plan {
        let load = &args.load;
        let every = |pct: f64| match pct > 0.0 {
            true => (100.0 / pct).round().max(1.0) as usize,
            false => 0,
        };
        let stalled_every = every(load.stalled_pct);
        let throttled_every = match load.max_rate {
            Some(_) => every(load.throttled_pct),
            None => 0,
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
            throttled: 0,
        };
        for idx in 0..load.subscribers {
            let stalled = stalled_every > 0 && idx % stalled_every == stalled_every - 1;
            // Spread from the first subscriber on (the stalled from the last
            // of each round), so that 50% throttles every other one.
            let throttled = !stalled && throttled_every > 0 && idx % throttled_every == 0;
            let expected = args.sub_topics(idx).into_iter().map(per_topic).sum();
            plan.throttled += usize::from(throttled);
            if !stalled && !throttled {
                plan.readers += 1;
                plan.expected += expected;
            }
            let spec = SubSpec {
                idx,
                expected,
                stalled,
                throttled,
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
