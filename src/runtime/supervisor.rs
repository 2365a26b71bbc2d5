//! systemd supervision beyond READY/STOPPING: `STATUS=` with a one-line
//! summary, and `WATCHDOG=1` when systemd asks for it (`WATCHDOG_USEC`).
//!
//! The watchdog is fed from a worker, not from a thread that always runs:
//! each worker runs a small task that bumps its `alive` counter
//! (`Worker::keep_alive`), and worker 0's task sends `WATCHDOG=1` only when
//! every counter moved since its last look. A worker stuck in a loop or a
//! system call stops its counter (worker 0 stuck stops the pings itself),
//! and systemd restarts the service after `WatchdogSec`. This thread sends
//! only `STATUS=`, every 5 s. Outside systemd (`NOTIFY_SOCKET` unset) nothing here
//! runs.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::ops::notify::notify_systemd;
use crate::worker::Shared;

/// How often STATUS= is refreshed, with or without a watchdog.
const STATUS_EVERY: Duration = Duration::from_secs(5);

/// What systemd asked for, read from the environment at start-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) struct Supervision {
    /// Interval between two checks (half the watchdog period, or the status
    /// period without a watchdog).
    pub(crate) every: Duration,
    /// Whether to send WATCHDOG=1.
    pub(crate) watchdog: bool,
}

impl Supervision {
    /// From `NOTIFY_SOCKET`, `WATCHDOG_USEC` and `WATCHDOG_PID`; None
    /// outside systemd.
    pub(crate) fn from_env(
        notify_socket: Option<&str>,
        usec: Option<&str>,
        pid: Option<&str>,
        my_pid: u32,
    ) -> Option<Supervision> {
        notify_socket.filter(|s| !s.is_empty())?;
        let for_me = pid.is_none_or(|p| p.trim().parse::<u32>().ok() == Some(my_pid));
        let period = usec
            .and_then(|u| u.trim().parse::<u64>().ok())
            .filter(|&u| u > 0 && for_me)
            .map(Duration::from_micros);
        Some(match period {
            // systemd's advice: ping at half the period.
            Some(p) => Supervision {
                every: (p / 2).max(Duration::from_millis(1)),
                watchdog: true,
            },
            None => Supervision {
                every: STATUS_EVERY,
                watchdog: false,
            },
        })
    }

    /// How often a worker should bump its alive counter: several times per
    /// check, so one late tick does not miss a ping.
    pub(crate) fn tick(&self) -> Duration {
        (self.every / 4).clamp(Duration::from_millis(1), Duration::from_millis(250))
    }
}

/// The STATUS= line.
pub(crate) fn status_line(
    connections: i64,
    subscribers: i64,
    events_per_s: f64,
    deliveries_per_s: f64,
) -> String {
    format!(
        "STATUS={connections} connections, {subscribers} subscribers, {events_per_s:.0} events/s in, {deliveries_per_s:.0} deliveries/s out"
    )
}

/// Runs the supervision thread until the server drains: a `STATUS=` line
/// every [`STATUS_EVERY`] (the watchdog pings come from worker 0).
pub(crate) fn start(shared: Arc<Shared>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("ringcast-sd".into())
        .spawn(move || run(&shared))?;
    Ok(())
}

fn run(shared: &Shared) {
    let (mut events, mut frames, mut at) = (0u64, 0u64, Instant::now());
    // The first line at once (after READY=1), then every STATUS_EVERY.
    while !shared.draining.load(Relaxed) {
        let e = shared.global.events_published.load(Relaxed);
        let f: u64 = shared
            .workers
            .iter()
            .map(|w| w.frames_delivered.load(Relaxed))
            .sum();
        let conns: i64 = shared
            .workers
            .iter()
            .map(|w| w.connections_active.load(Relaxed))
            .sum();
        let subs: i64 = shared
            .workers
            .iter()
            .map(|w| w.subscribers_active.load(Relaxed))
            .sum();
        let secs = at.elapsed().as_secs_f64().max(1e-3);
        let rate = |now: u64, before: u64| now.saturating_sub(before) as f64 / secs;
        notify_systemd(&status_line(conns, subs, rate(e, events), rate(f, frames)));
        (events, frames, at) = (e, f, Instant::now());
        std::thread::sleep(STATUS_EVERY);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supervision_is_read_from_systemds_environment() {
        let s = |n, u, p| Supervision::from_env(n, u, p, 42);
        assert_eq!(
            s(None, Some("1000000"), None),
            None,
            "no NOTIFY_SOCKET: not under systemd"
        );
        assert_eq!(s(Some(""), None, None), None);
        let plain = s(Some("/run/notify"), None, None).unwrap();
        assert!(!plain.watchdog);
        assert_eq!(plain.every, STATUS_EVERY);
        let wd = s(Some("/run/notify"), Some("2000000"), None).unwrap();
        assert!(wd.watchdog);
        assert_eq!(wd.every, Duration::from_secs(1), "half of WatchdogSec");
        assert!(
            s(Some("@abs"), Some("2000000"), Some("42"))
                .unwrap()
                .watchdog
        );
        assert!(
            !s(Some("@abs"), Some("2000000"), Some("7"))
                .unwrap()
                .watchdog,
            "another process's watchdog"
        );
        assert!(!s(Some("@abs"), Some("0"), None).unwrap().watchdog);
        assert!(!s(Some("@abs"), Some("soon"), None).unwrap().watchdog);
        assert!(wd.tick() <= wd.every / 4);
    }

    #[test]
    fn the_watchdog_is_fed_only_when_every_worker_moved() {
        use crate::worker::all_progressed;
        let mut last = vec![1, 1];
        assert!(all_progressed(&mut last, &[2, 5]));
        assert!(!all_progressed(&mut last, &[3, 5]), "worker 1 stood still");
        assert!(all_progressed(&mut last, &[4, 6]));
        assert_eq!(last, vec![4, 6]);
    }

    #[test]
    fn the_status_line_is_one_line() {
        let l = status_line(10, 7, 1234.4, 9.6);
        assert_eq!(
            l,
            "STATUS=10 connections, 7 subscribers, 1234 events/s in, 10 deliveries/s out"
        );
        assert!(!l.contains('\n'));
    }
}
