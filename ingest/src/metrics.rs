//! Every metric of `lumen-ingest`, registered once. Names follow
//! `lumen_ingest_<what>_<unit>`; every label comes from a bounded set (route
//! templates, status codes, event kinds, the `reason()` labels of the error
//! enums, Kafka error tags).

use std::sync::{Arc, OnceLock};

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

/// Requests answered, by route template and status code.
pub const REQUESTS: &str = "lumen_ingest_requests_total";
/// Events by kind and outcome (`accepted`, a rejection reason, or `not_stored`).
pub const EVENTS: &str = "lumen_ingest_events_total";
/// Requests being answered right now.
pub const REQUESTS_IN_FLIGHT: &str = "lumen_ingest_requests_in_flight";
/// Whole requests refused, by reason.
pub const REQUEST_REJECTIONS: &str = "lumen_ingest_request_rejections_total";
/// Time from first enqueue to the last acknowledgement of a request's events.
pub const PRODUCE_DURATION: &str = "lumen_ingest_produce_duration_seconds";
/// Produce failures by stage (`enqueue`, `delivery`) and Kafka error tag.
pub const PRODUCE_ERRORS: &str = "lumen_ingest_produce_errors_total";
/// Records queued in the producer and not yet acknowledged.
pub const PRODUCER_QUEUE: &str = "lumen_ingest_producer_queue_messages";
/// Producers replaced after Kafka was unreachable for too long.
pub const PRODUCER_REPLACEMENTS: &str = "lumen_ingest_producer_replacements_total";
/// Request body bytes as received on the wire.
pub const RECEIVED_BYTES: &str = "lumen_ingest_received_bytes_total";
/// Client connections open on the public listener.
pub const CONNECTIONS_OPEN: &str = "lumen_ingest_connections_open";
/// Times the public listener reached `--max-connections` and stopped accepting.
pub const CONNECTION_CAP_REACHED: &str = "lumen_ingest_connection_cap_reached_total";

/// Kafka acknowledges in about 1-20 ms locally, more with replication across
/// zones; the top buckets catch requests close to `message.timeout.ms`.
const PRODUCE_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The `route` labels of [`REQUESTS`]: the router's route templates, and
/// `other` for everything else.
pub const ROUTES: [&str; 5] = ["/v1/events", "/p.gif", "/p", "/t.js", "other"];
/// Statuses whose [`REQUESTS`] counters are looked up once per route (the
/// answers of nearly every request).
const COMMON_STATUSES: [u16; 4] = [200, 202, 204, 304];
/// Event kinds whose `accepted` and `not_stored` [`EVENTS`] counters are
/// looked up once.
const KINDS: [&str; 2] = ["pageview", "share"];
/// See [`KINDS`].
const COMMON_OUTCOMES: [&str; 2] = ["accepted", "not_stored"];

/// Handles on every metric.
#[derive(Debug, Clone)]
pub struct Metrics {
    /// See [`REQUESTS`].
    pub requests: IntCounterVec,
    /// See [`EVENTS`].
    pub events: IntCounterVec,
    /// See [`REQUESTS_IN_FLIGHT`].
    pub requests_in_flight: IntGauge,
    /// See [`REQUEST_REJECTIONS`].
    pub request_rejections: IntCounterVec,
    /// See [`PRODUCE_DURATION`].
    pub produce_duration: Histogram,
    /// See [`PRODUCE_ERRORS`].
    pub produce_errors: IntCounterVec,
    /// See [`PRODUCER_QUEUE`].
    pub producer_queue: IntGauge,
    /// See [`PRODUCER_REPLACEMENTS`].
    pub producer_replacements: IntCounter,
    /// See [`RECEIVED_BYTES`].
    pub received_bytes: IntCounter,
    /// See [`CONNECTIONS_OPEN`].
    pub connections_open: IntGauge,
    /// See [`CONNECTION_CAP_REACHED`].
    pub connection_cap_reached: IntCounter,
    /// Children of the counter vectors every request touches, resolved
    /// once: `with_label_values` hashes the labels and takes a lock.
    hot: Arc<HotCounters>,
}

