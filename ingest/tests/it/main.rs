//! Integration tests of `lumen-ingest` against a real Kafka
//! (`LUMEN_KAFKA_BROKERS`, default 127.0.0.1:9092): the service runs
//! in-process on port 0 with its own ephemeral topic. Built only with
//! `--features integration`; `make test` starts Kafka first.
#![cfg(feature = "integration")]

mod harness;
mod hostile;
mod kafka_down;
mod pipeline;
mod shutdown;
