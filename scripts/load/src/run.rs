//! A run, phase by phase: connect every subscriber, publish (with a resume
//! storm on top if asked), hang up, and hand what was measured to the
//! report. Each phase reads the server's and this process's CPU at its
//! edges; everything is bounded by --timeout-s.

use std::rc::Rc;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::args::Args;
use crate::metrics;
use crate::plan::{Plan, SubSpec};
use crate::procfs::{own_cpu_s, server_cpu_s, server_rss_kib, CoreTicks};
use crate::publisher::publisher;
use crate::report::Report;
use crate::stats::{Stats, Tally, END};
use crate::storm::{mirror, resume_storm, storm_thread, Shared, StormTimes};
use crate::storm_report::write_samples;
use crate::subscriber::connect_all;

/// A phase's length and the CPU seconds at its edges (none without a
/// server PID, or when /proc could not be read).
pub(crate) struct Phase {
    pub(crate) secs: f64,
    pub(crate) server_cpu_s: (Option<f64>, Option<f64>),
    pub(crate) loadgen_cpu_s: (Option<f64>, Option<f64>),
}

impl Phase {
    /// Server CPU seconds spent in the phase.
    pub(crate) fn server_cpu(&self) -> Option<f64> {
        Some(self.server_cpu_s.1? - self.server_cpu_s.0?)
    }

    /// How many cores' worth the server kept busy (1.0 = one core all the
    /// time; above 1 with several workers or nodes).
    pub(crate) fn server_cores(&self) -> Option<f64> {
        cores(self.server_cpu_s, self.secs)
    }

    /// The same for the load generator.
    pub(crate) fn loadgen_cores(&self) -> Option<f64> {
        cores(self.loadgen_cpu_s, self.secs)
    }
}

/// CPU seconds from `cpu.0` to `cpu.1` over `secs` of wall time.
fn cores(cpu: (Option<f64>, Option<f64>), secs: f64) -> Option<f64> {
    match cpu {
        (Some(a), Some(b)) if secs > 0.0 => Some((b - a) / secs),
        _ => None,
    }
}

/// What a run measured besides the counters in `Stats`.
pub(crate) struct Measured {
    pub(crate) base: Instant,
    pub(crate) connect: Phase,
    /// Starts when publishing starts (after --hold-s), and ends once every
    /// reading subscriber has its events and every answer is read.
    pub(crate) publish: Phase,
    pub(crate) t_pub: Instant,
    /// Server RSS in KiB before the first connect and after the last one
    /// (and --hold-s).
    pub(crate) rss_kib: (Option<u64>, Option<u64>),
    /// Server RSS in KiB at the end of the publish phase (the subscribers
    /// still connected, their streams active).
    pub(crate) rss_published_kib: Option<u64>,
    /// --server-core: the share of the publish phase that core was busy
    /// (any process, interrupts, softirqs), and in softirq.
    pub(crate) core: Option<(f64, f64)>,
    /// Server CPU µs per connection closed after the publish phase.
    pub(crate) cpu_us_per_close: Option<f64>,
    pub(crate) storm: Option<StormTimes>,
    /// --server-metrics: /metrics before the run and after it.
    pub(crate) metrics: (Option<String>, Option<String>),
}

/// Runs `f` on a new io_uring (or epoll, where io_uring is missing)
/// runtime on this thread.
pub(crate) fn block_on<F: std::future::Future>(f: F) -> F::Output {
    monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
        .with_entries(8192)
        .enable_timer()
        .build()
        .expect("runtime")
        .block_on(f)
}

