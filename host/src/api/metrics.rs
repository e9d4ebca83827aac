//! `GET /metrics`: the Prometheus text exposition. Unauthenticated, like the probes (a
//! scraper carries no token, and nothing here is a secret: counts, names, versions); put
//! it behind the network policy that guards the admin port if that matters to you.
//!
//! Counters and histograms are counted as things happen ([`crate::metrics::Metrics`]);
//! what the database and JetStream already know is read now, so a scrape shows the truth
//! of the whole fleet, not of this host's memory: per consumer its pending, ack-pending and
//! redelivered counts (the NATS exporter's names), the outbox backlog, open dead letters,
//! running replays.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use async_nats::jetstream;
use poem::{handler, web::Data, IntoResponse, Response};
use prometheus::proto::MetricFamily;

use super::Probes;
use crate::{
    bus::STREAM,
    ids::now_ms,
    metrics::{self, Metrics},
    outbox,
    plugins::{dead_letters, durable_name, PluginHost, GUARD},
    replay::runner::Replays,
};

/// A scrape must answer even when NATS or the database does not: each read gets this long.
pub const READ_TIMEOUT: Duration = Duration::from_secs(2);

#[handler]
pub async fn scrape(
    metrics: Data<&Arc<Metrics>>,
    probes: Data<&Probes>,
    host: Data<&Arc<PluginHost>>,
    replays: Data<&Arc<Replays>>,
) -> Response {
    let status = host.registry.status();
    let plugins: Vec<String> = status.iter().map(|s| s.name.clone()).collect();
    let mut extra = consumers(&probes.nats, &plugins).await;
    extra.extend(database(&probes, &replays, &plugins).await);
    // 1 while this host refused a version it should run (the plugin status says why).
    let refused = status.iter().map(|s| (vec![s.name.clone()], f64::from(u8::from(s.refused.is_some())))).collect();
    let help = "1 while this host refused a version of the plugin it should run, the fleet's or, as it started, its folder's (its status says why), else 0.";
    extra.extend(metrics::gauges("shopmesh_plugin_refused", help, &["plugin"], refused));
    metrics.render(extra).with_content_type(metrics::CONTENT_TYPE).into_response()
}

/// One consumer's counts as JetStream reports them.
#[derive(Debug, Clone, Copy, Default)]
pub struct Lag {
    pub pending: u64,
    pub ack_pending: u64,
    pub redelivered: u64,
}

/// The lag of the consumers of `plugins` and the guard's, by durable name; a consumer that
/// cannot be read (or NATS within [`READ_TIMEOUT`]) is left out.
pub async fn consumer_lag<'a>(nats: &async_nats::Client, plugins: impl IntoIterator<Item = &'a str>) -> Vec<(String, Lag)> {
    let mut names: Vec<String> = plugins.into_iter().map(durable_name).collect();
    names.push(GUARD.to_owned());
    let mut lag = Vec::new();
    // Not connected: nothing to ask, and each question would wait out the timeout.
    if nats.connection_state() != async_nats::connection::State::Connected {
        return lag;
    }
    let read = async {
        let stream = jetstream::new(nats.clone()).get_stream(STREAM).await.ok()?;
        for name in names {
            let Ok(info) = stream.consumer_info(&name).await else { continue };
            lag.push((name, Lag { pending: info.num_pending, ack_pending: info.num_ack_pending as u64, redelivered: info.num_redelivered as u64 }));
        }
        Some(())
    };
    let _ = tokio::time::timeout(READ_TIMEOUT, read).await;
    lag
}

async fn consumers(nats: &async_nats::Client, plugins: &[String]) -> Vec<MetricFamily> {
    let (mut pending, mut ack_pending, mut redelivered) = (Vec::new(), Vec::new(), Vec::new());
    for (name, lag) in consumer_lag(nats, plugins.iter().map(String::as_str)).await {
        let labels = vec![STREAM.to_owned(), name];
        pending.push((labels.clone(), lag.pending as f64));
        ack_pending.push((labels.clone(), lag.ack_pending as f64));
        redelivered.push((labels, lag.redelivered as f64));
    }
    let labels = ["stream_name", "consumer_name"];
    [
        metrics::gauges("jetstream_consumer_num_pending", "Messages the consumer has not received yet.", &labels, pending),
        metrics::gauges("jetstream_consumer_num_ack_pending", "Messages delivered and not acknowledged yet.", &labels, ack_pending),
        metrics::gauges("jetstream_consumer_num_redelivered", "Messages delivered more than once.", &labels, redelivered),
    ]
    .concat()
}

async fn database(probes: &Probes, replays: &Replays, plugins: &[String]) -> Vec<MetricFamily> {
    let mut out = Vec::new();
    let db = &probes.db;
    if let Ok(Ok((unsent, oldest))) = tokio::time::timeout(READ_TIMEOUT, outbox::backlog(db)).await {
        let age = oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1e3);
        out.extend(metrics::gauges("shopmesh_outbox_unsent_rows", "Outbox rows not yet acknowledged by JetStream.", &[], vec![(vec![], unsent as f64)]));
        out.extend(metrics::gauges("shopmesh_outbox_oldest_unsent_age_seconds", "Age of the oldest unsent outbox row (0 when none).", &[], vec![(vec![], age)]));
    }
    if let Ok(Ok(open)) = tokio::time::timeout(READ_TIMEOUT, dead_letters::open_counts(db)).await {
        // Every plugin this host runs has a series, 0 when it has none open: an alert on
        // "> 0" needs no "absent()" twin, and a plugin's first dead letter is a change.
        let mut open: BTreeMap<String, i64> = open.into_iter().collect();
        for plugin in plugins {
            open.entry(plugin.clone()).or_insert(0);
        }
        let series = open.into_iter().map(|(plugin, n)| (vec![plugin], n as f64)).collect();
        out.extend(metrics::gauges("shopmesh_dead_letters_open", "Dead letters not yet redriven or resolved, by plugin.", &["plugin"], series));
    }
    if let Ok(Ok(running)) = tokio::time::timeout(READ_TIMEOUT, replays.running()).await {
        out.extend(metrics::gauges("shopmesh_replays_running", "Replays running on the fleet.", &[], vec![(vec![], running.len() as f64)]));
        let labels = |r: &crate::replay::Replay| vec![r.replay_id.to_string(), r.plugin.clone(), r.version.clone()];
        let processed = running.iter().map(|r| (labels(r), r.processed as f64)).collect();
        let total = running.iter().map(|r| (labels(r), r.total as f64)).collect();
        let names = ["replay_id", "plugin", "version"];
        out.extend(metrics::gauges("shopmesh_replay_processed_events", "Events a running replay has processed.", &names, processed));
        out.extend(metrics::gauges("shopmesh_replay_planned_events", "Events in a running replay's range.", &names, total));
    }
    out
}
