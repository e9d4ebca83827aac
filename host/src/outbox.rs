//! The outbox: an event row written in the same transaction as the state change it
//! announces, and the relay that moves rows to JetStream.
//!
//! Several relays (one per host) may share the table. A relay *leases* a batch with one
//! conditional UPDATE; a leased row is invisible to other relays until the lease runs out.
//! The lease is shorter than JetStream's duplicate window, and every publish carries
//! `Nats-Msg-Id` = row id, so even a relay that dies after the publish but before marking
//! the row sent cannot put the event in the stream twice: the next relay's publish is
//! reported as a duplicate and simply marks the row (an atomic batch holding it is refused,
//! and its events go one by one: see [`crate::publish`]).

use std::{sync::Arc, time::Duration};

use async_nats::jetstream;
use opentelemetry::KeyValue;
use sqlx::Row;
use tokio::sync::{watch, Notify};

use crate::{
    bus::{self, StreamSettings},
    events::{CloudEvent, Event},
    ids::{now_ms, Snowflake},
    publish::{self, Outgoing},
    store::{placeholders, rows_per_statement, Backend, Conn, Db},
    trace::{self, Kind, TraceContext},
};

/// Writes `event` to the outbox inside `tx`; returns the event id.
pub async fn enqueue<E: Event>(tx: &mut Conn, ids: &Snowflake, event: E) -> Result<i64, sqlx::Error> {
    let id = ids.next();
    let now = now_ms();
    let key = event.key().to_string();
    let traceparent = trace::current().map(|c| c.header());
    let mut envelope = CloudEvent::new(id, now, event);
    envelope.traceparent = traceparent.clone();
    let body = serde_json::to_string(&envelope).expect("events serialise to JSON");
    sqlx::query(
        "INSERT INTO trade_mq_producer_temp
           (id, group_name, msg_topic, msg_tag, msg_key, msg_body, msg_status, create_time, traceparent)
         VALUES ($1, 'shopmesh', $2, $3, $4, $5, 0, $6, $7)",
    )
    .bind(id)
    .bind(E::SUBJECT)
    .bind(E::SUBJECT.rsplit('.').next().unwrap_or_default())
    .bind(key)
    .bind(body)
    .bind(now)
    .bind(traceparent)
    .execute(&mut *tx)
    .await?;
    Ok(id)
}

/// One event of an order as the outbox knows it.
#[derive(Debug, Clone)]
pub struct Written {
    pub event_id: i64,
    pub subject: String,
    pub written_at: i64,
    /// When JetStream acknowledged it, and its sequence in the stream (`None` until then).
    pub sent_at: Option<i64>,
    pub stream_seq: Option<i64>,
}

/// Every event written for `order_id` (the rows' key), oldest first.
pub async fn of_order(db: &Db, order_id: i64) -> Result<Vec<Written>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT id, msg_topic, create_time, sent_time, stream_seq FROM trade_mq_producer_temp WHERE msg_key = $1 ORDER BY create_time, id",
    )
    .bind(order_id.to_string())
    .fetch_all(db.pool())
    .await?;
    rows.iter()
        .map(|r| {
            Ok(Written { event_id: r.try_get(0)?, subject: r.try_get(1)?, written_at: r.try_get(2)?, sent_at: r.try_get(3)?, stream_seq: r.try_get(4)? })
        })
        .collect()
}

/// Which of `events` (id, subject, body as delivered) this shop wrote, as they are: its row
/// is here with that subject and that very body. Whoever can publish to NATS can put an event
/// on the stream; only the shop writes its outbox, so an event without its row (forged, or
/// altered after it was written) changes nothing (see `plugins::effects`). Rows are kept at
/// least as long as the stream keeps events (`retention`).
pub async fn written(tx: &mut Conn, events: &[(&str, &str, &str)]) -> Result<Vec<bool>, sqlx::Error> {
    let ids: Vec<Option<i64>> = events.iter().map(|(id, _, _)| id.parse().ok()).collect();
    let known: Vec<i64> = ids.iter().flatten().copied().collect();
    let mut rows: std::collections::HashMap<i64, (String, String)> = std::collections::HashMap::new();
    for ids in known.chunks(rows_per_statement(1)) {
        let sql = format!("SELECT id, msg_topic, msg_body FROM trade_mq_producer_temp WHERE id IN ({})", placeholders(1, ids.len()));
        let query = ids.iter().fold(sqlx::query_as::<_, (i64, String, String)>(&sql), |q, id| q.bind(*id));
        rows.extend(query.fetch_all(&mut *tx).await?.into_iter().map(|(id, subject, body)| (id, (subject, body))));
    }
    Ok(events
        .iter()
        .zip(ids)
        .map(|((_, subject, body), id)| id.and_then(|id| rows.get(&id)).is_some_and(|(s, b)| s == subject && b == body))
        .collect())
}

