//! Privacy: the visitor id and the client IP. The IP is resolved here
//! (socket address, or forwarding headers from trusted proxies only), hashed
//! into the visitor id together with site and user agent, and never stored or
//! passed on. No cookies, no stored IP.
//!
//! visitor id = SipHash-1-3-128 keyed by the day's salt over (site, IP, user
//! agent). The day's salt = SipHash-1-3-128 keyed by the master key over the
//! UTC day number; the master key derives from `--visitor-secret`. So every
//! instance with the same secret computes the same id, the id changes at UTC
//! midnight, and nobody without the secret can test a guessed IP.

use std::hash::Hasher;
use std::net::{IpAddr, SocketAddr};

use axum::http::HeaderMap;
use ipnet::IpNet;
use siphasher::sip128::{Hasher128, SipHasher13};
use uuid::Uuid;

const MS_PER_DAY: i64 = 86_400_000;
/// Domain separation for deriving the master key from the secret.
const MASTER_KEY_DOMAIN: (u64, u64) = (0x6c75_6d65_6e2d_7669, 0x7369_746f_722d_6964);

/// Computes visitor ids; cheap to clone, shared by all requests.
#[derive(Clone)]
pub struct VisitorHasher {
    master: (u64, u64),
}

impl std::fmt::Debug for VisitorHasher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VisitorHasher { master: <redacted> }")
    }
}

impl VisitorHasher {
    /// A hasher whose salts derive from `secret`.
    pub fn new(secret: &str) -> Self {
        let mut hasher = SipHasher13::new_with_keys(MASTER_KEY_DOMAIN.0, MASTER_KEY_DOMAIN.1);
        hasher.write(secret.as_bytes());
        let key = hasher.finish128();
        Self {
            master: (key.h1, key.h2),
        }
    }

    /// The salt of the UTC day that contains `at_ms`.
    fn daily_salt(&self, at_ms: i64) -> (u64, u64) {
        let mut hasher = SipHasher13::new_with_keys(self.master.0, self.master.1);
        hasher.write_i64(at_ms.div_euclid(MS_PER_DAY));
        let salt = hasher.finish128();
        (salt.h1, salt.h2)
    }

    /// 32 hex characters identifying (site, IP, user agent) for one UTC day.
    pub fn visitor_id(&self, site_id: &str, ip: IpAddr, user_agent: &str, at_ms: i64) -> String {
        let (k0, k1) = self.daily_salt(at_ms);
        let mut hasher = SipHasher13::new_with_keys(k0, k1);
        // Length prefixes keep ("ab", "c") and ("a", "bc") apart.
        for part in [site_id.as_bytes(), user_agent.as_bytes()] {
            hasher.write_usize(part.len());
            hasher.write(part);
        }
        match ip.to_canonical() {
            IpAddr::V4(v4) => hasher.write(&v4.octets()),
            IpAddr::V6(v6) => hasher.write(&v6.octets()),
        }
        // uuid's stack encoder writes the same 32 digits as `{:032x}` (big
        // endian, lowercase) at a fraction of `format!`'s cost; nothing makes
        // the id a UUID.
        Uuid::from_u128(hasher.finish128().as_u128())
            .simple()
            .encode_lower(&mut Uuid::encode_buffer())
            .to_owned()
    }
}

/// The client's IP: the socket peer, unless the peer is a trusted proxy, in
/// which case the forwarding chain is walked from the nearest hop back to the
/// first address that is not a trusted proxy. `Forwarded` (RFC 7239) wins
/// over `X-Forwarded-For` when both are present. An unreadable hop stops the
/// walk at the last address known to be honest.
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(&ip.to_canonical()));
    let mut client = peer.ip().to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let hops = forwarded_hops(headers);
    for hop in hops.iter().rev() {
        match parse_hop(hop) {
            Some(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    break;
                }
            }
            None => break,
        }
    }
    client
}

/// The hop strings, client first: `for=` values of `Forwarded`, else the
/// entries of `X-Forwarded-For`, over all header lines in order.
fn forwarded_hops(headers: &HeaderMap) -> Vec<String> {
    let forwarded: Vec<String> = headers
        .get_all("forwarded")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .filter_map(|element| {
            element.split(';').find_map(|pair| {
                let (name, value) = pair.split_once('=')?;
                name.trim()
                    .eq_ignore_ascii_case("for")
                    .then(|| value.trim().trim_matches('"').to_owned())
            })
        })
        .collect();
    if !forwarded.is_empty() {
        return forwarded;
    }
    headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(|hop| hop.trim().to_owned())
        .collect()
}

/// An IP from a hop: `1.2.3.4`, `1.2.3.4:80`, `2001:db8::1`, `[2001:db8::1]:80`.
fn parse_hop(hop: &str) -> Option<IpAddr> {
    if let Ok(ip) = hop.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = hop.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    hop.strip_prefix('[')
        .and_then(|rest| rest.split_once(']'))
        .and_then(|(ip, _)| ip.parse().ok())
}

#[cfg(test)]
mod tests {
    use axum::http::HeaderValue;
    use rstest::rstest;

    use super::*;

    const NOON: i64 = 1_764_417_600_000; // 2025-11-29T12:00:00Z

