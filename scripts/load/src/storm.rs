//! The resume storm (`--resumers-pct`): after a warm-up and a calm window
//! of steady publishing, the resumers drop their streams at once and, once
//! --resume-back more events were acknowledged, reconnect at once with
//! `Last-Event-ID`; the storm window lasts until every resumer caught up.
//!
//! The resumers run on a thread of their own (the storm thread), so that
//! the load generator's own work in the storm (thousands of closes and
//! connects at once) does not hold up the publishers and the stayers on
//! the main thread, whose latencies are the measurement. The threads share
//! the phase one way and the resumers' progress the other (`Shared`,
//! mirrored every millisecond).

use std::rc::Rc;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::plan::SubSpec;
use crate::procfs::{own_cpu_s, server_cpu_s};
use crate::stats::{Stats, Tally, DROP, END, RECONNECT};
use crate::subscriber::connect_all;

/// What the main thread and the storm thread share.
#[derive(Default)]
pub(crate) struct Shared {
    /// The storm's phase (`stats::DROP`...), set by the main thread.
    pub(crate) phase: AtomicU8,
    /// Resumers connected, or failed to.
    pub(crate) settled: AtomicUsize,
    pub(crate) done: AtomicUsize,
    pub(crate) dropped: AtomicUsize,
    /// Resumers caught up after their resume, or failed to resume.
    pub(crate) resumed: AtomicUsize,
}

/// When the storm's steps happened, and the CPU seconds then (server,
/// load generator).
pub(crate) struct StormTimes {
    pub(crate) calm_from: Instant,
    pub(crate) calm_cpu: (Option<f64>, Option<f64>),
    pub(crate) drop: Instant,
    pub(crate) drop_cpu: (Option<f64>, Option<f64>),
    pub(crate) reconnect: Instant,
    pub(crate) caught_up: Instant,
    pub(crate) end: Instant,
    pub(crate) end_cpu: (Option<f64>, Option<f64>),
    /// Events acknowledged between the drop and the reconnect.
    pub(crate) missed: u64,
}

/// The storm thread: connects the resumers (bounded concurrency), follows
/// the phase set by the main thread, reports its progress, and at the end
/// hands back its figures. It runs on epoll, not io_uring: both threads
/// share the load generator's core, and one `io_uring_enter` completing
/// thousands of the storm's operations held that core for up to 350 ms
/// (the kernel does not preempt inside a system call here), stalling the
/// main thread's measurement; epoll's short system calls let it in.
pub(crate) fn storm_thread(
    args: Args,
    specs: Vec<SubSpec>,
    shared: Arc<Shared>,
    base: Instant,
    deadline: Instant,
) -> Tally {
    let storm = async move {
        let args = Rc::new(args);
        let stats = Rc::new(Stats::new(args.load.subscribers));
        {
            let (args, stats) = (args.clone(), stats.clone());
            monoio::spawn(async move { connect_all(&args, &stats, specs, base).await });
        }
        loop {
            monoio::time::sleep(Duration::from_millis(1)).await;
            let phase = shared.phase.load(Relaxed);
            if phase != stats.phase.get() {
                stats.phase.set(phase);
                stats.storm.notify();
            }
            let settled = stats.connected.get() + stats.connect_errors.get();
            shared.settled.store(settled, Relaxed);
            shared.done.store(stats.done_subscribers.get(), Relaxed);
            shared.dropped.store(stats.resumers_dropped.get(), Relaxed);
            let resumed = stats.resumers_caught_up.get() + stats.resume_failed.get();
            shared.resumed.store(resumed, Relaxed);
            if phase == END || Instant::now() > deadline {
                break;
            }
        }
        stats.tally()
    };
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(storm)
}

/// On the main thread in a storm: wakes its waiters when the storm thread
/// made progress, and records the main thread's own timer lag.
pub(crate) async fn mirror(
    stats: Rc<Stats>,
    shared: Arc<Shared>,
    base: Instant,
    deadline: Instant,
) {
    let mut last = [0usize; 4];
    while Instant::now() < deadline && shared.phase.load(Relaxed) != END {
        let t = Instant::now();
        monoio::time::sleep(Duration::from_millis(1)).await;
        let lag = t.elapsed().as_micros() as u64;
        stats
            .lag
            .borrow_mut()
            .push((base.elapsed().as_micros() as u64, lag.saturating_sub(1000)));
        let now = [
            &shared.settled,
            &shared.done,
            &shared.dropped,
            &shared.resumed,
        ]
        .map(|a| a.load(Relaxed));
        if now != last {
            last = now;
            stats.changed.notify();
        }
    }
}

/// (server, load generator) CPU seconds now.
fn cpu_now(args: &Args) -> (Option<f64>, Option<f64>) {
    (server_cpu_s(&args.target.server_pid), own_cpu_s())
}

/// Sleeps until `until`, but not past `deadline`.
async fn sleep_until(until: Instant, deadline: Instant) {
    let now = Instant::now();
    let t = until.min(deadline);
    if t > now {
        monoio::time::sleep(t - now).await;
    }
}

/// Waits until `cond` holds (re-checked on `stats.changed`), or the deadline.
async fn wait_for(stats: &Stats, deadline: Instant, cond: impl Fn() -> bool) {
    monoio::select! {
        _ = stats.changed.until(cond) => {},
        _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
    }
}

/// The storm's timeline, on top of steady publishing that started at `t_pub`:
/// the calm window, the drop, the reconnect, until every resumer caught up
/// and at least --storm-s after the reconnect.
pub(crate) async fn resume_storm(
    args: &Args,
    stats: &Stats,
    shared: &Shared,
    t_pub: Instant,
    deadline: Instant,
) -> StormTimes {
    let storm = &args.storm;
    let calm_from = t_pub + Duration::from_secs_f64(storm.warmup_s);
    sleep_until(calm_from, deadline).await;
    let calm_cpu = cpu_now(args);
    sleep_until(
        calm_from + Duration::from_secs_f64(storm.baseline_s),
        deadline,
    )
    .await;
    // Drop: every resumer closes its connection now.
    let drop = Instant::now();
    let drop_cpu = cpu_now(args);
    let published_at_drop = stats.published.get();
    shared.phase.store(DROP, Relaxed);
    wait_for(stats, deadline, || {
        stats.published.get() >= published_at_drop + storm.resume_back
    })
    .await;
    // Reconnect: every resumer at once, with its Last-Event-ID.
    let missed = stats.published.get() - published_at_drop;
    let reconnect = Instant::now();
    shared.phase.store(RECONNECT, Relaxed);
    // The drop has long been mirrored: every resumer that dropped is counted.
    wait_for(stats, deadline, || {
        shared.resumed.load(Relaxed) >= shared.dropped.load(Relaxed)
    })
    .await;
    let caught_up = Instant::now();
    sleep_until(reconnect + Duration::from_secs_f64(storm.storm_s), deadline).await;
    StormTimes {
        calm_from,
        calm_cpu,
        drop,
        drop_cpu,
        reconnect,
        caught_up,
        end: Instant::now(),
        end_cpu: cpu_now(args),
        missed,
    }
}
