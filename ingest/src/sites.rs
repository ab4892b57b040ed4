//! The site allow-list: which site ids exist, which page origins may send
//! their events (CORS) and which hostnames their page URLs may have. Loaded
//! once from a JSON file; this module decides nothing about events beyond
//! "is this origin / host allowed for this site".
//!
//! File format (see `ingest/sites.example.json`):
//!
//! ```json
//! { "sites": { "demo": {
//!     "origins": ["http://127.0.0.1:*", "https://*.example.com"],
//!     "hostnames": ["127.0.0.1", "*.example.com"] } } }
//! ```
//!
//! An origin pattern is `scheme://host[:port]`: the host may start with `*.`
//! (any subdomain, not the apex), the port may be `*` (any) and defaults to
//! the scheme's. A hostname pattern is a host or `*.` + a domain.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;
use url::Url;

use crate::error::{Error, Result};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SitesFile {
    sites: HashMap<String, SiteFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteFile {
    origins: Vec<String>,
    hostnames: Vec<String>,
}

/// A host that is either exact or any subdomain of a domain.
#[derive(Debug, Clone, PartialEq, Eq)]
enum HostPattern {
    Exact(String),
    Subdomain(String),
}

impl HostPattern {
    fn parse(raw: &str) -> Option<Self> {
        let raw = raw.trim().to_ascii_lowercase();
        let pattern = match raw.strip_prefix("*.") {
            Some(domain) => Self::Subdomain(format!(".{domain}")),
            None => Self::Exact(raw),
        };
        let host = match &pattern {
            Self::Exact(host) => host.as_str(),
            Self::Subdomain(suffix) => &suffix[1..],
        };
        let valid = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'));
        valid.then_some(pattern)
    }

    fn matches(&self, host: &str) -> bool {
        match self {
            Self::Exact(exact) => exact.eq_ignore_ascii_case(host),
            Self::Subdomain(suffix) => {
                host.len() > suffix.len()
                    && host[host.len() - suffix.len()..].eq_ignore_ascii_case(suffix)
            }
        }
    }
}

/// `scheme://host[:port|:*]`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct OriginPattern {
    scheme: String,
    host: HostPattern,
    /// `None` means any port.
    port: Option<u16>,
}

impl OriginPattern {
    fn parse(raw: &str) -> Option<Self> {
        let (scheme, rest) = raw.trim().split_once("://")?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return None,
        };
        let rest = rest.strip_suffix('/').unwrap_or(rest);
        // IPv6 hosts are bracketed and contain colons: split the port after `]`.
        let port_at = match rest.rfind(']') {
            Some(end) => rest[end..].find(':').map(|i| end + i),
            None => rest.rfind(':'),
        };
        let (host, port) = match port_at {
            Some(at) => match &rest[at + 1..] {
                "*" => (&rest[..at], None),
                digits => (&rest[..at], Some(digits.parse().ok()?)),
            },
            None => (rest, Some(default_port)),
        };
        Some(Self {
            host: HostPattern::parse(host)?,
            scheme,
            port,
        })
    }

    fn matches(&self, origin: &Url) -> bool {
        origin.scheme() == self.scheme
            && origin
                .host_str()
                .is_some_and(|host| self.host.matches(host))
            && self
                .port
                .is_none_or(|port| origin.port_or_known_default() == Some(port))
    }
}

/// One site's rules.
#[derive(Debug, Clone)]
pub struct Site {
    origins: Vec<OriginPattern>,
    hostnames: Vec<HostPattern>,
}

impl Site {
    /// Whether a page of `origin` (the `Origin` header) may send this site's events.
    pub fn allows_origin(&self, origin: &Url) -> bool {
        self.origins.iter().any(|pattern| pattern.matches(origin))
    }

    /// Whether a page URL with this host belongs to the site.
    pub fn allows_host(&self, host: &str) -> bool {
        self.hostnames.iter().any(|pattern| pattern.matches(host))
    }
}

/// Every configured site by id.
#[derive(Debug, Clone, Default)]
pub struct Sites {
    sites: HashMap<String, Site>,
}

impl Sites {
    /// Reads and checks the sites file.
    pub fn load(path: &Path) -> Result<Self> {
        let error = |reason: String| Error::Sites {
            path: path.display().to_string(),
            reason,
        };
        let text = std::fs::read_to_string(path).map_err(|e| error(e.to_string()))?;
        Self::parse(&text).map_err(error)
    }