/// The whole run, to its report.
pub(crate) async fn run(args: Rc<Args>) -> Report {
    let mut plan = Plan::new(&args);
    let resumers = plan.resumers.len();
    // The main thread has no resumers: no storm waiters.
    let stats = Rc::new(Stats::new(0));
    stats.keep_samples.set(args.storm.on());
    let shared = Arc::new(Shared::default());
    let pids = &args.target.server_pid;
    let scrape = args.target.server_metrics && args.target.server == "ringcast";
    let metrics_before = match scrape {
        true => metrics::scrape(args.target.addr).await,
        false => None,
    };
    let base = Instant::now();
    let deadline = base + Duration::from_secs(args.load.timeout_s);
    let rss_before = server_rss_kib(pids);
    let at_start = (server_cpu_s(pids), own_cpu_s());

    let specs = (
        std::mem::take(&mut plan.main),
        std::mem::take(&mut plan.resumers),
    );
    let (connect, storm_thread) =
        connect(&args, &stats, &shared, specs, at_start, base, deadline).await;

    if args.load.connect_only && args.load.hold_s > 0.0 {
        monoio::time::sleep(Duration::from_secs_f64(args.load.hold_s)).await;
    }
    let rss_after = server_rss_kib(pids);
    let server_cpu0 = server_cpu_s(pids);
    let core0 = args.target.server_core.and_then(CoreTicks::read);
    let t_pub = Instant::now();
    let (publish_s, storm) = publish(
        &args,
        &stats,
        &shared,
        plan.readers,
        (base, t_pub),
        deadline,
    )
    .await;
    let server_cpu1 = server_cpu_s(pids);
    let core1 = args.target.server_core.and_then(CoreTicks::read);
    let rss_published_kib = server_rss_kib(pids).filter(|_| !args.load.connect_only);
    let publish = Phase {
        secs: publish_s,
        server_cpu_s: (server_cpu0, server_cpu1),
        loadgen_cpu_s: (connect.loadgen_cpu_s.1, own_cpu_s()),
    };

    let cpu_us_per_close = hang_up(&args, &stats, plan.readers, deadline).await;
    shared.phase.store(END, Relaxed);
    if let Some(t) = storm_thread {
        match t.join() {
            Ok(tally) => stats.merge(tally),
            Err(_) => eprintln!("ringcast-load: the storm thread failed; its figures are missing"),
        }
    }
    let metrics_after = match scrape {
        true => metrics::scrape(args.target.addr).await,
        false => None,
    };
    if args.target.server_metrics && (metrics_before.is_none() || metrics_after.is_none()) {
        eprintln!(
            "ringcast-load: --server-metrics: no /metrics deltas ({})",
            match scrape {
                true => "a scrape failed",
                false => "only ringcast's are scraped",
            }
        );
    }
    if let (Some(path), Some(times)) = (&args.storm.samples_out, &storm) {
        write_samples(path, &stats, base, times);
    }
    let measured = Measured {
        base,
        connect,
        publish,
        t_pub,
        rss_kib: (rss_before, rss_after),
        rss_published_kib,
        core: core0.zip(core1).and_then(|(a, b)| CoreTicks::shares(a, b)),
        cpu_us_per_close,
        storm,
        metrics: (metrics_before, metrics_after),
    };
    Report::new(&args, &plan, resumers, &stats, &measured)
}

/// Connects every subscriber (the resumers on the storm thread), with at
/// most --connect-concurrency connects in progress on each thread, until
/// each has connected or failed, or the deadline.
async fn connect(
    args: &Rc<Args>,
    stats: &Rc<Stats>,
    shared: &Arc<Shared>,
    (main, resumers): (Vec<SubSpec>, Vec<SubSpec>),
    at_start: (Option<f64>, Option<f64>),
    base: Instant,
    deadline: Instant,
) -> (Phase, Option<JoinHandle<Tally>>) {
    let n = args.load.subscribers;
    let t_connect = Instant::now();
    let thread = (!resumers.is_empty()).then(|| {
        let (a, sh) = ((**args).clone(), shared.clone());
        std::thread::spawn(move || storm_thread(a, resumers, sh, base, deadline))
    });
    if args.storm.on() {
        monoio::spawn(mirror(stats.clone(), shared.clone(), base, deadline));
    }
    connect_all(args, stats, main, base).await;
    monoio::select! {
        _ = stats.changed.until(|| {
            stats.connected.get() + stats.connect_errors.get() + shared.settled.load(Relaxed) >= n
        }) => {},
        _ = monoio::time::sleep(deadline.saturating_duration_since(Instant::now())) => {},
    }
    let secs = t_connect.elapsed().as_secs_f64();
    let phase = Phase {
        secs,
        server_cpu_s: (at_start.0, server_cpu_s(&args.target.server_pid)),
        loadgen_cpu_s: (at_start.1, own_cpu_s()),
    };
    (phase, thread)
}

