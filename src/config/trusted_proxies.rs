//! `server.trusted_proxies` (SPEC §5): which TCP peers are reverse proxies
//! whose `X-Forwarded-For` is believed, and which client address such a
//! header names. Pure: addresses and header text in, an address out.
//!
//! The client is the right-most `X-Forwarded-For` entry that is not itself a
//! trusted proxy: every trusted proxy appends the address it received the
//! request from, so entries right of that one were written by proxies we
//! trust, and entries left of it by whoever the client is (and may be
//! forged). A header that cannot be read that far is ignored and the TCP
//! peer counts. `X-Real-IP` is not consulted: it cannot say which proxy
//! wrote it.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One `server.trusted_proxies` entry: an address or a CIDR range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cidr {
    /// The network address (host bits zero).
    net: IpAddr,
    /// Prefix length: 0..=32 for IPv4, 0..=128 for IPv6.
    prefix: u8,
}

impl Cidr {
    /// Parses `1.2.3.4`, `10.0.0.0/8`, `::1` or `fd00::/8`. The error says
    /// what is wrong with `s`.
    pub(crate) fn parse(s: &str) -> Result<Cidr, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let net: IpAddr = addr.parse().map_err(|_| {
            format!(
                "{s:?} is not an IP address or CIDR range (e.g. 10.0.0.0/8, fd00::/8, 127.0.0.1)"
            )
        })?;
        let max = if net.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => match p.parse::<u8>() {
                Ok(n) if n <= max && !p.starts_with('+') => n,
                _ => return Err(format!("{s:?}: the prefix length must be 0..={max}")),
            },
        };
        let cidr = Cidr {
            net: mask(net, prefix),
            prefix,
        };
        if cidr.net != net {
            return Err(format!(
                "{s:?} has host bits set; did you mean \"{}/{prefix}\"?",
                cidr.net
            ));
        }
        Ok(cidr)
    }

    /// Whether `ip` lies in the range. An IPv4-mapped IPv6 address
    /// (`::ffff:10.1.2.3`) matches as the IPv4 address it carries.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.net.is_ipv4() && mask(ip, self.prefix) == self.net
    }
}

/// `ip` with all but its first `prefix` bits cleared.
fn mask(ip: IpAddr, prefix: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let bits = u32::from(a);
            let m = u32::MAX.checked_shl(32 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V4(Ipv4Addr::from(bits & m))
        }
        IpAddr::V6(a) => {
            let bits = u128::from(a);
            let m = u128::MAX.checked_shl(128 - u32::from(prefix)).unwrap_or(0);
            IpAddr::V6(Ipv6Addr::from(bits & m))
        }
    }
}

/// The parsed `server.trusted_proxies`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct TrustedProxies(Vec<Cidr>);

impl TrustedProxies {
    /// Parses every entry; the error names the first bad one.
    pub(crate) fn parse(list: &[String]) -> Result<TrustedProxies, String> {
        list.iter()
            .map(|s| Cidr::parse(s))
            .collect::<Result<Vec<_>, _>>()
            .map(TrustedProxies)
    }

    /// Whether `ip` is a trusted proxy.
    pub(crate) fn contains(&self, ip: IpAddr) -> bool {
        self.0.iter().any(|c| c.contains(ip))
    }

