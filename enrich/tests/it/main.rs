//! Integration tests of lumen-enrich. The channel corpus needs no services;
//! the rest runs against real Kafka (`--features integration`; brokers from
//! `LUMEN_KAFKA_BROKERS`, default 127.0.0.1:9092), each test with its own
//! topics and consumer group.

mod corpus;
#[cfg(feature = "integration")]
mod harness;
#[cfg(feature = "integration")]
mod pipeline;
#[cfg(feature = "integration")]
mod rebalance;
#[cfg(feature = "integration")]
mod renew;
#[cfg(feature = "integration")]
mod restart;
