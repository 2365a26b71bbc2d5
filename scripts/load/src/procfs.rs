//! What /proc says about the server processes and this one: CPU seconds
//! (utime + stime from `/proc/PID/stat`, in clock ticks of 10 ms, so a
//! figure divided over few connections or deliveries is coarse), resident
//! memory (`VmRSS` from `/proc/PID/status`: anonymous, file-backed and
//! shared pages mapped into the process, not the kernel's socket buffers),
//! and one core's busy and softirq ticks from `/proc/stat`.

/// One core's ticks from /proc/stat.
#[derive(Clone, Copy, Debug)]
pub(crate) struct CoreTicks {
    /// Not idle or iowait: any process, interrupts and softirqs.
    busy: u64,
    softirq: u64,
    total: u64,
}

impl CoreTicks {
    pub(crate) fn read(core: usize) -> Option<CoreTicks> {
        let stat = std::fs::read_to_string("/proc/stat").ok()?;
        let name = format!("cpu{core}");
        let line = stat
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .filter_map(|v| v.parse().ok())
            .collect();
        // user nice system idle iowait irq softirq steal ...
        let total: u64 = f.iter().take(8).sum();
        let idle = f.get(3)? + f.get(4)?;
        Some(CoreTicks {
            busy: total - idle,
            softirq: *f.get(6)?,
            total,
        })
    }

    /// Share of the time from `a` to `b` the core was busy, and in softirq.
    pub(crate) fn shares(a: CoreTicks, b: CoreTicks) -> Option<(f64, f64)> {
        let total = b.total.checked_sub(a.total).filter(|t| *t > 0)? as f64;
        let share = |x: u64, y: u64| y.saturating_sub(x) as f64 / total;
        Some((share(a.busy, b.busy), share(a.softirq, b.softirq)))
    }
}

/// CPU seconds (user + system) of process `pid`.
pub(crate) fn proc_cpu_s(pid: u32) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// This process's CPU seconds.
pub(crate) fn own_cpu_s() -> Option<f64> {
    proc_cpu_s(std::process::id())
}

/// CPU seconds of all the server processes; `None` without any, or when
/// one of them cannot be read.
pub(crate) fn server_cpu_s(pids: &[u32]) -> Option<f64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| proc_cpu_s(p)).sum()
}

/// Resident KiB of all the server processes, as `server_cpu_s`.
pub(crate) fn server_rss_kib(pids: &[u32]) -> Option<u64> {
    if pids.is_empty() {
        return None;
    }
    pids.iter().map(|&p| proc_rss_kib(p)).sum()
}

fn proc_rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .trim()
        .trim_end_matches("kB")
        .trim()
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::{own_cpu_s, server_cpu_s, server_rss_kib, CoreTicks};

    #[test]
    fn reads_this_process() {
        let me = std::process::id();
        assert!(own_cpu_s().is_some());
        assert!(server_rss_kib(&[me]).is_some_and(|kib| kib > 0));
        assert_eq!(server_cpu_s(&[]), None, "no server named");
        let a = CoreTicks::read(0).expect("cpu0 in /proc/stat");
        let b = CoreTicks {
            total: a.total,
            ..a
        };
        assert!(CoreTicks::shares(a, b).is_none(), "no time passed");
    }
}
