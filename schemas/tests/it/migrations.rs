use clickhouse::Client;
use lumen_schemas::migrate::{MIGRATIONS, migrate};

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
        "share_ratio",
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
