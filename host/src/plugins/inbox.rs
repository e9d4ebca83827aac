//! The inbox (`trade_mq_consumer_log`, the original's consumer log): one row per (plugin,
//! event type, event id), every read and write of it in this file. Status 1 (applied) is
//! written in the same transaction as the plugin's effects, so a redelivery finds it and only
//! acks, however long after JetStream's de-duplication window it arrives; status 2 counts a
//! plugin's failed attempts at an event that is not applied yet.

use std::collections::{HashMap, HashSet};

use sqlx::Row;

use super::{delivery::Delivery, runtime::LoadedPlugin};
use crate::{
    ids::now_ms,
    store::{placeholders, rows_per_statement, Conn, Db},
};

/// What a plugin's inbox says about one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    Applied,
    /// Failed this many times so far.
    Failed(i64),
    New,
}

impl State {
    /// The number of the attempt about to be made.
    pub fn next_attempt(self) -> i64 {
        match self {
            State::Failed(times) => times + 1,
            State::Applied | State::New => 1,
        }
    }
}

/// What the inbox holds for one event: its state and, once applied, the effects and reads
/// recorded with it (JSON; `None` for events applied before recording began).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub state: State,
    pub effects: Option<String>,
    pub reads: Option<String>,
}

/// The inbox entries of `plugin` for `events`, in their order, in one query.
pub async fn lookup(db: &Db, plugin: &str, events: &[&Delivery]) -> Result<Vec<Entry>, sqlx::Error> {
    let mut rows = Vec::with_capacity(events.len());
    for events in events.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT msg_tag, msg_key, consumer_status, consumer_times, effects, reads FROM trade_mq_consumer_log
              WHERE group_name = $1 AND msg_key IN ({})",
            placeholders(2, events.len())
        );
        let query = events.iter().fold(sqlx::query(&sql).bind(plugin), |q, d| q.bind(&d.id));
        rows.extend(query.fetch_all(db.pool()).await?);
    }
    let mut found = HashMap::new();
    for r in rows {
        let state = match r.try_get::<i64, _>(2)? {
            1 => State::Applied,
            _ => State::Failed(r.try_get(3)?),
        };
        let key: (String, String) = (r.try_get(0)?, r.try_get(1)?);
        found.insert(key, Entry { state, effects: r.try_get(4)?, reads: r.try_get(5)? });
    }
    let new = Entry { state: State::New, effects: None, reads: None };
    Ok(events.iter().map(|d| found.remove(&(d.subject.clone(), d.id.clone())).unwrap_or_else(|| new.clone())).collect())
}

/// What one plugin did with one event, as its inbox row says.
#[derive(Debug, Clone)]
pub struct Handled {
    pub plugin: String,
    pub subject: String,
    pub event_id: String,
    pub state: State,
    /// The version that applied it (absent while it is only failing).
    pub version: Option<String>,
    /// When it was applied, or last failed (unix ms).
    pub at: i64,
    /// The effects applied, as JSON (absent while failing, or applied before recording).
    pub effects: Option<String>,
    /// Why the last attempt failed.
    pub remark: Option<String>,
}

/// Every plugin's inbox row for these events.
pub async fn of_events(db: &Db, event_ids: &[String]) -> Result<Vec<Handled>, sqlx::Error> {
    let mut handled = Vec::new();
    for ids in event_ids.chunks(rows_per_statement(1)) {
        let sql = format!(
            "SELECT group_name, msg_tag, msg_key, consumer_status, consumer_times, plugin_version, consumer_timestamp, effects, remark
               FROM trade_mq_consumer_log WHERE msg_key IN ({}) ORDER BY consumer_timestamp",
            placeholders(1, ids.len())
        );
        for r in ids.iter().fold(sqlx::query(&sql), |q, id| q.bind(id)).fetch_all(db.pool()).await? {
            handled.push(Handled {
                plugin: r.try_get(0)?,
                subject: r.try_get(1)?,
                event_id: r.try_get(2)?,
                state: if r.try_get::<i64, _>(3)? == 1 { State::Applied } else { State::Failed(r.try_get(4)?) },
                version: r.try_get(5)?,
                at: r.try_get(6)?,
                effects: r.try_get(7)?,
                remark: r.try_get(8)?,
            });
        }
    }
    Ok(handled)
}

pub async fn state(db: &Db, plugin: &str, d: &Delivery) -> Result<State, sqlx::Error> {
    Ok(lookup(db, plugin, &[d]).await?.pop().map_or(State::New, |e| e.state))
}

