//! Reading HTTP/1.1 answers and SSE streams, pure: where a response head
//! ends and its `Content-Length`, de-chunking a `Transfer-Encoding:
//! chunked` body (nchan's streams; ringcast's are close-delimited), and
//! splitting a stream into frames and lines. What the frames say is the
//! `tracker`'s.

/// End of the response head (after its blank line) in `buf`, if complete.
pub(crate) fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|p| p + 4)
}

/// The `Content-Length` of a response head, already lowercased.
pub(crate) fn content_length(head: &str) -> Option<usize> {
    head.lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
}

/// Incremental de-chunking of a `Transfer-Encoding: chunked` body.
#[derive(Default)]
pub(crate) struct Dechunk {
    /// Bytes left in the current chunk (0 = expecting a size line).
    left: usize,
    pending: Vec<u8>,
}

impl Dechunk {
    /// Appends the body bytes in `input` to `out`; keeps an incomplete
    /// size line for the next call.
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut Vec<u8>) {
        self.pending.extend_from_slice(input);
        let mut pos = 0;
        loop {
            if self.left > 0 {
                let n = self.left.min(self.pending.len() - pos);
                out.extend_from_slice(&self.pending[pos..pos + n]);
                pos += n;
                self.left -= n;
                if self.left > 0 {
                    break;
                }
                // The CRLF after the chunk: consumed with the next size line.
                continue;
            }
            let rest = &self.pending[pos..];
            let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") else {
                break;
            };
            let line = std::str::from_utf8(&rest[..eol]).unwrap_or("").trim();
            pos += eol + 2;
            if line.is_empty() {
                continue;
            }
            let size = usize::from_str_radix(line.split(';').next().unwrap_or(""), 16).unwrap_or(0);
            self.left = size;
        }
        self.pending.drain(..pos);
    }
}

/// Position of the first `b` in `hay`, eight bytes at a time (the 2 KB
/// events of a burst are mostly scanning for line ends).
pub(crate) fn find_byte(hay: &[u8], b: u8) -> Option<usize> {
    const LO: u64 = 0x0101_0101_0101_0101;
    const HI: u64 = 0x8080_8080_8080_8080;
    let pat = LO * u64::from(b);
    let mut chunks = hay.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        let x = u64::from_le_bytes(c.try_into().expect("8 bytes")) ^ pat;
        if x.wrapping_sub(LO) & !x & HI != 0 {
            return c.iter().position(|&y| y == b).map(|p| at + p);
        }
        at += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&y| y == b)
        .map(|p| at + p)
}

/// The lines of a frame (split on `\n`).
pub(crate) fn lines(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = Some(frame);
    std::iter::from_fn(move || {
        let r = rest?;
        match find_byte(r, b'\n') {
            Some(p) => {
                rest = Some(&r[p + 1..]);
                Some(&r[..p])
            }
            None => {
                rest = None;
                Some(r)
            }
        }
    })
}

/// End of the next frame (its blank line) in `buf`, if complete.
pub(crate) fn frame_end(buf: &[u8]) -> Option<usize> {
    let mut from = 0;
    while let Some(p) = find_byte(&buf[from..], b'\n') {
        let at = from + p;
        match buf.get(at + 1) {
            Some(b'\n') => return Some(at),
            Some(_) => from = at + 1,
            None => return None,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::{content_length, find_byte, frame_end, head_end, lines, Dechunk};

    #[test]
    fn finds_bytes_and_frames() {
        let hay: Vec<u8> = (0..40u8).map(|i| b'a' + i % 20).collect();
        for (i, &b) in hay.iter().enumerate() {
            let want = hay.iter().position(|&y| y == b);
            assert_eq!(find_byte(&hay, b), want, "byte {i}");
        }
        assert_eq!(find_byte(&hay, b'\n'), None);
        assert_eq!(find_byte(b"", b'\n'), None);
        assert_eq!(frame_end(b"id: 1\ndata: x\n\nid: 2"), Some(13));
        assert_eq!(frame_end(b"id: 1\ndata: x\n"), None);
        let frame = b"id: 1\n\ndata: L 0 0 1 2 xxxxxxxxxxxxxxxxxxxx";
        let got: Vec<&[u8]> = lines(frame).collect();
        assert_eq!(got, frame.split(|&b| b == b'\n').collect::<Vec<_>>());
    }

    #[test]
    fn reads_a_head() {
        let answer = b"HTTP/1.1 200 OK\r\nContent-Length: 8\r\n\r\n{\"id\":1}";
        let end = head_end(answer).expect("complete head");
        assert_eq!(&answer[end..], b"{\"id\":1}");
        let head = String::from_utf8_lossy(&answer[..end]).to_ascii_lowercase();
        assert_eq!(content_length(&head), Some(8));
        assert_eq!(content_length("http/1.1 200 ok\r\n\r\n"), None);
        assert_eq!(head_end(b"HTTP/1.1 200 OK\r\n"), None);
    }

    /// The same chunked body, cut at every byte boundary, comes out whole.
    #[test]
    fn dechunks_across_reads() {
        let wire = b"6\r\nid: 1\n\r\n9;ext=1\r\ndata: x\n\n\r\n0\r\n\r\n";
        for cut in 0..wire.len() {
            let (mut d, mut out) = (Dechunk::default(), Vec::new());
            d.feed(&wire[..cut], &mut out);
            d.feed(&wire[cut..], &mut out);
            assert_eq!(out, b"id: 1\ndata: x\n\n", "cut at {cut}");
        }
    }
}
