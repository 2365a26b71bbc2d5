//! Bytes → typed requests: the HTTP/1.1 head (httparse), the query of
//! `/events` and `/publish`, and the publish bodies (raw and ndjson). Pure
//! functions, no I/O; the worker feeds them what it read.

use serde::Deserialize;

use crate::error::HttpError;
use crate::topic::{validate_pattern, validate_topic};

/// Most headers accepted in one request head.
const MAX_HEADERS: usize = 64;

/// Request methods ringcast distinguishes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
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
pub enum BodyKind {
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
pub struct Head {
    /// Request method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// Raw query string (without `?`), still percent-encoded.
    pub query: String,
    /// Whether the connection stays open after the response.
    pub keep_alive: bool,
    /// Body framing.
    pub body: BodyKind,
    /// `Expect: 100-continue` was sent.
    pub expect_continue: bool,
    /// `Content-Type` says `application/x-ndjson`.
    pub ndjson: bool,
    /// The `Last-Event-ID` header, if any.
    pub last_event_id: Option<String>,
    /// The `Origin` header, if any.
    pub origin: Option<String>,
    /// `Access-Control-Request-Headers`, for preflight answers.
    pub acr_headers: Option<String>,
    /// Bytes the head took in the buffer.
    pub len: usize,
}

/// Parses a request head from the start of `buf`. `Ok(None)` means more bytes
/// are needed; the caller enforces the head size limit.
pub fn parse_head(buf: &[u8]) -> Result<Option<Head>, HttpError> {
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

/// Progress of decoding a chunked body held in one buffer.
#[derive(Debug, PartialEq, Eq)]
pub enum Chunked {
    /// Complete: the decoded body and the bytes consumed from the input.
    Done(Vec<u8>, usize),
    /// Needs more input.
    Partial,
}

/// Decodes a whole `Transfer-Encoding: chunked` body from `buf` (which starts
/// right after the head). Fails with 413 once the decoded size passes `limit`.
pub fn decode_chunked(buf: &[u8], limit: usize) -> Result<Chunked, HttpError> {
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

/// A validated `GET /events` query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribeQuery {
    /// Patterns, validated, in request order, without duplicates.
    pub patterns: Vec<String>,
    /// `snapshot=1`.
    pub snapshot: bool,
    /// `lastEventId` query parameter (empty means none).
    pub last_event_id: Option<String>,
}

/// Parses and validates the `/events` query.
pub fn parse_subscribe(query: &str, max_patterns: usize) -> Result<SubscribeQuery, HttpError> {
    let mut q = SubscribeQuery {
        patterns: Vec::new(),
        snapshot: false,
        last_event_id: None,
    };
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "topic" => {
                validate_pattern(&v)
                    .map_err(|e| HttpError::BadRequest("invalid_topic", e.message()))?;
                if !q.patterns.iter().any(|p| *p == *v) {
                    q.patterns.push(v.into_owned());
                }
                if q.patterns.len() > max_patterns {
                    return Err(HttpError::BadRequest(
                        "too_many_topics",
                        "more topic patterns than limits.topics_per_subscription",
                    ));
                }
            }
            "snapshot" => {
                q.snapshot = match &*v {
                    "1" | "true" => true,
                    "0" | "false" | "" => false,
                    _ => {
                        return Err(HttpError::BadRequest(
                            "invalid_parameter",
                            "snapshot must be 0 or 1",
                        ))
                    }
                }
            }
            "lastEventId" if !v.is_empty() => q.last_event_id = Some(v.into_owned()),
            _ => {}
        }
    }
    if q.patterns.is_empty() {
        return Err(HttpError::BadRequest(
            "missing_topic",
            "give at least one topic parameter",
        ));
    }
    Ok(q)
}

/// One event as a publisher sent it, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Concrete topic.
    pub topic: String,
    /// Event type, if any.
    pub event: Option<String>,
    /// UTF-8 data.
    pub data: String,
}

/// The event type reserved for the server's resync signal.
pub const RESYNC_EVENT: &str = "resync";

fn check_event_type(e: &str) -> Result<(), HttpError> {
    if e.is_empty() || e.len() > 64 || e.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0) {
        return Err(HttpError::BadRequest(
            "invalid_event",
            "event type must be 1..=64 bytes without CR, LF or NUL",
        ));
    }
    if e == RESYNC_EVENT {
        return Err(HttpError::BadRequest(
            "reserved_event",
            "the event type 'resync' is reserved",
        ));
    }
    Ok(())
}

fn check_data(data: &str, max_event_bytes: usize) -> Result<(), HttpError> {
    if data.len() > max_event_bytes {
        return Err(HttpError::TooLarge(
            "event_too_large",
            "event data is larger than limits.max_event_bytes",
        ));
    }
    Ok(())
}

