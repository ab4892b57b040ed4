//! Writing one batch into ClickHouse: RowBinary rows transcoded from the
//! Avro records (`transcode.rs`) over HTTP with LZ4, one
//! `INSERT` per batch carrying its deduplication token, so that a replayed
//! batch (after a crash or a rebalance) is a no-op for `events` and for every
//! materialized view. Failures that retrying may fix are retried for ever
//! with jittered exponential backoff (a batch is never dropped); a batch
//! that ClickHouse refuses as invalid data is split in halves until the
//! refused rows are isolated, and those are returned as dead letters while
//! the rest lands. The split is deterministic, so a replay hits the same
//! tokens. Which batches to write, and committing, is decided elsewhere.

use std::future::Future;
use std::ops::Range;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use clickhouse::Client;
use clickhouse::error::Error as ClickHouseError;
use clickhouse::insert_formatted::InsertFormatted;

use crate::batch::dedup_token;
use crate::decode::{Decoder, Records, Rejected, Rows};
use crate::metrics::Metrics;
use crate::row::{EVENTS_TABLE, EventRow};

/// ClickHouse error codes that mean "this data is invalid": retrying the
/// same rows can never succeed. Every other failure is retried.
/// (Codes from ClickHouse's `src/Common/ErrorCodes.cpp`.)
pub const DATA_ERROR_CODES: &[(u32, &str)] = &[
    (6, "cannot_parse_text"),
    (27, "cannot_parse_input_assertion_failed"),
    (41, "cannot_parse_datetime"),
    (53, "type_mismatch"),
    (69, "argument_out_of_bound"),
    (70, "cannot_convert_type"),
    (72, "cannot_parse_number"),
    (117, "incorrect_data"),
    (131, "too_large_string_size"),
    (321, "value_is_out_of_range_of_data_type"),
    (376, "cannot_parse_uuid"),
    (469, "violated_constraint"),
];

/// Why an insert failed.
#[derive(Debug, thiserror::Error)]
pub enum InsertError {
    /// ClickHouse refused the rows as invalid; `reason` is from
    /// [`DATA_ERROR_CODES`].
    #[error("ClickHouse refused the data ({reason}): {message}")]
    Data {
        /// Bounded label.
        reason: &'static str,
        /// ClickHouse's message.
        message: String,
    },
    /// Anything else: network, timeout, overload, a server-side problem.
    #[error("insert failed ({reason}): {source}")]
    Retryable {
        /// Bounded label.
        reason: &'static str,
        /// The client error.
        #[source]
        source: ClickHouseError,
    },
}

impl InsertError {
    /// Sorts a client error into data or retryable.
    pub fn classify(error: ClickHouseError) -> Self {
        let reason = match &error {
            ClickHouseError::BadResponse(message) => {
                match exception_code(message).and_then(data_error_reason) {
                    Some(reason) => {
                        return Self::Data {
                            reason,
                            message: message.clone(),
                        };
                    }
                    None => "server",
                }
            }
            ClickHouseError::Network(_) => "network",
            ClickHouseError::TimedOut => "timeout",
            ClickHouseError::SchemaMismatch(_) | ClickHouseError::InvalidColumnsHeader(_) => {
                "schema_mismatch"
            }
            _ => "other",
        };
        Self::Retryable {
            reason,
            source: error,
        }
    }
}

/// The numeric code of a ClickHouse exception message (`Code: 469. DB::...`),
/// the stable part of the server's error format.
fn exception_code(message: &str) -> Option<u32> {
    let rest = message.trim_start().strip_prefix("Code: ")?;
    let digits = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..digits].parse().ok()
}

fn data_error_reason(code: u32) -> Option<&'static str> {
    DATA_ERROR_CODES
        .iter()
        .find(|(known, _)| *known == code)
        .map(|(_, reason)| *reason)
}

/// Where rows go; a trait so that the retry and split logic is tested without
/// a server.
pub trait Table: Send + Sync + 'static {
    /// Inserts `rows` as one block with `token`, consuming them in order.
    fn insert(
        &self,
        rows: &mut Rows<'_>,
        token: &str,
    ) -> impl Future<Output = Result<(), InsertError>> + Send;
}

/// The real `events` table.
#[derive(Clone)]
pub struct ClickHouseTable {
    client: Client,
    timeout: Duration,
}

impl ClickHouseTable {
    /// Inserts through `client` (its database holds `events`), giving up an
    /// attempt after `timeout`.
    pub fn new(client: Client, timeout: Duration) -> Self {
        Self { client, timeout }
    }
}

