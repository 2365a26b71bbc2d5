//! Frame encoding: the one copy of an event's bytes the server makes.
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ringcast::frame::encode;

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("frame_encode");
    let quote =
        r#"{"s":"AAPL","bid":189.12,"ask":189.14,"last":189.13,"vol":1200,"ts":1795350803953273}"#;
    let multi = "line one\nline two\r\nline three\rline four\n".repeat(8);
    let big = "x".repeat(16 * 1024);
    for (name, data) in [
        ("quote_100B", quote.to_string()),
        ("multiline_300B", multi),
        ("single_16KiB", big),
    ] {
        g.throughput(Throughput::Bytes(data.len() as u64));
        g.bench_with_input(BenchmarkId::from_parameter(name), &data, |b, d| {
            b.iter(|| encode(1_795_350_803_953_273, Some("quote"), d.as_bytes()))
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
