//! Per-record CPU of the sink's own steps, in one thread, without Kafka or
//! ClickHouse: what `make bench-sink`'s (a) spends beside librdkafka, LZ4
//! and HTTP, measured where it can be read to the nanosecond. Harness-less;
//! run with `cargo bench -p lumen-sink --bench hot_path`.
//!
//! The baseline, measured in the same run, is the least any consumer
//! does with a record: copy its payload out of the client's buffer.
//!
//! - **admit**: the consume loop's work per record beside that copy: its
//!   event id read and digested, the digest remembered in the partition's
//!   recent ids.
//! - **transcode**: the delivery's work per record before LZ4: the Avro
//!   body walked into a RowBinary row.
//!
//! Rows are the integration tests' and `make bench-sink`'s sample events.

use std::hint::black_box;
use std::time::{Duration, Instant};

use lumen_runtime::dedupe::{Dedupe, EventDigest};
use lumen_schemas::{Codec, EnrichedEvent};
use lumen_sink::decode::Decoder;
use lumen_sink::row::sample;

/// Records per round: about one `--max-buffered-rows` budget.
const RECORDS: usize = 150_000;
/// Rounds per step; the best is kept.
const ROUNDS: usize = 15;
/// The sink's default `--dedupe-window-events`.
const DEDUPE_WINDOW: usize = 100_000;

/// Nanoseconds per record of `round` over `payloads`, best of [`ROUNDS`].
fn measure(name: &str, payloads: &[Vec<u8>], mut round: impl FnMut(&[Vec<u8>])) -> f64 {
    let mut best = Duration::MAX;
    for _ in 0..ROUNDS {
        let started = Instant::now();
        round(payloads);
        best = best.min(started.elapsed());
    }
    let per_record = best.as_nanos() as f64 / payloads.len() as f64;
    println!("{name:<52} {per_record:>8.1} ns/record");
    per_record
}

fn main() {
    let codec = Codec::<EnrichedEvent>::new().expect("codec");
    let payloads: Vec<Vec<u8>> = (0..RECORDS as u64)
        .map(|n| {
            codec
                .encode(&sample::event(n, 1_764_000_000_000 + n as i64))
                .expect("encode")
        })
        .collect();
    let bytes: usize = payloads.iter().map(Vec::len).sum();
    println!(
        "sink hot path: {RECORDS} records of {} bytes on average, best of {ROUNDS} rounds",
        bytes / RECORDS
    );

    let mut copied = Vec::with_capacity(bytes);
    let copy = measure("baseline: copy each payload", &payloads, |payloads| {
        copied.clear();
        for payload in payloads {
            copied.extend_from_slice(payload);
        }
        black_box(&copied);
    });
    let mut dedupe = Dedupe::new(DEDUPE_WINDOW);
    let admit = measure(
        "admit: event id, digest, recent ids",
        &payloads,
        |payloads| {
            for payload in payloads {
                let id = lumen_schemas::codec::event_id(payload).expect("event id");
                black_box(dedupe.remember(0, EventDigest::of(id)));
            }
        },
    );
    let decoder = Decoder::new().expect("decoder");
    let mut out = Vec::with_capacity(bytes * 2);
    let transcode = measure(
        "transcode: Avro body -> RowBinary row",
        &payloads,
        |payloads| {
            out.clear();
            for payload in payloads {
                decoder.row(payload, &mut out).expect("row");
            }
            black_box(&out);
        },
    );
    println!(
        "ratios to the copy: admit {:.1}x, transcode {:.1}x",
        admit / copy,
        transcode / copy
    );
}
