//! Integration tests of lumen-enrich against real Kafka (`--features
//! integration`; brokers from `LUMEN_KAFKA_BROKERS`, default
//! 127.0.0.1:9092). Each test creates its own topics and consumer group.
#![cfg(feature = "integration")]

mod harness;
mod pipeline;
mod rebalance;
mod restart;
