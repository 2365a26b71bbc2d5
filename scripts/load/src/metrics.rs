//! The server's own counters (ringcast's Prometheus `/metrics`), scraped
//! before and after the run with `--server-metrics`: the disconnects,
//! resyncs and back-pressure the server saw in between, which the
//! subscribers cannot see from outside.

use std::net::SocketAddr;
use std::time::Duration;

use monoio::io::AsyncWriteRentExt;
use monoio::net::TcpStream;

use crate::net::read_appending;
use crate::sse::{content_length, head_end};

/// Series worth a delta: (report key, series).
pub(crate) const SERIES: [(&str, &str); 5] = [
    ("slow_disconnects", "ringcast_slow_disconnects_total"),
    ("stall_disconnects", "ringcast_stall_disconnects_total"),
    ("resyncs", "ringcast_resyncs_total"),
    ("fanout_paused", "ringcast_fanout_paused_total"),
    ("ingest_ring_full", "ringcast_ingest_ring_full_total"),
];

/// Scrapes the server's /metrics (bounded to 5 s); `None` when it cannot.
pub(crate) async fn scrape(addr: SocketAddr) -> Option<String> {
    let fetch = async {
        let mut stream = TcpStream::connect_addr(addr).await.ok()?;
        let req = b"GET /metrics HTTP/1.1\r\nHost: load\r\nConnection: close\r\n\r\n".to_vec();
        stream.write_all(req).await.0.ok()?;
        let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
        loop {
            if let Some(he) = head_end(&buf) {
                let head = String::from_utf8_lossy(&buf[..he]).to_ascii_lowercase();
                if let Some(len) = content_length(&head).filter(|len| buf.len() >= he + len) {
                    return Some(String::from_utf8_lossy(&buf[he..he + len]).into_owned());
                }
            }
            let (res, b) = read_appending(&mut stream, buf).await;
            buf = b;
            if !matches!(res, Ok(n) if n > 0) {
                let he = head_end(&buf)?;
                return Some(String::from_utf8_lossy(&buf[he..]).into_owned());
            }
        }
    };
    monoio::select! {
        r = fetch => r,
        _ = monoio::time::sleep(Duration::from_secs(5)) => None,
    }
}

/// An unlabelled series' value in Prometheus text.
pub(crate) fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Each of `SERIES` that both scrapes have: how much it grew.
pub(crate) fn deltas(before: &str, after: &str) -> Vec<(&'static str, f64)> {
    SERIES
        .iter()
        .filter_map(|&(key, series)| {
            let (a, b) = (metric(before, series)?, metric(after, series)?);
            Some((key, b - a))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::deltas;

    #[test]
    fn deltas_of_the_series_both_have() {
        let before = "ringcast_resyncs_total 3\nringcast_slow_disconnects_total 1\n";
        let after = "# HELP x\nringcast_resyncs_total 10\nringcast_resyncs_total_x 99\n\
                     ringcast_fanout_paused_total 4\nringcast_slow_disconnects_total 1\n";
        assert_eq!(
            deltas(before, after),
            [("slow_disconnects", 0.0), ("resyncs", 7.0)]
        );
    }
}
