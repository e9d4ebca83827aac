//! [`PluginHost`]: the live path of deliveries, from messages to their dispositions. For one
//! plugin and a batch of messages: parse ([`super::delivery`]) → inbox, one query for the
//! batch ([`super::inbox`]) → snapshots, one query per table ([`super::reads`]) → dispatch,
//! each event on its own ([`super::dispatch`]) → the effects and inbox rows of the whole
//! batch in one transaction ([`super::effects`]) → ack. An event that fails goes down the
//! retry and dead-letter path on its own ([`super::failures`]); the rest commit. Redrive
//! and replay take the same path.

use std::{
    collections::{HashMap, HashSet},
    sync::Arc,
    time::Duration,
};

use opentelemetry::KeyValue;
use sqlx::Connection;

use super::{
    config::Configs,
    delivery::{self, Delivery},
    dispatch::{self, Failure, Terms},
    effects,
    grants::Grants,
    inbox, reads,
    registry::Registry,
    runtime::{Effect, LoadedPlugin, Runtime},
    subjects, DeliverySettings, Disposition,
};
use crate::{
    metrics::{Metrics, Outcome},
    shop::Shop,
    store::Conn,
    trace::{self, Kind, TraceContext},
};

pub struct PluginHost {
    pub registry: Registry,
    runtime: Arc<Runtime>,
    pub(super) shop: Arc<Shop>,
    pub delivery: DeliverySettings,
    pub metrics: Arc<Metrics>,
}

/// A message as a consumer received it.
#[derive(Debug, Clone)]
pub struct Message {
    pub subject: String,
    pub body: Vec<u8>,
    /// Its sequence in stream SHOP (none for an event handed over outside a consumer).
    pub stream_seq: Option<u64>,
    /// The `traceparent` header, if the publisher set one.
    pub traceparent: Option<String>,
}

/// What happened to one event that was run and (if it produced effects) applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// Its effects and inbox row are committed.
    Now,
    /// Another delivery or host applied it meanwhile: nothing was done again.
    Before,
}

impl Applied {
    /// How the invocation metrics count it, on the live path and in a redrive alike.
    pub(super) fn counted(self) -> Outcome {
        match self {
            Applied::Now => Outcome::Applied,
            Applied::Before => Outcome::Skipped,
        }
    }
}

/// How soon a paused plugin's deliveries come back to see whether it was enabled.
const PAUSED_RETRY: Duration = Duration::from_millis(500);

/// What running an event produced: its effects, and what to record with them.
type Produced = (Vec<Effect>, inbox::Recorded);

/// An event ready to run: parsed, not applied yet, and the number of this attempt.
pub struct Ready<'a> {
    pub delivery: &'a Delivery,
    pub attempt: i64,
}

impl PluginHost {
    pub fn new(
        runtime: Runtime,
        shop: Arc<Shop>,
        config: HashMap<String, HashMap<String, String>>,
        delivery: DeliverySettings,
        metrics: Arc<Metrics>,
        grants: Grants,
    ) -> PluginHost {
        let runtime = Arc::new(runtime);
        PluginHost {
            registry: Registry::new(runtime.clone(), metrics.clone(), Arc::new(grants), Configs::new(config)),
            runtime,
            shop,
            delivery,
            metrics,
        }
    }

    pub fn shop(&self) -> &Arc<Shop> {
        &self.shop
    }

    /// Reads the operators' grants again (see [`super::grants`]).
    pub async fn refresh_grants(&self) -> Result<(), sqlx::Error> {
        self.registry.grants.refresh(&self.shop.db).await
    }

    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// What the operator sets for plugin name `plugin` now: its configuration values and its
    /// grant, read once per batch.
    pub fn terms_of(&self, plugin: &str) -> Terms {
        Terms { config: self.registry.configs.of(plugin), granted: self.registry.grants.granted(plugin) }
    }

    pub(super) fn backoff(&self, attempt: i64) -> Duration {
        let factor = 1u32 << attempt.clamp(1, 16).saturating_sub(1) as u32;
        self.delivery.base_delay.saturating_mul(factor).min(self.delivery.max_delay)
    }

    /// Handles one delivery: [`process_batch`](Self::process_batch) of one.
    pub async fn process(&self, name: &str, subject: &str, body: &[u8]) -> Disposition {
        let message = Message { subject: subject.to_owned(), body: body.to_vec(), stream_seq: None, traceparent: None };
        self.process_batch(name, std::slice::from_ref(&message)).await.pop().expect("one disposition per message")
    }

