use clickhouse::Client;
use lumen_schemas::migrate::{MIGRATIONS, RETENTION_TABLES, migrate, set_retention};

fn client() -> Client {
    let url = std::env::var("LUMEN_CLICKHOUSE_URL")
        .unwrap_or_else(|_| "http://127.0.0.1:8123".to_owned());
    Client::default().with_url(url)
}

async fn fresh_database(name: &str) -> Client {
    let client = client();
    client
        .query(&format!("DROP DATABASE IF EXISTS {name} SYNC"))
        .execute()
        .await
        .expect("drop test database");
    client
}

#[tokio::test]
async fn migrations_apply_once_and_record_their_versions() {
    let database = "lumen_it_schemas_migrations";
    let client = fresh_database(database).await;

    let first = migrate(&client, database).await.expect("first run");
    assert_eq!(
        first,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    let second = migrate(&client, database).await.expect("second run");
    assert!(second.is_empty(), "second run applied {second:?}");

    let recorded: Vec<u32> = client
        .query(&format!(
            "SELECT version FROM {database}.schema_migrations FINAL ORDER BY version"
        ))
        .fetch_all()
        .await
        .expect("recorded versions");
    assert_eq!(recorded, first);

    let tables: Vec<String> = client
        .query("SELECT name FROM system.tables WHERE database = ? ORDER BY name")
        .bind(database)
        .fetch_all()
        .await
        .expect("tables");
    for expected in [
        "events",
        "traffic_per_minute",
        "previews_per_minute",
        "share_ratio_buckets",
        "share_ratio",
        "minted_tokens",
        "share_visits",
    ] {
        assert!(
            tables.iter().any(|t| t == expected),
            "{expected} missing from {tables:?}"
        );
    }
}

#[tokio::test]
async fn an_interrupted_migration_is_completed_by_the_next_run() {
    let database = "lumen_it_schemas_interrupted";
    let client = fresh_database(database).await;
    migrate(&client, database).await.expect("first run");
    client
        .query(&format!(
            "ALTER TABLE {database}.schema_migrations DELETE WHERE version >= 2 SETTINGS mutations_sync = 1"
        ))
        .execute()
        .await
        .expect("forget versions");
    let again = migrate(&client, database)
        .await
        .expect("rerun over existing objects");
    assert_eq!(
        again,
        MIGRATIONS
            .iter()
            .map(|m| m.version)
            .filter(|v| *v >= 2)
            .collect::<Vec<_>>()
    );
}

/// One pageview of a person with a minted token, as the sink would write it.
const ONE_VISIT: &str = "INSERT INTO {db}.events (event_id, site_id, kind, received_at, url, user_agent, visitor_id, \
     minted_token, channel, attribution, confidence, rule, browser_family, os_family, device_type, is_bot, token_status) \
     VALUES (generateUUIDv4(), 'daily-planet', 'pageview', now64(3), 'https://dp.example/a', 'UA', 'v1', \
     'tok1', 'dark_social', 'in_app', 'certain', 'r', 'Safari', 'iOS', 'mobile', false, 'absent')";

#[tokio::test]
async fn a_retried_insert_with_the_same_token_counts_once_everywhere() {
    let database = "lumen_it_schemas_dedup";
    let client = fresh_database(database).await;
    migrate(&client, database).await.expect("migrate");
    // generateUUIDv4() differs per attempt: only the token can deduplicate,
    // in events and in every materialized view's target.
    for _ in 0..2 {
        client
            .query(&ONE_VISIT.replace("{db}", database))
            .with_setting("insert_deduplication_token", "lumen.enriched-0-0-0")
            .with_setting("deduplicate_blocks_in_dependent_materialized_views", "1")
            .execute()
            .await
            .expect("insert");
    }
    for (table, expression) in [
        ("events", "count()"),
        ("traffic_per_minute", "sum(visits)"),
        ("share_ratio", "sum(dark_social_visits)"),
        ("minted_tokens", "count()"),
    ] {
        let counted: u64 = client
            .query(&format!(
                "SELECT toUInt64({expression}) FROM {database}.{table}"
            ))
            .fetch_one()
            .await
            .expect("count");
        let expected = if table == "share_ratio" { 3 } else { 1 }; // minute, hour and day buckets
        assert_eq!(counted, expected, "{table}");
    }
}

#[tokio::test]
async fn retention_is_set_and_changed_on_the_raw_tables() {
    let database = "lumen_it_schemas_retention";
    let client = fresh_database(database).await;
    migrate(&client, database).await.expect("migrate");
    for days in [30, 400] {
        set_retention(&client, database, days)
            .await
            .expect("retention");
        for (table, column) in RETENTION_TABLES {
            let engine: String = client
                .query("SELECT engine_full FROM system.tables WHERE database = ? AND name = ?")
                .bind(database)
                .bind(*table)
                .fetch_one()
                .await
                .expect("engine");
            let ttl = format!("TTL toDateTime({column}) + toIntervalDay({days})");
            assert!(engine.contains(&ttl), "{table}: {engine}");
        }
    }
    assert!(set_retention(&client, database, 0).await.is_err());
}