/// Marks events applied by `plugin` inside `tx`, the transaction their effects go into, in
/// one statement; answers the ids of those it marked. An event missing from the answer was
/// applied before (by another delivery or host): the caller applies nothing for it. Written
/// first in the transaction: it is the idempotency fence, and a write (SQLite then holds the
/// write lock from the start). `recorded` is what replay compares against later.
pub async fn mark_applied(tx: &mut Conn, plugin: &LoadedPlugin, events: &[(&Delivery, i64, &Recorded)]) -> Result<HashSet<String>, sqlx::Error> {
    let mut marked = HashSet::with_capacity(events.len());
    for events in events.chunks(rows_per_statement(7)) {
        marked.extend(mark_applied_rows(tx, plugin, events).await?);
    }
    Ok(marked)
}

async fn mark_applied_rows(tx: &mut Conn, plugin: &LoadedPlugin, events: &[(&Delivery, i64, &Recorded)]) -> Result<Vec<String>, sqlx::Error> {
    // $1..$4 are shared; each row adds subject, id, body, attempt, remark, effects, reads.
    let rows: Vec<String> = (0..events.len())
        .map(|i| {
            let p = |k: usize| format!("${}", 5 + i * 7 + k);
            format!("($1, {}, {}, {}, {}, 1, {}, $4, {}, $2, $3, {}, {})", p(0), p(1), p(1), p(2), p(3), p(4), p(5), p(6))
        })
        .collect();
    let sql = format!(
        "INSERT INTO trade_mq_consumer_log (group_name, msg_tag, msg_key, msg_id, msg_body,
             consumer_status, consumer_times, consumer_timestamp, remark, plugin_version, plugin_sha256, effects, reads)
         VALUES {}
         ON CONFLICT (group_name, msg_tag, msg_key) DO UPDATE
            SET consumer_status = 1, consumer_times = excluded.consumer_times,
                consumer_timestamp = excluded.consumer_timestamp, remark = excluded.remark,
                plugin_version = excluded.plugin_version, plugin_sha256 = excluded.plugin_sha256,
                effects = excluded.effects, reads = excluded.reads
          WHERE trade_mq_consumer_log.consumer_status <> 1
         RETURNING msg_key",
        rows.join(", ")
    );
    let shared = sqlx::query_scalar::<_, String>(&sql).bind(&plugin.name).bind(plugin.version()).bind(&plugin.sha256).bind(now_ms());
    let query = events.iter().fold(shared, |q, (d, attempt, recorded)| {
        q.bind(&d.subject).bind(&d.id).bind(&d.body).bind(*attempt).bind(format!("{} effect(s)", recorded.count))
            .bind(&recorded.effects)
            .bind(&recorded.reads)
    });
    query.fetch_all(&mut *tx).await
}

/// What is recorded with an applied event.
pub struct Recorded {
    /// How many effects.
    pub count: usize,
    /// The effects, as JSON (see [`super::effects::view`]).
    pub effects: String,
    /// The snapshot the plugin was given, as JSON.
    pub reads: String,
}

/// Records a failed attempt (outside the failed transaction) for operators and retries.
/// An applied row is never turned back into a failure.
pub async fn record_failure(db: &Db, plugin: &str, d: &Delivery, attempt: i64, error: &str) -> Result<(), sqlx::Error> {
    db.execute(sqlx::query(
        "INSERT INTO trade_mq_consumer_log (group_name, msg_tag, msg_key, msg_id, msg_body,
             consumer_status, consumer_times, consumer_timestamp, remark)
         VALUES ($1, $2, $3, $3, $4, 2, $5, $6, $7)
         ON CONFLICT (group_name, msg_tag, msg_key) DO UPDATE
            SET consumer_times = excluded.consumer_times, consumer_timestamp = excluded.consumer_timestamp,
                remark = excluded.remark
          WHERE trade_mq_consumer_log.consumer_status <> 1",
    )
    .bind(plugin)
    .bind(&d.subject)
    .bind(&d.id)
    .bind(&d.body)
    .bind(attempt)
    .bind(now_ms())
    .bind(error))
    .await?;
    Ok(())
}

/// Deletes the rows last written before `cutoff` (see `retention`, which keeps them at
/// least as long as the stream keeps the events they fence: an event still in the stream
/// always finds its row), except those of an event with an open dead letter for the same
/// plugin: it may have been applied after all (a lost ack, then a redelivery), and its
/// redrive, whenever it comes, must find that out here.
pub async fn prune(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    let old = "consumer_timestamp < $1 AND NOT EXISTS (
        SELECT 1 FROM shop_dead_letter d WHERE d.plugin = trade_mq_consumer_log.group_name
           AND d.event_id = trade_mq_consumer_log.msg_key AND d.redriven_at IS NULL)";
    db.prune("trade_mq_consumer_log", "group_name, msg_tag, msg_key", old, cutoff).await
}