    /// Handles a batch of deliveries for plugin `name`: one disposition per message, in
    /// order. Attempts are counted from the failures this host recorded, not from
    /// JetStream's delivery count, which also grows while a plugin is disabled or when a dead
    /// host's deliveries come back: neither is the plugin failing.
    pub async fn process_batch(&self, name: &str, batch: &[Message]) -> Vec<Disposition> {
        let Some(plugin) = self.registry.runnable(name) else {
            // Unknown or disabled: the events wait in JetStream, coming back often enough
            // that enabling the plugin resumes it within a second.
            return vec![Disposition::Retry(PAUSED_RETRY.min(self.delivery.max_delay)); batch.len()];
        };
        let mut out = vec![Disposition::Ack; batch.len()];
        let mut parsed = Vec::with_capacity(batch.len());
        let mut spans = Vec::with_capacity(batch.len());
        for (i, m) in batch.iter().enumerate() {
            if !subjects::reads(plugin.subjects(), &m.subject) {
                // Whose it is, the consumer knows from its filter (see NotRead).
                out[i] = Disposition::NotRead(PAUSED_RETRY.min(self.delivery.max_delay));
                continue;
            }
            match delivery::parse(&m.subject, &m.body) {
                Ok(mut d) => {
                    d.seq = m.stream_seq;
                    // The header wins: a foreign publisher may set only that. What the
                    // plugin does for this event is a span of that trace.
                    let parent = m.traceparent.as_deref().and_then(TraceContext::parse).or(d.trace);
                    let span = process_span(&plugin, &d, parent);
                    d.trace = Some(span.context);
                    spans.push(span);
                    parsed.push((i, d))
                }
                Err(reason) => out[i] = self.malformed(&plugin.name, plugin.version(), m, &reason, 1).await,
            }
        }
        let deliveries: Vec<&Delivery> = parsed.iter().map(|(_, d)| d).collect();
        let entries = match inbox::lookup(&self.shop.db, name, &deliveries).await {
            Ok(entries) => entries,
            Err(e) => {
                tracing::warn!(plugin = name, error = %e, "inbox unreadable; will retry");
                for (i, _) in &parsed {
                    out[*i] = Disposition::Retry(self.backoff(1));
                }
                return out;
            }
        };
        // A redelivery of an applied event only acks.
        for _ in entries.iter().filter(|entry| entry.state == inbox::State::Applied) {
            self.metrics.invocation(name, plugin.version(), Outcome::Skipped);
        }
        let todo: Vec<(usize, Ready)> = parsed
            .iter()
            .zip(&entries)
            .filter(|(_, entry)| entry.state != inbox::State::Applied)
            .map(|((i, d), entry)| (*i, Ready { delivery: d, attempt: entry.state.next_attempt() }))
            .collect();
        let ready: Vec<&Ready> = todo.iter().map(|(_, r)| r).collect();
        let results = self.run_and_apply(&plugin, &ready).await;
        for ((i, r), result) in todo.iter().zip(results) {
            self.registry.count(name, result.is_err());
            match result {
                Ok(applied) => {
                    let outcome = if applied == Applied::Now { "applied" } else { "applied before" };
                    self.metrics.invocation(name, plugin.version(), applied.counted());
                    tracing::info!(plugin = name, version = plugin.version(), event = %r.delivery.id, subject = %r.delivery.subject, trace_id = %trace_id(r.delivery), outcome, "event handled");
                }
                Err(failure) => out[*i] = self.failed(&plugin, r.delivery, r.attempt, failure).await,
            }
        }
        for ((i, _), mut span) in parsed.iter().zip(spans) {
            if out[*i] != Disposition::Ack {
                span.fail(format!("{:?}", out[*i]));
            }
        }
        out
    }

