//! Delivers beacons to ingest the way the tracker does: retries with
//! backoff on 503, 5xx and network errors (ingest answers 202 only after
//! Kafka has the events, so a retried request is the only way to lose
//! nothing when ingest dies), and gives up only after a deadline.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};
use reqwest::StatusCode;

use crate::simulate::Beacon;

/// Why a beacon was not delivered.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// Ingest refused the request for good (a 4xx): a bug in the generator
    /// or in ingest, never retried.
    #[error("ingest rejected the beacon with {status}: {body}")]
    Rejected {
        /// HTTP status.
        status: StatusCode,
        /// Response body.
        body: String,
    },
    /// Still failing when the retry budget ran out.
    #[error("ingest unavailable: {0}")]
    Unavailable(String),
}

/// An HTTP client for `POST /v1/events`.
#[derive(Debug, Clone)]
pub struct Sender {
    client: reqwest::Client,
    endpoint: String,
    origin: String,
    retry_budget: Duration,
    retries: Arc<AtomicU64>,
}

impl Sender {
    /// A sender to `ingest_url` (e.g. `http://127.0.0.1:8080`) that presents
    /// `origin` as the page's origin and retries for up to `retry_budget`.
    pub fn new(ingest_url: &str, origin: &str, retry_budget: Duration) -> Self {
        Self {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .build()
                .unwrap_or_default(),
            endpoint: format!("{}/v1/events", ingest_url.trim_end_matches('/')),
            origin: origin.to_owned(),
            retry_budget,
            retries: Arc::default(),
        }
    }

    /// Retried attempts so far, across clones.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// Sends one beacon, retrying transient failures.
    pub async fn send(&self, beacon: &Beacon) -> Result<(), SendError> {
        let body = serde_json::to_vec(&beacon.events).unwrap_or_default();
        let attempt = || async { self.attempt(beacon, body.clone()).await };
        attempt
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(50))
                    .with_max_delay(Duration::from_secs(2))
                    .with_jitter()
                    .with_total_delay(Some(self.retry_budget))
                    .without_max_times(),
            )
            .when(|error| matches!(error, SendError::Unavailable(_)))
            .notify(|_, _| {
                self.retries.fetch_add(1, Ordering::Relaxed);
            })
            .await
    }

    async fn attempt(&self, beacon: &Beacon, body: Vec<u8>) -> Result<(), SendError> {
        let response = self
            .client
            .post(&self.endpoint)
            .header("content-type", "text/plain;charset=UTF-8")
            .header("user-agent", beacon.user_agent)
            .header("origin", &self.origin)
            .header("x-forwarded-for", beacon.client_ip.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| SendError::Unavailable(e.to_string()))?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let body = response.text().await.unwrap_or_default();
        if status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS {
            Err(SendError::Unavailable(format!("{status}: {body}")))
        } else {
            Err(SendError::Rejected { status, body })
        }
    }
}
