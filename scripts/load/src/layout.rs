//! The run's layout, as methods on `Args`: which node a connection goes
//! to, which topics each subscriber takes (plain, wildcard over venues, or
//! the market's multi-topic sets), and the URLs and headers that say so to
//! ringcast or to nchan. Pure: no I/O.

use std::net::SocketAddr;

use crate::args::Args;

impl Args {
    /// The `i`-th node, round-robin over --addr and --also-addr.
    pub(crate) fn node(&self, i: usize) -> SocketAddr {
        match i % (1 + self.target.also_addr.len()) {
            0 => self.target.addr,
            k => self.target.also_addr[k - 1],
        }
    }

    /// Topics per venue (all of them without venues).
    pub(crate) fn symbols(&self) -> usize {
        self.load.topics / self.market.venues.max(1)
    }

    pub(crate) fn nchan(&self) -> bool {
        self.target.server == "nchan"
    }

    /// The `Authorization` header line for `token`, or nothing.
    pub(crate) fn bearer(token: &Option<String>) -> String {
        token
            .as_ref()
            .map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"))
    }

    /// Topic index `t` as a ringcast topic.
    pub(crate) fn topic_name(&self, t: usize) -> String {
        match self.market.venues {
            0 => format!("load.t{t}"),
            v => format!("quotes.V{}.S{}", t % v, t / v),
        }
    }

    /// Market mode: the venue of subscriber `idx` if it is a wildcard
    /// subscriber, with its rank among them.
    pub(crate) fn wildcard_of(&self, idx: usize) -> Option<(usize, usize)> {
        let m = &self.market;
        if !m.on() || m.venues == 0 || m.wildcard_pct <= 0.0 {
            return None;
        }
        let p = m.wildcard_pct / 100.0;
        let (now, next) = ((idx as f64 * p).floor(), ((idx + 1) as f64 * p).floor());
        (next > now).then(|| {
            let rank = now as usize;
            (rank % m.venues, rank)
        })
    }

    /// Market mode: subscriber `idx`'s own topics, `idx % topics + j * q`
    /// (j < K) modulo the topic count, with q coprime to it: distinct
    /// topics, a different set for every subscriber of a round of `topics`
    /// subscribers (q changes from round to round), and each topic taken
    /// by exactly K subscribers per round.
    fn market_topics(&self, idx: usize) -> Vec<usize> {
        let (n, k) = (self.load.topics, self.market.topics_per_sub);
        let gcd = |mut a: usize, mut b: usize| {
            while b != 0 {
                (a, b) = (b, a % b);
            }
            a
        };
        let mut q = n / k + 1;
        let mut skip = idx / n;
        loop {
            if gcd(q, n) == 1 {
                if skip == 0 {
                    break;
                }
                skip -= 1;
            }
            q += 1;
        }
        (0..k).map(|j| (idx % n + j * q) % n).collect()
    }

    /// The topic indexes subscriber `idx` receives.
    pub(crate) fn sub_topics(&self, idx: usize) -> Vec<usize> {
        let (topics, venues) = (self.load.topics, self.market.venues);
        if let Some((venue, rank)) = self.wildcard_of(idx) {
            let k = self.market.topics_per_sub;
            if self.nchan() {
                // The nchan stand-in: 2K symbols of the venue, a different
                // run of them for each wildcard subscriber of the venue.
                let syms = self.symbols();
                let from = rank / venues * 2 * k;
                return (0..2 * k)
                    .map(|j| (from + j) % syms * venues + venue)
                    .collect();
            }
            return (0..self.symbols()).map(|s| s * venues + venue).collect();
        }
        if self.market.on() {
            return self.market_topics(idx);
        }
        match venues {
            0 => vec![idx % topics],
            v => {
                let sym = idx % self.symbols();
                (0..v).map(|venue| sym * v + venue).collect()
            }
        }
    }

    /// The request target subscriber `idx` subscribes with.
    pub(crate) fn sub_path(&self, idx: usize) -> String {
        let nchan_ids = |topics: Vec<usize>| {
            let ids: Vec<String> = topics.iter().map(|t| format!("t{t}")).collect();
            format!("/msub/{}", ids.join(","))
        };
        if self.market.on() {
            let topics = self.sub_topics(idx);
            return match (self.nchan(), self.wildcard_of(idx)) {
                (true, _) => nchan_ids(topics),
                // `>` percent-encoded: it is not a URI character.
                (false, Some((venue, _))) => format!("/events?topic=quotes.V{venue}.%3E"),
                (false, None) => {
                    let q: Vec<String> = topics
                        .iter()
                        .map(|&t| format!("topic={}", self.topic_name(t)))
                        .collect();
                    format!("/events?{}", q.join("&"))
                }
            };
        }
        match (self.nchan(), self.market.venues) {
            (true, 0) => format!("/sub/t{}", idx % self.load.topics),
            (true, _) => nchan_ids(self.sub_topics(idx)),
            (false, 0) => format!("/events?topic=load.t{}", idx % self.load.topics),
            (false, _) => format!("/events?topic=quotes.*.S{}", idx % self.symbols()),
        }
    }