#[derive(Debug, Clone)]
pub struct RelaySettings {
    pub batch: i64,
    /// How long a claimed row stays invisible to other relays. Must stay well below the
    /// stream's duplicate window (checked at start-up).
    pub lease: Duration,
    /// Idle polling, for rows written by other hosts (this host's writes wake it at once).
    pub poll: Duration,
}

pub struct Relay {
    db: Db,
    client: async_nats::Client,
    stream: StreamSettings,
    settings: RelaySettings,
    wake: Arc<Notify>,
}

struct Claimed {
    id: i64,
    subject: String,
    body: String,
    attempts: i64,
    traceparent: Option<String>,
}

impl Relay {
    pub fn new(
        db: Db,
        client: async_nats::Client,
        stream: StreamSettings,
        settings: RelaySettings,
        wake: Arc<Notify>,
    ) -> Relay {
        Relay { db, client, stream, settings, wake }
    }

    /// Runs until `shutdown` turns true, then publishes what is left (the host stops taking
    /// requests first). Errors never end the loop: rows simply wait.
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        let mut js = None;
        let mut backoff = Duration::from_millis(100);
        while !*shutdown.borrow() {
            let (idle, failing) = match self.step(&mut js).await {
                Ok(0) => (Some(self.settings.poll), false),
                Ok(_) => {
                    backoff = Duration::from_millis(100);
                    (None, false)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay: will retry");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    (Some(backoff), true)
                }
            };
            if let Some(wait) = idle {
                tokio::select! {
                    // After a failure, new rows do not cut the backoff short: during an
                    // outage every write would otherwise be a retry (and a warning).
                    _ = self.wake.notified(), if !failing => {}
                    _ = tokio::time::sleep(wait) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
        // What the last requests wrote, while the stop's grace period lasts; a failure leaves
        // the rest to the next relay, as always.
        while let Ok(1..) = self.step(&mut js).await {}
    }

    /// One round: claim a batch, publish it, record the outcome. Returns rows published.
    async fn step(&self, js: &mut Option<(jetstream::Context, bool)>) -> Result<usize, RelayError> {
        // Not even with the context in hand: the stream it reaches is another shop's now.
        if let Some(why) = self.stream.refused() {
            return Err(RelayError::Refused(why));
        }
        if js.is_none() {
            *js = Some(bus::ensure_ready_to_publish(&self.client, &self.stream).await?);
        }
        let (context, atomic) = js.as_ref().expect("set above");
        let rows = self.claim().await?;
        if rows.is_empty() {
            return Ok(0);
        }
        let mut spans = Vec::with_capacity(rows.len());
        let mut outgoing = Vec::with_capacity(rows.len());
        for row in &rows {
            // The publish is a span of the request's trace; its context travels as the
            // `traceparent` header (the CloudEvent keeps the request's own).
            let parent = row.traceparent.as_deref().and_then(TraceContext::parse);
            let span = trace::start(Kind::Producer, parent, || {
                let attributes = vec![
                    KeyValue::new("messaging.system", "nats"),
                    KeyValue::new("messaging.operation.type", "send"),
                    KeyValue::new("messaging.destination.name", row.subject.clone()),
                    KeyValue::new("messaging.message.id", row.id.to_string()),
                ];
                (format!("publish {}", row.subject).into(), attributes)
            });
            outgoing.push(Outgoing {
                subject: row.subject.clone(),
                id: row.id.to_string(),
                body: row.body.clone().into(),
                traceparent: Some(span.context.header()),
            });
            spans.push(span);
        }
        let mut sent = Vec::new();
        let mut failed = Vec::new();
        for ((row, ack), mut span) in rows.iter().zip(publish::publish(context, *atomic, &outgoing).await).zip(spans) {
            if let Err(e) = &ack {
                span.fail(e.clone());
            }
            span.end();
            match ack {
                Ok(sequence) => sent.push((row.id, sequence as i64)),
                Err(e) => failed.push((row, e)),
            }
        }
        self.record(&sent, &failed).await?;
        if let Some((_, first)) = failed.first() {
            // The stream may be gone (a server with a fresh store): check it again next time.
            *js = None;
            return Err(RelayError::Publish(format!("{} of {} rows: {first}", failed.len(), rows.len())));
        }
        Ok(sent.len())
    }

    async fn claim(&self) -> Result<Vec<Claimed>, sqlx::Error> {
        let now = now_ms();
        let until = now + self.settings.lease.as_millis() as i64;
        // The outer conditions repeat the inner ones: on Postgres a concurrent relay's
        // UPDATE re-checks them against the row it waited for, so it skips rows the first
        // relay just leased instead of leasing them again. A claim is a write: it takes a
        // (background) writer turn like every other, not SQLite's busy handler.
        let mut tx = self.db.begin_background().await?;
        // On Postgres, rows another relay is leasing right now are skipped rather than
        // waited for, so relays on several hosts lease side by side instead of in turn.
        let skip_locked = match self.db.backend() {
            Backend::Postgres => "FOR UPDATE SKIP LOCKED",
            Backend::Sqlite => "",
        };
        let sql = format!(
            "UPDATE trade_mq_producer_temp
                SET lease_until = $1, attempts = attempts + 1
              WHERE id IN (SELECT id FROM trade_mq_producer_temp
                            WHERE msg_status = 0 AND lease_until < $2
                            ORDER BY id LIMIT $3 {skip_locked})
                AND msg_status = 0 AND lease_until < $2
            RETURNING id, msg_topic, msg_body, attempts, traceparent"
        );
        let rows = sqlx::query(&sql)
        .bind(until)
        .bind(now)
        .bind(self.settings.batch)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut claimed = rows
            .iter()
            .map(|r| {
                Ok(Claimed {
                    id: r.try_get(0)?,
                    subject: r.try_get(1)?,
                    body: r.try_get(2)?,
                    attempts: r.try_get(3)?,
                    traceparent: r.try_get(4)?,
                })
            })
            .collect::<Result<Vec<_>, sqlx::Error>>()?;
        claimed.sort_by_key(|c| c.id);
        Ok(claimed)
    }

    async fn record(&self, sent: &[(i64, i64)], failed: &[(&Claimed, String)]) -> Result<(), sqlx::Error> {
        let now = now_ms();
        let mut tx = self.db.begin_background().await?;
        // One statement per chunk of rows (with `now`, within the parameters a statement
        // takes), each row's sequence picked by its id.
        for chunk in sent.chunks(rows_per_statement(2) - 1) {
            let cases: String = (0..chunk.len()).map(|i| format!(" WHEN ${} THEN CAST(${} AS BIGINT)", 2 * i + 2, 2 * i + 3)).collect();
            let ids = (0..chunk.len()).map(|i| format!("${}", 2 * i + 2)).collect::<Vec<_>>().join(", ");
            let sql = format!(
                "UPDATE trade_mq_producer_temp
                    SET msg_status = 1, sent_time = $1, last_error = NULL, stream_seq = CASE id{cases} END
                  WHERE id IN ({ids})"
            );
            let query = chunk.iter().fold(sqlx::query(&sql).bind(now), |q, (id, seq)| q.bind(id).bind(seq));
            query.execute(&mut *tx).await?;
        }
        for (row, error) in failed {
            // Retry sooner than the lease would allow, backing off per row.
            let delay = 200i64.saturating_mul(1 << row.attempts.clamp(0, 5));
            sqlx::query(
                "UPDATE trade_mq_producer_temp SET lease_until = $1, last_error = $2 WHERE id = $3",
            )
            .bind(now + delay)
            .bind(error)
            .bind(row.id)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error(transparent)]
    Bus(#[from] bus::BusError),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("publish failed for {0}")]
    Publish(String),
    #[error("nothing published: {0}")]
    Refused(String),
}

/// Rows not yet acknowledged by JetStream (for status and tests).
pub async fn pending_count(db: &Db) -> Result<i64, sqlx::Error> {
    Ok(backlog(db).await?.0)
}

/// The unsent rows: how many, and when the oldest was written (ms since the epoch).
pub async fn backlog(db: &Db) -> Result<(i64, Option<i64>), sqlx::Error> {
    let row = sqlx::query("SELECT COUNT(*), MIN(create_time) FROM trade_mq_producer_temp WHERE msg_status = 0")
        .fetch_one(db.pool())
        .await?;
    Ok((row.try_get(0)?, row.try_get(1)?))
}

/// Deletes the rows published before `cutoff` (see `retention`, which keeps them at least as
/// long as the stream keeps their events: an event a replay or a redelivery applies must find
/// its row, [`written`]), except those of an event with an open dead letter, whose redrive,
/// whenever it comes, must find it too. A row not yet published is never old.
pub async fn prune(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    let old = "msg_status = 1 AND sent_time < $1 AND NOT EXISTS (
        SELECT 1 FROM shop_dead_letter d WHERE d.event_id = CAST(trade_mq_producer_temp.id AS TEXT) AND d.redriven_at IS NULL)";
    db.prune("trade_mq_producer_temp", "id", old, cutoff).await
}
