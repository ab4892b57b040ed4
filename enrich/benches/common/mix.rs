//! The traffic both benchmarks run on: `lumen-traffic`'s seeded population
//! (the arrivals table, explicit shares, re-shares, address-bar copies,
//! preview fetchers and crawlers) passed through ingest's own validation,
//! so event ids, keys, landing tokens and visitor ids are what `lumen.raw`
//! really holds, and shares come before the visits they cause.

use std::net::IpAddr;
use std::path::Path;

use lumen_e2e::{Population, Simulation};
use lumen_ingest::config::Limits;
use lumen_ingest::decode::WireEvent;
use lumen_ingest::privacy::VisitorHasher;
use lumen_ingest::sites::Sites;
use lumen_ingest::validate::{RequestContext, validate};
use lumen_schemas::{EventKind, RawEvent};

/// Time between two readers' arrivals: the mix spans hours of event time,
/// well inside the token TTL.
const ARRIVAL_SPACING_MS: i64 = 100;

/// The first `n` raw events of the population seeded with `seed`, the
/// newest received now.
pub fn raw_events(n: usize, seed: u64) -> Vec<RawEvent> {
    // The population's site (`demo` on localhost) is in ingest's example file.
    let sites_file = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ingest/sites.example.json");
    let sites = Sites::load(&sites_file).expect("ingest/sites.example.json");
    let hasher = VisitorHasher::new("lumen-enrich-bench-secret-32-bytes!");
    let limits = Limits::default();
    let mut simulation = Simulation::new(Population::default(), seed);
    let first_ms = now_ms() - ARRIVAL_SPACING_MS * n as i64;
    let mut events = Vec::with_capacity(n + 1);
    let mut reader = 0;
    while events.len() < n {
        let at_ms = first_ms + ARRIVAL_SPACING_MS * reader;
        reader += 1;
        for beacon in simulation.next_reader(at_ms) {
            let context = RequestContext {
                sites: &sites,
                hasher: &hasher,
                client_ip: IpAddr::V6(beacon.client_ip),
                user_agent: beacon.user_agent,
                header_referrer: None,
                received_at: at_ms,
                max_url_bytes: limits.max_url_bytes,
            };
            for event in beacon.events {
                let wire: WireEvent = serde_json::from_value(event).expect("a wire event");
                events.push(validate(wire, &context).expect("ingest accepts the population"));
            }
        }
    }
    events.truncate(n);
    events
}

/// What a mix holds, for the report.
#[derive(Debug, Default, Clone, Copy)]
pub struct Composition {
    /// Explicit share events (each feeds the token store).
    pub shares: usize,
    /// Pageviews that arrive with a landing token.
    pub tokened_visits: usize,
}

impl Composition {
    /// Counts the shares and tokened visits of `events`.
    pub fn of(events: &[RawEvent]) -> Self {
        events
            .iter()
            .fold(Self::default(), |mut composition, event| {
                match event.kind {
                    EventKind::Share => composition.shares += 1,
                    EventKind::Pageview if event.landing_token.is_some() => {
                        composition.tokened_visits += 1;
                    }
                    EventKind::Pageview => {}
                }
                composition
            })
    }
}

/// Wall clock, Unix milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
