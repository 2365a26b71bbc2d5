//! Who is asking (SPEC §5): a request's token, verified into a grant, or
//! the 401 that refuses it (counted, and logged at a rate the log can
//! bear). The grant's namespace qualifies the request's topics
//! ([`crate::auth::DEFAULT_NAMESPACE`]).

use std::time::{SystemTime, UNIX_EPOCH};

use super::error::HttpError;
use super::head::Head;
use crate::auth::{find_token, Failure, Grant};
use crate::worker::Worker;

/// The grant of the request's token; `None` while auth is off.
pub(super) fn authenticate(w: &Worker, conn: u64, head: &Head) -> Result<Option<Grant>, HttpError> {
    let Some(verifier) = &w.shared.auth else {
        return Ok(None);
    };
    let refuse = |why: Failure| {
        w.shared.auth_failed(why, conn);
        let code = if why == Failure::Missing {
            "unauthorized"
        } else {
            "invalid_token"
        };
        HttpError::Unauthorized(code, why.message())
    };
    // Two credentials in one place: which one is meant is not ours to
    // guess (a proxy may have added one). Cookies are the exception: a
    // browser sends the one for the most specific path first (RFC 6265
    // §5.4), and the first is taken.
    if head.duplicate_authorization || count_access_tokens(head.query()) > 1 {
        return Err(HttpError::BadRequest(
            "duplicate_credentials",
            "more than one Authorization header or access_token parameter; send one token",
        ));
    }
    let token = find_token(head.authorization(), head.query(), head.cookie())
        .ok_or_else(|| refuse(Failure::Missing))?;
    verifier.verify(&token, unix_ms()).map(Some).map_err(refuse)
}

/// How many `access_token` parameters the query holds.
fn count_access_tokens(query: &str) -> usize {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == crate::auth::QUERY_PARAMETER)
        .count()
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