/// Publishes every event over --inflight connections (the storm's timeline
/// on top, if asked) until every reading subscriber has its events and
/// every answer is read, or the deadline; returns how long the subscribers
/// took, and the storm's timeline. Nothing to do with --connect-only.
async fn publish(
    args: &Rc<Args>,
    stats: &Rc<Stats>,
    shared: &Shared,
    readers: usize,
    (base, t_pub): (Instant, Instant),
    deadline: Instant,
) -> (f64, Option<StormTimes>) {
    if args.load.connect_only {
        return (t_pub.elapsed().as_secs_f64(), None);
    }
    let conns = args.load.inflight.max(1);
    let window = args.load.pipeline.max(1);
    for c in 0..conns {
        let (a, st) = (args.clone(), stats.clone());
        monoio::spawn(async move {
            publisher(a, st.clone(), c, conns, base, window).await;
            st.publishers_done.set(st.publishers_done.get() + 1);
            st.changed.notify();
        });
    }
    let mut storm = None;
    if args.storm.on() {
        storm = Some(resume_storm(args, stats, shared, t_pub, deadline).await);
    }
    let left = || deadline.saturating_duration_since(Instant::now());
    monoio::select! {
        _ = stats.changed.until(|| stats.done_subscribers.get() + shared.done.load(Relaxed) >= readers) => {},
        _ = monoio::time::sleep(left()) => {},
    }
    let publish_s = t_pub.elapsed().as_secs_f64();
    // Every answer read, so `published` counts every acknowledged event
    // (bounded by the deadline like the rest).
    monoio::select! {
        _ = stats.changed.until(|| stats.publishers_done.get() >= conns) => {},
        _ = monoio::time::sleep(left()) => {},
    }
    (publish_s, storm)
}

/// Ends the subscribers' wait (`Stats::hang_up`) once the publish phase is
/// measured, waits for them to close, and measures what the server spends
/// on their closing: µs of server CPU per connection closed, counted until
/// the server's CPU time stops moving (two 20 ms samples with under 0.2 ms
/// between them, within 5 s and the run's deadline). None in a resume storm
/// (whose subscribers close as they finish) or without a server PID.
async fn hang_up(args: &Args, stats: &Stats, readers: usize, deadline: Instant) -> Option<f64> {
    if args.storm.on() || args.load.connect_only {
        return None;
    }
    let pids = &args.target.server_pid;
    let waiting = stats.holding.get();
    let cpu0 = server_cpu_s(pids);
    stats.hang_up.set(true);
    stats.hang_up_wait.notify();
    let until = (Instant::now() + Duration::from_secs(5)).min(deadline);
    monoio::select! {
        _ = stats.changed.until(|| stats.hung_up.get() >= waiting) => {},
        _ = monoio::time::sleep(until.saturating_duration_since(Instant::now())) => {},
    }
    let mut last = cpu0?;
    while Instant::now() < until {
        monoio::time::sleep(Duration::from_millis(20)).await;
        let now = server_cpu_s(pids)?;
        if now - last < 0.0002 {
            break;
        }
        last = now;
    }
    let closed = stats.hung_up.get().min(readers);
    let cpu0 = cpu0?;
    (closed > 0).then(|| (last - cpu0) / closed as f64 * 1e6)
}
