//! ClickHouse migrations: numbered SQL files in `migrations/`, applied in
//! order and recorded in `<db>.schema_migrations`. Every statement is
//! idempotent (`IF NOT EXISTS`), so a run interrupted half-way through a file
//! is completed by the next run.
//!
//! Files name the database as `{db}`; the runner substitutes a validated
//! identifier, so tests can migrate a fresh database of their own.

use clickhouse::Client;

use crate::error::{Error, Result};

/// One migration file.
#[derive(Debug, Clone, Copy)]
pub struct Migration {
    /// Order of application; never reused.
    pub version: u32,
    /// File name, for logs and the record.
    pub name: &'static str,
    /// Statements separated by `;` at the end of a line.
    pub sql: &'static str,
}

macro_rules! migration {
    ($version:literal, $file:literal) => {
        Migration {
            version: $version,
            name: $file,
            sql: include_str!(concat!("../migrations/", $file)),
        }
    };
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    migration!(1, "0001_events.sql"),
    migration!(2, "0002_traffic_per_minute.sql"),
    migration!(3, "0003_share_ratio.sql"),
    migration!(4, "0004_share_visits.sql"),
];

impl Migration {
    /// The file's statements for database `database`, comments dropped.
    pub fn statements(&self, database: &str) -> Vec<String> {
        let mut statements = Vec::new();
        let mut current = String::new();
        for line in self.sql.lines() {
            let code = line.trim_end();
            if code.trim_start().starts_with("--") || code.is_empty() {
                continue;
            }
            current.push_str(code);
            current.push('\n');
            if code.ends_with(';') {
                statements.push(
                    current
                        .trim()
                        .trim_end_matches(';')
                        .replace("{db}", database),
                );
                current.clear();
            }
        }
        if !current.trim().is_empty() {
            statements.push(current.trim().replace("{db}", database));
        }
        statements
    }
}

/// Creates `database` if needed and applies the migrations it lacks.
/// Returns the versions applied by this call.
pub async fn migrate(client: &Client, database: &str) -> Result<Vec<u32>> {
    validate_database(database)?;
    let admin = client.clone().with_database("default");
    admin
        .query(&format!("CREATE DATABASE IF NOT EXISTS {database}"))
        .execute()
        .await?;
    admin
        .query(&format!(
            "CREATE TABLE IF NOT EXISTS {database}.schema_migrations \
             (version UInt32, name String, applied_at DateTime64(3, 'UTC') DEFAULT now64(3)) \
             ENGINE = ReplacingMergeTree ORDER BY version"
        ))
        .execute()
        .await?;
    let applied: Vec<u32> = admin
        .query(&format!(
            "SELECT DISTINCT version FROM {database}.schema_migrations ORDER BY version"
        ))
        .fetch_all()
        .await?;

    let mut newly_applied = Vec::new();
    for migration in MIGRATIONS.iter().filter(|m| !applied.contains(&m.version)) {
        for statement in migration.statements(database) {
            admin
                .query(&statement)
                .execute()
                .await
                .map_err(|source| Error::Migration {
                    version: migration.version,
                    name: migration.name,
                    source,
                })?;
        }
        admin
            .query(&format!(
                "INSERT INTO {database}.schema_migrations (version, name) VALUES (?, ?)"
            ))
            .bind(migration.version)
            .bind(migration.name)
            .execute()
            .await?;
        tracing::info!(
            version = migration.version,
            name = migration.name,
            "migration applied"
        );
        newly_applied.push(migration.version);
    }
    Ok(newly_applied)
}

/// Tables whose rows expire after the retention period, with the column
/// that dates a row. Aggregates are small and kept for year-on-year views.
pub const RETENTION_TABLES: &[(&str, &str)] =
    &[("events", "received_at"), ("minted_tokens", "minted_at")];

/// Sets the TTL of the raw tables ([`RETENTION_TABLES`]) to `days` days.
/// Run at every start-up so that changing the configured value is enough;
/// existing parts are not rewritten (`materialize_ttl_after_modify = 0`):
/// expired ones are dropped whole as merges and the TTL check reach them.
pub async fn set_retention(client: &Client, database: &str, days: u32) -> Result<()> {
    validate_database(database)?;
    if days == 0 {
        return Err(Error::InvalidRetention);
    }
    for (table, column) in RETENTION_TABLES {
        client
            .query(&format!(
                "ALTER TABLE {database}.{table} MODIFY TTL toDateTime({column}) + toIntervalDay({days})"
            ))
            .with_setting("materialize_ttl_after_modify", "0")
            .execute()
            .await?;
    }
    Ok(())
}

/// Database names are substituted into DDL, so only plain identifiers pass.
pub fn validate_database(database: &str) -> Result<()> {
    let plain = !database.is_empty()
        && database.len() <= 64
        && database
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !database.starts_with(|c: char| c.is_ascii_digit());
    if plain {
        Ok(())
    } else {
        Err(Error::InvalidDatabase(database.to_owned()))
    }
}

#[cfg(test)]
mod tests {
    use rstest::rstest;

    use super::*;

    #[test]
    fn versions_are_strictly_increasing_and_match_file_names() {
        for pair in MIGRATIONS.windows(2) {
            assert!(pair[0].version < pair[1].version);
        }
        for migration in MIGRATIONS {
            assert!(
                migration
                    .name
                    .starts_with(&format!("{:04}_", migration.version)),
                "{} does not start with its version",
                migration.name
            );
        }
    }

    #[test]
    fn every_statement_is_idempotent_and_names_the_database() {
        for migration in MIGRATIONS {
            for statement in migration.statements("lumen_test") {
                assert!(statement.contains("IF NOT EXISTS"), "{statement}");
                assert!(statement.contains("lumen_test."), "{statement}");
                assert!(!statement.contains("{db}"), "{statement}");
            }
        }
    }

    #[test]
    fn splits_statements_and_drops_comments() {
        let migration = Migration {
            version: 9,
            name: "0009_x.sql",
            sql: "-- a comment; with a semicolon\nCREATE TABLE IF NOT EXISTS {db}.a (x UInt8)\nENGINE = Memory;\n\nCREATE VIEW IF NOT EXISTS {db}.b AS SELECT 1;\n",
        };
        assert_eq!(
            migration.statements("lumen"),
            vec![
                "CREATE TABLE IF NOT EXISTS lumen.a (x UInt8)\nENGINE = Memory".to_owned(),
                "CREATE VIEW IF NOT EXISTS lumen.b AS SELECT 1".to_owned(),
            ]
        );
    }

    #[rstest]
    #[case("lumen", true)]
    #[case("lumen_test_42", true)]
    #[case("", false)]
    #[case("1lumen", false)]
    #[case("lumen; DROP TABLE x", false)]
    #[case("lu-men", false)]
    fn validates_database_names(#[case] name: &str, #[case] valid: bool) {
        assert_eq!(validate_database(name).is_ok(), valid);
    }
}
