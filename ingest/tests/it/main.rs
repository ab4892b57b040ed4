//! Integration tests against real Kafka (`--features integration`).
#![cfg(feature = "integration")]
