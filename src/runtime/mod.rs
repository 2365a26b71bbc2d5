//! Threads: one monoio runtime per worker (io_uring, or the legacy driver
//! with a warning), each pinned to its core; the journal's writer with
//! `history.dir`, the NATS bridge in cluster mode, and the demo feed when
//! asked for. Config in, a running [`Server`] out. The top of the import
//! graph: it assembles every stage and nothing imports it.

use std::rc::Rc;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crossbeam_channel::Sender;

use crate::config::Config;
use crate::error::StartError;
use crate::ops::metrics::GlobalMetrics;
use crate::sequencer::journal;
use crate::sequencer::order::Order;
use crate::sequencer::ring::{ring, RingRx, RingTx};
use crate::sequencer::Ingest;
use crate::worker::history::History;
use crate::worker::{Shared, Worker};

mod driver;
mod server;
mod supervisor;

use driver::Driver;
pub use server::Server;

/// What `--check-config` checks beyond the configuration itself: the auth
/// keys load.
pub fn check(cfg: &Config) -> Result<(), StartError> {
    verifier(cfg).map(|_| ())
}

fn verifier(cfg: &Config) -> Result<Option<crate::auth::Verifier>, StartError> {
    if !cfg.auth.enabled() {
        return Ok(None);
    }
    crate::auth::Verifier::new(&cfg.auth)
        .map(Some)
        .map_err(StartError::Config)
}

/// Binds, starts the sequencer and the workers, and returns once every
/// worker is accepting.
pub fn launch(cfg: Config) -> Result<Server, StartError> {
    let auth = verifier(&cfg)?;
    if let Some(a) = &auth {
        tracing::info!(
            keys = %a.describe(),
            delay_ms = cfg.auth.delay_ms,
            "auth on: /events and /publish need a token"
        );
    }
    let n = cfg.workers();
    let (listeners, addr) = crate::http::accept::bind(cfg.listen_addr(), n)?;
    // Duplicates of the listeners, for the drain to stop them listening.
    let stoppers = listeners
        .iter()
        .map(|l| l.try_clone().map(socket2::Socket::from))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| StartError::Fatal(format!("cannot duplicate a listener: {e}")))?;
    let mut txs = Vec::with_capacity(n);
    let mut rxs = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = ring(cfg.server.ingest_ring_slots, cfg.server.ingest_ring_bytes);
        txs.push(tx);
        rxs.push(rx);
    }
    let driver = Driver::choose(cfg.server.io_driver)?;
    let env = |k: &str| std::env::var(k).ok();
    let supervision = supervisor::Supervision::from_env(
        env("NOTIFY_SOCKET").as_deref(),
        env("WATCHDOG_USEC").as_deref(),
        env("WATCHDOG_PID").as_deref(),
        std::process::id(),
    );
    let pin = cfg.server.pin_cores;
    let issued = Arc::new(AtomicU64::new(0));
    let global = Arc::new(GlobalMetrics::default());
    let (ingest, epoch_first, seed) = if cfg.cluster.enabled() {
        let link = crate::cluster::start(&cfg, txs, global.clone(), issued.clone())?;
        (Ingest::Cluster(link), 0, None)
    } else {
        let (order, epoch_first, seed) = order(&cfg, txs, &global, &issued)?;
        (Ingest::Worker(Arc::new(order)), epoch_first, seed)
    };
    let shared = Arc::new(Shared::new(cfg, ingest, issued, epoch_first, global, auth));

    let cores = if pin {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    if pin && cores.is_empty() {
        tracing::warn!("cannot read the CPU set; workers are not pinned");
    }
    let (ready_tx, ready_rx) = crossbeam_channel::bounded::<Result<(), String>>(n);
    let (done_tx, done_rx) = crossbeam_channel::bounded(n);
    let mut workers = Vec::with_capacity(n);
    for (idx, (listener, rx)) in listeners.into_iter().zip(rxs).enumerate() {
        let shared = shared.clone();
        // Each worker keeps its own index over the same restored frames.
        let seed = seed.clone();
        let core = cores.get(idx % cores.len().max(1)).copied();
        let ready = ready_tx.clone();
        let done = done_tx.clone();
        let h = std::thread::Builder::new()
            .name(format!("ringcast-w{idx}"))
            .spawn(move || {
                if let Some(core) = core {
                    if !core_affinity::set_for_current(core) {
                        tracing::warn!(
                            worker = idx,
                            core = core.id,
                            "cannot pin worker to its core"
                        );
                    }
                }
                let alive = supervision.map(|s| {
                    let ping = (s.watchdog && idx == 0).then_some(s.every);
                    (s.tick(), ping)
                });
                let r = driver.block_on(
                    idx,
                    worker_main(
                        idx,
                        shared,
                        Inputs { seed, listener, rx },
                        ready.clone(),
                        alive,
                        matches!(driver, Driver::Legacy),
                    ),
                );
                if let Err(e) = r {
                    let _ = ready.send(Err(e));
                }
                let _ = done.send(idx);
            })
            .map_err(|e| StartError::Fatal(format!("cannot start worker thread: {e}")))?;
        workers.push(h);
    }
    for _ in 0..n {
        match ready_rx.recv() {
            Ok(Ok(())) => {}
            Ok(Err(e)) => return Err(StartError::Fatal(e)),
            Err(_) => return Err(StartError::Fatal("a worker exited during start-up".into())),
        }
    }
    if supervision.is_some() {
        supervisor::start(shared.clone()).map_err(|e| {
            StartError::Fatal(format!("cannot start the systemd supervision thread: {e}"))
        })?;
    }
    if shared.cfg.demo.enabled {
        crate::demo::start(shared.clone())
            .map_err(|e| StartError::Fatal(format!("cannot start the demo feed: {e}")))?;
        tracing::info!("demo feed on quotes.>; open http://{addr}/");
    }
    Ok(Server {
        shared,
        addr,
        stoppers,
        workers,
        done: done_rx,
        driver: driver.name(),
    })
}

