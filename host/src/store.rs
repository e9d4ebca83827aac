//! The database: one sqlx `Any` pool over SQLite (embedded default) or Postgres
//! (production). Every query in the crate is written once, in the dialect both accept
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT columns).

use std::{path::Path, str::FromStr, time::Duration};

use sha2::{Digest, Sha256};
use sqlx::{any::AnyPoolOptions, AnyPool, Executor, Row};

use crate::ids::now_ms;

pub type Tx = sqlx::Transaction<'static, sqlx::Any>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl FromStr for Backend {
    type Err = String;

    fn from_str(url: &str) -> Result<Backend, String> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Ok(Backend::Postgres)
        } else {
            Err(format!("unsupported database URL (sqlite: or postgres:): {url}"))
        }
    }
}

#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
}

/// Migrations, embedded so the binary carries its schema. Versions only ever get added.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        20261122000001,
        "shop tables, step records, outbox",
        include_str!("../../migrations/20261122000001_shop.sql"),
    ),
    (
        20261122000002,
        "plugin inbox, audit log, dead letters",
        include_str!("../../migrations/20261122000002_plugins.sql"),
    ),
];

/// Serialises concurrent migrators on Postgres (two hosts starting together).
const MIGRATION_LOCK_KEY: i64 = 0x5348_4f50_4d45_5348; // "SHOPMESH"

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Url(String),
    #[error("cannot create the SQLite folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error("migration {version} was changed after it was applied (checksum differs)")]
    MigrationChanged { version: i64 },
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

impl Db {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        sqlx::any::install_default_drivers();
        let backend: Backend = url.parse().map_err(StoreError::Url)?;
        let mut url = url.to_owned();
        if backend == Backend::Sqlite {
            ensure_sqlite_folder(&url)?;
            if !url.contains("mode=") {
                url.push(if url.contains('?') { '&' } else { '?' });
                url.push_str("mode=rwc");
            }
        }
        let pool = AnyPoolOptions::new()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the one writer; writers queue on the
                        // busy timeout instead of failing at once. Every write transaction
                        // in this crate begins with a write, so no snapshot upgrade fails.
                        conn.execute("PRAGMA busy_timeout = 10000").await?;
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        Ok(Db { pool, backend })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.pool.begin().await
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let mut tx = self.begin().await?;
        if self.backend == Backend::Postgres {
            sqlx::query("SELECT pg_advisory_xact_lock($1)")
                .bind(MIGRATION_LOCK_KEY)
                .execute(&mut *tx)
                .await?;
        }
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS shopmesh_migrations (
                version BIGINT PRIMARY KEY, description TEXT NOT NULL,
                checksum TEXT NOT NULL, applied_at BIGINT NOT NULL)",
        )
        .execute(&mut *tx)
        .await?;
        for (version, description, sql) in MIGRATIONS {
            let checksum = hex::encode(Sha256::digest(sql.as_bytes()));
            let applied = sqlx::query("SELECT checksum FROM shopmesh_migrations WHERE version = $1")
                .bind(version)
                .fetch_optional(&mut *tx)
                .await?;
            match applied {
                Some(row) if row.try_get::<String, _>(0)? == checksum => continue,
                Some(_) => return Err(StoreError::MigrationChanged { version: *version }),
                None => {}
            }
            sqlx::raw_sql(sql).execute(&mut *tx).await?;
            sqlx::query(
                "INSERT INTO shopmesh_migrations (version, description, checksum, applied_at)
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(version)
            .bind(*description)
            .bind(&checksum)
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
            tracing::info!(version, description, "applied migration");
        }
        tx.commit().await?;
        Ok(())
    }
}

fn ensure_sqlite_folder(url: &str) -> Result<(), StoreError> {
    let path = url
        .trim_start_matches("sqlite:")
        .trim_start_matches("//")
        .split('?')
        .next()
        .unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return Err(StoreError::Url(
            "an in-memory SQLite database would lose the shop on restart; give a file".into(),
        ));
    }
    if let Some(parent) = Path::new(path).parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent)
            .map_err(|source| StoreError::Folder { path: parent.display().to_string(), source })?;
    }
    Ok(())
}
