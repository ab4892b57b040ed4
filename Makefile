# Lumen: the two commands are `make demo` and `make test` (see README.md).
SHELL := /bin/bash
.DEFAULT_GOAL := help

.PHONY: help up down test fmt lint bench bench-ingest bench-enrich bench-sink demo build

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-14s %s\n", $$1, $$2}'

up: ## Install (once) and start Kafka and ClickHouse under .lumen/
	deploy/local/up.sh

down: ## Stop what `make up` started
	deploy/local/down.sh

build: ## Build the three services (debug)
	cargo build --locked -p lumen-ingest -p lumen-enrich -p lumen-sink -p lumen-e2e

test: ## fmt + clippy + unit + integration + browser + end-to-end tests, infra started as needed
	tests/run-all.sh

fmt: ## Format the code
	cargo fmt --all

lint: ## Format check and clippy with warnings as errors
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets --all-features -- -D warnings

bench: bench-ingest bench-enrich bench-sink ## All benchmarks

bench-ingest: ## Ingest vs a bare hyper 204 (pixel) and a bare rdkafka producer (batches), p99, RSS (needs `make up`)
	cargo bench -p lumen-ingest

bench-enrich: ## Classifier ns/event (warm, cold) and the service through Kafka with transactions vs a bare transactional copy (needs `make up`)
	cargo bench -p lumen-enrich

bench-sink: ## Sink vs ClickHouse's RowBinary limit and its Kafka engine, p99 at 10k rows/s, RSS (needs `make up`)
	cargo bench -p lumen-sink

demo: ## Kafka + ClickHouse + the three services + demo site + traffic, then a live dark/public table
	deploy/demo.sh
