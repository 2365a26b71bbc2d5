//! The balancer example of docs/cluster.md: two ringcast
//! nodes on one nats-server behind a real nginx running
//! `tuning/nginx/cluster-stream.conf` as shipped, only its three addresses
//! (127.0.0.1:8080/8081/8082) rewritten to this test's ephemeral ones.
//! Subscribers through the balancer land on both nodes and all get every
//! event under the same ids; when a node dies, its subscribers come back
//! through the balancer with their Last-Event-ID and get exactly what was
//! published meanwhile. Needs nats-server, nginx and Debian's
//! libnginx-mod-stream (`.ci/run` installs them); in CI a missing one fails
//! the test, on a developer machine it is reported and skipped.
mod support;

use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use support::nats::{self, node, Nats};
use support::*;

/// Where the shipped file loads the stream module from.
const STREAM_MODULE: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";

/// True when nginx and its stream module are installed; panics in CI when
/// they are not.
fn nginx_stream_ready() -> bool {
    let nginx = Command::new("nginx")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success());
    require(
        nginx && Path::new(STREAM_MODULE).exists(),
        "nginx with the stream module",
        "apt-get install nginx libnginx-mod-stream",
    )
}

/// nginx with the shipped `cluster-stream.conf`, from a private prefix;
/// stopped (with its worker) on drop.
struct Balancer {
    _nginx: support::nginx::Nginx,
    addr: SocketAddr,
}

impl Balancer {
    /// Starts nginx balancing over `nodes`; returns once `/readyz` answers
    /// 200 through it.
    fn start(nodes: [SocketAddr; 2]) -> Balancer {
        let dir = support::nginx::prefix("lb");
        let addr: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let shipped = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR")).join("tuning/nginx/cluster-stream.conf"),
        )
        .unwrap();
        let mut conf = shipped.clone();
        for (from, to) in [
            ("127.0.0.1:8081", nodes[0]),
            ("127.0.0.1:8082", nodes[1]),
            ("127.0.0.1:8080", addr),
        ] {
            let uses = shipped
                .lines()
                .filter(|l| !l.trim_start().starts_with('#') && l.contains(from))
                .count();
            assert_eq!(uses, 1, "{from} once in cluster-stream.conf");
            conf = conf.replace(from, &to.to_string());
        }
        let path = dir.join("nginx.conf");
        std::fs::write(&path, conf).unwrap();
        // As docs/cluster.md runs it, in the foreground so that this test
        // owns the process (`-g` adds to the file, it changes nothing in it).
        let nginx = support::nginx::Nginx::start(dir, &path, "", addr, "/readyz");
        Balancer {
            _nginx: nginx,
            addr,
        }
    }
}

fn subscribers(s: &Server) -> f64 {
    s.metric_sum("ringcast_subscribers_active{")
}

/// (id, data) of each event.
fn ids_and_data(events: &[Event]) -> Vec<(u64, String)> {
    events
        .iter()
        .map(|e| (e.id_u64(), e.data.clone()))
        .collect()
}

#[test]
fn cluster_behind_the_shipped_stream_balancer() {
    if !nats::available() || !nginx_stream_ready() {
        return;
    }
    let nats = Nats::start();
    let mut nodes = vec![node(&nats, ""), node(&nats, "")];
    let lb = Balancer::start([nodes[0].addr(), nodes[1].addr()]);

    // least_conn spreads long-lived streams: with four opened one after
    // the other, each node carries some.
    let query = "topic=quotes.%3E";
    let n = 4;
    let mut subs: Vec<Sse> = (0..n).map(|_| Sse::open(lb.addr, query)).collect();
    for sub in &subs {
        assert_eq!(sub.status, 200, "{}", sub.head);
    }
    let deadline = Instant::now() + TIMEOUT;
    let on = loop {
        let on: Vec<f64> = nodes.iter().map(subscribers).collect();
        if on.iter().sum::<f64>() == n as f64 || Instant::now() >= deadline {
            break on;
        }
        std::thread::sleep(Duration::from_millis(25));
    };
    assert_eq!(
        on.iter().sum::<f64>(),
        n as f64,
        "subscribers per node {on:?}"
    );
    assert!(on.iter().all(|&c| c >= 1.0), "both nodes serve: {on:?}");

    // Published through the balancer (onto either node): every subscriber
    // gets every event, under the acknowledged ids.
    let sent: Vec<(u64, String)> = (0..6)
        .map(|i| {
            let data = format!("via lb {i}");
            (publish(lb.addr, "quotes.NASDAQ.AAPL", None, &data), data)
        })
        .collect();
    assert_eq!(
        sent.iter().map(|s| s.0).collect::<Vec<_>>(),
        (1..=6).collect::<Vec<u64>>(),
        "a fresh stream's sequence"
    );
    for sub in &mut subs {
        assert_eq!(ids_and_data(&sub.take(sent.len())), sent);
    }
    let last = sent.last().unwrap().0.to_string();

    // Node 1 dies; its subscribers' streams end. Publishes through the
    // balancer go on (a refused connect moves on to node 2).
    let on_dead = on[0] as usize;
    let dead = nodes[0].addr();
    drop(nodes.remove(0));
    // The process is gone, but with io_uring the kernel may release its
    // sockets a moment later: until then its listener still accepts (and
    // then resets) connections, which nginx cannot pass on to node 2. The
    // node is down once its port refuses connects.
    let killed = Instant::now();
    while TcpStream::connect(dead).is_ok() {
        assert!(
            killed.elapsed() < TIMEOUT,
            "{dead} still accepts connections after the node was killed"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let meanwhile: Vec<(u64, String)> = (0..3)
        .map(|i| {
            let data = format!("while node 1 is down {i}");
            (publish(lb.addr, "quotes.NASDAQ.AAPL", None, &data), data)
        })
        .collect();
    assert!(meanwhile[0].0 > sent.last().unwrap().0);

    // Node 2's subscribers simply go on; node 1's see the end of their
    // stream and come back through the balancer with their Last-Event-ID.
    let mut moved = 0;
    for sub in &mut subs {
        match sub.next_event() {
            Some(first) => {
                let mut got = vec![first];
                got.extend(sub.take(meanwhile.len() - 1));
                assert_eq!(ids_and_data(&got), meanwhile, "on node 2");
            }
            None => {
                moved += 1;
                *sub = Sse::open_with(lb.addr, query, &[("Last-Event-ID", &last)]);
                assert_eq!(sub.status, 200, "{}", sub.head);
                assert_eq!(
                    ids_and_data(&sub.take(meanwhile.len())),
                    meanwhile,
                    "resumed through the balancer: no gap"
                );
            }
        }
    }
    assert_eq!(moved, on_dead, "every subscriber of node 1 came back");
    let now = nodes[0].metric_until_sum("ringcast_subscribers_active{", |v| v == n as f64);
    assert_eq!(now, n as f64, "all on node 2 now");

    // No duplicate either: the next event is the next one published.
    let marker = publish(lb.addr, "quotes.NASDAQ.AAPL", None, "marker");
    for sub in &mut subs {
        let ev = sub.next_event().expect("the marker");
        assert_eq!((ev.id_u64(), ev.data.as_str()), (marker, "marker"));
    }
}
