//! Integration tests of lumen-sink against real Kafka (`LUMEN_KAFKA_BROKERS`,
//! default 127.0.0.1:9092) and ClickHouse (`LUMEN_CLICKHOUSE_URL`, default
//! http://127.0.0.1:8123). Built only with `--features integration`; each
//! test has its own topics, consumer group and database.
#![cfg(feature = "integration")]

mod crash;
mod duplicates;
mod flow;
mod harness;
mod outage;
mod poison;
mod proxy;
mod queries;
mod rebalance;