/// The single-node order, from `history.dir`'s journal when set: the
/// order, the first id of this server's history (older ids are another
/// epoch), and the history read back.
fn order(
    cfg: &Config,
    rings: Vec<RingTx>,
    global: &Arc<GlobalMetrics>,
    issued: &Arc<AtomicU64>,
) -> Result<(Order, u64, Option<History>), StartError> {
    let Some(dir) = &cfg.history.dir else {
        let first = crate::sequencer::first_id(0);
        let order = Order::new(rings, None, first, global.clone(), issued.clone());
        return Ok((order, first, None));
    };
    let mut history = crate::worker::fresh_history(cfg);
    let delay_ms = if cfg.auth.enabled() {
        cfg.auth.delay_ms
    } else {
        0
    };
    let settings = journal::Settings {
        dir,
        fsync_ms: cfg.history.fsync_ms,
        retention: journal::Retention {
            max_bytes: cfg.history.max_bytes as u64,
            max_age_ns: if cfg.history.max_age_ms == 0 {
                0
            } else {
                cfg.history
                    .max_age_ms
                    .saturating_add(delay_ms)
                    .saturating_mul(1_000_000)
            },
        },
        ring_slots: cfg.server.ingest_ring_slots,
        ring_bytes: cfg.server.ingest_ring_bytes,
    };
    let (journal, restored) = journal::open(settings, |batch| {
        history.append(batch, crate::event::now_ns());
    })?;
    history.restore_marks(restored.floor, &restored.gaps);
    issued.store(restored.last_id, std::sync::atomic::Ordering::Release);
    let order = Order::new(
        rings,
        Some(journal),
        restored.next_id,
        global.clone(),
        issued.clone(),
    );
    Ok((order, restored.lineage, Some(history)))
}

/// What one worker starts from: its restored history, its listener and
/// its ring.
struct Inputs {
    seed: Option<History>,
    listener: std::net::TcpListener,
    rx: RingRx,
}

async fn worker_main(
    idx: usize,
    shared: Arc<Shared>,
    Inputs { seed, listener, rx }: Inputs,
    ready: Sender<Result<(), String>>,
    alive: Option<(std::time::Duration, Option<std::time::Duration>)>,
    legacy: bool,
) -> Result<(), String> {
    let listener = monoio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("worker {idx}: cannot register listener: {e}"))?;
    let w = Rc::new(Worker::new(idx, shared, rx.probe(), seed));
    monoio::spawn(crate::worker::drain_ring(w.clone(), rx));
    monoio::spawn(w.clone().timer_loop());
    monoio::spawn(w.clone().pace_storms());
    monoio::spawn(w.clone().publish_stats());
    if w.shared.cfg.sse.write_delay_ms > 0 {
        monoio::spawn(w.clone().run_flush_tick());
    }
    if let Some((tick, watchdog)) = alive {
        monoio::spawn(w.clone().keep_alive(tick, watchdog));
    }
    monoio::spawn(crate::http::accept::accept_loop(
        w.clone(),
        listener,
        legacy,
    ));
    let _ = ready.send(Ok(()));
    w.finished().await;
    tracing::debug!(worker = idx, "drained");
    Ok(())
}
