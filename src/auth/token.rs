//! Where a request's token is: the `Authorization` header, else the
//! `access_token` query parameter (EventSource cannot set headers), else
//! the `ringcast_token` cookie.

use std::borrow::Cow;

/// The query parameter that may carry the token.
pub(crate) const QUERY_PARAMETER: &str = "access_token";

/// The cookie that may carry the token.
pub(crate) const COOKIE_NAME: &str = "ringcast_token";

/// The request's token: `Authorization: Bearer`, else the `access_token`
/// query parameter (percent-decoded), else the `ringcast_token` cookie.
///
/// `query` is the raw query string (without `?`); `cookie` a `Cookie`
/// header value. Empty values count as absent, and so does an
/// `Authorization` header of another scheme.
pub(crate) fn find_token<'a>(
    authorization: Option<&'a str>,
    query: &'a str,
    cookie: Option<&'a str>,
) -> Option<Cow<'a, str>> {
    authorization
        .and_then(bearer)
        .map(Cow::Borrowed)
        .or_else(|| from_query(query))
        .or_else(|| cookie.and_then(from_cookie).map(Cow::Borrowed))
}

/// `Bearer <token>`, the scheme in any case (RFC 9110 §11.1).
fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim().split_once([' ', '\t'])?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The first non-empty `access_token` parameter, percent-decoded.
fn from_query(query: &str) -> Option<Cow<'_, str>> {
    let query = query.strip_prefix('?').unwrap_or(query);
    form_urlencoded::parse(query.as_bytes())
        .find(|(name, value)| name == QUERY_PARAMETER && !value.is_empty())
        .map(|(_, value)| value)
}

/// The first non-empty `ringcast_token` cookie (RFC 6265 §4.2.1:
/// `name=value` pairs separated by `;`, a value maybe in double quotes).
fn from_cookie(header: &str) -> Option<&str> {
    header.split(';').find_map(|pair| {
        let (name, value) = pair.split_once('=')?;
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        (name.trim() == COOKIE_NAME && !value.is_empty()).then_some(value)
    })
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn token_source_table() {
        /// Authorization, query, cookie → the token found.
        type Case<'a> = (Option<&'a str>, &'a str, Option<&'a str>, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (Some("Bearer abc.def.ghi"), "", None, Some("abc.def.ghi")),
            (Some("bearer abc"), "", None, Some("abc")),
            (Some("BEARER   abc  "), "", None, Some("abc")),
            (Some("  Bearer\tabc"), "", None, Some("abc")),
            (
                Some("Bearer abc"),
                "access_token=q",
                Some("ringcast_token=c"),
                Some("abc"),
            ),
            (Some("Bearer "), "access_token=q", None, Some("q")),
            (Some("Bearer"), "access_token=q", None, Some("q")),
            (
                Some("Basic dXNlcjpwdw=="),
                "access_token=q",
                None,
                Some("q"),
            ),
            (Some("Bearerabc"), "", None, None),
            (None, "access_token=q", Some("ringcast_token=c"), Some("q")),
            (None, "?access_token=q", None, Some("q")),
            (None, "a=1&access_token=x%2Ey%20z&b=2", None, Some("x.y z")),
            (
                None,
                "access_token=&access_token=second",
                None,
                Some("second"),
            ),
            (None, "access_token", Some("ringcast_token=c"), Some("c")),
            (None, "Access_Token=q", None, None),
            (None, "", Some("a=1; ringcast_token=xyz"), Some("xyz")),
            (None, "", Some("ringcast_token=xyz;a=1"), Some("xyz")),
            (None, "", Some(r#"a=1; ringcast_token="xyz""#), Some("xyz")),
            (
                None,
                "",
                Some("ringcast_token=; ringcast_token=b"),
                Some("b"),
            ),
            (None, "", Some("ringcast_token="), None),
            (None, "", Some("my_ringcast_token=x"), None),
            (None, "", Some("garbage"), None),
            (None, "", None, None),
        ];
        for &(auth, query, cookie, want) in cases {
            assert_eq!(
                find_token(auth, query, cookie).as_deref(),
                want,
                "{auth:?} {query:?} {cookie:?}"
            );
        }
    }

    #[test]
    fn undecoded_values_are_borrowed() {
        assert!(matches!(
            find_token(None, "access_token=a.b.c", None),
            Some(Cow::Borrowed(_))
        ));
        assert!(matches!(
            find_token(None, "access_token=a%2Eb", None),
            Some(Cow::Owned(_))
        ));
    }

    proptest! {
        #[test]
        fn arbitrary_inputs_never_panic(
            auth in proptest::option::of(any::<String>()),
            query in any::<String>(),
            cookie in proptest::option::of("[a-z_=; \"]{0,40}"),
        ) {
            if let Some(t) = find_token(auth.as_deref(), &query, cookie.as_deref()) {
                prop_assert!(!t.is_empty());
            }
        }
    }
}