    /// Runs events through `plugin` and applies what they produce: one result per event, in
    /// order. Events of one order never share a wave, so each runs on the state its
    /// predecessor left; each wave's effects commit in one transaction.
    pub async fn run_and_apply(&self, plugin: &Arc<LoadedPlugin>, events: &[&Ready<'_>]) -> Vec<Result<Applied, Failure>> {
        let mut results: Vec<Option<Result<Applied, Failure>>> = events.iter().map(|_| None).collect();
        for wave in waves(events) {
            let ready: Vec<&Ready> = wave.iter().map(|i| events[*i]).collect();
            for (i, result) in wave.into_iter().zip(self.run_wave(plugin, &ready).await) {
                results[i] = Some(result);
            }
        }
        results.into_iter().map(|r| r.expect("every event is in a wave")).collect()
    }

    async fn run_wave(&self, plugin: &Arc<LoadedPlugin>, wave: &[&Ready<'_>]) -> Vec<Result<Applied, Failure>> {
        let deliveries: Vec<&Delivery> = wave.iter().map(|r| r.delivery).collect();
        // Only what this version reads; a read of anything else runs that event again.
        let snapshots = match reads::snapshots(&self.shop, &deliveries, plugin.reads()).await {
            Ok(s) => s,
            Err(e) => return wave.iter().map(|_| Err(Failure::Db(crate::store::copied(&e)))).collect(),
        };
        let shop = &self.shop;
        let terms = self.terms_of(&plugin.name);
        let ran = dispatch::run_all(&self.runtime, plugin, &deliveries, snapshots, &terms, 1, |events, parts| async move {
            reads::snapshots(shop, &events, parts).await
        })
        .await;
        for (d, r) in deliveries.iter().zip(&ran) {
            self.metrics.handler_ran(&plugin.name, plugin.version(), r.seen.took, r.seen.fuel);
            if let (Some(parent), Some(started)) = (d.trace, r.seen.started) {
                trace::record(parent, started, started + r.seen.took, || {
                    (format!("invoke {}", plugin.name).into(), vec![KeyValue::new("shopmesh.fuel", r.seen.fuel as i64)])
                });
            }
        }
        let produced = ran
            .into_iter()
            .map(|ran| {
                let effects = ran.result?;
                let reads = serde_json::to_string(&ran.snapshot).expect("a snapshot serialises");
                let recorded = inbox::Recorded { count: effects.len(), effects: effects::view(&effects).to_string(), reads };
                Ok((effects, recorded))
            })
            .collect();
        self.commit_wave(plugin, wave, produced).await
    }

    /// Commits the wave's effects in one transaction. Should they fail there (a refused
    /// give-back, a constraint), the wave is redone with a savepoint per event, so the event
    /// at fault fails alone and the rest still commit.
    async fn commit_wave(&self, plugin: &LoadedPlugin, wave: &[&Ready<'_>], produced: Vec<Result<Produced, Failure>>) -> Vec<Result<Applied, Failure>> {
        let ran: Vec<(&Ready, &Produced)> = wave.iter().zip(&produced).filter_map(|(r, p)| Some((*r, p.as_ref().ok()?))).collect();
        let started = std::time::SystemTime::now();
        let whole = async {
            let mut tx = self.shop.db.begin_background().await?;
            let fresh = self.apply(&mut tx, plugin, &ran).await?;
            tx.commit().await?;
            Ok::<_, Failure>(fresh)
        };
        let whole = whole.await;
        // The wave's one transaction, in the trace of each event it committed.
        if whole.is_ok() {
            let ended = std::time::SystemTime::now();
            for (r, (effects, _)) in &ran {
                if let Some(parent) = r.delivery.trace {
                    trace::record(parent, started, ended, || {
                        ("commit effects".into(), vec![KeyValue::new("shopmesh.effects", effects.len() as i64), KeyValue::new("shopmesh.wave", ran.len() as i64)])
                    });
                }
            }
        }
        let fresh = match whole {
            Ok(fresh) => fresh,
            Err(first) => {
                tracing::debug!(plugin = %plugin.name, error = %first, "a wave failed as a whole; applying one by one");
                return self.commit_one_by_one(plugin, wave, produced).await;
            }
        };
        wave.iter()
            .zip(produced)
            .map(|(r, p)| p.map(|_| if fresh.contains(&r.delivery.id) { Applied::Now } else { Applied::Before }))
            .collect()
    }

    async fn commit_one_by_one(&self, plugin: &LoadedPlugin, wave: &[&Ready<'_>], produced: Vec<Result<Produced, Failure>>) -> Vec<Result<Applied, Failure>> {
        let mut tx = match self.shop.db.begin_background().await {
            Ok(tx) => tx,
            Err(e) => return wave.iter().map(|_| Err(Failure::Db(crate::store::copied(&e)))).collect(),
        };
        let mut results = Vec::with_capacity(wave.len());
        let mut lost = None;
        for (r, p) in wave.iter().zip(produced) {
            let produced = match p {
                Ok(ok) => ok,
                Err(failure) => {
                    results.push(Err(failure));
                    continue;
                }
            };
            // The transaction is gone (below): the rest of the wave is not applied.
            if let Some(e) = &lost {
                results.push(Err(Failure::Db(crate::store::lost(e))));
                continue;
            }
            let mut savepoint = match tx.begin().await {
                Ok(savepoint) => savepoint,
                Err(e) => {
                    results.push(Err(Failure::Db(e)));
                    continue;
                }
            };
            let fresh = self.apply(&mut savepoint, plugin, &[(*r, &produced)]).await;
            if let Err(e) = crate::store::end_savepoint(savepoint, fresh.is_ok()).await {
                lost = Some(e);
            }
            results.push(fresh.map(|fresh| if fresh.is_empty() { Applied::Before } else { Applied::Now }));
        }
        // Nothing applied in a lost transaction stands; a failure keeps its own reason. `tx` is
        // dropped: its connection is closed (see `store`).
        if let Some(e) = lost {
            return results.into_iter().map(|r| r.and_then(|_| Err(Failure::Db(crate::store::lost(&e))))).collect();
        }
        if let Err(e) = tx.commit().await {
            return results.into_iter().map(|r| r.and(Err(Failure::Db(crate::store::copied(&e))))).collect();
        }
        results
    }

    /// The inbox rows, then the effects of the events applied now, in `tx`; answers their ids.
    async fn apply(&self, tx: &mut Conn, plugin: &LoadedPlugin, events: &[(&Ready<'_>, &Produced)]) -> Result<HashSet<String>, Failure> {
        let marks: Vec<(&Delivery, i64, &inbox::Recorded)> = events.iter().map(|(r, (_, recorded))| (r.delivery, r.attempt, recorded)).collect();
        let fresh = inbox::mark_applied(tx, plugin, &marks).await?;
        // Every event, applied before or not, after the first write (on SQLite a transaction
        // that reads first may not write after another commit): a refusal rolls the marks back.
        effects::shops_own(tx, &marks.iter().map(|(d, ..)| *d).collect::<Vec<_>>()).await?;
        let now: Vec<(&Delivery, &[Effect])> = events
            .iter()
            .filter(|(r, _)| fresh.contains(&r.delivery.id))
            .map(|(r, (effects, _))| (r.delivery, effects.as_slice()))
            .collect();
        effects::apply(tx, &self.shop.ids, plugin, &now).await?;
        Ok(fresh)
    }
}

/// Splits events into waves in which no order appears twice: the first wave takes each
/// order's first event, the second each order's second, and so on. Each wave lists the
/// events' positions, in order.
fn waves(events: &[&Ready<'_>]) -> Vec<Vec<usize>> {
    let mut waves: Vec<Vec<usize>> = Vec::new();
    let mut seen: HashMap<i64, usize> = HashMap::new(); // order → how many of its events so far
    for (i, r) in events.iter().enumerate() {
        let wave = *seen.entry(r.delivery.event.order_id()).and_modify(|n| *n += 1).or_insert(0);
        if waves.len() <= wave {
            waves.push(Vec::new());
        }
        waves[wave].push(i);
    }
    waves
}

/// The consumer span of `plugin` handling `d` (OpenTelemetry messaging conventions).
fn process_span(plugin: &LoadedPlugin, d: &Delivery, parent: Option<TraceContext>) -> trace::Span {
    trace::start(Kind::Consumer, parent, || {
        let attributes = vec![
            KeyValue::new("messaging.system", "nats"),
            KeyValue::new("messaging.operation.type", "process"),
            KeyValue::new("messaging.destination.name", d.subject.clone()),
            KeyValue::new("messaging.consumer.group.name", super::durable_name(&plugin.name)),
            KeyValue::new("messaging.message.id", d.id.clone()),
            KeyValue::new("shopmesh.plugin", plugin.name.clone()),
            KeyValue::new("shopmesh.plugin.version", plugin.version().to_owned()),
        ];
        (format!("process {}", d.subject).into(), attributes)
    })
}

/// The trace id to log with a delivery (empty when it came without one).
pub(super) fn trace_id(d: &Delivery) -> String {
    d.trace.map(|t| t.trace_id_hex()).unwrap_or_default()
}