    /// The request target one event of `topic` is published with.
    pub(crate) fn pub_path(&self, topic: usize) -> String {
        match self.nchan() {
            true => format!("/pub/t{topic}"),
            false => format!("/publish?topic={}", self.topic_name(topic)),
        }
    }

    /// Events per publish request: batches are ringcast's (ndjson).
    pub(crate) fn per_request(&self) -> usize {
        match self.nchan() {
            true => 1,
            false => self.market.batch.max(1),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::args::Args;
    use clap::Parser;

    #[test]
    fn market_subscriptions() {
        let base = [
            "ringcast-load",
            "--subscribers",
            "10000",
            "--topics",
            "2000",
            "--venues",
            "4",
            "--topics-per-sub",
            "20",
            "--wildcard-pct",
            "5",
        ];
        let rc = Args::parse_from(base);
        let nc = Args::parse_from(base.iter().copied().chain(["--server", "nchan"]));
        let mut per_topic = vec![0usize; 2000];
        let mut sets = std::collections::HashSet::new();
        let mut wild = [0usize; 4];
        for i in 0..10_000 {
            let topics = rc.sub_topics(i);
            match rc.wildcard_of(i) {
                Some((venue, _)) => {
                    wild[venue] += 1;
                    assert_eq!(topics.len(), 500);
                    assert!(topics.iter().all(|t| t % 4 == venue));
                    assert_eq!(rc.sub_path(i), format!("/events?topic=quotes.V{venue}.%3E"));
                    let stand_in = nc.sub_topics(i);
                    assert_eq!(stand_in.len(), 40);
                    assert!(stand_in.iter().all(|t| t % 4 == venue));
                }
                None => {
                    let mut sorted = topics.clone();
                    sorted.sort_unstable();
                    sorted.dedup();
                    assert_eq!(sorted.len(), 20, "subscriber {i}: distinct topics");
                    assert_eq!(nc.sub_topics(i), topics);
                    assert_eq!(rc.sub_path(i).matches("topic=quotes.V").count(), 20);
                    assert_eq!(nc.sub_path(i).split(',').count(), 20);
                    sets.insert(sorted);
                    for t in topics {
                        per_topic[t] += 1;
                    }
                }
            }
        }
        assert_eq!(wild, [125; 4]);
        // Distinct sets; every topic on about the same number of subscribers.
        assert_eq!(sets.len(), 9_500);
        let (lo, hi) = (per_topic.iter().min(), per_topic.iter().max());
        assert!(lo >= Some(&85) && hi <= Some(&105), "{lo:?}..{hi:?}");
    }

    /// The URL layouts of the plain and wildcard modes, both servers.
    #[test]
    fn plain_and_wildcard_paths() {
        let cases: [(&[&str], usize, &str, &str); 4] = [
            (&["--topics", "3"], 4, "/events?topic=load.t1", "/sub/t1"),
            (&["--topics", "3"], 2, "/events?topic=load.t2", "/sub/t2"),
            (
                &["--topics", "4", "--venues", "2"],
                3,
                "/events?topic=quotes.*.S1",
                "/msub/t2,t3",
            ),
            (
                &["--topics", "4", "--venues", "2"],
                0,
                "/events?topic=quotes.*.S0",
                "/msub/t0,t1",
            ),
        ];
        for (flags, idx, ringcast, nchan) in cases {
            let argv = || ["ringcast-load"].into_iter().chain(flags.iter().copied());
            let rc = Args::parse_from(argv());
            let nc = Args::parse_from(argv().chain(["--server", "nchan"]));
            assert_eq!(rc.sub_path(idx), ringcast, "{flags:?} {idx}");
            assert_eq!(nc.sub_path(idx), nchan, "{flags:?} {idx}");
        }
        let rc = Args::parse_from(["ringcast-load", "--topics", "4", "--venues", "2"]);
        assert_eq!(rc.pub_path(3), "/publish?topic=quotes.V1.S1");
        let floor = Args::parse_from(["ringcast-load", "--server", "floor", "--batch", "8"]);
        assert_eq!(floor.pub_path(0), "/publish?topic=load.t0");
        assert_eq!(floor.per_request(), 8, "any server but nchan takes batches");
    }
}
