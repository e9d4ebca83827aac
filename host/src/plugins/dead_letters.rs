//! The dead-letter store (`shop_dead_letter`): events a plugin could not handle after its
//! retries, or that were malformed, with the reason. Nothing is ever dropped: an event that
//! cannot even be stored here stays in JetStream. Redrive ([`super::host::PluginHost::redrive`])
//! runs one again through the normal path and records the result here.

use poem_openapi::{Enum, Object};
use sqlx::{any::AnyRow, FromRow, Row};

use crate::{
    ids::{now_ms, Id, Snowflake},
    store::{placeholders, rows_per_statement, Db},
    timestamp::Timestamp,
};

#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct DeadLetter {
    pub id: Id,
    pub plugin: String,
    pub plugin_version: String,
    pub subject: String,
    pub event_id: String,
    /// Its sequence in stream SHOP (`shopmesh replay --from-seq`); absent for a letter
    /// stored before this was recorded.
    pub stream_seq: Option<i64>,
    pub reason: String,
    pub attempts: i64,
    pub created_at: Option<Timestamp>,
    pub redriven_at: Option<Timestamp>,
    pub redrive_result: Option<String>,
    /// Where it stands (from `redriven_at` and `redrive_result`).
    #[sqlx(skip)]
    pub state: LetterState,
}

/// Where a dead letter stands.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum LetterState {
    /// Waits for a redrive (one that failed again leaves it open, its result saying why) or
    /// a dismissal.
    #[default]
    Open,
    /// Closed: its event is applied (by a redrive, or by an `--apply` replay), or, for one
    /// of the guard's, well-formed now.
    Redriven,
    /// Closed by an operator without running its event.
    Dismissed,
}

/// A letter as read, with its state.
fn read(row: &AnyRow) -> Result<DeadLetter, sqlx::Error> {
    let mut letter = DeadLetter::from_row(row)?;
    letter.state = match (&letter.redriven_at, &letter.redrive_result) {
        (None, _) => LetterState::Open,
        (Some(_), Some(result)) if result.starts_with(DISMISSED_BY) => LetterState::Dismissed,
        (Some(_), _) => LetterState::Redriven,
    };
    Ok(letter)
}

/// What a dead letter is about.
pub struct Letter<'a> {
    pub plugin: &'a str,
    pub version: &'a str,
    pub subject: &'a str,
    pub event_id: &'a str,
    pub stream_seq: Option<u64>,
    pub body: &'a str,
    pub reason: &'a str,
    pub attempts: i64,
}

#[derive(Debug, thiserror::Error)]
pub enum DeadLetterError {
    #[error("dead letter {0} does not exist")]
    NotFound(Id),
    /// Redriven or dismissed already: nothing to do to it.
    #[error("dead letter {0} is closed already{how}", how = if .1.is_empty() { String::new() } else { format!(" ({})", .1) })]
    Closed(Id, String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}

/// `text` as Postgres can store it: a malformed event may carry a raw NUL (U+0000), which
/// a text column refuses, and a letter that cannot be stored would be retried for ever.
/// It becomes U+FFFD, as a lossy decoding marks any byte it cannot keep.
fn storable(text: &str) -> String {
    text.replace('\0', "\u{FFFD}")
}

pub async fn store(db: &Db, ids: &Snowflake, l: &Letter<'_>) -> Result<(), sqlx::Error> {
    // Once per message: a dead-lettered one whose acknowledgement was lost (NATS went away
    // as it was sent) comes back, fails again and is dead-lettered again; its letter is open
    // already. (A message is told by its stream sequence, subject and body: a stream made
    // anew numbers from 1 again; one without a sequence is always stored.)
    let stored = db.execute(sqlx::query(
        "INSERT INTO shop_dead_letter (id, plugin, plugin_version, subject, event_id, body, reason, attempts, created_at, stream_seq)
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10
         WHERE $10 IS NULL OR NOT EXISTS (
             SELECT 1 FROM shop_dead_letter WHERE plugin = $2 AND stream_seq = $10 AND subject = $4 AND body = $6 AND redriven_at IS NULL)",
    )
    .bind(ids.next())
    .bind(storable(l.plugin))
    .bind(storable(l.version))
    .bind(storable(l.subject))
    .bind(storable(l.event_id))
    .bind(storable(l.body))
    .bind(storable(l.reason))
    .bind(l.attempts)
    .bind(now_ms())
    .bind(l.stream_seq.map(|seq| seq as i64)))
    .await?;
    match stored.rows_affected() {
        0 => tracing::warn!(plugin = l.plugin, version = l.version, event = l.event_id, reason = l.reason, "dead-lettered again: its letter is open already"),
        _ => tracing::error!(plugin = l.plugin, version = l.version, event = l.event_id, reason = l.reason, "dead-lettered"),
    }
    Ok(())
}

const COLUMNS: &str = "id, plugin, plugin_version, subject, event_id, stream_seq, reason, attempts, created_at, redriven_at, redrive_result";

/// Every dead letter, or those of one plugin, oldest first.
pub async fn list(db: &Db, plugin: Option<&str>) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} FROM shop_dead_letter WHERE ($1 = '' OR plugin = $1) ORDER BY id");
    let rows = sqlx::query(&sql).bind(plugin.unwrap_or_default()).fetch_all(db.pool()).await?;
    rows.iter().map(read).collect()
}