impl Table for ClickHouseTable {
    async fn insert(&self, rows: &mut Rows<'_>, token: &str) -> Result<(), InsertError> {
        let attempt = async {
            let mut insert = deduplicated(self.client.insert_formatted_with(insert_sql()), token)
                .with_timeouts(Some(self.timeout), Some(self.timeout))
                .buffered_with_capacity(CHUNK_BYTES);
            let mut chunk = Vec::with_capacity(CHUNK_BYTES);
            while rows.write_next(&mut chunk).is_some() {
                if chunk.len() >= CHUNK_BYTES - MAX_ROW_BYTES {
                    insert.write_buffered(&chunk);
                    insert.flush().await?;
                    chunk.clear();
                }
            }
            insert.write_buffered(&chunk);
            insert.end().await
        };
        attempt.await.map_err(InsertError::classify)
    }
}

/// `insert` deduplicated by `token`, in `events` and in every view it
/// feeds: a batch inserted again with the same token is a no-op.
pub fn deduplicated(insert: InsertFormatted, token: &str) -> InsertFormatted {
    insert
        .with_setting("insert_deduplicate", "1")
        .with_setting("insert_deduplication_token", token)
        .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
}

/// Bytes of rows per compressed chunk of an insert, the `clickhouse`
/// crate's own size for its typed inserts.
const CHUNK_BYTES: usize = 256 * 1024;

/// Room left in a chunk for the row that ends it (rows are ~0.5 KiB).
const MAX_ROW_BYTES: usize = 8 * 1024;

/// `INSERT INTO events(<the row's columns>) FORMAT RowBinary`.
fn insert_sql() -> &'static str {
    static SQL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    SQL.get_or_init(|| {
        let columns = <EventRow<'_> as clickhouse::Row>::COLUMN_NAMES.join(", ");
        format!("INSERT INTO {EVENTS_TABLE}({columns}) FORMAT RowBinary")
    })
}

/// What became of a batch's records besides the rows that landed.
#[derive(Debug, Default)]
pub struct Written {
    /// Rows ClickHouse refused as invalid.
    pub refused: Vec<Rejected>,
    /// Records that do not decode.
    pub undecodable: Vec<Rejected>,
}

/// Writes batches through a [`Table`], decoding, retrying and splitting.
pub struct Writer<T> {
    table: T,
    decoder: Decoder,
    topic: String,
    backoff: ExponentialBuilder,
    metrics: Metrics,
    readiness: lumen_runtime::Readiness,
}

impl<T: Table> Writer<T> {
    /// A writer of records read from `topic`, decoded by `decoder`,
    /// pausing `initial..=max` between retries.
    pub fn new(
        table: T,
        decoder: Decoder,
        topic: &str,
        initial: Duration,
        max: Duration,
        metrics: Metrics,
        readiness: lumen_runtime::Readiness,
    ) -> Self {
        let backoff = ExponentialBuilder::new()
            .with_min_delay(initial)
            .with_max_delay(max)
            .with_jitter()
            .without_max_times();
        Self {
            table,
            decoder,
            topic: topic.to_owned(),
            backoff,
            metrics,
            readiness,
        }
    }

    /// The backoff between attempts, shared with the other retried steps.
    pub fn backoff(&self) -> ExponentialBuilder {
        self.backoff
    }

    /// Writes the rows of `records` (offsets `first..=last` of `partition`)
    /// and returns the records that are not rows in ClickHouse: those that
    /// do not decode and those ClickHouse refused; every other row is
    /// acknowledged. Only returns once that is true: retryable failures are
    /// retried for ever.
    pub async fn write(&self, partition: i32, first: i64, last: i64, records: &Records) -> Written {
        let mut written = Written::default();
        // Ranges of `records` still to write, the next on top; halves are
        // pushed right then left so the rows land in offset order.
        let whole = 0..records.len();
        let mut pending = vec![whole.clone()];
        while let Some(range) = pending.pop() {
            if range.is_empty() {
                continue;
            }
            let token = if range == whole {
                dedup_token(&self.topic, partition, first, last)
            } else {
                // A part of a refused batch: named by the offsets it holds.
                let (lo, hi) = (
                    records.at(range.start).offset,
                    records.at(range.end - 1).offset,
                );
                format!("{}-part", dedup_token(&self.topic, partition, lo, hi))
            };
            match self
                .insert_until_answered(records, range.clone(), &token)
                .await
            {
                Ok(undecodable) => written.undecodable.extend(undecodable),
                Err((reason, detail)) if range.len() == 1 => {
                    written.refused.push(Rejected {
                        index: range.start,
                        reason,
                        detail,
                    });
                }
                Err(_) => {
                    let middle = range.start + range.len() / 2;
                    pending.push(middle..range.end);
                    pending.push(range.start..middle);
                }
            }
        }
        written
    }