    fn ip(raw: &str) -> IpAddr {
        raw.parse().expect("ip")
    }

    #[test]
    fn visitor_id_is_stable_within_a_day_and_rotates_at_midnight() {
        let hasher = VisitorHasher::new("0123456789abcdef");
        let ua = "Mozilla/5.0";
        let id = hasher.visitor_id("demo", ip("203.0.113.7"), ua, NOON);
        assert_eq!(id.len(), 32);
        assert!(id.chars().all(|c| c.is_ascii_hexdigit()));
        let day_start = NOON - NOON.rem_euclid(MS_PER_DAY);
        let day_end = day_start + MS_PER_DAY - 1;
        for at in [day_start, day_end] {
            assert_eq!(hasher.visitor_id("demo", ip("203.0.113.7"), ua, at), id);
        }
        assert_ne!(
            hasher.visitor_id("demo", ip("203.0.113.7"), ua, day_end + 1),
            id
        );
    }

    #[test]
    fn visitor_id_depends_on_every_input_and_the_secret() {
        let hasher = VisitorHasher::new("0123456789abcdef");
        let base = hasher.visitor_id("demo", ip("203.0.113.7"), "UA", NOON);
        let variants = [
            hasher.visitor_id("other", ip("203.0.113.7"), "UA", NOON),
            hasher.visitor_id("demo", ip("203.0.113.8"), "UA", NOON),
            hasher.visitor_id("demo", ip("203.0.113.7"), "UA2", NOON),
            VisitorHasher::new("another secret!!").visitor_id(
                "demo",
                ip("203.0.113.7"),
                "UA",
                NOON,
            ),
        ];
        for variant in variants {
            assert_ne!(variant, base);
        }
        assert_eq!(
            VisitorHasher::new("0123456789abcdef").visitor_id(
                "demo",
                ip("203.0.113.7"),
                "UA",
                NOON
            ),
            base,
            "instances with the same secret agree"
        );
        assert_eq!(
            hasher.visitor_id("demo", ip("::ffff:203.0.113.7"), "UA", NOON),
            base,
            "an IPv4-mapped IPv6 peer is the same client"
        );
    }

    #[test]
    fn visitor_id_is_the_hash_in_32_lowercase_hex_digits() {
        let hasher = VisitorHasher::new("0123456789abcdef");
        let (k0, k1) = hasher.daily_salt(NOON);
        let mut expected = SipHasher13::new_with_keys(k0, k1);
        for part in [&b"demo"[..], &b"UA"[..]] {
            expected.write_usize(part.len());
            expected.write(part);
        }
        expected.write(&[203, 0, 113, 7]);
        assert_eq!(
            hasher.visitor_id("demo", ip("203.0.113.7"), "UA", NOON),
            format!("{:032x}", expected.finish128().as_u128())
        );
    }

    #[test]
    fn debug_output_hides_the_key() {
        let hasher = VisitorHasher::new("0123456789abcdef");
        assert!(!format!("{hasher:?}").contains(&format!("{}", hasher.master.0)));
    }

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    #[rstest]
    #[case::untrusted_peer_ignores_headers("198.51.100.1", &[("x-forwarded-for", "1.1.1.1")], "198.51.100.1")]
    #[case::trusted_peer_without_headers("10.0.0.2", &[], "10.0.0.2")]
    #[case::one_proxy("10.0.0.2", &[("x-forwarded-for", "203.0.113.9")], "203.0.113.9")]
    #[case::spoofed_left_entries_are_skipped("10.0.0.2", &[("x-forwarded-for", "6.6.6.6, 203.0.113.9, 10.0.0.5")], "203.0.113.9")]
    #[case::several_header_lines("10.0.0.2", &[("x-forwarded-for", "6.6.6.6"), ("x-forwarded-for", "203.0.113.9")], "203.0.113.9")]
    #[case::all_trusted_takes_the_leftmost("10.0.0.2", &[("x-forwarded-for", "10.0.0.9, 10.0.0.5")], "10.0.0.9")]
    #[case::garbage_stops_the_walk("10.0.0.2", &[("x-forwarded-for", "203.0.113.9, garbage")], "10.0.0.2")]
    #[case::forwarded_header("10.0.0.2", &[("forwarded", "for=192.0.2.60;proto=http;by=203.0.113.43")], "192.0.2.60")]
    #[case::forwarded_ipv6_with_port("10.0.0.2", &[("forwarded", "for=\"[2001:db8:cafe::17]:4711\"")], "2001:db8:cafe::17")]
    #[case::forwarded_wins("10.0.0.2", &[("forwarded", "for=192.0.2.60"), ("x-forwarded-for", "203.0.113.9")], "192.0.2.60")]
    #[case::ipv4_with_port("10.0.0.2", &[("x-forwarded-for", "203.0.113.9:5555")], "203.0.113.9")]
    fn resolves_the_client_ip(
        #[case] peer: &str,
        #[case] pairs: &[(&'static str, &'static str)],
        #[case] expected: &str,
    ) {
        let trusted: Vec<IpNet> = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer = SocketAddr::new(ip(peer), 40000);
        assert_eq!(client_ip(peer, &headers(pairs), &trusted), ip(expected));
    }
}
