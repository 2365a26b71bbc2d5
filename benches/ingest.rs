//! Ingest ring throughput, producer thread → consumer thread, in events/s,
//! for batches of 1 and 64 events per ring message.
use std::sync::Arc;
use std::time::Instant;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::event::Event;
use ringcast::sequencer::ring::{ring, Msg};

fn run(msgs: u64, per_msg: usize) {
    let (tx, rx) = ring(65_536, usize::MAX);
    let frame = ringcast::frame::encode(1, None, b"x");
    let topic: Arc<str> = "t".into();
    let batch: Arc<[Event]> = (0..per_msg)
        .map(|i| Event {
            id: i as u64,
            topic: topic.clone(),
            frame: frame.clone(),
            born_ns: 0,
        })
        .collect();
    let consumer = std::thread::spawn(move || {
        let mut seen = 0u64;
        while seen < msgs {
            match rx.try_pop() {
                Some(Msg::Events(b)) => seen += b.len().min(1) as u64,
                Some(_) => {}
                None => std::hint::spin_loop(),
            }
        }
    });
    for _ in 0..msgs {
        tx.push(Msg::Events(batch.clone()));
    }
    consumer.join().unwrap();
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("ingest_ring");
    g.sample_size(10);
    for per_msg in [1usize, 64] {
        let msgs = 100_000u64;
        g.throughput(Throughput::Elements(msgs * per_msg as u64));
        g.bench_function(BenchmarkId::new("events_per_msg", per_msg), |b| {
            b.iter_custom(|iters| {
                let t = Instant::now();
                for _ in 0..iters {
                    run(msgs, per_msg);
                }
                t.elapsed()
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