/// Validates a raw-body publish: topic and event from the query, data = body.
pub fn parse_publish_raw(
    query: &str,
    body: Vec<u8>,
    max_event_bytes: usize,
) -> Result<NewEvent, HttpError> {
    let mut topic = None;
    let mut event = None;
    for (k, v) in form_urlencoded::parse(query.as_bytes()) {
        match &*k {
            "topic" => topic = Some(v.into_owned()),
            "event" => event = Some(v.into_owned()),
            _ => {}
        }
    }
    let topic = topic.ok_or(HttpError::BadRequest(
        "missing_topic",
        "give a topic parameter",
    ))?;
    validate_topic(&topic).map_err(|e| HttpError::BadRequest("invalid_topic", e.message()))?;
    if let Some(e) = &event {
        check_event_type(e)?;
    }
    let data = String::from_utf8(body)
        .map_err(|_| HttpError::BadRequest("invalid_utf8", "event data must be valid UTF-8"))?;
    check_data(&data, max_event_bytes)?;
    Ok(NewEvent { topic, event, data })
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NdjsonLine {
    topic: String,
    #[serde(default)]
    event: Option<String>,
    data: String,
}

/// Validates an ndjson batch; all-or-nothing: the first bad line fails the
/// whole batch with a message naming it (1-based).
pub fn parse_publish_ndjson(
    body: &[u8],
    max_event_bytes: usize,
) -> Result<Vec<NewEvent>, HttpError> {
    let text = std::str::from_utf8(body)
        .map_err(|_| HttpError::BadRequest("invalid_utf8", "ndjson body must be valid UTF-8"))?;
    let mut out = Vec::new();
    for (i, line) in text.split('\n').enumerate() {
        let line = line.trim_end_matches('\r');
        if line.trim().is_empty() {
            continue;
        }
        let n = i + 1;
        let bad = |what: String| HttpError::BadLine(n, what);
        let parsed: NdjsonLine = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        validate_topic(&parsed.topic).map_err(|e| bad(e.message().to_owned()))?;
        if let Some(e) = &parsed.event {
            check_event_type(e).map_err(|e| bad(e.message().into_owned()))?;
        }
        if parsed.data.len() > max_event_bytes {
            return Err(HttpError::TooLarge(
                "event_too_large",
                "an event's data is larger than limits.max_event_bytes",
            ));
        }
        out.push(NewEvent {
            topic: parsed.topic,
            event: parsed.event,
            data: parsed.data,
        });
    }
    if out.is_empty() {
        return Err(HttpError::BadRequest(
            "empty_batch",
            "the ndjson body holds no event",
        ));
    }
    Ok(out)
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

    #[test]
    fn subscribe_query_table() {
        let q = parse_subscribe(
            "topic=a.b&topic=quotes.%3E&topic=a.b&snapshot=1&lastEventId=",
            64,
        )
        .unwrap();
        assert_eq!(q.patterns, vec!["a.b", "quotes.>"]);
        assert!(q.snapshot);
        assert_eq!(q.last_event_id, None);
        assert!(parse_subscribe("", 64).is_err());
        assert!(parse_subscribe("topic=a..b", 64).is_err());
        assert!(parse_subscribe("topic=a&topic=b&topic=c", 2).is_err());
        assert!(parse_subscribe("topic=a&snapshot=yes", 2).is_err());
        assert_eq!(
            parse_subscribe("topic=a&lastEventId=9", 2)
                .unwrap()
                .last_event_id
                .as_deref(),
            Some("9")
        );
    }

    #[test]
    fn publish_raw_table() {
        let ok = parse_publish_raw("topic=a.b&event=quote", b"x".to_vec(), 10).unwrap();
        assert_eq!(ok.event.as_deref(), Some("quote"));
        let err = |q: &str, b: &[u8]| parse_publish_raw(q, b.to_vec(), 10).unwrap_err().status();
        assert_eq!(err("", b"x"), 400);
        assert_eq!(err("topic=a.*", b"x"), 400);
        assert_eq!(err("topic=a.%3E", b"x"), 400);
        assert_eq!(err("topic=a&event=resync", b"x"), 400);
        assert_eq!(err("topic=a&event=", b"x"), 400);
        assert_eq!(err("topic=a&event=a%0Ab", b"x"), 400);
        assert_eq!(err("topic=a", b"\xff"), 400);
        assert_eq!(err("topic=a", b"01234567890"), 413);
    }

    #[test]
    fn publish_ndjson_table() {
        let ok = parse_publish_ndjson(
            b"{\"topic\":\"a\",\"data\":\"1\"}\r\n\n{\"topic\":\"b\",\"event\":\"e\",\"data\":\"2\"}\n",
            10,
        )
        .unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].event.as_deref(), Some("e"));
        let e = parse_publish_ndjson(
            b"{\"topic\":\"a\",\"data\":\"1\"}\n{\"topic\":\"a.*\",\"data\":\"1\"}",
            10,
        )
        .unwrap_err();
        assert!(e.message().contains("line 2"), "{}", e.message());
        assert!(parse_publish_ndjson(b"{\"topic\":\"a\"}", 10).is_err());
        assert!(parse_publish_ndjson(b"{\"topic\":\"a\",\"data\":1}", 10).is_err());
        assert!(parse_publish_ndjson(b"{\"topic\":\"a\",\"data\":\"x\",\"zz\":1}", 10).is_err());
        assert!(parse_publish_ndjson(b"\n\n", 10).is_err());
    }
}
