//! End-to-end tests: the three built binaries against real Kafka and
//! ClickHouse, fed by the traffic generator. Built only with
//! `--features integration`; `make test` starts the infrastructure first.
#![cfg(feature = "integration")]