/// The dead letters of these events (any plugin), oldest first.
pub async fn of_events(db: &Db, event_ids: &[String]) -> Result<Vec<DeadLetter>, sqlx::Error> {
    let mut letters = Vec::new();
    for ids in event_ids.chunks(rows_per_statement(1)) {
        let sql = format!("SELECT {COLUMNS} FROM shop_dead_letter WHERE event_id IN ({}) ORDER BY id", placeholders(1, ids.len()));
        let rows = ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(id)).fetch_all(db.pool()).await?;
        letters.extend(rows.iter().map(read).collect::<Result<Vec<_>, _>>()?);
    }
    Ok(letters)
}

/// One dead letter with the event it holds (the message body as it arrived).
pub async fn get(db: &Db, id: Id) -> Result<(DeadLetter, String), DeadLetterError> {
    let sql = format!("SELECT {COLUMNS}, body FROM shop_dead_letter WHERE id = $1");
    let row = sqlx::query(&sql).bind(id.0).fetch_optional(db.pool()).await?.ok_or(DeadLetterError::NotFound(id))?;
    Ok((read(&row)?, row.try_get("body")?))
}

/// Open (not yet resolved) dead letters per plugin.
pub async fn open_counts(db: &Db) -> Result<Vec<(String, i64)>, sqlx::Error> {
    let rows = sqlx::query("SELECT plugin, COUNT(*) FROM shop_dead_letter WHERE redriven_at IS NULL GROUP BY plugin ORDER BY plugin")
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(|r| Ok((r.try_get(0)?, r.try_get(1)?))).collect()
}

/// A dead letter not yet redriven: (plugin, subject, body).
pub async fn pending(db: &Db, id: Id) -> Result<(String, String, String), DeadLetterError> {
    let row = sqlx::query("SELECT plugin, subject, body FROM shop_dead_letter WHERE id = $1 AND redriven_at IS NULL")
        .bind(id.0)
        .fetch_optional(db.pool())
        .await?;
    let Some(row) = row else { return Err(not_open(db, id).await) };
    Ok((row.try_get(0)?, row.try_get(1)?, row.try_get(2)?))
}

/// How a dismissed letter's result begins (then who dismissed it).
const DISMISSED_BY: &str = "dismissed by ";

/// Why letter `id` is not open: there is none, or it is closed (and how).
async fn not_open(db: &Db, id: Id) -> DeadLetterError {
    let closed = sqlx::query("SELECT redrive_result FROM shop_dead_letter WHERE id = $1").bind(id.0).fetch_optional(db.pool()).await;
    match closed {
        Ok(Some(row)) => DeadLetterError::Closed(id, row.try_get::<Option<String>, _>(0).ok().flatten().unwrap_or_default()),
        Ok(None) => DeadLetterError::NotFound(id),
        Err(e) => DeadLetterError::Db(e),
    }
}

/// Marks the open dead letters of `plugin` for these events resolved with `result` (they
/// were applied another way, e.g. by a replay).
pub async fn resolve(db: &Db, plugin: &str, event_ids: &[String], result: &str) -> Result<(), sqlx::Error> {
    for ids in event_ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "UPDATE shop_dead_letter SET redriven_at = $1, redrive_result = $2
              WHERE plugin = $3 AND redriven_at IS NULL AND event_id IN ({})",
            placeholders(4, ids.len())
        );
        let query = sqlx::query(&sql).bind(now_ms()).bind(result).bind(plugin);
        db.execute(ids.iter().fold(query, |q, id| q.bind(id))).await?;
    }
    Ok(())
}

/// Records a redrive's result; an applied one is marked redriven (resolved) and leaves the
/// pending list, a failed one stays with the new result.
pub async fn record_redrive(db: &Db, id: Id, applied: bool, result: &str) -> Result<(), sqlx::Error> {
    db.execute(sqlx::query("UPDATE shop_dead_letter SET redriven_at = $1, redrive_result = $2 WHERE id = $3")
        .bind(applied.then(now_ms))
        .bind(result)
        .bind(id.0))
        .await?;
    Ok(())
}

/// Closes an open dead letter without running its event: an operator's decision for one
/// that can never succeed (a malformed event) or is no longer wanted. Its result says who;
/// it leaves the open count and is pruned like any resolved one.
pub async fn dismiss(db: &Db, id: Id, by: &str) -> Result<DeadLetter, DeadLetterError> {
    let sql = "UPDATE shop_dead_letter SET redriven_at = $1, redrive_result = $2 WHERE id = $3 AND redriven_at IS NULL";
    if db.execute(sqlx::query(sql).bind(now_ms()).bind(format!("{DISMISSED_BY}{by}")).bind(id.0)).await?.rows_affected() == 0 {
        return Err(not_open(db, id).await);
    }
    Ok(get(db, id).await?.0)
}

/// Deletes the dead letters resolved before `cutoff` (see `retention`); open ones stay until
/// an operator redrives them, however old.
pub async fn prune(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    db.prune("shop_dead_letter", "id", "redriven_at < $1", cutoff).await
}