/// See [`Metrics::hot`]. Each child is resolved on first use, so that
/// `/metrics` shows only the series that happened, as before.
#[derive(Debug, Default)]
struct HotCounters {
    /// [`REQUESTS`] by [`ROUTES`] × [`COMMON_STATUSES`].
    requests: [[OnceLock<IntCounter>; COMMON_STATUSES.len()]; ROUTES.len()],
    /// [`EVENTS`] by [`KINDS`] × [`COMMON_OUTCOMES`].
    events: [[OnceLock<IntCounter>; COMMON_OUTCOMES.len()]; KINDS.len()],
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new(registry: &Registry) -> prometheus::Result<Self> {
        let metrics = Self {
            requests: IntCounterVec::new(
                Opts::new(REQUESTS, "Requests answered, by route and status."),
                &["route", "status"],
            )?,
            events: IntCounterVec::new(
                Opts::new(
                    EVENTS,
                    "Events by kind and outcome (accepted or the rejection reason).",
                ),
                &["kind", "outcome"],
            )?,
            requests_in_flight: IntGauge::new(
                REQUESTS_IN_FLIGHT,
                "Requests being answered right now.",
            )?,
            request_rejections: IntCounterVec::new(
                Opts::new(
                    REQUEST_REJECTIONS,
                    "Requests refused as a whole, by reason.",
                ),
                &["reason"],
            )?,
            produce_duration: Histogram::with_opts(
                HistogramOpts::new(
                    PRODUCE_DURATION,
                    "Seconds from enqueue to Kafka's acknowledgement of a request's events.",
                )
                .buckets(PRODUCE_BUCKETS.to_vec()),
            )?,
            produce_errors: IntCounterVec::new(
                Opts::new(
                    PRODUCE_ERRORS,
                    "Produce failures by stage and Kafka error tag.",
                ),
                &["stage", "tag"],
            )?,
            producer_queue: IntGauge::new(
                PRODUCER_QUEUE,
                "Records queued in the producer, not yet acknowledged.",
            )?,
            producer_replacements: IntCounter::new(
                PRODUCER_REPLACEMENTS,
                "Producers replaced after Kafka was unreachable for too long.",
            )?,
            received_bytes: IntCounter::new(
                RECEIVED_BYTES,
                "Request body bytes received on the wire.",
            )?,
            connections_open: IntGauge::new(
                CONNECTIONS_OPEN,
                "Client connections open on the public listener.",
            )?,
            connection_cap_reached: IntCounter::new(
                CONNECTION_CAP_REACHED,
                "Times the public listener reached --max-connections and stopped accepting.",
            )?,
            hot: Arc::default(),
        };
        registry.register(Box::new(metrics.requests.clone()))?;
        registry.register(Box::new(metrics.events.clone()))?;
        registry.register(Box::new(metrics.requests_in_flight.clone()))?;
        registry.register(Box::new(metrics.request_rejections.clone()))?;
        registry.register(Box::new(metrics.produce_duration.clone()))?;
        registry.register(Box::new(metrics.produce_errors.clone()))?;
        registry.register(Box::new(metrics.producer_queue.clone()))?;
        registry.register(Box::new(metrics.producer_replacements.clone()))?;
        registry.register(Box::new(metrics.received_bytes.clone()))?;
        registry.register(Box::new(metrics.connections_open.clone()))?;
        registry.register(Box::new(metrics.connection_cap_reached.clone()))?;
        Ok(metrics)
    }

    /// Counts one answer of `route` (one of [`ROUTES`]) with `status`.
    pub fn count_request(&self, route: &str, status: u16) {
        let slot = ROUTES
            .iter()
            .position(|known| *known == route)
            .zip(COMMON_STATUSES.iter().position(|known| *known == status));
        let status = || status.to_string();
        match slot {
            Some((r, s)) => self.hot.requests[r][s]
                .get_or_init(|| self.requests.with_label_values(&[route, &status()]))
                .inc(),
            None => self.requests.with_label_values(&[route, &status()]).inc(),
        }
    }

    /// Counts `count` events of one kind with one outcome.
    pub fn count_events(&self, kind: &str, outcome: &str, count: u64) {
        if count == 0 {
            return;
        }
        let slot = KINDS
            .iter()
            .position(|known| *known == kind)
            .zip(COMMON_OUTCOMES.iter().position(|known| *known == outcome));
        match slot {
            Some((k, o)) => self.hot.events[k][o]
                .get_or_init(|| self.events.with_label_values(&[kind, outcome]))
                .inc_by(count),
            None => self
                .events
                .with_label_values(&[kind, outcome])
                .inc_by(count),
        }
    }
}

/// Counts one in a gauge for as long as it lives (a request in flight, an
/// open connection): what holds it may be dropped half-way, e.g. a request
/// whose client hung up, and must leave the gauge all the same.
pub(crate) struct Held<'a>(&'a IntGauge);

impl<'a> Held<'a> {
    /// Adds one to `gauge` until the result is dropped.
    pub(crate) fn start(gauge: &'a IntGauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registers_every_metric_under_its_name() {
        let registry = Registry::new();
        let metrics = Metrics::new(&registry).expect("metrics");
        metrics.count_request("/v1/events", 202);
        metrics.count_request("/p", 418);
        metrics.count_events("pageview", "accepted", 3);
        metrics.count_events("pageview", "url_too_long", 1);
        for (labels, expected) in [
            (["/v1/events", "202"], 1),
            (["/p", "418"], 1),
            (["/p", "204"], 0),
        ] {
            assert_eq!(metrics.requests.with_label_values(&labels).get(), expected);
        }
        for (labels, expected) in [
            (["pageview", "accepted"], 3),
            (["pageview", "url_too_long"], 1),
            (["share", "accepted"], 0),
        ] {
            assert_eq!(metrics.events.with_label_values(&labels).get(), expected);
        }
        metrics
            .request_rejections
            .with_label_values(&["malformed_json"])
            .inc();
        metrics
            .produce_errors
            .with_label_values(&["enqueue", "queue_full"])
            .inc();
        metrics.produce_duration.observe(0.004);
        metrics.received_bytes.inc_by(10);
        let names: Vec<String> = registry
            .gather()
            .iter()
            .map(|family| family.name().to_owned())
            .collect();
        for name in [
            REQUESTS,
            REQUESTS_IN_FLIGHT,
            EVENTS,
            REQUEST_REJECTIONS,
            PRODUCE_DURATION,
            PRODUCE_ERRORS,
            PRODUCER_QUEUE,
            RECEIVED_BYTES,
            CONNECTIONS_OPEN,
            CONNECTION_CAP_REACHED,
        ] {
            assert!(
                names.iter().any(|n| n == name),
                "{name} missing from {names:?}"
            );
        }
    }
}
