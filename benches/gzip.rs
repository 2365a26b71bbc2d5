//! What compressing a stream costs per event (demo-feed quotes of ~160
//! bytes, level 1): a stream's own compressor with a sync flush per quote,
//! against a topic's shared segment (the worker's scratch compressor reset
//! and given the topic's last ~2 KiB as its dictionary), which is paid once
//! per event and topic however many subscribers share it.
//! `cargo bench --bench gzip`.
use bytes::Bytes;
use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ringcast::gzip::group::Group;
use ringcast::gzip::Deflater;

fn quotes() -> Vec<Bytes> {
    (0..256u32)
        .map(|i| {
            let bid = 180.0 + f64::from(i % 97) * 0.37;
            Bytes::from(format!(
                "id: {}\nevent: quote\ndata: {{\"topic\":\"quotes.NASDAQ.AAPL\",\"symbol\":\"AAPL\",\"bid\":{bid:.2},\"ask\":{:.2},\"last\":{:.2},\"volume\":{},\"ts\":{}}}\n\n",
                1_796_691_403_518_205_441u64 + u64::from(i),
                bid + 0.02,
                bid + 0.01,
                100 + i * 37 % 9000,
                1_796_691_403_518u64 + u64::from(i)
            ))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let qs = quotes();
    let mut g = c.benchmark_group("gzip");
    g.throughput(Throughput::Elements(1));
    let mut own = Deflater::new(1);
    let mut out = Vec::with_capacity(1024);
    let mut i = 0;
    g.bench_function("own_compressor_sync_flush_per_quote", |b| {
        b.iter(|| {
            out.clear();
            own.compress(&qs[i % qs.len()], &mut out, false);
            i += 1;
            out.len()
        })
    });
    let scratch = std::rc::Rc::new(std::cell::RefCell::new(Deflater::new(1)));
    let mut group = Group::new(scratch, ringcast::gzip::Budget::new(1 << 30, 1));
    let mut i = 0;
    g.bench_function("shared_segment_per_quote", |b| {
        b.iter(|| {
            let s = group.compress(&qs[i % qs.len()]);
            i += 1;
            s.bytes.len()
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
