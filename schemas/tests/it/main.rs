//! Integration tests of the data contract against a real ClickHouse
//! (`LUMEN_CLICKHOUSE_URL`, default http://127.0.0.1:8123). Built only with
//! `--features integration`; `make test` starts ClickHouse first.
#![cfg(feature = "integration")]

mod migrations;
