//! Integration tests of lumen-sink against real Kafka (`LUMEN_KAFKA_BROKERS`)
//! and ClickHouse (`LUMEN_CLICKHOUSE_URL`). Built only with
//! `--features integration`.
#![cfg(feature = "integration")]
