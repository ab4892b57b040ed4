//! A seeded population of readers: each arrives by one of the
//! [`ARRIVALS`](crate::arrivals::ARRIVALS), views a page, and sometimes
//! shares it (copy, a share button, the Web Share API) or copies the URL from
//! the address bar; later readers arrive with those tokens, and re-share,
//! which builds cascades. Pure and deterministic for a seed: sending is
//! [`send`](crate::send)'s job.

use std::net::Ipv6Addr;

use lumen_schemas::ShareToken;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

use crate::arrivals::{ARRIVALS, Arrival, Expect, Landing, TokenUse};
use crate::truth::Truth;

/// Article paths of the demo site.
pub const ARTICLES: &[&str] = &[
    "/articles/2026/11/city-council-approves-night-trains",
    "/articles/2026/11/the-lost-orchards-of-the-valley",
    "/articles/2026/11/why-the-river-froze-early",
    "/articles/2026/11/inside-the-last-typewriter-factory",
    "/articles/2026/11/a-recipe-that-survived-three-wars",
    "/articles/2026/11/schools-test-four-day-weeks",
];

const SHARE_TARGETS: &[&str] = &["whatsapp", "facebook", "x", "linkedin", "email", "telegram"];
/// How many shared tokens the population remembers for later recipients.
const TOKEN_POOL: usize = 2_000;

/// One HTTP request to ingest, as a browser would send it.
#[derive(Debug, Clone)]
pub struct Beacon {
    /// `User-Agent` header.
    pub user_agent: &'static str,
    /// The reader's address, sent as `X-Forwarded-For` (ingest trusts the
    /// loopback proxy in tests and the demo). Documentation prefix only.
    pub client_ip: Ipv6Addr,
    /// JSON events of the request body.
    pub events: Vec<Value>,
}

/// Tuning of the population.
#[derive(Debug, Clone)]
pub struct Population {
    /// Site id the events carry.
    pub site_id: String,
    /// Scheme, host and port of the site's pages (`http://localhost:8000`).
    pub site_origin: String,
    /// Probability that a (non-bot) reader shares the page explicitly.
    pub share_probability: f64,
    /// Probability that a reader copies the URL from the address bar.
    pub address_bar_probability: f64,
}

impl Default for Population {
    fn default() -> Self {
        Self {
            site_id: "demo".to_owned(),
            site_origin: "http://localhost:8000".to_owned(),
            share_probability: 0.2,
            address_bar_probability: 0.15,
        }
    }
}

/// The simulation: a population and what it has shared so far.
#[derive(Debug)]
pub struct Simulation {
    population: Population,
    rng: StdRng,
    total_weight: u32,
    shared_tokens: Vec<String>,
    truth: Truth,
}

impl Simulation {
    /// A simulation that yields the same readers for the same seed.
    pub fn new(population: Population, seed: u64) -> Self {
        Self {
            population,
            rng: StdRng::seed_from_u64(seed),
            total_weight: ARRIVALS.iter().map(|a| a.weight).sum(),
            shared_tokens: Vec::new(),
            truth: Truth::default(),
        }
    }

    /// The ground truth of every beacon produced so far.
    pub fn truth(&self) -> &Truth {
        &self.truth
    }

    /// The next reader's beacons (a pageview, perhaps followed by a share),
    /// stamped with the client clock `now_ms`.
    pub fn next_reader(&mut self, now_ms: i64) -> Vec<Beacon> {
        let arrival = self.pick_arrival();
        let client_ip = self.client_ip();
        let minted = ShareToken::new(now_ms, self.rng.random()).encode();
        let landing_token = match arrival.token {
            TokenUse::Shared => self.pick_shared_token(),
            TokenUse::None => None,
        };
        let url = self.landing_url(&arrival);
        let referrer = arrival
            .referrer
            .map(|r| r.replace("{site}", &self.population.site_origin));

        let pageview = json!({
            "event_id": event_id(&mut self.rng),
            "site_id": self.population.site_id,
            "kind": "pageview",
            "url": url,
            "referrer": referrer,
            "sent_at": now_ms,
            "minted_token": minted,
            "landing_token": landing_token,
            "webview": arrival.webview,
        });
        self.count_pageview(&arrival, landing_token.is_some());
        let mut beacons = vec![Beacon {
            user_agent: arrival.user_agent,
            client_ip,
            events: vec![pageview],
        }];

        if matches!(arrival.expect, Expect::Visit(_)) {
            if self.rng.random_bool(self.population.share_probability) {
                beacons.push(Beacon {
                    user_agent: arrival.user_agent,
                    client_ip,
                    events: vec![self.share(&url, &minted, landing_token.as_deref(), now_ms)],
                });
                self.remember(minted);
            } else if self
                .rng
                .random_bool(self.population.address_bar_probability)
            {
                self.remember(minted);
            }
        }
        beacons
    }

