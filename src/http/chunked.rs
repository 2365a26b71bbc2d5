//! `Transfer-Encoding: chunked` request bodies, decoded as they arrive: the
//! connection hands [`ChunkedDecoder::decode`] what it has read, the decoder
//! takes what it can use and says how much, the connection drops those
//! bytes. Each call looks only at bytes no call has consumed, so a body
//! costs time linear in its size however it is split into reads. (The
//! decoder this replaced restarted at the body's first byte after every
//! read: a 1 MiB body in 1460-byte segments is ~720 reads, ~360 MiB
//! rescanned and re-copied.) The decoded body is
//! bounded by `limits.max_body_bytes`; size and trailer lines by
//! [`MAX_LINE_BYTES`].

use bytes::BytesMut;

use super::error::HttpError;

/// Longest chunk-size or trailer line, CRLF not counted. A line is held
/// until its CRLF arrives, so this bounds what a client can make the
/// connection buffer without sending body bytes.
const MAX_LINE_BYTES: usize = 1024;

/// Where the decoder is in the chunked framing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Expecting a chunk-size line.
    Size,
    /// Inside a chunk's data, with this many bytes still to come.
    Data(usize),
    /// After a chunk's data, expecting its CRLF.
    DataEnd,
    /// After the last (zero-size) chunk: trailer lines, ignored, until an
    /// empty one.
    Trailer,
    /// The body is complete; nothing more is consumed.
    Done,
}

/// Decodes one chunked body across as many reads as it takes.
#[derive(Debug)]
pub(crate) struct ChunkedDecoder {
    /// Where in the framing the next byte falls.
    state: State,
    /// The body decoded so far; never longer than `limit`.
    body: BytesMut,
    /// `limits.max_body_bytes`.
    limit: usize,
    /// How much of a still-incomplete line earlier calls searched for its
    /// CRLF, so a line trickling in is not searched again from its start.
    scanned: usize,
}

fn bad(what: &'static str) -> HttpError {
    HttpError::BadRequest("bad_request", what)
}

impl ChunkedDecoder {
    /// A decoder for a body of at most `limit` decoded bytes.
    pub(crate) fn new(limit: usize) -> ChunkedDecoder {
        ChunkedDecoder {
            state: State::Size,
            body: BytesMut::new(),
            limit,
            scanned: 0,
        }
    }

    /// Consumes what it can of `input`, which must start with the first byte
    /// the previous calls left unconsumed, and returns how many bytes it
    /// consumed. An incomplete line is left unconsumed, to be passed again
    /// with the bytes that follow it. Fails with 413 once the decoded size
    /// would pass the limit, with 400 on broken framing.
    pub(crate) fn decode(&mut self, input: &[u8]) -> Result<usize, HttpError> {
        let mut pos = 0;
        loop {
            let rest = &input[pos..];
            match self.state {
                State::Done => return Ok(pos),
                State::Size => {
                    let Some(line) = self.line(rest, "bad chunk size line")? else {
                        return Ok(pos);
                    };
                    pos += line.len() + 2;
                    let size = parse_size(line)?;
                    if size > self.limit - self.body.len() {
                        return Err(HttpError::TooLarge(
                            "body_too_large",
                            "request body is larger than limits.max_body_bytes",
                        ));
                    }
                    self.state = if size == 0 {
                        State::Trailer
                    } else {
                        self.body.reserve(size);
                        State::Data(size)
                    };
                }
                State::Data(left) => {
                    if rest.is_empty() {
                        return Ok(pos);
                    }
                    let take = left.min(rest.len());
                    self.body.extend_from_slice(&rest[..take]);
                    pos += take;
                    self.state = match left - take {
                        0 => State::DataEnd,
                        left => State::Data(left),
                    };
                }
                State::DataEnd => {
                    let have = rest.len().min(2);
                    if rest[..have] != b"\r\n"[..have] {
                        return Err(bad("chunk not followed by CRLF"));
                    }
                    if have < 2 {
                        return Ok(pos);
                    }
                    pos += 2;
                    self.state = State::Size;
                }
                State::Trailer => {
                    let Some(line) = self.line(rest, "chunk trailer line too long")? else {
                        return Ok(pos);
                    };
                    pos += line.len() + 2;
                    if line.is_empty() {
                        self.state = State::Done;
                    }
                }
            }
        }
    }

