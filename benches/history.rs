//! Replay cost from history for a resuming subscriber, in events/s.
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::event::Event;
use ringcast::worker::history::History;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("history_replay");
    let cfg = ringcast::config::History {
        per_topic: 1024,
        max_bytes: 1 << 30,
        max_age_ms: 0,
        ..Default::default()
    };
    let mut h = History::new(&cfg);
    let topics: Vec<Arc<str>> = (0..100)
        .map(|i| format!("quotes.NASDAQ.S{i}").into())
        .collect();
    let frame = ringcast::frame::encode(1, Some("quote"), "x".repeat(100).as_bytes());
    let events: Vec<Event> = (1..=102_400u64)
        .map(|id| Event {
            id,
            topic: topics[id as usize % 100].clone(),
            frame: frame.clone(),
            born_ns: 0,
        })
        .collect();
    h.append(&events, 0);
    let upto = 102_400;
    for missed in [100u64, 1_000, 10_000] {
        let after = upto - missed;
        let all: Vec<Box<str>> = vec!["quotes.>".into()];
        g.throughput(Throughput::Elements(missed));
        g.bench_function(BenchmarkId::new("wildcard_100_topics", missed), |b| {
            b.iter(|| h.replay(&all, after, upto).unwrap().len())
        });
        let one: Vec<Box<str>> = vec!["quotes.NASDAQ.S7".into()];
        g.throughput(Throughput::Elements(missed / 100));
        g.bench_function(BenchmarkId::new("one_topic_of_100", missed), |b| {
            b.iter(|| h.replay(&one, after, upto).unwrap().len())
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
