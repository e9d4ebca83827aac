//! The database: one sqlx `Any` pool over SQLite (embedded default) or Postgres
//! (production). Every query in the crate is written once, in the dialect both accept
//! (`$N` placeholders, `ON CONFLICT`, `RETURNING`, BIGINT columns).

mod faults;
mod migrations;

pub use faults::{copied, end_savepoint, lost, unavailable};

use std::{
    ops::{Deref, DerefMut},
    path::Path,
    str::FromStr,
    sync::Arc,
    time::Duration,
};

use tokio::sync::{Mutex, OwnedMutexGuard};
use sqlx::{any::AnyPoolOptions, AnyPool, Connection, Executor};

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
                        // SQLite opens a file it cannot write (a full disk, a file made
                        // read-only, permissions) read-only, silently: such a connection would
                        // fail every write of its life. Refused instead; the pool makes another
                        // at the next acquire, which works once the file can be written again.
                        let version: i64 = sqlx::query_scalar("PRAGMA user_version").fetch_one(&mut *conn).await?;
                        if let Err(e) = conn.execute(format!("PRAGMA user_version = {version}").as_str()).await {
                            tracing::warn!(error = %e, "a new database connection cannot write; refused (the pool tries again)");
                            return Err(e);
                        }
                    }
                    Ok(())
                })
            })
            // A transaction whose rollback failed (on SQLite: an I/O error or a full disk made
            // SQLite roll it back by itself first) leaves sqlx counting it open. Such a
            // connection must not serve again: later transactions on it begin as savepoints,
            // and once one of those is rolled back, SQLite stays in a transaction that nothing
            // commits: writes answered as committed and lost, the write lock held for good.
            // Closed, it starts anew.
            .after_release(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // The rollback of a dropped transaction is queued; let it run first.
                        conn.ping().await?;
                    }
                    if conn.is_in_transaction() {
                        tracing::warn!("a database connection was left in a transaction by a failed commit or rollback; closing it");
                        return Ok(false);
                    }
                    Ok(true)
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

    /// This database's id: made at random the first time it is asked for, then always the
    /// same (see [`crate::bus`]: stream `SHOP` says which database its events belong to).
    pub async fn identity(&self) -> Result<String, sqlx::Error> {
        let mut bytes = [0u8; 16];
        getrandom::fill(&mut bytes).map_err(|e| sqlx::Error::Protocol(format!("no randomness for the database's id: {e}")))?;
        let made = sqlx::query("INSERT INTO shop_database (one, id, created_at) VALUES (1, $1, $2) ON CONFLICT (one) DO NOTHING");
        self.execute(made.bind(hex::encode(bytes)).bind(crate::ids::now_ms())).await?;
        sqlx::query_scalar("SELECT id FROM shop_database WHERE one = 1").fetch_one(&self.pool).await
    }

    /// Runs one writing statement in a transaction of its own (so it takes its turn).
    pub async fn execute<'q>(&self, query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>) -> Result<sqlx::any::AnyQueryResult, sqlx::Error> {
        let mut tx = self.begin().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
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

/// Drops the password from a database URL before it is shown.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}