    /// True once the last chunk and the trailer's empty line are consumed.
    pub(crate) fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The decoded body.
    pub(crate) fn into_body(self) -> BytesMut {
        self.body
    }

    /// The line at the start of `rest`, without its CRLF, or `None` until
    /// its CRLF arrives. Fails once the line is known to be longer than
    /// [`MAX_LINE_BYTES`].
    fn line<'a>(
        &mut self,
        rest: &'a [u8],
        too_long: &'static str,
    ) -> Result<Option<&'a [u8]>, HttpError> {
        // A CR seen last time may be completed by this call's first new byte.
        let from = self.scanned.saturating_sub(1);
        let window = &rest[from..rest.len().min(MAX_LINE_BYTES + 2)];
        match window.windows(2).position(|w| w == b"\r\n") {
            // The window ends where a CRLF would make the line too long.
            Some(i) => {
                self.scanned = 0;
                Ok(Some(&rest[..from + i]))
            }
            // No CRLF can start before the window's end: the line is longer.
            None if rest.len() > MAX_LINE_BYTES + 1 => Err(bad(too_long)),
            None => {
                self.scanned = rest.len();
                Ok(None)
            }
        }
    }
}

/// The size on a chunk-size line: hex digits, then optional extensions after
/// `;` (ignored).
fn parse_size(line: &[u8]) -> Result<usize, HttpError> {
    let line = std::str::from_utf8(line).map_err(|_| bad("bad chunk size line"))?;
    let hex = line.split(';').next().unwrap_or("").trim();
    usize::from_str_radix(hex, 16).map_err(|_| bad("bad chunk size"))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Feeds `input` to a fresh decoder in one call.
    fn decode_all(input: &[u8], limit: usize) -> Result<(usize, Option<Vec<u8>>), HttpError> {
        let mut d = ChunkedDecoder::new(limit);
        let used = d.decode(input)?;
        Ok((used, d.is_done().then(|| d.into_body().to_vec())))
    }

    /// Bytes consumed and, once complete, the body; or the error's status.
    type Outcome<'a> = Result<(usize, Option<&'a [u8]>), u16>;

    #[test]
    fn chunked_table() {
        let long_line = format!("{}\r\n", "0".repeat(MAX_LINE_BYTES + 1));
        let cr_at_limit = format!("{}\r", "0".repeat(MAX_LINE_BYTES));
        let ok_line = format!("{}1\r\nx\r\n0\r\n\r\n", "0".repeat(MAX_LINE_BYTES - 1));
        let cases: &[(&[u8], usize, Outcome<'_>)] = &[
            (
                b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT",
                100,
                Ok((24, Some(b"abcde"))),
            ),
            (b"3\r\nab", 100, Ok((5, None))),
            (b"3\r\nabc\r", 100, Ok((6, None))),
            (b"0\r\n", 100, Ok((3, None))),
            (b"0\r\nX-T: 1\r\n\r\n", 100, Ok((13, Some(b"")))),
            (
                b" A \r\n0123456789\r\n0\r\n\r\n",
                10,
                Ok((22, Some(b"0123456789"))),
            ),
            (ok_line.as_bytes(), 10, Ok((ok_line.len(), Some(b"x")))),
            (b"zz\r\n", 100, Err(400)),
            (b"\r\n", 100, Err(400)),
            (b"-1\r\n", 100, Err(400)),
            (b"\xff\r\n", 100, Err(400)),
            (b"3\r\nabcX", 100, Err(400)),
            (b"ff\r\n", 10, Err(413)),
            (b"5\r\nhello\r\n6\r\n", 10, Err(413)),
            (b"ffffffffffffffff\r\n", 10, Err(413)),
            (b"1ffffffffffffffff\r\n", 10, Err(400)),
            (long_line.as_bytes(), 100, Err(400)),
            (&long_line.as_bytes()[..MAX_LINE_BYTES + 2], 100, Err(400)),
            (cr_at_limit.as_bytes(), 100, Ok((0, None))),
        ];
        for (input, limit, want) in cases {
            let got = decode_all(input, *limit).map_err(|e| e.status());
            let want = want.map(|(n, b)| (n, b.map(<[u8]>::to_vec)));
            assert_eq!(got, want, "{:?}", String::from_utf8_lossy(input));
        }
    }

    #[test]
    fn a_line_split_at_its_cr_is_found() {
        let mut d = ChunkedDecoder::new(100);
        assert_eq!(d.decode(b"3\r").unwrap(), 0);
        assert_eq!(d.decode(b"3\r\nabc\r\n0\r\n\r\n").unwrap(), 13);
        assert_eq!(&d.into_body()[..], b"abc");
    }

    /// Feeds `encoded` to one decoder in pieces whose sizes come from
    /// `reads`, the way the connection does: the unconsumed rest is kept and
    /// the next read appended to it.
    fn feed(
        encoded: &[u8],
        reads: &[usize],
        limit: usize,
    ) -> Result<(ChunkedDecoder, usize), HttpError> {
        let mut d = ChunkedDecoder::new(limit);
        let mut buf = Vec::new();
        let mut fed = 0;
        let mut consumed = 0;
        let mut reads = reads.iter().cycle();
        while fed < encoded.len() && !d.is_done() {
            let n = (*reads.next().unwrap()).min(encoded.len() - fed);
            buf.extend_from_slice(&encoded[fed..fed + n]);
            fed += n;
            let used = d.decode(&buf)?;
            assert!(used <= buf.len());
            assert!(d.body.len() <= limit);
            buf.drain(..used);
            consumed += used;
        }
        Ok((d, consumed))
    }

    /// An arbitrary body, cut into arbitrary chunks, with optional extensions
    /// and trailers.
    fn encoded() -> impl Strategy<Value = (Vec<u8>, Vec<u8>)> {
        (
            prop::collection::vec(prop::collection::vec(any::<u8>(), 1..300), 0..12),
            prop::option::of("[a-z]{1,8}=[a-z0-9]{0,8}"),
            prop::collection::vec("X-[a-z]{1,8}: [ -~]{0,20}", 0..3),
            any::<bool>(),
        )
            .prop_map(|(chunks, ext, trailers, upper)| {
                let mut body = Vec::new();
                let mut enc = Vec::new();
                for c in &chunks {
                    body.extend_from_slice(c);
                    let size = if upper {
                        format!("{:X}", c.len())
                    } else {
                        format!("{:x}", c.len())
                    };
                    enc.extend_from_slice(size.as_bytes());
                    if let Some(e) = &ext {
                        enc.extend_from_slice(format!(";{e}").as_bytes());
                    }
                    enc.extend_from_slice(b"\r\n");
                    enc.extend_from_slice(c);
                    enc.extend_from_slice(b"\r\n");
                }
                enc.extend_from_slice(b"0\r\n");
                for t in &trailers {
                    enc.extend_from_slice(t.as_bytes());
                    enc.extend_from_slice(b"\r\n");
                }
                enc.extend_from_slice(b"\r\n");
                (body, enc)
            })
    }

    fn reads() -> impl Strategy<Value = Vec<usize>> {
        prop::collection::vec(1usize..64, 1..16)
    }

    proptest! {
        #[test]
        fn round_trips_in_any_read_sizes(
            (body, enc) in encoded(),
            reads in reads(),
            next in prop::collection::vec(any::<u8>(), 0..32),
        ) {
            let mut input = enc.clone();
            input.extend_from_slice(&next);
            let (d, consumed) = feed(&input, &reads, body.len()).expect("a valid body");
            prop_assert!(d.is_done());
            // The next pipelined request is not touched.
            prop_assert_eq!(consumed, enc.len());
            prop_assert_eq!(&d.into_body()[..], &body[..]);
        }

        #[test]
        fn a_body_over_the_limit_is_413((body, enc) in encoded(), reads in reads()) {
            prop_assume!(!body.is_empty());
            let err = feed(&enc, &reads, body.len() - 1).unwrap_err();
            prop_assert_eq!(err.status(), 413);
        }

        #[test]
        fn arbitrary_bytes_stay_bounded(
            input in prop::collection::vec(any::<u8>(), 0..2048),
            reads in reads(),
            limit in 0usize..512,
        ) {
            // `feed` checks every call consumes within the input and keeps
            // the body within the limit; errors are fine, panics are not.
            let _ = feed(&input, &reads, limit);
        }

        #[test]
        fn damaged_bodies_stay_bounded(
            (_, enc) in encoded(),
            at in any::<prop::sample::Index>(),
            junk in prop::collection::vec(any::<u8>(), 1..8),
            reads in reads(),
        ) {
            let mut input = enc.clone();
            let at = at.index(input.len());
            input.splice(at..at + 1, junk);
            let _ = feed(&input, &reads, 4096);
        }
    }
}