    /// Parses the JSON text of a sites file.
    pub fn parse(text: &str) -> std::result::Result<Self, String> {
        let file: SitesFile = serde_json::from_str(text).map_err(|e| e.to_string())?;
        if file.sites.is_empty() {
            return Err("no sites configured".into());
        }
        let mut sites = HashMap::with_capacity(file.sites.len());
        for (id, site) in file.sites {
            let origins = site
                .origins
                .iter()
                .map(|raw| {
                    OriginPattern::parse(raw)
                        .ok_or_else(|| format!("site {id}: invalid origin pattern `{raw}`"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            let hostnames = site
                .hostnames
                .iter()
                .map(|raw| {
                    HostPattern::parse(raw)
                        .ok_or_else(|| format!("site {id}: invalid hostname pattern `{raw}`"))
                })
                .collect::<std::result::Result<Vec<_>, _>>()?;
            if hostnames.is_empty() {
                return Err(format!("site {id}: list at least one hostname"));
            }
            sites.insert(id, Site { origins, hostnames });
        }
        Ok(Self { sites })
    }

    /// The site with this id.
    pub fn get(&self, site_id: &str) -> Option<&Site> {
        self.sites.get(site_id)
    }

    /// Whether any site allows `origin`: decides CORS preflights, which
    /// carry no body and so no site id.
    pub fn any_allows_origin(&self, origin: &Url) -> bool {
        self.sites.values().any(|site| site.allows_origin(origin))
    }

    /// How many sites are configured.
    pub fn len(&self) -> usize {
        self.sites.len()
    }

    /// Whether no site is configured.
    pub fn is_empty(&self) -> bool {
        self.sites.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    fn example() -> Sites {
        Sites::parse(include_str!("../sites.example.json")).expect("example parses")
    }

    fn url(raw: &str) -> Url {
        Url::parse(raw).expect("url")
    }

    #[rstest]
    #[case("demo", "http://127.0.0.1:5173", true)]
    #[case("demo", "http://localhost:8080", true)]
    #[case("demo", "http://localhost", true)]
    #[case("demo", "https://localhost:8080", false)]
    #[case("demo", "http://evil.example:8080", false)]
    #[case("daily-planet", "https://dailyplanet.example", true)]
    #[case("daily-planet", "https://dailyplanet.example:443", true)]
    #[case("daily-planet", "https://dailyplanet.example:8443", false)]
    #[case("daily-planet", "https://www.dailyplanet.example", true)]
    #[case("daily-planet", "https://a.b.dailyplanet.example", true)]
    #[case("daily-planet", "https://evildailyplanet.example", false)]
    #[case("daily-planet", "http://dailyplanet.example", false)]
    fn origins(#[case] site: &str, #[case] origin: &str, #[case] allowed: bool) {
        let sites = example();
        let site = sites.get(site).expect("site");
        assert_eq!(site.allows_origin(&url(origin)), allowed, "{origin}");
    }

    #[rstest]
    #[case("daily-planet", "dailyplanet.example", true)]
    #[case("daily-planet", "www.dailyplanet.example", true)]
    #[case("daily-planet", "WWW.DailyPlanet.Example", true)]
    #[case("daily-planet", "notdailyplanet.example", false)]
    #[case("demo", "127.0.0.1", true)]
    #[case("demo", "example.com", false)]
    fn hostnames(#[case] site: &str, #[case] host: &str, #[case] allowed: bool) {
        let sites = example();
        assert_eq!(sites.get(site).expect("site").allows_host(host), allowed);
    }

    #[test]
    fn preflight_asks_every_site() {
        let sites = example();
        assert!(sites.any_allows_origin(&url("https://www.dailyplanet.example")));
        assert!(!sites.any_allows_origin(&url("https://evil.example")));
        assert!(sites.get("nope").is_none());
        assert_eq!(sites.len(), 2);
    }

    #[rstest]
    #[case(r#"{"sites": {}}"#, "no sites")]
    #[case(
        r#"{"sites": {"a": {"origins": ["ftp://x"], "hostnames": ["x"]}}}"#,
        "origin"
    )]
    #[case(
        r#"{"sites": {"a": {"origins": ["http://x:99999"], "hostnames": ["x"]}}}"#,
        "origin"
    )]
    #[case(r#"{"sites": {"a": {"origins": [], "hostnames": []}}}"#, "hostname")]
    #[case(
        r#"{"sites": {"a": {"origins": [], "hostnames": ["a b"]}}}"#,
        "hostname"
    )]
    #[case(
        r#"{"sites": {"a": {"origins": [], "hostnames": ["x"], "extra": 1}}}"#,
        "unknown field"
    )]
    fn refuses_bad_files(#[case] text: &str, #[case] message: &str) {
        let error = Sites::parse(text).expect_err("invalid");
        assert!(error.contains(message), "{error}");
    }

    #[test]
    fn ipv6_origins_with_ports() {
        let sites = Sites::parse(
            r#"{"sites": {"v6": {"origins": ["http://[::1]:*"], "hostnames": ["[::1]"]}}}"#,
        )
        .expect("parses");
        let site = sites.get("v6").expect("site");
        assert!(site.allows_origin(&url("http://[::1]:3000")));
        assert!(site.allows_host("[::1]"));
    }
}
