//! SSE frame encoding (SPEC §3): an event goes in once, one immutable `Bytes`
//! comes out, and that same handle is what history keeps and every subscriber
//! sends. Static frames (heartbeat, response heads) live here too.
//!
//! Encoding is a single pass that sizes the buffer exactly first, so one
//! allocation per event whatever the number of subscribers.
//!
//! Measured (`cargo bench --bench frame`, two interleaved runs on
//! 2026-11-29): a 100 B quote encodes in 176-261 ns
//! (`frame_encode/quote_100B`), a 300 B multi-line event in 1.2-1.4 µs, a
//! 16 KiB one in 20-24 µs — once per event, whatever the fan-out.

use bytes::{BufMut, Bytes, BytesMut};

/// The heartbeat comment written on a connection silent for `sse.heartbeat_ms`.
pub static HEARTBEAT: Bytes = Bytes::from_static(b":\n\n");

/// Upper bound on `id: <u64>\n`.
const ID_LINE_MAX: usize = 4 + 20 + 1;

/// Splits `data` the way the WHATWG EventSource parser does: on `\r\n`, `\r`
/// or `\n`. A trailing line break yields a final empty line, so the client
/// reassembles the data exactly. Line breaks are found with `memchr2`
/// (SIMD): a one-line event, the common case, is one scan.
fn data_lines(data: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(data);
    std::iter::from_fn(move || {
        let d = rest?;
        match memchr::memchr2(b'\n', b'\r', d) {
            None => {
                rest = None;
                Some(d)
            }
            Some(i) => {
                let skip = if d[i] == b'\r' && d.get(i + 1) == Some(&b'\n') {
                    2
                } else {
                    1
                };
                rest = Some(&d[i + skip..]);
                Some(&d[..i])
            }
        }
    })
}

/// The buffer size `encode` reserves: never less than the frame (so the one
/// allocation is never grown), at most the unused id digits plus 8 bytes per
/// line-break byte of `data` more.
fn capacity(event: Option<&str>, data: &[u8]) -> usize {
    let line_breaks = memchr::memchr2_iter(b'\n', b'\r', data).count();
    ID_LINE_MAX + event.map_or(0, |e| 8 + e.len()) + data.len() + (line_breaks + 1) * 7 + 1
}

/// Encodes one event frame: `id`, optional `event`, one `data:` line per line
/// of `data` (UTF-8, checked by the caller), and the blank line that
/// dispatches it.
pub fn encode(id: u64, event: Option<&str>, data: &[u8]) -> Bytes {
    let mut buf = BytesMut::with_capacity(capacity(event, data));
    buf.put_slice(b"id: ");
    let mut itoa = itoa_buf(id);
    buf.put_slice(itoa.format());
    buf.put_u8(b'\n');
    if let Some(e) = event {
        buf.put_slice(b"event: ");
        buf.put_slice(e.as_bytes());
        buf.put_u8(b'\n');
    }
    for line in data_lines(data) {
        buf.put_slice(b"data: ");
        buf.put_slice(line);
        buf.put_u8(b'\n');
    }
    buf.put_u8(b'\n');
    buf.freeze()
}

/// `retry: <ms>\n\n`, optionally followed by a `: <comment>` line.
pub fn retry(ms: u64, comment: Option<&str>) -> Bytes {
    let mut s = format!("retry: {ms}\n");
    if let Some(c) = comment {
        s.push_str(": ");
        s.push_str(c);
        s.push('\n');
    }
    s.push('\n');
    Bytes::from(s)
}

/// A `retry:` hint spread over `[retry_ms, 3 * retry_ms]`, so that clients
/// sent away together do not come back together.
pub(crate) fn jittered_retry_ms(retry_ms: u64) -> u64 {
    retry_ms + fastrand::u64(0..=retry_ms.saturating_mul(2))
}

