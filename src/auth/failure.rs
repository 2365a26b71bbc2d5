//! Why a token was refused: a small `Copy` enum, one metric label each.

/// Why a token was refused; the label of `ringcast_auth_failures_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Failure {
    /// No token in the request.
    Missing,
    /// Not a JWT: too long, bad base64, header or claims not a JSON
    /// object (or nested too deep), wrong shape.
    Malformed,
    /// `alg` is not one we accept, or no key of that kind is configured.
    Algorithm,
    /// The `kid` names no configured key (and no key without a `kid` is
    /// there to fall back on).
    UnknownKey,
    /// No candidate key verifies the signature.
    Signature,
    /// `exp` plus the leeway has passed.
    Expired,
    /// `nbf` minus the leeway has not come yet.
    NotYetValid,
    /// `iss` is not the configured issuer.
    Issuer,
    /// `aud` does not name the configured audience.
    Audience,
    /// A claim is missing (`exp`) or of the wrong type or syntax.
    Claims,
}

impl Failure {
    /// Every reason, in metric order.
    pub(crate) const ALL: [Failure; 10] = [
        Failure::Missing,
        Failure::Malformed,
        Failure::Algorithm,
        Failure::UnknownKey,
        Failure::Signature,
        Failure::Expired,
        Failure::NotYetValid,
        Failure::Issuer,
        Failure::Audience,
        Failure::Claims,
    ];

    /// The metric label.
    pub(crate) fn reason(self) -> &'static str {
        match self {
            Failure::Missing => "missing",
            Failure::Malformed => "malformed",
            Failure::Algorithm => "algorithm",
            Failure::UnknownKey => "unknown_key",
            Failure::Signature => "signature",
            Failure::Expired => "expired",
            Failure::NotYetValid => "not_yet_valid",
            Failure::Issuer => "issuer",
            Failure::Audience => "audience",
            Failure::Claims => "claims",
        }
    }

    /// A human sentence for the 401 body.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Failure::Missing => "a token is required",
            Failure::Malformed => "the token is not a well-formed JWT",
            Failure::Algorithm => "the token's signing algorithm is not accepted",
            Failure::UnknownKey => "the token's key id (kid) names no known key",
            Failure::Signature => "the token's signature does not verify",
            Failure::Expired => "the token has expired",
            Failure::NotYetValid => "the token is not valid yet (nbf)",
            Failure::Issuer => "the token's issuer (iss) is not accepted",
            Failure::Audience => "the token's audience (aud) is not accepted",
            Failure::Claims => "the token's claims are missing or invalid",
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn reasons_are_the_metric_labels() {
        let labels: Vec<&str> = Failure::ALL.iter().map(|f| f.reason()).collect();
        assert_eq!(
            labels,
            [
                "missing",
                "malformed",
                "algorithm",
                "unknown_key",
                "signature",
                "expired",
                "not_yet_valid",
                "issuer",
                "audience",
                "claims",
            ]
        );
    }

    #[test]
    fn every_reason_has_its_own_sentence() {
        let messages: HashSet<&str> = Failure::ALL.iter().map(|f| f.message()).collect();
        assert_eq!(messages.len(), Failure::ALL.len());
        for f in Failure::ALL {
            let m = f.message();
            assert!(!m.is_empty() && !m.ends_with('.'), "{f:?}: {m}");
        }
    }
}
