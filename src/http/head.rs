//! The HTTP/1.1 request head: httparse over the connection's read buffer,
//! then the head is split off that buffer and frozen, and the parts ringcast
//! acts on are kept as byte ranges into it (as pingora does), so a request
//! costs no `String` for its path, query or header values. Pure: a
//! `BytesMut` in, a [`Head`] out and the buffer left holding what follows
//! the head; the connection loop enforces the size limit.

use std::ops::Range;

use bytes::{Bytes, BytesMut};

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

/// The parts of a request head ringcast uses, as ranges into the head's own
/// bytes. The bytes share the read buffer's allocation, so whatever outlives
/// the request (an event stream) must copy out what it needs and drop the
/// `Head`.
#[derive(Debug)]
pub(crate) struct Head {
    /// The head exactly as read, request line to the blank line; immutable,
    /// so the ranges below stay valid UTF-8 once `parse_head` checked them.
    raw: Bytes,
    /// Request method.
    pub(crate) method: Method,
    /// Path without the query.
    path: Range<usize>,
    /// Raw query (without `?`), still percent-encoded; empty when absent.
    query: Range<usize>,
    /// Whether the connection stays open after the response.
    pub(crate) keep_alive: bool,
    /// Body framing.
    pub(crate) body: BodyKind,
    /// `Expect: 100-continue` was sent.
    pub(crate) expect_continue: bool,
    /// `Content-Type` says `application/x-ndjson`.
    pub(crate) ndjson: bool,
    /// The `Last-Event-ID` header's value, trimmed.
    last_event_id: Option<Range<usize>>,
    /// The `Origin` header's value, trimmed.
    origin: Option<Range<usize>>,
    /// `Access-Control-Request-Headers`, for preflight answers.
    acr_headers: Option<Range<usize>>,
    /// `X-Request-ID` (set by a proxy such as nginx), trimmed.
    request_id: Option<Range<usize>>,
    /// Every `X-Forwarded-For` field value, trimmed, in order (empty, and
    /// unallocated, when there is none).
    forwarded_for: Vec<Range<usize>>,
    /// `Authorization`, trimmed.
    authorization: Option<Range<usize>>,
    /// More than one `Authorization` header was sent (refused while auth
    /// is on: which one is meant is not ours to guess).
    pub(crate) duplicate_authorization: bool,
    /// The first `Cookie` header that carries `ringcast_token`.
    cookie: Option<Range<usize>>,
    /// `Idempotency-Key` (a publish retried after a timeout, cluster mode).
    idempotency_key: Option<Range<usize>>,
    /// `Accept-Encoding` accepts gzip (RFC 9110 §12.5.3: `gzip` or `*`
    /// with a non-zero weight, and not refused by name).
    pub(crate) accepts_gzip: bool,
}

/// See [`Head::request_id`].
pub(crate) fn is_sane_request_id(v: &str) -> bool {
    (1..=128).contains(&v.len())
        && v.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b':'))
}

impl Head {
    /// Bytes the head took in the read buffer.
    pub(crate) fn len(&self) -> usize {
        self.raw.len()
    }

    /// Path without the query (`/` for an absolute-form target with no
    /// path, `http://host`).
    pub(crate) fn path(&self) -> &str {
        if self.path.is_empty() {
            "/"
        } else {
            self.text(&self.path)
        }
    }

    /// Raw query string (without `?`), still percent-encoded.
    pub(crate) fn query(&self) -> &str {
        self.text(&self.query)
    }

    /// The `Last-Event-ID` header, if any.
    pub(crate) fn last_event_id(&self) -> Option<&str> {
        self.last_event_id.as_ref().map(|r| self.text(r))
    }

    /// The `Origin` header, if any.
    pub(crate) fn origin(&self) -> Option<&str> {
        self.origin.as_ref().map(|r| self.text(r))
    }

    /// `X-Request-ID`, if any and sane: 1 to 128 characters of letters,
    /// digits and `-._:` (nginx's `$request_id` is 32 hex digits). Anything
    /// else is ignored rather than echoed into responses and logs.
    pub(crate) fn request_id(&self) -> Option<&str> {
        self.request_id
            .as_ref()
            .map(|r| self.text(r))
            .filter(|v| is_sane_request_id(v))
    }

    /// `Access-Control-Request-Headers`, if any.
    pub(crate) fn acr_headers(&self) -> Option<&str> {
        self.acr_headers.as_ref().map(|r| self.text(r))
    }

