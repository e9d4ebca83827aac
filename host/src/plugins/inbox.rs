//! The inbox (`trade_mq_consumer_log`, the original's consumer log): one row per (plugin,
//! event type, event id), every read and write of it in this file. Status 1 (applied) is
//! written in the same transaction as the plugin's effects, so a redelivery finds it and only
//! acks, however long after JetStream's de-duplication window it arrives; status 2 counts a
//! plugin's failed attempts at an event that is not applied yet.

use sqlx::Row;

use super::{delivery::Delivery, runtime::LoadedPlugin};
use crate::{ids::now_ms, store::{Db, Tx}};

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

pub async fn state(db: &Db, plugin: &str, d: &Delivery) -> Result<State, sqlx::Error> {
    let row = sqlx::query(
        "SELECT consumer_status, consumer_times FROM trade_mq_consumer_log
          WHERE group_name = $1 AND msg_tag = $2 AND msg_key = $3",
    )
    .bind(plugin)
    .bind(&d.subject)
    .bind(&d.id)
    .fetch_optional(db.pool())
    .await?;
    Ok(match row {
        None => State::New,
        Some(r) if r.try_get::<i64, _>(0)? == 1 => State::Applied,
        Some(r) => State::Failed(r.try_get(1)?),
    })
}

/// Marks the event applied by `plugin` inside `tx`, the transaction its effects go into.
/// `false`: it was applied before (by another delivery or host); the caller applies nothing.
/// Written first in the transaction: it is the idempotency fence, and a write (SQLite then
/// holds the write lock from the start).
pub async fn mark_applied(tx: &mut Tx, plugin: &LoadedPlugin, d: &Delivery, attempt: i64, effects: usize) -> Result<bool, sqlx::Error> {
    let fresh = sqlx::query(
        "INSERT INTO trade_mq_consumer_log (group_name, msg_tag, msg_key, msg_id, msg_body,
             consumer_status, consumer_times, consumer_timestamp, remark, plugin_version, plugin_sha256)
         VALUES ($1, $2, $3, $3, $4, 1, $5, $6, $7, $8, $9)
         ON CONFLICT (group_name, msg_tag, msg_key) DO UPDATE
            SET consumer_status = 1, consumer_times = excluded.consumer_times,
                consumer_timestamp = excluded.consumer_timestamp, remark = excluded.remark,
                plugin_version = excluded.plugin_version, plugin_sha256 = excluded.plugin_sha256
          WHERE trade_mq_consumer_log.consumer_status <> 1",
    )
    .bind(&plugin.name)
    .bind(&d.subject)
    .bind(&d.id)
    .bind(&d.body)
    .bind(attempt)
    .bind(now_ms())
    .bind(format!("{effects} effect(s)"))
    .bind(plugin.version())
    .bind(&plugin.sha256)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(fresh == 1)
}

/// Records a failed attempt (outside the failed transaction) for operators and retries.
/// An applied row is never turned back into a failure.
pub async fn record_failure(db: &Db, plugin: &str, d: &Delivery, attempt: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
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
    .bind(error)
    .execute(db.pool())
    .await?;
    Ok(())
}
