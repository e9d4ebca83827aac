//! The schema: the migrations in `migrations/`, embedded so the binary carries them, run by
//! sqlx's migrator for either backend.

use futures::future::BoxFuture;
use sqlx::{
    error::BoxDynError,
    migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator},
    Acquire, Row,
};

use super::{Backend, Db, StoreError};

/// Migrations (`migrations/<version>_<name>.sql`), embedded so the binary carries its schema.
/// Versions only ever get added; sqlx's migrator records each (with its checksum) in
/// `_sqlx_migrations` and, on Postgres, holds an advisory lock so hosts starting together
/// migrate once.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20261122000001,
        "shop tables, step records, outbox",
        include_str!("../../../migrations/20261122000001_shop.sql"),
    ),
    (
        20261122000002,
        "plugin inbox, audit log, dead letters",
        include_str!("../../../migrations/20261122000002_plugins.sql"),
    ),
    (
        20261126000003,
        "replay: recorded inputs and outputs, replays and their events",
        include_str!("../../../migrations/20261126000003_replay.sql"),
    ),
    (
        20261127000004,
        "trace context of outbox rows",
        include_str!("../../../migrations/20261127000004_trace.sql"),
    ),
    (
        20261127000005,
        "plugin grants",
        include_str!("../../../migrations/20261127000005_grants.sql"),
    ),
    (
        20261127000006,
        "events found by key: the outbox by order, the inbox by event",
        include_str!("../../../migrations/20261127000006_keys.sql"),
    ),
    (
        20261127000007,
        "idempotency keys of order requests",
        include_str!("../../../migrations/20261127000007_order_requests.sql"),
    ),
    (20261207000008, "inbox rows by time", include_str!("../../../migrations/20261207000008_inbox_by_time.sql")),
    (20261207000009, "outbox rows by time sent", include_str!("../../../migrations/20261207000009_outbox_by_time.sql")),
    (
        20261207000010,
        "idempotency keys by time",
        include_str!("../../../migrations/20261207000010_order_requests_by_time.sql"),
    ),
    (20261207000011, "dead letters' stream sequence", include_str!("../../../migrations/20261207000011_dead_letter_seq.sql")),
    (20261207000012, "replays' regressed events", include_str!("../../../migrations/20261207000012_replay_regressed.sql")),
    (20261207000013, "the last sequence a replay ran", include_str!("../../../migrations/20261207000013_replay_last_seq.sql")),
    (20261207000014, "a replay's host's last beat", include_str!("../../../migrations/20261207000014_replay_beat.sql")),
    (20261207000015, "the database's identity", include_str!("../../../migrations/20261207000015_database_identity.sql")),
    (20261208000016, "open dead letters by event", include_str!("../../../migrations/20261208000016_open_letters_by_event.sql")),
];

/// [`MIGRATIONS`] as sqlx's migrator reads them for one backend. A migration whose text
/// starts with `-- no-transaction` (sqlx's own marker) runs outside a transaction, so that
/// Postgres can build an index `CONCURRENTLY`, without holding off writes to a table that
/// may be large by then; SQLite has no such index build and gets the text without the word.
#[derive(Debug)]
struct Embedded(Backend);

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async move {
            Ok(MIGRATIONS
                .iter()
                .map(|(version, description, sql)| {
                    let no_tx = sql.starts_with("-- no-transaction");
                    let sql = match self.0 {
                        Backend::Sqlite if no_tx => sql.replace(" CONCURRENTLY ", " "),
                        _ => (*sql).to_owned(),
                    };
                    Migration::new(*version, (*description).into(), MigrationType::Simple, sql.into(), no_tx)
                })
                .collect())
        })
    }
}

impl Db {
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.adopt_legacy_history().await?;
        Migrator::new(Embedded(self.backend)).await?.run(&self.pool).await?;
        Ok(())
    }

    /// Databases made before shopmesh used sqlx's migrator recorded their migrations in
    /// `shopmesh_migrations`: their versions are entered into `_sqlx_migrations` once, so
    /// the migrator does not run them again.
    async fn adopt_legacy_history(&self) -> Result<(), StoreError> {
        let mut conn = self.pool.acquire().await?;
        let legacy = match sqlx::query("SELECT version FROM shopmesh_migrations").fetch_all(&mut *conn).await {
            Ok(rows) => rows.iter().map(|r| r.try_get::<i64, _>(0)).collect::<Result<Vec<_>, _>>()?,
            Err(_) => return Ok(()), // no legacy table: nothing to adopt
        };
        conn.ensure_migrations_table().await?;
        let known = Migrator::new(Embedded(self.backend)).await?;
        let mut tx = conn.begin().await?;
        for m in known.iter().filter(|m| legacy.contains(&m.version)) {
            sqlx::query(
                "INSERT INTO _sqlx_migrations (version, description, success, checksum, execution_time)
                 VALUES ($1, $2, TRUE, $3, 0) ON CONFLICT (version) DO NOTHING",
            )
            .bind(m.version)
            .bind(m.description.to_string())
            .bind(m.checksum.to_vec())
            .execute(&mut *tx)
            .await?;
        }
        sqlx::query("DROP TABLE shopmesh_migrations").execute(&mut *tx).await?;
        tx.commit().await?;
        tracing::info!(versions = ?legacy, "adopted the migration history of an older shopmesh");
        Ok(())
    }
}
