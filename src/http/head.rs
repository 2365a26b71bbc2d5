//! The HTTP/1.1 request head (httparse): method, path, query and the
//! headers ringcast acts on. Pure: bytes in, a [`Head`] out; the connection
//! loop feeds it what it read and enforces the size limit.

use super::error::HttpError;

/// Most headers accepted in one request head.
const MAX_HEADERS: usize = 64;

/// Request methods ringcast distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Method {
    /// GET
    Get,
    /// HEAD
    Head,
    /// POST
    Post,
    /// OPTIONS
    Options,
    /// Anything else (answered 405 on known paths).
    Other,
}

/// How the request body is framed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BodyKind {
    /// No body.
    None,
    /// `Content-Length: n`.
    Length(usize),
    /// `Transfer-Encoding: chunked`.
    Chunked,
}

/// The parts of a request head ringcast uses. Owned, so the read buffer can be
/// reused for the body and the next pipelined request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Head {
    /// Request method.
    pub(crate) method: Method,
    /// Path without the query.
    pub(crate) path: String,
    /// Raw query string (without `?`), still percent-encoded.
    pub(crate) query: String,
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
    /// Body framing.
    pub(crate) body: BodyKind,
    /// `Expect: 100-continue` was sent.
    pub(crate) expect_continue: bool,
    /// `Content-Type` says `application/x-ndjson`.
    pub(crate) ndjson: bool,
    /// The `Last-Event-ID` header, if any.
    pub(crate) last_event_id: Option<String>,
    /// The `Origin` header, if any.
    pub(crate) origin: Option<String>,
    /// `Access-Control-Request-Headers`, for preflight answers.
    pub(crate) acr_headers: Option<String>,
    /// Bytes the head took in the buffer.
    pub(crate) len: usize,
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes
/// are needed; the caller enforces the head size limit.
pub(crate) fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(HttpError::HeadersTooLarge("more than 64 request headers"))
        }
        Err(_) => {
            return Err(HttpError::BadRequest(
                "bad_request",
                "malformed HTTP request",
            ))
        }
    };
    let method = match req.method.unwrap_or("") {
        "GET" => Method::Get,
        "HEAD" => Method::Head,
        "POST" => Method::Post,
        "OPTIONS" => Method::Options,
        _ => Method::Other,
    };
    let target = req.path.unwrap_or("/");
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (p, q),
        None => (target, ""),
    };
    let http10 = req.version == Some(0);
    let mut head = Head {
        method,
        path: path.to_owned(),
        query: query.to_owned(),
        keep_alive: !http10,
        body: BodyKind::None,
        expect_continue: false,
        ndjson: false,
        last_event_id: None,
        origin: None,
        acr_headers: None,
        len,
    };
    let mut content_length: Option<usize> = None;
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::BadRequest("bad_request", "header value is not UTF-8"))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            let n: usize = value
                .parse()
                .map_err(|_| HttpError::BadRequest("bad_request", "invalid Content-Length"))?;
            if content_length.is_some_and(|c| c != n) {
                return Err(HttpError::BadRequest(
                    "bad_request",
                    "conflicting Content-Length",
                ));
            }
            content_length = Some(n);
        } else if name.eq_ignore_ascii_case("transfer-encoding") {
            if value.eq_ignore_ascii_case("chunked") {
                head.body = BodyKind::Chunked;
            } else {
                return Err(HttpError::BadRequest(
                    "bad_request",
                    "only chunked transfer-encoding is supported",
                ));
            }
        } else if name.eq_ignore_ascii_case("connection") {
            for tok in value.split(',').map(str::trim) {
                if tok.eq_ignore_ascii_case("close") {
                    head.keep_alive = false;
                } else if tok.eq_ignore_ascii_case("keep-alive") {
                    head.keep_alive = true;
                }
            }
        } else if name.eq_ignore_ascii_case("expect") {
            head.expect_continue = value.eq_ignore_ascii_case("100-continue");
        } else if name.eq_ignore_ascii_case("content-type") {
            let mime = value.split(';').next().unwrap_or("").trim();
            head.ndjson = mime.eq_ignore_ascii_case("application/x-ndjson")
                || mime.eq_ignore_ascii_case("application/ndjson");
        } else if name.eq_ignore_ascii_case("last-event-id") {
            head.last_event_id = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(value.to_owned());
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            head.acr_headers = Some(value.to_owned());
        }
    }
    if head.body == BodyKind::Chunked {
        if content_length.is_some() {
            return Err(HttpError::BadRequest(
                "bad_request",
                "both Content-Length and Transfer-Encoding",
            ));
        }
    } else if let Some(n) = content_length {
        head.body = BodyKind::Length(n);
    }
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_table() {
        let h = parse_head(
            b"GET /events?topic=a.b HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 42\r\n\r\nrest",
        )
        .unwrap()
        .unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path, "/events");
        assert_eq!(h.query, "topic=a.b");
        assert_eq!(h.last_event_id.as_deref(), Some("42"));
        assert!(h.keep_alive);
        assert_eq!(h.len, 62);

        let h = parse_head(b"POST /publish HTTP/1.0\r\nContent-Length: 5\r\nContent-Type: application/x-ndjson; charset=utf-8\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.ndjson);
        assert!(!h.keep_alive);

        let h = parse_head(b"POST /p HTTP/1.1\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n")
            .unwrap()
            .unwrap();
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(!h.keep_alive);
        assert!(h.expect_continue);

        assert_eq!(parse_head(b"GET / HTTP/1.1\r\nHost: x\r\n").unwrap(), None);
        assert!(matches!(
            parse_head(b"GE T / HTTP/1.1\r\n\r\n"),
            Err(HttpError::BadRequest(..))
        ));
        assert!(matches!(
            parse_head(b"POST / HTTP/1.1\r\nContent-Length: x\r\n\r\n"),
            Err(HttpError::BadRequest(..))
        ));
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert!(matches!(
            parse_head(req.as_bytes()),
            Err(HttpError::HeadersTooLarge(_))
        ));
        assert_eq!(
            parse_head(b"DELETE / HTTP/1.1\r\n\r\n")
                .unwrap()
                .unwrap()
                .method,
            Method::Other
        );
    }
}