    /// Inserts the rows of the records at `range` of a batch's `records`
    /// until ClickHouse acknowledges them, returning the records that did
    /// not decode, or refuses the data.
    async fn insert_until_answered(
        &self,
        records: &Records,
        range: Range<usize>,
        token: &str,
    ) -> Result<Vec<Rejected>, (&'static str, String)> {
        let mut delays = self.backoff.build();
        loop {
            let started = Instant::now();
            let mut rows = self.decoder.rows(records, range.clone());
            match self.table.insert(&mut rows, token).await {
                Ok(()) => {
                    let undecodable = rows.into_undecodable();
                    let inserted = range.len() - undecodable.len();
                    if inserted > 0 {
                        self.metrics.inserted(inserted, started);
                    }
                    self.readiness.set(true);
                    return Ok(undecodable);
                }
                Err(InsertError::Data { reason, message }) => {
                    self.readiness.set(true);
                    return Err((reason, message));
                }
                Err(InsertError::Retryable { reason, source }) => {
                    self.metrics.retries.with_label_values(&[reason]).inc();
                    self.readiness.set(false);
                    let delay = delays.next().unwrap_or(Duration::from_secs(1));
                    tracing::warn!(%source, reason, records = range.len(), token, ?delay, "insert failed; retrying");
                    tokio::time::sleep(delay).await;
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod fake {
    //! An in-memory table that refuses chosen rows and fails chosen attempts.

    use std::collections::HashSet;
    use std::sync::Mutex;

    use super::*;

    /// Refuses rows whose offset is in `poison` (the whole insert, like a
    /// constraint does), fails the first `outages` attempts, records what
    /// landed and the tokens used.
    #[derive(Default)]
    pub struct MemoryTable {
        pub poison: HashSet<i64>,
        pub outages: Mutex<usize>,
        pub landed: Mutex<Vec<i64>>,
        pub tokens: Mutex<Vec<String>>,
    }

    impl Table for MemoryTable {
        async fn insert(&self, rows: &mut Rows<'_>, token: &str) -> Result<(), InsertError> {
            let mut out = Vec::new();
            let offsets: Vec<i64> = std::iter::from_fn(|| rows.write_next(&mut out))
                .map(|consumed| consumed.offset)
                .collect();
            {
                let mut outages = self.outages.lock().expect("lock");
                if *outages > 0 {
                    *outages -= 1;
                    return Err(InsertError::Retryable {
                        reason: "network",
                        source: ClickHouseError::TimedOut,
                    });
                }
            }
            self.tokens.lock().expect("lock").push(token.to_owned());
            if let Some(bad) = offsets.iter().find(|offset| self.poison.contains(offset)) {
                return Err(InsertError::classify(ClickHouseError::BadResponse(
                    format!(
                        "Code: 469. DB::Exception: Constraint `site_id_present` is violated at row {}",
                        bad
                    ),
                )));
            }
            self.landed.lock().expect("lock").extend(offsets);
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use rstest::rstest;

    use super::fake::MemoryTable;
    use super::*;
    use crate::decode::Consumed;
    use crate::row::sample;

    fn rows(offsets: std::ops::Range<i64>) -> Records {
        let codec = lumen_schemas::Codec::new().expect("codec");
        let payloads: Vec<(i64, Vec<u8>)> = offsets
            .map(|offset| {
                let event = sample::event(offset as u64, 1_764_000_000_000);
                (offset, codec.encode(&event).expect("encode"))
            })
            .collect();
        payloads
            .iter()
            .map(|(offset, payload)| Consumed {
                offset: *offset,
                key: None,
                payload,
            })
            .collect()
    }

    fn writer(table: MemoryTable) -> Writer<MemoryTable> {
        Writer::new(
            table,
            Decoder::new().expect("decoder"),
            "lumen.enriched",
            Duration::from_millis(1),
            Duration::from_millis(2),
            Metrics::new().expect("metrics"),
            lumen_runtime::Readiness::new(),
        )
    }

    #[rstest]
    #[case("Code: 469. DB::Exception: Constraint violated", Some(469))]
    #[case("Code: 6. DB::Exception: Cannot parse", Some(6))]
    #[case("Code: 241", Some(241))]
    #[case("503 Service Unavailable", None)]
    #[case("Code: x", None)]
    fn reads_exception_codes(#[case] message: &str, #[case] code: Option<u32>) {
        assert_eq!(exception_code(message), code);
    }

    #[rstest]
    #[case(ClickHouseError::BadResponse("Code: 469. DB::Exception: x".into()), Some("violated_constraint"))]
    #[case(ClickHouseError::BadResponse("Code: 241. DB::Exception: Memory limit".into()), None)]
    #[case(ClickHouseError::BadResponse("Code: 252. DB::Exception: Too many parts".into()), None)]
    #[case(ClickHouseError::TimedOut, None)]
    #[case(ClickHouseError::SchemaMismatch("x".into()), None)]
    fn only_data_errors_are_not_retried(
        #[case] error: ClickHouseError,
        #[case] data: Option<&str>,
    ) {
        match InsertError::classify(error) {
            InsertError::Data { reason, .. } => assert_eq!(Some(reason), data),
            InsertError::Retryable { .. } => assert_eq!(data, None),
        }
    }

    #[tokio::test]
    async fn a_clean_batch_lands_in_one_insert_with_the_batch_token() {
        let writer = writer(MemoryTable::default());
        let written = writer.write(2, 100, 109, &rows(100..110)).await;
        assert!(written.refused.is_empty() && written.undecodable.is_empty());
        assert_eq!(
            *writer.table.tokens.lock().expect("lock"),
            vec!["lumen.enriched-2-100-109"]
        );
        assert_eq!(writer.table.landed.lock().expect("lock").len(), 10);
    }

    #[tokio::test]
    async fn outages_are_retried_until_the_batch_lands() {
        let table = MemoryTable {
            outages: Mutex::new(5),
            ..MemoryTable::default()
        };
        let writer = writer(table);
        let written = writer.write(0, 0, 9, &rows(0..10)).await;
        assert!(written.refused.is_empty());
        assert_eq!(writer.table.landed.lock().expect("lock").len(), 10);
        assert_eq!(
            writer.metrics.retries.with_label_values(&["network"]).get(),
            5
        );
    }

    #[tokio::test]
    async fn poison_rows_are_isolated_and_the_rest_lands_in_order() {
        let table = MemoryTable {
            poison: [3, 17, 18].into(),
            ..MemoryTable::default()
        };
        let writer = writer(table);
        let batch = rows(0..20);
        let refused = writer.write(0, 0, 19, &batch).await.refused;
        let refused_offsets: Vec<i64> = refused.iter().map(|r| batch.at(r.index).offset).collect();
        assert_eq!(refused_offsets, vec![3, 17, 18]);
        assert!(refused.iter().all(|r| r.reason == "violated_constraint"));
        let landed = writer.table.landed.lock().expect("lock").clone();
        let expected: Vec<i64> = (0..20).filter(|o| ![3, 17, 18].contains(o)).collect();
        assert_eq!(landed, expected);
    }

    #[tokio::test]
    async fn undecodable_records_are_reported_once_beside_refused_rows() {
        let table = MemoryTable {
            poison: [2].into(),
            ..MemoryTable::default()
        };
        let writer = writer(table);
        let good = rows(0..8);
        let batch: Records = good
            .iter()
            .map(|record| match record.offset {
                5 => Consumed {
                    payload: b"certainly not avro",
                    ..record
                },
                _ => record,
            })
            .collect();
        let written = writer.write(0, 0, 7, &batch).await;
        let refused: Vec<usize> = written.refused.iter().map(|r| r.index).collect();
        let undecodable: Vec<usize> = written.undecodable.iter().map(|u| u.index).collect();
        assert_eq!((refused, undecodable), (vec![2], vec![5]));
        assert_eq!(
            *writer.table.landed.lock().expect("lock"),
            vec![0, 1, 3, 4, 6, 7]
        );
    }

    #[tokio::test]
    async fn the_split_is_deterministic() {
        let poison = [5, 6, 11];
        let first = writer(MemoryTable {
            poison: poison.into(),
            ..MemoryTable::default()
        });
        first.write(1, 0, 15, &rows(0..16)).await;
        let second = writer(MemoryTable {
            poison: poison.into(),
            ..MemoryTable::default()
        });
        second.write(1, 0, 15, &rows(0..16)).await;
        assert_eq!(
            *first.table.tokens.lock().expect("lock"),
            *second.table.tokens.lock().expect("lock")
        );
    }
}