    /// The client address of a request that came from `peer` carrying the
    /// `X-Forwarded-For` field values `xff`, in the order they appeared.
    /// `peer` itself unless `peer` is trusted and the header names a client:
    /// then the right-most entry that is not a trusted proxy (the left-most
    /// entry when all are trusted). An empty or unreadable entry met on the
    /// way makes the whole header unusable, and `peer` counts.
    pub(crate) fn client_addr<'a>(
        &self,
        peer: IpAddr,
        xff: impl DoubleEndedIterator<Item = &'a str>,
    ) -> IpAddr {
        let peer = peer.to_canonical();
        if !self.contains(peer) {
            return peer;
        }
        let mut leftmost = None;
        for field in xff.rev() {
            for entry in field.rsplit(',') {
                let Some(ip) = parse_entry(entry) else {
                    return peer;
                };
                if !self.contains(ip) {
                    return ip;
                }
                leftmost = Some(ip);
            }
        }
        leftmost.unwrap_or(peer)
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`,
/// `[2001:db8::1]` or `[2001:db8::1]:443`; IPv4-mapped IPv6 is read as IPv4.
fn parse_entry(entry: &str) -> Option<IpAddr> {
    let e = entry.trim();
    let ip = if let Some(rest) = e.strip_prefix('[') {
        let (inside, after) = rest.split_once(']')?;
        if !(after.is_empty() || after.strip_prefix(':').is_some_and(is_port)) {
            return None;
        }
        IpAddr::V6(inside.parse().ok()?)
    } else if let Ok(ip) = e.parse::<IpAddr>() {
        ip
    } else {
        let (host, port) = e.rsplit_once(':')?;
        if !is_port(port) {
            return None;
        }
        IpAddr::V4(host.parse().ok()?)
    };
    Some(ip.to_canonical())
}

fn is_port(s: &str) -> bool {
    !s.is_empty() && s.len() <= 5 && s.bytes().all(|b| b.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn proxies(list: &[&str]) -> TrustedProxies {
        TrustedProxies::parse(&list.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn cidr_parse_table() {
        let ok = [
            ("127.0.0.1", "127.0.0.1", 32),
            (" 10.0.0.0/8 ", "10.0.0.0", 8),
            ("0.0.0.0/0", "0.0.0.0", 0),
            ("192.168.1.0/24", "192.168.1.0", 24),
            ("::1", "::1", 128),
            ("fd00::/8", "fd00::", 8),
            ("::/0", "::", 0),
            ("2001:db8::/32", "2001:db8::", 32),
        ];
        for (s, net, prefix) in ok {
            let c = Cidr::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"));
            assert_eq!((c.net, c.prefix), (ip(net), prefix), "{s}");
        }
        let bad = [
            ("", "not an IP address"),
            ("localhost", "not an IP address"),
            ("10.0.0/8", "not an IP address"),
            ("10.0.0.0/33", "prefix length must be 0..=32"),
            ("10.0.0.0/", "prefix length"),
            ("10.0.0.0/-1", "prefix length"),
            ("10.0.0.0/+8", "prefix length"),
            ("10.0.0.0/8/8", "prefix length"),
            ("fd00::/129", "prefix length must be 0..=128"),
            ("10.1.2.3/8", "did you mean \"10.0.0.0/8\""),
            ("fd00::1/8", "did you mean \"fd00::/8\""),
            ("1.2.3.4:80", "not an IP address"),
        ];
        for (s, want) in bad {
            let err = Cidr::parse(s).unwrap_err();
            assert!(err.contains(want), "{s:?}: {err}");
        }
    }

    #[test]
    fn cidr_contains_table() {
        let cases = [
            ("127.0.0.1", "127.0.0.1", true),
            ("127.0.0.1", "127.0.0.2", false),
            ("10.0.0.0/8", "10.255.1.2", true),
            ("10.0.0.0/8", "11.0.0.0", false),
            ("0.0.0.0/0", "203.0.113.9", true),
            ("0.0.0.0/0", "::1", false),
            ("10.0.0.0/8", "::ffff:10.1.2.3", true),
            ("fd00::/8", "fd12::1", true),
            ("fd00::/8", "fe80::1", false),
            ("::1", "::1", true),
            ("::1", "127.0.0.1", false),
            ("::/0", "10.0.0.1", false),
        ];
        for (range, addr, want) in cases {
            let c = Cidr::parse(range).unwrap();
            assert_eq!(c.contains(ip(addr)), want, "{range} contains {addr}");
        }
    }

    #[test]
    fn parse_entry_table() {
        let cases = [
            ("203.0.113.7", Some("203.0.113.7")),
            ("  203.0.113.7 ", Some("203.0.113.7")),
            ("203.0.113.7:51234", Some("203.0.113.7")),
            ("2001:db8::7", Some("2001:db8::7")),
            ("[2001:db8::7]", Some("2001:db8::7")),
            ("[2001:db8::7]:443", Some("2001:db8::7")),
            ("::ffff:192.0.2.1", Some("192.0.2.1")),
            ("", None),
            ("unknown", None),
            ("_hidden", None),
            ("203.0.113.7:", None),
            ("203.0.113.7:port", None),
            ("[2001:db8::7]x", None),
            ("[2001:db8::7", None),
            ("2001:db8::7:99999999", None),
            ("300.1.1.1", None),
        ];
        for (entry, want) in cases {
            assert_eq!(parse_entry(entry), want.map(ip), "{entry:?}");
        }
    }

    #[test]
    fn client_addr_table() {
        let trusted = proxies(&["127.0.0.1", "10.0.0.0/8"]);
        // (peer, X-Forwarded-For fields, client)
        let cases: [(&str, &[&str], &str); 15] = [
            // Untrusted peer: the header is never read.
            ("198.51.100.1", &["203.0.113.7"], "198.51.100.1"),
            ("198.51.100.1", &[], "198.51.100.1"),
            // Trusted peer without a header: the peer.
            ("127.0.0.1", &[], "127.0.0.1"),
            // One proxy: its entry.
            ("127.0.0.1", &["203.0.113.7"], "203.0.113.7"),
            // A client-sent (forged) entry left of the real one is ignored.
            ("127.0.0.1", &["1.1.1.1, 203.0.113.7"], "203.0.113.7"),
            // Trusted proxies right of the client are skipped.
            ("127.0.0.1", &["203.0.113.7, 10.1.2.3"], "203.0.113.7"),
            (
                "127.0.0.1",
                &["1.1.1.1,203.0.113.7,10.9.9.9"],
                "203.0.113.7",
            ),
            // Several header fields read as one list, in order.
            ("127.0.0.1", &["1.1.1.1", "203.0.113.7"], "203.0.113.7"),
            ("127.0.0.1", &["203.0.113.7", "10.1.2.3"], "203.0.113.7"),
            // All trusted: the left-most.
            ("127.0.0.1", &["10.1.1.1, 10.2.2.2"], "10.1.1.1"),
            // Unreadable before a client is found: the peer.
            ("127.0.0.1", &["203.0.113.7, unknown"], "127.0.0.1"),
            ("127.0.0.1", &["203.0.113.7,"], "127.0.0.1"),
            ("127.0.0.1", &[""], "127.0.0.1"),
            // Unreadable left of the client does not matter.
            ("127.0.0.1", &["garbage, 203.0.113.7"], "203.0.113.7"),
            // Mapped peer and ported entries.
            ("::ffff:127.0.0.1", &["[2001:db8::7]:443"], "2001:db8::7"),
        ];
        for (peer, xff, want) in cases {
            assert_eq!(
                trusted.client_addr(ip(peer), xff.iter().copied()),
                ip(want),
                "peer {peer}, X-Forwarded-For {xff:?}"
            );
        }
        // Nothing trusted: always the peer.
        let none = TrustedProxies::default();
        assert_eq!(
            none.client_addr(ip("127.0.0.1"), ["203.0.113.7"].into_iter()),
            ip("127.0.0.1")
        );
    }

    #[test]
    fn list_error_names_the_entry() {
        let err = TrustedProxies::parse(&["127.0.0.1".into(), "10.0.0.0/99".into()]).unwrap_err();
        assert!(err.contains("10.0.0.0/99"), "{err}");
    }
}