    /// The `X-Forwarded-For` field values, in the order they appeared.
    pub(crate) fn forwarded_for(&self) -> impl DoubleEndedIterator<Item = &str> {
        self.forwarded_for.iter().map(|r| self.text(r))
    }

    /// The `Authorization` header's value.
    pub(crate) fn authorization(&self) -> Option<&str> {
        self.authorization.as_ref().map(|r| self.text(r))
    }

    /// `Idempotency-Key`, if any (checked by the publish handler).
    pub(crate) fn idempotency_key(&self) -> Option<&str> {
        self.idempotency_key.as_ref().map(|r| self.text(r))
    }

    /// The `Cookie` header that carries `ringcast_token`, if any.
    pub(crate) fn cookie(&self) -> Option<&str> {
        self.cookie.as_ref().map(|r| self.text(r))
    }

    fn text(&self, r: &Range<usize>) -> &str {
        // `parse_head` checked every range is UTF-8 on character boundaries
        // and `raw` cannot change, so the fallback never triggers; it is
        // here so that a bug answers 404 or 400 instead of panicking a
        // worker.
        self.raw
            .get(r.clone())
            .and_then(|b| std::str::from_utf8(b).ok())
            .unwrap_or("")
    }
}

/// Where `part`, a sub-slice of `base`, lies in it.
fn span(base: &[u8], part: &[u8]) -> Range<usize> {
    let start = part.as_ptr() as usize - base.as_ptr() as usize;
    start..start + part.len()
}

/// Whether `Accept-Encoding` field values accept gzip: `gzip` (or
/// `x-gzip`) with a weight above 0, or `*` above 0 when gzip is not named.
fn accepts_gzip(values: &[&str]) -> bool {
    let mut named: Option<bool> = None;
    let mut any = false;
    for item in values.iter().flat_map(|v| v.split(',')) {
        let mut parts = item.split(';');
        let coding = parts.next().unwrap_or("").trim();
        let weight = parts
            .find_map(|p| {
                let (k, v) = p.trim().split_once('=')?;
                k.trim()
                    .eq_ignore_ascii_case("q")
                    .then(|| v.trim().parse::<f32>().ok())?
            })
            .unwrap_or(1.0);
        if coding.eq_ignore_ascii_case("gzip") || coding.eq_ignore_ascii_case("x-gzip") {
            named = Some(weight > 0.0);
        } else if coding == "*" {
            any = weight > 0.0;
        }
    }
    named.unwrap_or(any)
}

