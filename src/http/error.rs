//! What a request can fail with: a status, a stable code and a sentence
//! (SPEC §6), rendered as the JSON error body. Small and allocation-free on
//! the common paths: codes and sentences are `&'static str`.

use std::borrow::Cow;

/// A request-level failure; each maps to one status and JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum HttpError {
    /// 400 with a code and sentence.
    #[error("{1}")]
    BadRequest(&'static str, &'static str),
    /// 400 for an ndjson batch: the 1-based line and what is wrong with it.
    #[error("line {0}: {1}")]
    BadLine(usize, String),
    /// 401 with a code and sentence (`unauthorized`: no token;
    /// `invalid_token`: one that does not verify).
    #[error("{1}")]
    Unauthorized(&'static str, &'static str),
    /// 403: the token does not cover the topic or pattern.
    #[error("{0}")]
    Forbidden(&'static str),
    /// 404
    #[error("no such path")]
    NotFound,
    /// 405, with the methods the path allows.
    #[error("method not allowed")]
    MethodNotAllowed(&'static str),
    /// 408
    #[error("request headers not received in time")]
    Timeout,
    /// 413 with a code and sentence.
    #[error("{1}")]
    TooLarge(&'static str, &'static str),
    /// 429, with the Retry-After seconds.
    #[error("{0}")]
    RateLimited(&'static str, u32),
    /// 431
    #[error("{0}")]
    HeadersTooLarge(&'static str),
    /// 503, with the Retry-After seconds.
    #[error("{0}")]
    Unavailable(&'static str, u32),
}

impl HttpError {
    /// HTTP status code.
    pub(crate) fn status(&self) -> u16 {
        match self {
            HttpError::BadRequest(..) | HttpError::BadLine(..) => 400,
            HttpError::Unauthorized(..) => 401,
            HttpError::Forbidden(_) => 403,
            HttpError::NotFound => 404,
            HttpError::MethodNotAllowed(_) => 405,
            HttpError::Timeout => 408,
            HttpError::TooLarge(..) => 413,
            HttpError::RateLimited(..) => 429,
            HttpError::HeadersTooLarge(_) => 431,
            HttpError::Unavailable(..) => 503,
        }
    }

    /// Stable machine-readable code.
    pub(crate) fn code(&self) -> &'static str {
        match self {
            HttpError::BadRequest(code, _)
            | HttpError::TooLarge(code, _)
            | HttpError::Unauthorized(code, _) => code,
            HttpError::Forbidden(_) => "forbidden",
            HttpError::BadLine(..) => "invalid_line",
            HttpError::NotFound => "not_found",
            HttpError::MethodNotAllowed(_) => "method_not_allowed",
            HttpError::Timeout => "request_timeout",
            HttpError::RateLimited(..) => "rate_limited",
            HttpError::HeadersTooLarge(_) => "headers_too_large",
            HttpError::Unavailable(..) => "unavailable",
        }
    }

    /// Human sentence.
    pub(crate) fn message(&self) -> Cow<'static, str> {
        match self {
            HttpError::BadRequest(_, m)
            | HttpError::TooLarge(_, m)
            | HttpError::Unauthorized(_, m) => Cow::Borrowed(m),
            HttpError::Forbidden(m)
            | HttpError::RateLimited(m, _)
            | HttpError::HeadersTooLarge(m)
            | HttpError::Unavailable(m, _) => Cow::Borrowed(m),
            other => Cow::Owned(other.to_string()),
        }
    }

    /// Extra headers this error's response carries.
    pub(crate) fn extra_headers(&self) -> String {
        match self {
            HttpError::MethodNotAllowed(allow) => format!("Allow: {allow}\r\n"),
            HttpError::RateLimited(_, s) | HttpError::Unavailable(_, s) => {
                format!("Retry-After: {s}\r\n")
            }
            // RFC 6750 §3: no error attribute when no token was sent.
            HttpError::Unauthorized("invalid_token", _) => {
                "WWW-Authenticate: Bearer realm=\"ringcast\", error=\"invalid_token\"\r\n".into()
            }
            HttpError::Unauthorized(..) => "WWW-Authenticate: Bearer realm=\"ringcast\"\r\n".into(),
            _ => String::new(),
        }
    }

    /// Whether the connection must close after this answer (the body was not
    /// read, or the request framing cannot be trusted).
    pub(crate) fn closes(&self) -> bool {
        matches!(
            self,
            HttpError::Timeout | HttpError::HeadersTooLarge(_) | HttpError::TooLarge(..)
        )
    }

    /// The JSON body: `{"error":"<code>","message":"<sentence>"}` and a
    /// newline.
    pub(crate) fn body(&self) -> String {
        let mut b =
            serde_json::json!({"error": self.code(), "message": self.message()}).to_string();
        b.push('\n');
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_and_bodies() {
        let cases: Vec<(HttpError, u16, &str)> = vec![
            (
                HttpError::BadRequest("invalid_topic", "x"),
                400,
                "invalid_topic",
            ),
            (HttpError::BadLine(3, "bad".into()), 400, "invalid_line"),
            (
                HttpError::Unauthorized("unauthorized", "x"),
                401,
                "unauthorized",
            ),
            (HttpError::Forbidden("x"), 403, "forbidden"),
            (HttpError::NotFound, 404, "not_found"),
            (
                HttpError::MethodNotAllowed("GET"),
                405,
                "method_not_allowed",
            ),
            (HttpError::Timeout, 408, "request_timeout"),
            (
                HttpError::TooLarge("body_too_large", "x"),
                413,
                "body_too_large",
            ),
            (HttpError::RateLimited("x", 1), 429, "rate_limited"),
            (HttpError::HeadersTooLarge("x"), 431, "headers_too_large"),
            (HttpError::Unavailable("x", 1), 503, "unavailable"),
        ];
        for (e, status, code) in cases {
            assert_eq!(e.status(), status);
            let v: serde_json::Value = serde_json::from_str(&e.body()).unwrap();
            assert_eq!(v["error"], code);
            assert!(!v["message"].as_str().unwrap().is_empty());
        }
        assert_eq!(HttpError::BadLine(3, "bad".into()).message(), "line 3: bad");
        assert!(HttpError::Unavailable("x", 2)
            .extra_headers()
            .contains("Retry-After: 2"));
    }
}
