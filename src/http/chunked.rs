//! `Transfer-Encoding: chunked` request bodies: decoded in place from the
//! bytes after the head, bounded by `limits.max_body_bytes`.

use super::error::HttpError;

/// Progress of decoding a chunked body held in one buffer.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Chunked {
    /// Complete: the decoded body and the bytes consumed from the input.
    Done(Vec<u8>, usize),
    /// Needs more input.
    Partial,
}

/// Decodes a whole `Transfer-Encoding: chunked` body from `buf` (which starts
/// right after the head). Fails with 413 once the decoded size passes `limit`.
pub(crate) fn decode_chunked(buf: &[u8], limit: usize) -> Result<Chunked, HttpError> {
    let mut out = Vec::new();
    let mut pos = 0;
    loop {
        let Some(eol) = find_crlf(&buf[pos..]) else {
            return if buf.len() - pos > 1024 {
                Err(HttpError::BadRequest("bad_request", "bad chunk size line"))
            } else {
                Ok(Chunked::Partial)
            };
        };
        let line = std::str::from_utf8(&buf[pos..pos + eol])
            .map_err(|_| HttpError::BadRequest("bad_request", "bad chunk size line"))?;
        let size_hex = line.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_hex, 16)
            .map_err(|_| HttpError::BadRequest("bad_request", "bad chunk size"))?;
        pos += eol + 2;
        if size == 0 {
            // Trailers (ignored) end with an empty line.
            loop {
                let Some(eol) = find_crlf(&buf[pos..]) else {
                    return Ok(Chunked::Partial);
                };
                pos += eol + 2;
                if eol == 0 {
                    return Ok(Chunked::Done(out, pos));
                }
            }
        }
        if out.len() + size > limit {
            return Err(HttpError::TooLarge(
                "body_too_large",
                "request body is larger than limits.max_body_bytes",
            ));
        }
        if buf.len() < pos + size + 2 {
            return Ok(Chunked::Partial);
        }
        out.extend_from_slice(&buf[pos..pos + size]);
        if &buf[pos + size..pos + size + 2] != b"\r\n" {
            return Err(HttpError::BadRequest(
                "bad_request",
                "chunk not followed by CRLF",
            ));
        }
        pos += size + 2;
    }
}

fn find_crlf(b: &[u8]) -> Option<usize> {
    b.windows(2).position(|w| w == b"\r\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunked_table() {
        assert_eq!(
            decode_chunked(b"3\r\nabc\r\n2;x=y\r\nde\r\n0\r\n\r\nNEXT", 100).unwrap(),
            Chunked::Done(b"abcde".to_vec(), 24)
        );
        assert_eq!(decode_chunked(b"3\r\nab", 100).unwrap(), Chunked::Partial);
        assert_eq!(decode_chunked(b"0\r\n", 100).unwrap(), Chunked::Partial);
        assert!(matches!(
            decode_chunked(b"zz\r\n", 100),
            Err(HttpError::BadRequest(..))
        ));
        assert!(matches!(
            decode_chunked(b"ff\r\n", 10),
            Err(HttpError::TooLarge(..))
        ));
    }
}