/// The origin-form part of an absolute-form request target:
/// `http://host:port/p?q` → `/p?q` (empty when there is no path); any
/// other target as it is.
fn absolute_form_path(target: &str) -> &str {
    let Some(rest) = target
        .strip_prefix("http://")
        .or_else(|| target.strip_prefix("https://"))
    else {
        return target;
    };
    match rest.find(['/', '?']) {
        Some(i) if rest.as_bytes()[i] == b'/' => &rest[i..],
        Some(i) => &rest[i..],
        None => &rest[rest.len()..],
    }
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes
/// are needed and leaves `buf` as it was; a complete head is split off the
/// front of `buf`, which keeps what follows (body, pipelined requests). The
/// caller enforces the head size limit.
pub(crate) fn parse_head(buf: &mut BytesMut) -> Result<Option<Head>, HttpError> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    let base: &[u8] = buf;
    let len = match req.parse(base) {
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
    // httparse always yields a path on a complete head; the fallback only
    // keeps this total. An absolute-form target (`http://host/path?q`,
    // RFC 9112 §3.2.2, sent to proxies and accepted by servers) is read
    // from its path on.
    let target = absolute_form_path(req.path.unwrap_or(""));
    let (path, query) = match target.split_once('?') {
        Some((p, q)) => (span(base, p.as_bytes()), span(base, q.as_bytes())),
        None => {
            let t = span(base, target.as_bytes());
            (t.clone(), t.end..t.end)
        }
    };
    let http10 = req.version == Some(0);
    let mut head = Head {
        // Set once httparse, which borrows `buf`, is done with it.
        raw: Bytes::new(),
        method,
        path,
        query,
        keep_alive: !http10,
        body: BodyKind::None,
        expect_continue: false,
        ndjson: false,
        last_event_id: None,
        origin: None,
        acr_headers: None,
        request_id: None,
        forwarded_for: Vec::new(),
        authorization: None,
        duplicate_authorization: false,
        cookie: None,
        idempotency_key: None,
        accepts_gzip: false,
    };
    let mut content_length: Option<usize> = None;
    let mut hosts = 0;
    let mut encodings: Vec<&str> = Vec::new();
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value)
            .map_err(|_| HttpError::BadRequest("bad_request", "header value is not UTF-8"))?
            .trim();
        let name = h.name;
        if name.eq_ignore_ascii_case("content-length") {
            // Digits only (RFC 9110 §8.6): `parse` would take `+3`.
            let n: usize = value
                .bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| value.parse().ok())
                .flatten()
                .ok_or(HttpError::BadRequest(
                    "bad_request",
                    "invalid Content-Length",
                ))?;
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
            head.last_event_id = Some(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("origin") {
            head.origin = Some(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("access-control-request-headers") {
            head.acr_headers = Some(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("idempotency-key") {
            head.idempotency_key = Some(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("x-request-id") {
            head.request_id = Some(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("x-forwarded-for") {
            head.forwarded_for.push(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case("accept-encoding") {
            encodings.push(value);
        } else if name.eq_ignore_ascii_case("authorization") {
            head.duplicate_authorization |= head.authorization.is_some();
            head.authorization = Some(span(base, value.as_bytes()));
        } else if name.eq_ignore_ascii_case("cookie")
            && head.cookie.is_none()
            && value.contains("ringcast_token=")
        {
            head.cookie = Some(span(base, value.as_bytes()));
        }
    }
    head.accepts_gzip = accepts_gzip(&encodings);
    // RFC 9112 §3.2: an HTTP/1.1 request has exactly one Host; none, or
    // two that may disagree, is a 400 (a proxy and a server could each
    // read a different one).
    if hosts > 1 || (hosts == 0 && req.version == Some(1)) {
        return Err(HttpError::BadRequest(
            "bad_request",
            "an HTTP/1.1 request needs exactly one Host header",
        ));
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
    head.raw = buf.split_to(len).freeze();
    Ok(Some(head))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn parse(bytes: &[u8]) -> (Result<Option<Head>, HttpError>, BytesMut) {
        let mut buf = BytesMut::from(bytes);
        let r = parse_head(&mut buf);
        (r, buf)
    }

    fn head(bytes: &[u8]) -> Head {
        parse(bytes).0.unwrap().unwrap()
    }

    #[test]
    fn head_table() {
        let (h, rest) =
            parse(b"GET /events?topic=a.b HTTP/1.1\r\nHost: x\r\nLast-Event-ID: 42\r\n\r\nrest");
        let h = h.unwrap().unwrap();
        assert_eq!(h.method, Method::Get);
        assert_eq!(h.path(), "/events");
        assert_eq!(h.query(), "topic=a.b");
        assert_eq!(h.last_event_id(), Some("42"));
        assert_eq!(h.origin(), None);
        assert!(h.keep_alive);
        assert_eq!(h.len(), 62);
        assert_eq!(&rest[..], b"rest");

        let h = head(b"POST /publish HTTP/1.0\r\nContent-Length: 5\r\nContent-Type: application/x-ndjson; charset=utf-8\r\n\r\n");
        assert_eq!(h.body, BodyKind::Length(5));
        assert!(h.ndjson);
        assert!(!h.keep_alive);
        assert_eq!(h.path(), "/publish");
        assert_eq!(h.query(), "");

        let h = head(b"POST /p HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\nExpect: 100-continue\r\n\r\n");
        assert_eq!(h.body, BodyKind::Chunked);
        assert!(!h.keep_alive);
        assert!(h.expect_continue);

        let h = head(b"OPTIONS /events? HTTP/1.1\r\nHost: x\r\nOrigin:  http://a.test \r\nAccess-Control-Request-Headers: last-event-id\r\n\r\n");
        assert_eq!(h.method, Method::Options);
        assert_eq!(h.query(), "");
        assert_eq!(h.origin(), Some("http://a.test"));
        assert_eq!(h.acr_headers(), Some("last-event-id"));
        assert_eq!(h.forwarded_for().count(), 0);

        let h = head(b"GET /events HTTP/1.1\r\nX-Forwarded-For: 1.1.1.1 \r\nHost: x\r\nx-forwarded-for:  2.2.2.2, 3.3.3.3\r\n\r\n");
        assert_eq!(
            h.forwarded_for().collect::<Vec<_>>(),
            ["1.1.1.1", "2.2.2.2, 3.3.3.3"]
        );

        let (partial, rest) = parse(b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(partial.unwrap().is_none());
        assert_eq!(&rest[..], b"GET / HTTP/1.1\r\nHost: x\r\n");
        assert!(matches!(
            parse(b"GE T / HTTP/1.1\r\n\r\n").0,
            Err(HttpError::BadRequest(..))
        ));
        assert!(matches!(
            parse(b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: x\r\n\r\n").0,
            Err(HttpError::BadRequest(..))
        ));
        assert!(matches!(
            parse(b"GET / HTTP/1.1\r\nHost: x\r\nOrigin: \xff\r\n\r\n").0,
            Err(HttpError::BadRequest(..))
        ));
        let many: String = (0..70).map(|i| format!("X-{i}: y\r\n")).collect();
        let req = format!("GET / HTTP/1.1\r\nHost: x\r\n{many}\r\n");
        assert!(matches!(
            parse(req.as_bytes()).0,
            Err(HttpError::HeadersTooLarge(_))
        ));
        assert_eq!(
            head(b"DELETE / HTTP/1.1\r\nHost: x\r\n\r\n").method,
            Method::Other
        );
        // Content-Length is digits only; HTTP/1.1 needs exactly one Host.
        for bad in [
            &b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: +3\r\n\r\n"[..],
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -0\r\n\r\n",
            b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 0x3\r\n\r\n",
            b"GET / HTTP/1.1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
            b"GET / HTTP/1.0\r\nHost: a\r\nHost: a\r\n\r\n",
        ] {
            assert!(
                matches!(parse(bad).0, Err(HttpError::BadRequest(..))),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(
            head(b"GET / HTTP/1.0\r\n\r\n").path(),
            "/",
            "HTTP/1.0 needs no Host"
        );
        // Absolute-form targets are read from their path on.
        for (target, path, query) in [
            ("http://h:8080/events?topic=a", "/events", "topic=a"),
            ("https://h/publish", "/publish", ""),
            ("http://h", "/", ""),
            ("http://h?x=1", "/", "x=1"),
        ] {
            let h = head(format!("GET {target} HTTP/1.1\r\nHost: h\r\n\r\n").as_bytes());
            assert_eq!((h.path(), h.query()), (path, query), "{target}");
        }
        let h = head(b"GET / HTTP/1.1\r\nHost: x\r\nAuthorization: a\r\nAuthorization: b\r\n\r\n");
        assert!(h.duplicate_authorization);
        // Accept-Encoding, as browsers, curl and proxies send it.
        for (values, want) in [
            (&["gzip, deflate, br"][..], true),
            (&["br;q=1.0, gzip;q=0.8, *;q=0.1"], true),
            (&["identity"], false),
            (&["gzip;q=0"], false),
            (&["*"], true),
            (&["*;q=0.5", "gzip;q=0"], false),
            (&["deflate", "GZIP"], true),
            (&[], false),
        ] {
            assert_eq!(accepts_gzip(values), want, "{values:?}");
        }
    }

    /// What a parse must guarantee whatever the input: a complete head takes
    /// exactly its bytes off the front of the buffer, every range lies inside
    /// them and reads as UTF-8; anything else leaves the buffer as it was.
    fn check_parse(input: &[u8]) -> Result<Option<Head>, TestCaseError> {
        let (r, rest) = parse(input);
        match r {
            Ok(Some(h)) => {
                let len = h.len();
                prop_assert!(len <= input.len());
                prop_assert_eq!(&h.raw[..], &input[..len]);
                prop_assert_eq!(&rest[..], &input[len..]);
                let ranges = [Some(&h.path), Some(&h.query)]
                    .into_iter()
                    .chain(
                        [&h.last_event_id, &h.origin, &h.acr_headers, &h.request_id]
                            .map(Option::as_ref),
                    )
                    .flatten();
                for r in ranges {
                    prop_assert!(r.start <= r.end && r.end <= len, "{r:?} past {len}");
                    prop_assert!(std::str::from_utf8(&input[r.clone()]).is_ok());
                }
                Ok(Some(h))
            }
            _ => {
                prop_assert_eq!(&rest[..], input);
                Ok(None)
            }
        }
    }

    /// A well-formed request head and the fields it should parse to.
    #[derive(Debug, Clone)]
    struct Wanted {
        bytes: Vec<u8>,
        method: &'static str,
        path: String,
        query: Option<String>,
        last_event_id: Option<String>,
        origin: Option<String>,
        content_length: Option<usize>,
    }

    fn wanted() -> impl Strategy<Value = Wanted> {
        let value = "[!-~]([ -~]{0,30}[!-~])?";
        (
            prop::sample::select(vec!["GET", "HEAD", "POST", "OPTIONS", "PUT"]),
            "/[A-Za-z0-9._~/-]{0,40}",
            prop::option::of("[A-Za-z0-9=&%._~-]{0,60}"),
            prop::option::of(value),
            prop::option::of(value),
            prop::option::of(0usize..1_000_000),
            prop::collection::vec(("X-[A-Za-z0-9-]{1,10}", value), 0..8),
        )
            .prop_map(|(method, path, query, lei, origin, cl, extra)| {
                let mut s = format!("{method} {path}");
                if let Some(q) = &query {
                    s.push('?');
                    s.push_str(q);
                }
                s.push_str(" HTTP/1.1\r\nHost: h\r\n");
                for (k, v) in &extra {
                    s.push_str(&format!("{k}: {v}\r\n"));
                }
                if let Some(v) = &lei {
                    s.push_str(&format!("Last-Event-ID: {v}\r\n"));
                }
                if let Some(v) = &origin {
                    s.push_str(&format!("origin:\t{v} \r\n"));
                }
                if let Some(n) = cl {
                    s.push_str(&format!("Content-Length: {n}\r\n"));
                }
                s.push_str("\r\n");
                Wanted {
                    bytes: s.into_bytes(),
                    method,
                    path,
                    query,
                    last_event_id: lei,
                    origin,
                    content_length: cl,
                }
            })
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in prop::collection::vec(any::<u8>(), 0..512)) {
            check_parse(&input)?;
        }

        #[test]
        fn damaged_heads_never_panic(
            w in wanted(),
            at in any::<prop::sample::Index>(),
            junk in prop::collection::vec(any::<u8>(), 0..16),
        ) {
            let mut input = w.bytes.clone();
            input.splice(at.index(input.len() + 1).., junk);
            check_parse(&input)?;
        }

        #[test]
        fn well_formed_heads_parse_back(
            w in wanted(),
            rest in prop::collection::vec(any::<u8>(), 0..64),
            cut in any::<prop::sample::Index>(),
        ) {
            let mut input = w.bytes.clone();
            input.extend_from_slice(&rest);
            let h = check_parse(&input)?.expect("a complete head");
            prop_assert_eq!(h.len(), w.bytes.len());
            let method = match w.method {
                "GET" => Method::Get,
                "HEAD" => Method::Head,
                "POST" => Method::Post,
                "OPTIONS" => Method::Options,
                _ => Method::Other,
            };
            prop_assert_eq!(h.method, method);
            prop_assert_eq!(h.path(), w.path.as_str());
            prop_assert_eq!(h.query(), w.query.as_deref().unwrap_or(""));
            prop_assert_eq!(h.last_event_id(), w.last_event_id.as_deref());
            prop_assert_eq!(h.origin(), w.origin.as_deref());
            prop_assert_eq!(h.body, w.content_length.map_or(BodyKind::None, BodyKind::Length));
            prop_assert!(h.keep_alive);
            // Any strict prefix is incomplete and taken as such.
            let short = &w.bytes[..cut.index(w.bytes.len())];
            prop_assert!(check_parse(short)?.is_none());
        }
    }

    #[test]
    fn request_ids_are_echoed_only_when_sane() {
        for (v, ok) in [
            ("0f3a9c2e4b5d6a7f8e9d0c1b2a3f4e5d", true),
            ("req-1.2_3:4", true),
            ("", false),
            ("has space", false),
            ("quote\"", false),
            ("<script>", false),
            (&"x".repeat(128), true),
            (&"x".repeat(129), false),
        ] {
            assert_eq!(is_sane_request_id(v), ok, "{v:?}");
        }
        let mut buf = BytesMut::from(
            &b"GET /events HTTP/1.1\r\nHost: x\r\nX-Request-ID:  abc-123 \r\n\r\n"[..],
        );
        let h = parse_head(&mut buf).unwrap().unwrap();
        assert_eq!(h.request_id(), Some("abc-123"));
        let mut buf =
            BytesMut::from(&b"GET /events HTTP/1.1\r\nHost: x\r\nX-Request-ID: a b\r\n\r\n"[..]);
        assert_eq!(parse_head(&mut buf).unwrap().unwrap().request_id(), None);
    }
}
