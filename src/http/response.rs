//! HTTP responses as bytes: the event-stream head, JSON answers, errors,
//! CORS headers. Small and allocation-light; the event-stream head is built
//! once per subscriber, frames never pass through here.

use std::fmt::Write as _;

use super::error::HttpError;
use crate::config::Cors;

/// A status and the whole response, or the error to answer.
pub(super) type Answer = Result<(u16, Vec<u8>), HttpError>;

/// Reason phrase for the statuses ringcast sends.
pub(crate) fn reason(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        200 => "OK",
        204 => "No Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}

/// CORS headers for a request from `origin`, or nothing when it is not allowed.
/// Listed origins are echoed with credentials allowed; `*` alone allows any
/// origin without credentials, as browsers require.
pub(crate) fn cors_headers(cors: &Cors, origin: Option<&str>) -> String {
    let Some(origin) = origin else {
        return String::new();
    };
    if cors.allowed_origins.iter().any(|o| o == origin) {
        format!(
            "Access-Control-Allow-Origin: {origin}\r\nAccess-Control-Allow-Credentials: true\r\nVary: Origin\r\n"
        )
    } else if cors.allowed_origins.iter().any(|o| o == "*") {
        "Access-Control-Allow-Origin: *\r\n".to_owned()
    } else {
        String::new()
    }
}

/// A complete response with a body and Content-Length.
pub(crate) fn full(
    status: u16,
    content_type: &str,
    extra: &str,
    body: &[u8],
    keep_alive: bool,
    head_only: bool,
) -> Vec<u8> {
    // Room for the body too, so that appending it does not reallocate.
    let body_len = if head_only { 0 } else { body.len() };
    let mut s = String::with_capacity(160 + extra.len() + body_len);
    let _ = write!(
        s,
        "HTTP/1.1 {status} {}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nCache-Control: no-store\r\n{}{extra}\r\n",
        reason(status),
        body.len(),
        if keep_alive { "" } else { "Connection: close\r\n" },
    );
    let mut out = s.into_bytes();
    if !head_only {
        out.extend_from_slice(body);
    }
    out
}

/// A JSON error response (SPEC §6).
pub(crate) fn error(e: &HttpError, cors: &str, keep_alive: bool) -> Vec<u8> {
    let extra = format!("{}{cors}", e.extra_headers());
    full(
        e.status(),
        "application/json",
        &extra,
        e.body().as_bytes(),
        keep_alive && !e.closes(),
        false,
    )
}

/// The head of an event stream: sent at once, body delimited by close;
/// `encoding` adds the content-coding headers (see [`encoding_headers`]).
pub(crate) fn event_stream_head(cors: &str, encoding: &str) -> String {
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nCache-Control: no-cache\r\nX-Accel-Buffering: no\r\nConnection: close\r\n{encoding}{cors}\r\n"
    )
}

/// The content-coding headers of an event stream: gzip when it is
/// compressed, and `Vary` whenever compression is on (a cache must not give
/// one client's encoding to another).
pub(crate) fn encoding_headers(compression_on: bool, gzip: bool) -> &'static str {
    match (compression_on, gzip) {
        (true, true) => "Content-Encoding: gzip\r\nVary: Accept-Encoding\r\n",
        (true, false) => "Vary: Accept-Encoding\r\n",
        (false, _) => "",
    }
}

/// The answer to a CORS preflight.
pub(crate) fn preflight(cors: &str, acr_headers: Option<&str>, keep_alive: bool) -> Vec<u8> {
    let mut extra = String::from("Allow: GET, HEAD, POST, OPTIONS\r\n");
    if !cors.is_empty() {
        let _ = write!(
            extra,
            "{cors}Access-Control-Allow-Methods: GET, HEAD, POST, OPTIONS\r\nAccess-Control-Allow-Headers: {}\r\nAccess-Control-Max-Age: 600\r\n",
            acr_headers.unwrap_or("Last-Event-ID, Authorization, Content-Type")
        );
    }
    let mut s = format!(
        "HTTP/1.1 204 No Content\r\n{extra}{}\r\n",
        if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    );
    s.shrink_to_fit();
    s.into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cors_table() {
        let listed = Cors {
            allowed_origins: vec!["http://a.test".into()],
        };
        let any = Cors {
            allowed_origins: vec!["*".into()],
        };
        assert!(
            cors_headers(&listed, Some("http://a.test")).contains("Allow-Origin: http://a.test")
        );
        assert!(cors_headers(&listed, Some("http://a.test")).contains("Credentials: true"));
        assert_eq!(cors_headers(&listed, Some("http://b.test")), "");
        assert_eq!(cors_headers(&listed, None), "");
        assert_eq!(
            cors_headers(&any, Some("http://b.test")),
            "Access-Control-Allow-Origin: *\r\n"
        );
    }

    #[test]
    fn full_response_bytes() {
        let r = full(200, "application/json", "", b"{}", true, false);
        assert_eq!(
            std::str::from_utf8(&r).unwrap(),
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\nCache-Control: no-store\r\n\r\n{}"
        );
        let r = full(200, "text/plain", "", b"abc", false, true);
        assert!(std::str::from_utf8(&r)
            .unwrap()
            .ends_with("Connection: close\r\n\r\n"));
    }
}
