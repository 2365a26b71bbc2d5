//! Subscription matching at 10^3..10^5 subscriptions, exact and wildcard.
//! The cost of one lookup must not grow with subscribers on other topics.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion};
use ringcast::worker::sub_table::SubTable;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("subscribe_match");
    for n in [1_000u32, 10_000, 100_000] {
        // n subscribers, each on its own exact topic; look up one of them.
        let mut exact = SubTable::new();
        for k in 0..n {
            exact.insert(&format!("quotes.NASDAQ.S{k}"), k);
        }
        g.bench_with_input(BenchmarkId::new("exact", n), &exact, |b, t| {
            b.iter(|| {
                let mut hits = 0u32;
                t.for_each_match("quotes.NASDAQ.S777", |_| hits += 1);
                hits
            })
        });
        // n subscribers spread over wildcard patterns on 1000 symbols, plus
        // 10 subscribers on `quotes.>`; a lookup touches only what matches.
        let mut wild = SubTable::new();
        for k in 0..n {
            let sym = k % 1000;
            let p = match k % 3 {
                0 => format!("quotes.*.S{sym}"),
                1 => format!("quotes.NASDAQ.S{sym}"),
                _ => format!("quotes.X{sym}.>"),
            };
            wild.insert(&p, k);
        }
        for k in n..n + 10 {
            wild.insert("quotes.>", k);
        }
        g.bench_with_input(BenchmarkId::new("wildcard", n), &wild, |b, t| {
            b.iter(|| {
                let mut hits = 0u32;
                t.for_each_match("quotes.NASDAQ.S777", |_| hits += 1);
                hits
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