/// The `event: resync` frame. It has no id (it is not part of the stream's
/// order), so a client's Last-Event-ID stays that of its last real event.
pub(crate) fn resync(reason: &'static str) -> Bytes {
    Bytes::from(format!(
        "event: {}\ndata: {{\"reason\":\"{}\"}}\n\n",
        crate::event::RESYNC_EVENT,
        reason
    ))
}

/// Minimal decimal formatting of a u64 without allocating.
struct ItoaBuf {
    buf: [u8; 20],
    start: usize,
}

/// Appends `n` in decimal to `out`, without `fmt`.
pub(crate) fn push_decimal(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa_buf(n).format());
}

fn itoa_buf(mut n: u64) -> ItoaBuf {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    ItoaBuf { buf, start: i }
}

impl ItoaBuf {
    fn format(&mut self) -> &[u8] {
        &self.buf[self.start..]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frame_bytes_table() {
        let cases: &[(u64, Option<&str>, &str, &str)] = &[
            (1, None, "hello", "id: 1\ndata: hello\n\n"),
            (42, Some("quote"), "x", "id: 42\nevent: quote\ndata: x\n\n"),
            (7, None, "a\nb", "id: 7\ndata: a\ndata: b\n\n"),
            (7, None, "a\r\nb", "id: 7\ndata: a\ndata: b\n\n"),
            (7, None, "a\rb", "id: 7\ndata: a\ndata: b\n\n"),
            (
                7,
                None,
                "a\r\nb\rc\nd",
                "id: 7\ndata: a\ndata: b\ndata: c\ndata: d\n\n",
            ),
            (7, None, "a\n", "id: 7\ndata: a\ndata: \n\n"),
            (7, None, "", "id: 7\ndata: \n\n"),
            (7, None, "\r\n\r\n", "id: 7\ndata: \ndata: \ndata: \n\n"),
            (u64::MAX, None, "z", "id: 18446744073709551615\ndata: z\n\n"),
            (0, None, "z", "id: 0\ndata: z\n\n"),
        ];
        for (id, ev, data, want) in cases {
            let got = encode(*id, *ev, data.as_bytes());
            assert_eq!(std::str::from_utf8(&got).unwrap(), *want, "{data:?}");
        }
    }

    #[test]
    fn capacity_covers_the_frame_with_bounded_slack() {
        let long_line = "x".repeat(16 << 10);
        let mixed = "line\r\n".repeat(100) + "a\rb\nc";
        let cases: &[(u64, Option<&str>, &str)] = &[
            (0, None, ""),
            (u64::MAX, Some("quote"), "x"),
            (123, Some("e"), &mixed),
            (7, None, "\r\n\r\n\n\r"),
            (42, None, &long_line),
        ];
        for (id, ev, data) in cases {
            let cap = capacity(*ev, data.as_bytes());
            let len = encode(*id, *ev, data.as_bytes()).len();
            let breaks = data.bytes().filter(|&b| b == b'\n' || b == b'\r').count();
            assert!(len <= cap, "id {id}: frame {len} > reserved {cap}");
            assert!(
                cap - len <= 20 + 8 * breaks,
                "id {id}: {} bytes reserved in vain",
                cap - len
            );
        }
    }

    #[test]
    fn resync_frame_bytes() {
        assert_eq!(
            &resync("epoch")[..],
            b"event: resync\ndata: {\"reason\":\"epoch\"}\n\n"
        );
    }

    #[test]
    fn jittered_retry_stays_within_three_times_the_hint() {
        for _ in 0..1000 {
            let ms = jittered_retry_ms(2000);
            assert!((2000..=6000).contains(&ms), "{ms}");
        }
        assert_eq!(jittered_retry_ms(0), 0);
    }

    #[test]
    fn retry_line() {
        assert_eq!(&retry(2000, None)[..], b"retry: 2000\n\n");
        assert_eq!(&retry(5, Some("draining"))[..], b"retry: 5\n: draining\n\n");
    }
}
