//! The database: one sqlx `Any` pool over SQLite (embedded default) or Postgres
//! (production). Every query in the crate is written once, in the dialect both accept
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT columns).

use std::{
    ops::{Deref, DerefMut},
    path::Path,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use futures::future::BoxFuture;
use tokio::sync::{Mutex, OwnedMutexGuard};
use sqlx::{
    any::AnyPoolOptions,
    error::BoxDynError,
    migrate::{Migrate, Migration, MigrationSource, MigrationType, Migrator},
    Acquire, AnyPool, Executor, Row,
};

/// What writes take: a transaction, or a savepoint inside one, derefs to it.
pub type Conn = sqlx::AnyConnection;

/// A transaction from [`Db::begin`]. On SQLite it also holds this process's turn as the
/// database's one writer (see [`Db`]); it derefs to the connection like sqlx's own, and
/// rolls back when dropped uncommitted.
pub struct Tx {
    tx: sqlx::Transaction<'static, sqlx::Any>,
    // Dropped after `tx` (fields drop in order): the turn passes on only once the
    // transaction is over.
    _turn: Option<OwnedMutexGuard<()>>,
    _background: Option<OwnedMutexGuard<()>>,
}

impl Tx {
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        self.tx.commit().await
    }
}

impl Deref for Tx {
    type Target = Conn;

    fn deref(&self) -> &Conn {
        &self.tx
    }
}

impl DerefMut for Tx {
    fn deref_mut(&mut self) -> &mut Conn {
        &mut self.tx
    }
}

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

/// SQLite's `synchronous` setting (WAL mode). `Full` (the default) fsyncs the WAL at every
/// commit: a committed transaction survives a power cut. `Normal` fsyncs only at
/// checkpoints: still never corrupt, and a crash of the process loses nothing, but a power
/// cut or OS crash can lose the last transactions committed before it — orders, payments
/// and effects the API already answered for. `Off` is for throwaway data (benchmark setup).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SqliteSync {
    Full,
    Normal,
    Off,
}

impl SqliteSync {
    fn pragma(self) -> &'static str {
        match self {
            SqliteSync::Full => "PRAGMA synchronous = FULL",
            SqliteSync::Normal => "PRAGMA synchronous = NORMAL",
            SqliteSync::Off => "PRAGMA synchronous = OFF",
        }
    }
}

/// The pool, and on SQLite a queue for its single writer. SQLite lets one transaction
/// write at a time; without the queue, every other writer of this process would wait in
/// SQLite's busy handler, which sleeps in steps of up to 100 ms and lets a newcomer win,
/// so under load a payment callback could wait hundreds of milliseconds behind plugin
/// waves. In the queue (tokio's fair mutex) writers take turns in arrival order and the
/// wait is the transactions ahead, nothing more. Other processes on the same file still
/// meet the busy timeout.
///
/// Work nobody is waiting on (plugin waves, the relay's marks, replays) writes in the
/// background: one background transaction at a time holds or waits for the turn, so a
/// request (an order step, a payment callback) finds at most one of them ahead of it,
/// however many plugins are busy. Backgrounds still queue in arrival order behind the
/// requests already waiting, so none of them starves.
#[derive(Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    writer: Option<Writer>,
}

#[derive(Clone)]
struct Writer {
    turn: Arc<Mutex<()>>,
    background: Arc<Mutex<()>>,
}

/// Migrations (`migrations/<version>_<name>.sql`), embedded so the binary carries its schema.
/// Versions only ever get added; sqlx's migrator records each (with its checksum) in
/// `_sqlx_migrations` and, on Postgres, holds an advisory lock so hosts starting together
/// migrate once.
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
    (
        20261126000003,
        "replay: recorded inputs and outputs, replays and their events",
        include_str!("../../migrations/20261126000003_replay.sql"),
    ),
    (
        20261127000004,
        "trace context of outbox rows",
        include_str!("../../migrations/20261127000004_trace.sql"),
    ),
    (
        20261127000005,
        "plugin grants",
        include_str!("../../migrations/20261127000005_grants.sql"),
    ),
    (
        20261127000006,
        "events found by key: the outbox by order, the inbox by event",
        include_str!("../../migrations/20261127000006_keys.sql"),
    ),
    (
        20261127000007,
        "idempotency keys of order requests",
        include_str!("../../migrations/20261127000007_order_requests.sql"),
    ),
    (20261207000008, "inbox rows by time", include_str!("../../migrations/20261207000008_inbox_by_time.sql")),
    (20261207000009, "outbox rows by time sent", include_str!("../../migrations/20261207000009_outbox_by_time.sql")),
    (
        20261207000010,
        "idempotency keys by time",
        include_str!("../../migrations/20261207000010_order_requests_by_time.sql"),
    ),
    (20261207000011, "dead letters' stream sequence", include_str!("../../migrations/20261207000011_dead_letter_seq.sql")),
    (20261207000012, "replays' regressed events", include_str!("../../migrations/20261207000012_replay_regressed.sql")),
    (20261207000013, "the last sequence a replay ran", include_str!("../../migrations/20261207000013_replay_last_seq.sql")),
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

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0}")]
    Url(String),
    #[error("cannot create the SQLite folder {path}: {source}")]
    Folder { path: String, source: std::io::Error },
    #[error(transparent)]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error(transparent)]
    Sql(#[from] sqlx::Error),
}

