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
    let token = find_token(head.authorization(), head.query(), head.cookie())
        .ok_or_else(|| refuse(Failure::Missing))?;
    verifier.verify(&token, unix_ms()).map(Some).map_err(refuse)
}

/// Milliseconds since the Unix epoch.
pub(super) fn unix_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}
