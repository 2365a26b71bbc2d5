//! Fan-out of one frame to N in-process connection queues (refcount bump +
//! queue push per subscriber), against a naive baseline that copies the
//! frame's bytes for each subscriber.
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::config::SlowPolicy;
use ringcast::event::Event;
use ringcast::ops::metrics::WorkerMetrics;
use ringcast::worker::conn::Conn;
use ringcast::worker::fanout::{enqueue, Bound};

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("fanout");
    let metrics = WorkerMetrics::default();
    let total = std::rc::Rc::new(std::cell::Cell::new(0usize));
    let bound = Bound {
        max_pending: usize::MAX,
        policy: SlowPolicy::Disconnect,
        grace_ticks: 10,
    };
    let frame = ringcast::frame::encode(1, Some("quote"), "x".repeat(100).as_bytes());
    for n in [1_000usize, 10_000, 100_000] {
        let conns: Vec<Conn> = (0..n as u32)
            .map(|k| Conn::new(k as u64, k, 1, 0, total.clone()))
            .collect();
        let topic: Arc<str> = "quotes.NASDAQ.AAPL".into();
        let mut id = 1u64;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("enqueue_shared_bytes", n), |b| {
            b.iter(|| {
                id += 1;
                let ev = Event {
                    id,
                    topic: topic.clone(),
                    frame: frame.clone(),
                    born_ns: 1,
                };
                for c in &conns {
                    enqueue(c, &ev, bound, 0, &metrics);
                }
                for c in &conns {
                    c.discard_unsent();
                }
            })
        });
        let mut queues: Vec<Vec<Vec<u8>>> = vec![Vec::new(); n];
        g.bench_function(BenchmarkId::new("naive_copy_per_subscriber", n), |b| {
            b.iter(|| {
                for q in queues.iter_mut() {
                    q.push(frame.to_vec());
                }
                for q in queues.iter_mut() {
                    q.clear();
                }
            })
        });
    }
    // 1% of subscribers stalled under conflate: their queues stay full and
    // get conflated; the others drain every round. Versus none stalled.
    let n = 10_000usize;
    let conflate = Bound {
        max_pending: 64 * 1024,
        policy: SlowPolicy::Conflate,
        grace_ticks: 0,
    };
    let topics: Vec<Arc<str>> = (0..50).map(|i| format!("q.S{i}").into()).collect();
    for stalled_pct in [0usize, 1] {
        let conns: Vec<Conn> = (0..n as u32)
            .map(|k| Conn::new(k as u64, k, 1, 0, total.clone()))
            .collect();
        let stalled = n * stalled_pct / 100;
        let mut id = 1u64;
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::new("conflate_stalled_pct", stalled_pct), |b| {
            b.iter(|| {
                id += 1;
                let ev = Event {
                    id,
                    topic: topics[id as usize % 50].clone(),
                    frame: frame.clone(),
                    born_ns: 1,
                };
                for c in &conns {
                    enqueue(c, &ev, conflate, 0, &metrics);
                }
                for c in &conns[stalled..] {
                    c.discard_unsent();
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
