//! Worker threads: one monoio runtime per worker (io_uring, or the legacy
//! driver with a warning), each pinned to its core, plus the sequencer
//! thread; and the process-wide state they share.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::config::{Config, IoDriver};
use crate::error::StartError;
use crate::history::History;
use crate::ingest::{ring, RingRx};
use crate::metrics::{GlobalMetrics, WorkerMetrics};
use crate::sequencer::{SeqMsg, Sequencer};
use crate::worker::Worker;

/// io_uring submission queue entries per worker.
const URING_ENTRIES: u32 = 4096;

/// State every worker can read; written through atomics only.
#[derive(Debug)]
pub struct Shared {
    /// The validated configuration.
    pub cfg: Config,
    /// Process-wide counters.
    pub global: Arc<GlobalMetrics>,
    /// Each worker's counters, by index.
    pub workers: Vec<Arc<WorkerMetrics>>,
    /// Publish requests to the sequencer (bounded: full means 503).
    pub seq_tx: Sender<SeqMsg>,
    /// Shutdown has begun.
    pub draining: AtomicBool,
    /// Open connections over all workers (for `limits.max_connections`).
    pub open: AtomicUsize,
    /// Source of connection ids.
    pub next_conn_id: AtomicU64,
    /// Retained events and last values, appended by the sequencer, read by
    /// workers when a subscriber resumes or asks for a snapshot.
    pub history: Arc<Mutex<History>>,
    /// Connections per client address, kept only when a per-IP limit is set.
    per_ip: Mutex<HashMap<IpAddr, usize>>,
}

impl Shared {
    /// True when more connections are open than `limits.max_connections`.
    pub fn over_capacity(&self) -> bool {
        self.open.load(Relaxed) > self.cfg.limits.max_connections
    }

    /// Counts a connection from `ip`; `None` when the per-IP limit is off or
    /// this connection is over it (and so not counted).
    pub fn track_ip(&self, ip: IpAddr) -> Option<IpAddr> {
        let limit = self.cfg.limits.max_connections_per_ip;
        if limit == 0 {
            return None;
        }
        let mut map = self.per_ip.lock().expect("per-ip lock");
        let n = map.entry(ip).or_insert(0);
        if *n >= limit {
            return None;
        }
        *n += 1;
        Some(ip)
    }

    /// Releases a connection counted by `track_ip`.
    pub fn release_ip(&self, ip: IpAddr) {
        let mut map = self.per_ip.lock().expect("per-ip lock");
        if let Some(n) = map.get_mut(&ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&ip);
            }
        }
    }

    /// The Prometheus text of every series.
    pub fn render_metrics(&self) -> String {
        let ws: Vec<&WorkerMetrics> = self.workers.iter().map(|a| &**a).collect();
        crate::metrics::render(&self.global, &ws)
    }
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    shared: Arc<Shared>,
    addr: SocketAddr,
    workers: Vec<JoinHandle<()>>,
    done: Receiver<usize>,
    driver: &'static str,
}

impl Server {
    /// The address every worker listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// "io_uring" or "legacy".
    pub fn driver(&self) -> &'static str {
        self.driver
    }

    /// Process-wide state (metrics, config).
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// Starts draining: `/readyz` answers 503 at once; the drain marker goes
    /// through the sequencer, so every event acknowledged before it reaches
    /// the workers first.
    pub fn begin_shutdown(&self) {
        if !self.shared.draining.swap(true, Relaxed) {
            let _ = self.shared.seq_tx.send(SeqMsg::Drain);
        }
    }

    /// Waits until every worker has drained, or `timeout` passes. True when
    /// all finished.
    pub fn wait(self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut left = self.workers.len();
        while left > 0 {
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            match self.done.recv_timeout(deadline - now) {
                Ok(_) => left -= 1,
                Err(_) => return false,
            }
        }
        for h in self.workers {
            let _ = h.join();
        }
        true
    }
}

