//! Per-event cost of enrichment, against a baseline measured in the same
//! run: Avro decode of the raw event alone. Harness-less (no extra
//! dependencies); run with
//! `cargo bench -p lumen-enrich --bench enrich`.
//!
//! The corpus mixes browsers, in-app webviews, preview fetchers, referrers,
//! tokens and campaigns; user agents repeat as they do in real traffic, so
//! the cached case is the realistic one and the uncached one the worst case.

use std::hint::black_box;
use std::num::NonZeroUsize;
use std::time::{Duration, Instant};

use lumen_enrich::classify::Classifier;
use lumen_enrich::enrich::Enricher;
use lumen_enrich::tokens::TokenStore;
use lumen_enrich::user_agent;
use lumen_schemas::{Codec, EventKind, RawEvent, ShareToken};

const USER_AGENTS: &[&str] = &[
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:125.0) Gecko/20100101 Firefox/125.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 [FBAN/FBIOS;FBAV/460.0.0.48.109;FBBV/584426475]",
    "Mozilla/5.0 (Linux; Android 13; SM-A536B) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36 WhatsApp/2.24.8.78",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148 Instagram 329.0.3.29.108 (iPhone15,2; iOS 17_4; en_US)",
    "WhatsApp/2.23.20.0 A",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
];

const REFERRERS: &[Option<&str>] = &[
    None,
    Some("https://www.google.com/"),
    Some("https://l.facebook.com/"),
    Some("android-app://com.google.android.gm"),
    Some("https://blog.example.org/post/1"),
    Some("https://dailyplanet.example/"),
];

const URLS: &[&str] = &[
    "https://dailyplanet.example/news/2026/solar-eclipse-tonight",
    "https://dailyplanet.example/",
    "https://dailyplanet.example/a?utm_source=morning&utm_medium=email&utm_campaign=daily",
    "https://dailyplanet.example/world/europe",
];

fn corpus(size: usize) -> Vec<RawEvent> {
    let token = ShareToken::new(1_763_442_000_000, [1, 2, 3, 4, 5, 6, 7]).encode();
    (0..size)
        .map(|i| RawEvent {
            event_id: format!("event-{i}"),
            site_id: "daily-planet".to_owned(),
            kind: EventKind::Pageview,
            received_at: 1_763_442_600_000,
            sent_at: None,
            url: URLS[i % URLS.len()].to_owned(),
            referrer: REFERRERS[i % REFERRERS.len()].map(str::to_owned),
            user_agent: USER_AGENTS[i % USER_AGENTS.len()].to_owned(),
            visitor_id: format!("visitor-{}", i % 97),
            minted_token: None,
            landing_token: (i % 4 == 0).then(|| token.clone()),
            webview: None,
            share_token: None,
            share_method: None,
            share_target: None,
            parent_token: None,
        })
        .collect()
}

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

fn main() {
    let events = corpus(20_000);
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
    let mut enricher = Enricher::new(
        Classifier::default(),
        NonZeroUsize::new(10_000).expect("non-zero"),
        TokenStore::new(30 * 86_400_000, 256 << 20),
    );
    let enrich = measure(
        "decode + enrich (UA cache warm)",
        &payloads,
        rounds,
        |payload| {
            let raw = codec.decode(payload).expect("decode");
            black_box(enricher.enrich(0, raw, None).expect("enrich"));
        },
    );
    let mut cold = Enricher::new(
        Classifier::default(),
        NonZeroUsize::MIN,
        TokenStore::new(30 * 86_400_000, 256 << 20),
    );
    measure(
        "decode + enrich (UA cache of 1: misses)",
        &payloads,
        rounds,
        |payload| {
            let raw = codec.decode(payload).expect("decode");
            black_box(cold.enrich(0, raw, None).expect("enrich"));
        },
    );
    println!(
        "enrichment adds {:.0} ns/event over decode ({:.1}x baseline); one core: {:.0} events/s",
        enrich - baseline,
        enrich / baseline,
        1e9 / enrich
    );
}
