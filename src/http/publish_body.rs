//! Publish bodies (SPEC §4): a raw body with topic and event type in the
//! query, or an ndjson batch that is accepted or refused whole.

use serde::Deserialize;

use super::error::HttpError;
use crate::event::{NewEvent, RESYNC_EVENT};
use crate::topic::validate_topic;

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
pub(crate) fn parse_publish_raw(
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
pub(crate) fn parse_publish_ndjson(
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
