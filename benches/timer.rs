//! Timer wheel: insert, lazy reset and expiry at 10^5 and 10^6 timers.
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use ringcast::worker::TimerWheel;

fn filled(n: u64) -> TimerWheel<u64> {
    let mut w = TimerWheel::new(4096, 0);
    for i in 0..n {
        w.insert(1 + i % 1500, i);
    }
    w
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("timer_wheel");
    g.sample_size(10);
    for n in [100_000u64, 1_000_000] {
        g.throughput(Throughput::Elements(n));
        g.bench_function(BenchmarkId::new("insert", n), |b| b.iter(|| filled(n)));
        // A reset is a field write on the connection plus, when the stale
        // entry fires, one re-insert: measure the re-insert of all n.
        g.bench_function(BenchmarkId::new("expire_and_reinsert", n), |b| {
            b.iter_batched(
                || filled(n),
                |mut w| {
                    let mut again = Vec::with_capacity(n as usize);
                    w.expire(1500, |x| again.push(x));
                    for x in again {
                        w.insert(3000 + x % 1500, x);
                    }
                    w
                },
                BatchSize::LargeInput,
            )
        });
        g.bench_function(BenchmarkId::new("expire_all", n), |b| {
            b.iter_batched(
                || filled(n),
                |mut w| {
                    let mut count = 0u64;
                    w.expire(1500, |_| count += 1);
                    count
                },
                BatchSize::LargeInput,
            )
        });
    }
    // An idle tick: the cost the wheel adds per tick when nothing is due.
    let mut w = filled(1_000_000);
    let mut t = 0;
    g.throughput(Throughput::Elements(1));
    g.bench_function("idle_tick_1e6_pending_far", |b| {
        b.iter(|| {
            t += 1;
            w.expire(0, |_| {});
            t
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
