//! Retention: the rows kept only for a while go once they are older than `retention` (30
//! days by default; 0 keeps them forever). Each table's owner says which of its rows are
//! old and deletes them ([`outbox::prune`]: published rows; [`inbox::prune`]: the plugins'
//! consumer log; [`dead_letters::prune`]: resolved dead letters, never open ones;
//! [`replay::store::prune`]: finished replays and their events; [`requests::prune`]:
//! orders' idempotency keys), in small background batches ([`Db::prune`]). The shop's own
//! records (orders, payments, steps, the money and goods logs, the audit log) are never
//! pruned, nor is anything not yet done (an unpublished row, a running replay, an open
//! dead letter).
//!
//! Why the inbox and the outbox may go: their rows are kept as long as the stream keeps
//! events, so an event that can still be delivered again (a consumer reset, a replay
//! applying) always still finds its inbox row, and its outbox row, which says the shop wrote
//! it (`plugins::effects` applies nothing for an event without one). `retention` is never
//! shorter than the configured `stream_max_age` (checked at start), and each pass also reads
//! how long stream `SHOP` keeps events now (another host or an older run may have made it with
//! another age): those rows stay at least that long, and all of them when it keeps events
//! forever or cannot be asked. An event with an open dead letter keeps its rows too (see
//! [`inbox::prune`], [`outbox::prune`]). Every host runs the job; deleting what another host
//! deleted already is a no-op, so they need no coordination.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use crate::{
    bus,
    ids::now_ms,
    metrics::Metrics,
    outbox,
    plugins::{dead_letters, inbox},
    replay,
    shop::requests,
    store::Db,
};

/// One pass: deletes every row kept past `keep` (inbox rows only past `stream_keeps` too,
/// and none when that is unknown or forever: `None`, zero); returns how many went, per table.
pub async fn prune_once(db: &Db, keep: Duration, stream_keeps: Option<Duration>) -> Result<Vec<(&'static str, u64)>, sqlx::Error> {
    let before = |age: Duration| now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    let cutoff = before(keep);
    // The rows that fence or vouch for an event still in the stream (the inbox's, the
    // outbox's) stay as long as it does.
    let events_cutoff = stream_keeps.filter(|age| !age.is_zero()).map(|age| before(age.max(keep)));
    let (outbox, inbox) = match events_cutoff {
        Some(cutoff) => (outbox::prune(db, cutoff).await?, inbox::prune(db, cutoff).await?),
        None => (0, 0),
    };
    Ok(vec![
        ("trade_mq_producer_temp", outbox),
        ("trade_mq_consumer_log", inbox),
        ("shop_dead_letter", dead_letters::prune(db, cutoff).await?),
        ("shop_replay", replay::store::prune(db, cutoff).await?),
        ("shop_order_request", requests::prune(db, cutoff).await?),
    ])
}

/// How long stream `SHOP` keeps events as it is configured now; `None` when NATS does not say.
async fn stream_keeps(client: &async_nats::Client) -> Option<Duration> {
    let stream = async_nats::jetstream::new(client.clone()).get_stream(bus::STREAM).await.ok()?;
    Some(stream.cached_info().config.max_age)
}

/// Prunes every `interval` until shutdown (nothing when `keep` is 0: forever).
pub async fn run(db: Db, client: async_nats::Client, metrics: Arc<Metrics>, keep: Duration, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    if keep.is_zero() {
        return;
    }
    while !*shutdown.borrow() {
        let stream_keeps = stream_keeps(&client).await;
        if stream_keeps.is_none_or(|age| age.is_zero() || age > keep) {
            tracing::debug!(?stream_keeps, "inbox rows kept as long as stream SHOP keeps events");
        }
        match prune_once(&db, keep, stream_keeps).await {
            Ok(pruned) => {
                // Zeros counted too: each table's series is there from the first pass, so a
                // dashboard shows 0 rather than no data.
                pruned.iter().for_each(|(table, n)| metrics.pruned(table, *n));
                let pruned: Vec<String> = pruned.iter().filter(|(_, n)| *n > 0).map(|(t, n)| format!("{t}: {n}")).collect();
                if !pruned.is_empty() {
                    tracing::info!(rows = %pruned.join(", "), "pruned rows past retention");
                }
            }
            Err(e) => tracing::warn!(error = %e, "retention pass failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