impl Db {
    /// Connects with SQLite's `synchronous = FULL` (every commit durable on its own).
    pub async fn connect(url: &str, max_connections: u32) -> Result<Db, StoreError> {
        Db::connect_with(url, max_connections, SqliteSync::Full).await
    }

    pub async fn connect_with(url: &str, max_connections: u32, sync: SqliteSync) -> Result<Db, StoreError> {
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
                        conn.execute(sync.pragma()).await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await?;
        let writer = (backend == Backend::Sqlite).then(|| Writer { turn: Arc::new(Mutex::new(())), background: Arc::new(Mutex::new(())) });
        Ok(Db { pool, backend, writer })
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Begins a transaction for a request someone waits on; on SQLite, after waiting for
    /// this process's writer turn (taken before a connection, so a queue of writers never
    /// holds the pool's connections).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        self.begin_as(false).await
    }

    /// Begins a transaction for background work (see [`Db`]): on SQLite it waits until no
    /// other background transaction holds or waits for the turn.
    pub async fn begin_background(&self) -> Result<Tx, sqlx::Error> {
        self.begin_as(true).await
    }

    async fn begin_as(&self, background: bool) -> Result<Tx, sqlx::Error> {
        let (turn, background) = match &self.writer {
            Some(writer) => {
                let background = if background { Some(writer.background.clone().lock_owned().await) } else { None };
                (Some(writer.turn.clone().lock_owned().await), background)
            }
            None => (None, None),
        };
        Ok(Tx { tx: self.pool.begin().await?, _turn: turn, _background: background })
    }

    /// Runs one writing statement in a transaction of its own (so it takes its turn).
    pub async fn execute<'q>(&self, query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let mut tx = self.begin().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

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

/// What [`Db::prune`] deletes at most per transaction: a background write of bounded size,
/// so a large backlog of old rows never holds the writer's turn (or Postgres' locks) long.
pub const PRUNE_BATCH: i64 = 1000;

impl Db {
    /// Deletes the rows of `table` for which `old` holds, `$1` bound to `cutoff` (a moment in
    /// ms), [`PRUNE_BATCH`] at a time, each batch its own background transaction; returns how
    /// many it deleted. `key` is the table's primary key, its columns comma-separated (a
    /// row value, which both databases compare). The owner of the table says which rows are
    /// old enough (see `retention`).
    pub async fn prune(&self, table: &str, key: &str, old: &str, cutoff: i64) -> Result<u64, sqlx::Error> {
        let sql = format!("DELETE FROM {table} WHERE ({key}) IN (SELECT {key} FROM {table} WHERE {old} LIMIT {PRUNE_BATCH})");
        let mut deleted = 0;
        loop {
            let mut tx = self.begin_background().await?;
            let n = sqlx::query(&sql).bind(cutoff).execute(&mut *tx).await?.rows_affected();
            tx.commit().await?;
            deleted += n;
            if n < PRUNE_BATCH as u64 {
                return Ok(deleted);
            }
        }
    }
}

/// How many rows a multi-row statement takes at most, given its parameters per row. SQLite
/// finds a `$N` parameter's name by walking the statement's list of them, so binding one
/// statement costs the square of its parameters: a few hundred at a time stays cheap, and
/// a bounded set of statement texts stays in the prepared-statement cache.
pub fn rows_per_statement(params_per_row: usize) -> usize {
    (256 / params_per_row.max(1)).max(1)
}

/// `$start, $start+1, …` for `count` values: the placeholders of an `IN (…)` list or a
/// multi-row `VALUES`, in the one dialect both databases take.
pub fn placeholders(start: usize, count: usize) -> String {
    (start..start + count).map(|i| format!("${i}")).collect::<Vec<_>>().join(", ")
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