/// Binds, starts the sequencer and the workers, and returns once every
/// worker is accepting.
pub fn launch(cfg: Config) -> Result<Server, StartError> {
    let n = cfg.workers();
    let (listeners, addr) = crate::accept::bind(cfg.listen_addr(), n)?;
    let global = Arc::new(GlobalMetrics::default());
    let (seq_tx, seq_rx) = crossbeam_channel::bounded(cfg.server.publish_queue_slots);
    let mut txs = Vec::with_capacity(n);
    let mut rxs = Vec::with_capacity(n);
    for _ in 0..n {
        let (tx, rx) = ring(cfg.server.ingest_ring_slots);
        txs.push(tx);
        rxs.push(rx);
    }
    let driver = choose_driver(cfg.server.io_driver)?;
    let pin = cfg.server.pin_cores;
    let history = Arc::new(Mutex::new(History::new(&cfg.history)));
    let shared = Arc::new(Shared {
        history: history.clone(),
        workers: (0..n).map(|_| Arc::new(WorkerMetrics::default())).collect(),
        cfg,
        global: global.clone(),
        seq_tx,
        draining: AtomicBool::new(false),
        open: AtomicUsize::new(0),
        next_conn_id: AtomicU64::new(1),
        per_ip: Mutex::new(HashMap::new()),
    });
    let seq = Sequencer::new(seq_rx, txs, global, history);
    std::thread::Builder::new()
        .name("ringcast-seq".into())
        .spawn(move || seq.run())
        .map_err(|e| StartError::Fatal(format!("cannot start the sequencer thread: {e}")))?;

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
                let r = run_worker(driver, idx, shared, listener, rx, ready.clone());
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
    Ok(Server {
        shared,
        addr,
        workers,
        done: done_rx,
        driver: driver.name(),
    })
}

#[derive(Debug, Clone, Copy)]
enum Driver {
    Uring,
    Legacy,
}

impl Driver {
    fn name(self) -> &'static str {
        match self {
            Driver::Uring => "io_uring",
            Driver::Legacy => "legacy",
        }
    }
}

fn choose_driver(want: IoDriver) -> Result<Driver, StartError> {
    let have = monoio::utils::detect_uring();
    match want {
        IoDriver::Legacy => Ok(Driver::Legacy),
        IoDriver::IoUring if have => Ok(Driver::Uring),
        IoDriver::IoUring => Err(StartError::Fatal(
            "server.io_driver = \"io_uring\" but io_uring is not available on this kernel".into(),
        )),
        IoDriver::Auto if have => Ok(Driver::Uring),
        IoDriver::Auto => {
            tracing::warn!("io_uring is not available (kernel, seccomp or memlock limit); using the legacy epoll driver");
            Ok(Driver::Legacy)
        }
    }
}

fn run_worker(
    driver: Driver,
    idx: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    rx: RingRx,
    ready: Sender<Result<(), String>>,
) -> Result<(), String> {
    let fut = worker_main(idx, shared, listener, rx, ready);
    match driver {
        Driver::Uring => {
            let mut rt = monoio::RuntimeBuilder::<monoio::IoUringDriver>::new()
                .with_entries(URING_ENTRIES)
                .enable_timer()
                .build()
                .map_err(|e| format!("worker {idx}: cannot start io_uring runtime: {e}"))?;
            rt.block_on(fut)
        }
        Driver::Legacy => {
            let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
                .enable_timer()
                .build()
                .map_err(|e| format!("worker {idx}: cannot start legacy runtime: {e}"))?;
            rt.block_on(fut)
        }
    }
}

async fn worker_main(
    idx: usize,
    shared: Arc<Shared>,
    listener: std::net::TcpListener,
    rx: RingRx,
    ready: Sender<Result<(), String>>,
) -> Result<(), String> {
    let listener = monoio::net::TcpListener::from_std(listener)
        .map_err(|e| format!("worker {idx}: cannot register listener: {e}"))?;
    let w = Rc::new(Worker::new(idx, shared));
    monoio::spawn(crate::fanout::drain_ring(w.clone(), rx));
    monoio::spawn(w.clone().timer_loop());
    monoio::spawn(crate::accept::accept_loop(w.clone(), listener));
    let _ = ready.send(Ok(()));
    w.finished().await;
    tracing::debug!(worker = idx, "drained");
    Ok(())
}
