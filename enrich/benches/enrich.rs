//! Per-event cost of enrichment, against a baseline measured in the same
//! run: Avro decode of the raw event alone. Harness-less (no benchmark
//! framework); run with `cargo bench -p lumen-enrich --bench enrich`.
//!
//! The corpus is `lumen-traffic`'s realistic mix (`common/mix.rs`):
//! browsers, in-app webviews, preview fetchers, referrers, campaigns,
//! shares and the tokened visits they cause. User agents repeat as they do
//! in real traffic, so the cached case is the realistic one and the
//! uncached one the worst case. Target (issue #5): 150 000 events/s on one
//! core, cache warm.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lumen_enrich::classify::Classifier;
use lumen_enrich::enrich::Enricher;
use lumen_enrich::tokens::TokenStore;
use lumen_enrich::user_agent;
use lumen_schemas::{Codec, RawEvent};

#[path = "common/mix.rs"]
mod mix;

/// Events per round.
const EVENTS: usize = 20_000;
/// Decode + enrich rate wanted of one core, cache warm.
const TARGET_EVENTS_PER_SECOND_PER_CORE: f64 = 150_000.0;

/// Nanoseconds per item of `run` over `items`, best of `rounds`.
fn measure<T>(name: &str, items: &[T], rounds: usize, mut run: impl FnMut(&T)) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..rounds {
        let started = Instant::now();
        for item in items {
            run(item);
        }
        best = best.min(started.elapsed());
    }
    let per_item = best.as_nanos() as f64 / items.len() as f64;
    println!("{name:<44} {per_item:>10.0} ns/event");
    per_item
}

fn enricher(ua_cache_entries: NonZeroUsize) -> Enricher {
    Enricher::new(
        Classifier::default(),
        ua_cache_entries,
        TokenStore::new(30 * 86_400_000, 256 << 20),
    )
}

fn main() {
    let events = mix::raw_events(EVENTS, 5);
    let composition = mix::Composition::of(&events);
    println!(
        "corpus: {EVENTS} events of the lumen-traffic mix ({} shares, {} tokened visits)",
        composition.shares, composition.tokened_visits
    );
    let codec = Codec::<RawEvent>::new().expect("codec");
    let payloads: Vec<Vec<u8>> = events
        .iter()
        .map(|e| codec.encode(e).expect("encode"))
        .collect();
    let rounds = 5;

    let baseline = measure("baseline: avro decode", &payloads, rounds, |payload| {
        black_box(codec.decode(payload).expect("decode"));
    });
    let woothee = woothee::parser::Parser::new();
    measure(
        "user agent parse, uncached (woothee + tables)",
        &events,
        rounds,
        |event| {
            black_box(user_agent::parse(&event.user_agent, &woothee));
        },
    );
    // Every record of a round in one partition: its shares resolve the
    // tokened visits that follow them, as in a raw partition.
    let mut warm = enricher(NonZeroUsize::new(10_000).expect("non-zero"));
    let enrich = measure(
        "decode + enrich (UA cache warm)",
        &payloads,
        rounds,
        |payload| {
            let raw = codec.decode(payload).expect("decode");
            black_box(warm.enrich(0, raw, None).expect("enrich"));
        },
    );
    let mut cold = enricher(NonZeroUsize::MIN);
    measure(
        "decode + enrich (UA cache of 1: misses)",
        &payloads,
        rounds,
        |payload| {
            let raw = codec.decode(payload).expect("decode");
            black_box(cold.enrich(0, raw, None).expect("enrich"));
        },
    );
    let per_core = 1e9 / enrich;
    println!(
        "enrichment adds {:.0} ns/event over decode ({:.1}x baseline)",
        enrich - baseline,
        enrich / baseline,
    );
    println!(
        "decode + enrich, cache warm: {per_core:.0} events/s/core (target {TARGET_EVENTS_PER_SECOND_PER_CORE:.0}: {})",
        if per_core >= TARGET_EVENTS_PER_SECOND_PER_CORE {
            "met"
        } else {
            "MISSED"
        }
    );
}