    fn share(&mut self, url: &str, token: &str, parent: Option<&str>, now_ms: i64) -> Value {
        let roll: f64 = self.rng.random();
        let (method, target) = if roll < 0.45 {
            ("copy", None)
        } else if roll < 0.9 {
            let target = SHARE_TARGETS[self.rng.random_range(0..SHARE_TARGETS.len())];
            ("button", Some(target))
        } else {
            ("native", None)
        };
        *self
            .truth
            .shares_by_method
            .entry(method.to_owned())
            .or_default() += 1;
        self.truth.events += 1;
        json!({
            "event_id": event_id(&mut self.rng),
            "site_id": self.population.site_id,
            "kind": "share",
            "url": url,
            "sent_at": now_ms,
            "share_token": token,
            "share_method": method,
            "share_target": target,
            "parent_token": parent,
        })
    }

    fn count_pageview(&mut self, arrival: &Arrival, tokened: bool) {
        self.truth.events += 1;
        match arrival.expect {
            Expect::Visit(channel) => {
                let name = serde_json::to_value(channel)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                *self.truth.visits_by_channel.entry(name).or_default() += 1;
                *self
                    .truth
                    .visits_by_arrival
                    .entry(arrival.name.to_owned())
                    .or_default() += 1;
                self.truth.tokened_visits += u64::from(tokened);
            }
            Expect::Bot { preview: true } => self.truth.preview_fetches += 1,
            Expect::Bot { preview: false } => self.truth.crawler_hits += 1,
        }
    }

    fn pick_arrival(&mut self) -> Arrival {
        let mut roll = self.rng.random_range(0..self.total_weight);
        for arrival in ARRIVALS {
            if roll < arrival.weight {
                return *arrival;
            }
            roll -= arrival.weight;
        }
        ARRIVALS[ARRIVALS.len() - 1]
    }

    fn pick_shared_token(&mut self) -> Option<String> {
        if self.shared_tokens.is_empty() {
            return None;
        }
        let index = self.rng.random_range(0..self.shared_tokens.len());
        Some(self.shared_tokens[index].clone())
    }

    fn remember(&mut self, token: String) {
        if self.shared_tokens.len() >= TOKEN_POOL {
            let index = self.rng.random_range(0..TOKEN_POOL);
            self.shared_tokens[index] = token;
        } else {
            self.shared_tokens.push(token);
        }
    }

    fn landing_url(&mut self, arrival: &Arrival) -> String {
        let origin = &self.population.site_origin;
        let article = ARTICLES[self.rng.random_range(0..ARTICLES.len())];
        match arrival.landing {
            Landing::Home => format!("{origin}/"),
            Landing::Article => format!("{origin}{article}"),
            Landing::ArticleWithQuery(query) => format!("{origin}{article}?{query}"),
        }
    }

    fn client_ip(&mut self) -> Ipv6Addr {
        // 2001:db8::/32 is reserved for documentation: never a real reader.
        Ipv6Addr::new(
            0x2001,
            0x0db8,
            self.rng.random(),
            self.rng.random(),
            0,
            0,
            0,
            self.rng.random(),
        )
    }
}

/// A random UUID v4 as the tracker's `crypto.randomUUID` makes it.
fn event_id(rng: &mut StdRng) -> String {
    let mut bytes: [u8; 16] = rng.random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seed: u64, readers: usize) -> (Vec<Beacon>, Truth) {
        let mut simulation = Simulation::new(Population::default(), seed);
        let beacons = (0..readers)
            .flat_map(|i| simulation.next_reader(1_764_000_000_000 + i as i64 * 1_000))
            .collect();
        (beacons, simulation.truth().clone())
    }

    #[test]
    fn the_same_seed_yields_the_same_traffic() {
        let (first, truth_a) = run(7, 500);
        let (second, truth_b) = run(7, 500);
        assert_eq!(truth_a, truth_b);
        assert_eq!(first.len(), second.len());
        assert_eq!(first[42].events, second[42].events);
    }

    #[test]
    fn truth_counts_every_event_sent() {
        let (beacons, truth) = run(11, 2_000);
        let sent: u64 = beacons.iter().map(|b| b.events.len() as u64).sum();
        assert_eq!(truth.events, sent);
        let shares = beacons
            .iter()
            .flat_map(|b| &b.events)
            .filter(|e| e["kind"] == "share")
            .count() as u64;
        assert_eq!(truth.shares_by_method.values().sum::<u64>(), shares);
        assert_eq!(
            truth.total_visits() + truth.preview_fetches + truth.crawler_hits + shares,
            sent
        );
    }

    #[test]
    fn shares_build_cascades_and_tokens_are_valid() {
        let (beacons, truth) = run(3, 3_000);
        let events: Vec<&Value> = beacons.iter().flat_map(|b| &b.events).collect();
        assert!(truth.tokened_visits > 100, "{truth:?}");
        assert!(
            events
                .iter()
                .any(|e| e["kind"] == "share" && e["parent_token"].is_string()),
            "no re-share"
        );
        for event in events.iter().filter(|e| e["kind"] == "pageview") {
            let minted = event["minted_token"].as_str().expect("minted token");
            ShareToken::parse(minted).expect("valid token");
        }
        assert!(truth.dark_public_ratio().expect("public visits") > 1.0);
    }
}
