//! Cluster mode (SPEC §8): several nodes share one event stream held by
//! NATS JetStream, which is the only authority for order and retention —
//! nothing here replicates, gossips or votes.
//!
//! One thread per node, `ringcast-nats`, runs the official `async-nats`
//! client on a small current-thread tokio runtime; the monoio workers do
//! not change. In cluster mode that thread takes the sequencer's place: it
//! consumes the stream in order ([`bridge`]), encodes each frame once with
//! the stream sequence as its id, and feeds the same per-worker rings.
//! Workers hand it publishes ([`publisher`]) and catch-up reads
//! ([`fetch`]) over a bounded queue (`sequencer::link`) and get the answers
//! over their own rings. Which stored messages are events — the rule that
//! keeps batches whole and late messages out on every node — is
//! [`gate`], over the headers of [`marker`]; topics map to subjects in
//! [`subject`].

use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};

use crate::config::Config;
use crate::error::StartError;
use crate::ops::metrics::GlobalMetrics;
use crate::sequencer::link::{Link, Request};
use crate::sequencer::ring::{Msg, RingTx};

mod bridge;
mod fetch;
mod gate;
mod marker;
mod publisher;
mod subject;

use bridge::Bridge;
use subject::Subjects;

/// Requests the bridge works on at once, at most.
const IN_FLIGHT: usize = 4096;
/// How long shutdown waits for this node's acknowledged events to come
/// back from the stream before the drain marker.
const DRAIN_WAIT: Duration = Duration::from_secs(2);

/// Starts the bridge thread feeding `rings`; `consumed` becomes the
/// workers' `issued` watermark. Returns the workers' handle at once: the
/// connection is made in the background (`/readyz` says when).
pub(crate) fn start(
    cfg: &Config,
    rings: Vec<RingTx>,
    metrics: Arc<GlobalMetrics>,
    consumed: Arc<AtomicU64>,
) -> Result<Arc<Link>, StartError> {
    let (link, rx) = Link::new(cfg.server.publish_queue_slots);
    let link = Arc::new(link);
    let ccfg = cfg.cluster.clone();
    let subjects = Subjects::new(&ccfg.subject_prefix, cfg.auth.enabled());
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| StartError::Fatal(format!("cannot start the NATS runtime: {e}")))?;
    let l = link.clone();
    std::thread::Builder::new()
        .name("ringcast-nats".into())
        .spawn(move || {
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run(ccfg, subjects, l, rings, metrics, consumed, rx));
        })
        .map_err(|e| StartError::Fatal(format!("cannot start the NATS thread: {e}")))?;
    Ok(link)
}

async fn options(
    cfg: &crate::config::Cluster,
    link: Arc<Link>,
    lost: Arc<tokio::sync::watch::Sender<u64>>,
) -> std::io::Result<async_nats::ConnectOptions> {
    let mut o = async_nats::ConnectOptions::new()
        .name("ringcast")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .ping_interval(Duration::from_secs(5))
        .reconnect_delay_callback(|n| Duration::from_millis((100 * n as u64).min(2000)))
        .event_callback(move |ev| {
            let link = link.clone();
            let lost = lost.clone();
            async move {
                match ev {
                    async_nats::Event::Disconnected => {
                        link.connected.store(false, Relaxed);
                        // The consumer stops now and starts again from its
                        // last sequence once the bridge sees NATS back.
                        lost.send_modify(|g| *g += 1);
                    }
                    async_nats::Event::Connected if link.ever_connected.swap(true, Relaxed) => {
                        link.reconnects.fetch_add(1, Relaxed);
                        lost.send_modify(|g| *g += 1);
                    }
                    _ => {}
                }
            }
        });
    if let Some(f) = &cfg.credentials_file {
        o = o.credentials_file(f).await?;
    }
    if let Some(ca) = &cfg.tls_ca_file {
        o = o.add_root_certificates(ca.clone()).require_tls(true);
    }
    if let (Some(c), Some(k)) = (&cfg.tls_cert_file, &cfg.tls_key_file) {
        o = o
            .add_client_certificate(c.clone(), k.clone())
            .require_tls(true);
    }
    Ok(o)
}

async fn run(
    cfg: crate::config::Cluster,
    subjects: Subjects,
    link: Arc<Link>,
    rings: Vec<RingTx>,
    metrics: Arc<GlobalMetrics>,
    consumed: Arc<AtomicU64>,
    mut rx: mpsc::Receiver<Request>,
) {
    let urls: Vec<String> = cfg
        .nats_url
        .as_ref()
        .map(|u| u.list().into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let lost = Arc::new(tokio::sync::watch::Sender::new(0));
    let opts = match options(&cfg, link.clone(), lost.clone()).await {
        Ok(o) => o,
        Err(e) => {
            tracing::error!(error = %e, "cluster: cannot read the NATS credentials; no cluster");
            return;
        }
    };
    let client = match opts.connect(urls.clone()).await {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, urls = ?urls, "cluster: cannot set up the NATS client");
            return;
        }
    };
    tracing::info!(urls = ?urls, stream = %cfg.stream, "cluster mode: connecting to NATS");
    let wiring = bridge::Wiring {
        link,
        rings,
        metrics,
        consumed,
        lost,
    };
    let b = Rc::new(Bridge::new(cfg, subjects, client, wiring));
    tokio::task::spawn_local({
        let b = b.clone();
        async move { b.watch().await }
    });
    tokio::task::spawn_local({
        let b = b.clone();
        async move { b.consume().await }
    });
    let room = Arc::new(Semaphore::new(IN_FLIGHT));
    while let Some(req) = rx.recv().await {
        let permit = match room.clone().acquire_owned().await {
            Ok(p) => p,
            Err(_) => return,
        };
        let b = b.clone();
        match req {
            Request::Publish(p) => {
                tokio::task::spawn_local(async move {
                    b.publish(p).await;
                    drop(permit);
                });
            }
            Request::Fetch(f) => {
                tokio::task::spawn_local(async move {
                    b.fetch(f).await;
                    drop(permit);
                });
            }
            Request::Drain => {
                let until = tokio::time::Instant::now() + DRAIN_WAIT;
                while b.consumed.load(Relaxed) < b.acked.get()
                    && tokio::time::Instant::now() < until
                {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                b.push_all(|| Msg::Drain).await;
            }
        }
    }
}
