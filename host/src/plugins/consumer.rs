//! Durable JetStream pull consumers: one per plugin (`plugin-<name>`, filtered by its
//! subjects), and the guard (`shopmesh-guard`, all of `shop.>`) that dead-letters any
//! malformed event, including on subjects no plugin listens to. Several hosts bind the same
//! durable consumers and share their messages. JetStream delivers at least once; the inbox
//! row makes a plugin's effects happen once.

use std::{future::Future, panic::AssertUnwindSafe, sync::Arc, time::Duration};

use async_nats::jetstream::AckKind;
use futures::{FutureExt, StreamExt};
use tokio::sync::watch;

use super::{durable_name, host::Message, start, Disposition, PluginHost, GUARD};
use crate::bus::{self, StreamSettings};

/// How long a batch waits for more deliveries once its first has arrived.
const BATCH_FILL: Duration = Duration::from_millis(2);

/// A consumer's filter as its configuration says it (everything, when it has none).
fn filter_of(config: &async_nats::jetstream::consumer::Config) -> Vec<String> {
    let mut all = config.filter_subjects.clone();
    all.extend(Some(config.filter_subject.clone()).filter(|f| !f.is_empty()));
    if all.is_empty() { vec![">".into()] } else { all }
}

/// The first and the longest wait before a consumer that could not bind (or lost its
/// binding) tries again.
const REBIND_FIRST: Duration = Duration::from_millis(500);
const REBIND_MOST: Duration = Duration::from_secs(4);
/// How long a binding must hold to count as working again.
const HELD: Duration = Duration::from_secs(10);

/// How often a consumer checks whether the active version reads other subjects.
const SUBJECTS_RECHECK: Duration = Duration::from_secs(1);

/// Why a bound consumer stopped.
enum Bound {
    Shutdown,
    /// The active version's subjects changed: bind again with the new filter.
    Rebind,
}

/// Consumes for plugin `name` until shutdown.
pub async fn run(host: Arc<PluginHost>, client: async_nats::Client, stream: StreamSettings, name: String, shutdown: watch::Receiver<bool>) {
    let durable = durable_name(&name);
    let subjects = {
        let host = host.clone();
        let name = name.clone();
        move || host.registry.current(&name).map(|p| p.subjects().to_vec()).ok_or_else(|| format!("plugin {name} is not loaded"))
    };
    // The plugin counts attempts itself (see PluginHost::process_batch); the delivery
    // counts go unused here.
    let handler = |batch: Vec<(Message, i64)>| {
        let (host, name) = (host.clone(), name.clone());
        async move {
            let messages: Vec<Message> = batch.into_iter().map(|(m, _)| m).collect();
            host.process_batch(&name, &messages).await
        }
    };
    bind_and_consume(&host, &client, &stream, &durable, subjects, handler, shutdown).await
}

/// Runs the guard until shutdown: every event on `shop.>` is checked once per fleet.
pub async fn run_guard(host: Arc<PluginHost>, client: async_nats::Client, stream: StreamSettings, shutdown: watch::Receiver<bool>) {
    let handler = |batch: Vec<(Message, i64)>| {
        let host = host.clone();
        async move {
            let mut out = Vec::with_capacity(batch.len());
            for (m, attempt) in batch {
                out.push(host.guard(&m, attempt).await);
            }
            out
        }
    };
    let subjects = || Ok(vec!["shop.>".to_string()]);
    bind_and_consume(&host, &client, &stream, GUARD, subjects, handler, shutdown).await
}

/// Tells JetStream every half `ack_wait` that `batch` is still being worked on, until
/// aborted. A batch runs its events one after another, each for up to the plugin's deadline,
/// so it may outlast `ack_wait`; the server would then hand its messages to another host (or
/// this one) while they are still running here. A task of its own: the guests run on this
/// consumer's thread (`block_in_place`), so nothing else of the consumer runs meanwhile.
async fn in_progress(batch: Arc<Vec<async_nats::jetstream::Message>>, ack_wait: Duration) {
    loop {
        tokio::time::sleep((ack_wait / 2).max(Duration::from_millis(100))).await;
        for msg in batch.iter() {
            if let Err(e) = msg.ack_with(AckKind::Progress).await {
                tracing::debug!(error = %e, "in-progress ack failed");
            }
        }
    }
}

/// Binds `durable` and feeds its messages to `handler` in batches (whatever has arrived, up to
/// the configured batch size), each with its delivery count; acks each message as the handler
/// says. Re-binds after any error.
async fn bind_and_consume<H, F>(
    host: &PluginHost,
    client: &async_nats::Client,
    settings: &StreamSettings,
    durable: &str,
    subjects: impl Fn() -> Result<Vec<String>, String>,
    handler: H,
    mut shutdown: watch::Receiver<bool>,
) where
    H: Fn(Vec<(Message, i64)>) -> F,
    F: Future<Output = Vec<Disposition>>,
{
    // Failures in a row, and the wait before binding again: doubling, so a NATS that is away
    // for a while (or never came) is neither hammered nor logged twice a second.
    let (mut failures, mut delay) = (0u32, REBIND_FIRST);
    while !*shutdown.borrow() {
        let mut bound_at = None;
        let result = async {
            let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
            let stream = js.get_stream(bus::STREAM).await.map_err(|e| e.to_string())?;
            let filter = subjects()?;
            // Create or update: a new version that reads other subjects re-binds the durable
            // consumer with its filter, keeping its position in the stream and where it began
            // ([`super::start`]).
            let config = start::binding(&stream, durable, filter.clone(), host.delivery.ack_wait).await?;
            let consumer: async_nats::jetstream::consumer::PullConsumer = stream.create_consumer(config).await.map_err(|e| e.to_string())?;
            let batch_size = host.delivery.batch.max(1);
            let messages = consumer
                .stream()
                .max_messages_per_batch(batch_size)
                .messages()
                .await
                .map_err(|e| e.to_string())?;
            bound_at = Some(tokio::time::Instant::now());
            let mut batches = messages.ready_chunks(batch_size);
            let mut recheck = tokio::time::interval(SUBJECTS_RECHECK);
            // What a top-up brought beyond the batch size: the start of the next batch.
            let mut carried = Vec::new();
            loop {
                // Also between back-to-back batches: under a backlog the wait below is
                // skipped, and shutdown or a new version's subjects must not wait it out.
                if *shutdown.borrow() {
                    return Ok::<Bound, String>(Bound::Shutdown);
                }
                // The stream is another shop's now: nothing more is taken from it.
                if let Some(why) = settings.refused() {
                    return Err(why);
                }
                if recheck.tick().now_or_never().is_some() && subjects()? != filter {
                    return Ok(Bound::Rebind);
                }
                let mut received = std::mem::take(&mut carried);
                if received.is_empty() {
                    let next = tokio::select! {
                        // Shutdown first: with a backlog, a message is always ready too.
                        biased;
                        _ = shutdown.changed() => return Ok(Bound::Shutdown),
                        _ = recheck.tick() => {
                            if subjects()? != filter {
                                return Ok(Bound::Rebind);
                            }
                            continue;
                        }
                        next = batches.next() => next,
                    };
                    for msg in next.ok_or("message stream ended")? {
                        received.push(msg.map_err(|e| e.to_string())?);
                    }
                }
                // A batch is whatever arrived, topped up with what arrives within a moment:
                // a backlog comes in a few pieces, and one transaction beats several.
                let fill_until = tokio::time::Instant::now() + BATCH_FILL;
                while received.len() < batch_size {
                    match tokio::time::timeout_at(fill_until, batches.next()).await {
                        Ok(Some(more)) => {
                            for msg in more {
                                let msg = msg.map_err(|e| e.to_string())?;
                                if received.len() < batch_size { received.push(msg) } else { carried.push(msg) }
                            }
                        }
                        Ok(None) => return Err("message stream ended".into()),
                        Err(_) => break,
                    }
                }
                let batch = received
                    .iter()
                    .map(|msg| {
                        let attempt = msg.info().map(|i| i.delivered).unwrap_or(1);
                        let traceparent = msg.headers.as_ref().and_then(|h| h.get("traceparent")).map(|v| v.as_str().to_owned());
                        let stream_seq = msg.info().ok().map(|i| i.stream_sequence);
                        (Message { subject: msg.subject.to_string(), body: msg.payload.to_vec(), stream_seq, traceparent }, attempt)
                    })
                    .collect();
                let received = Arc::new(received);
                let working = tokio::spawn(in_progress(received.clone(), host.delivery.ack_wait));
                let handled = AssertUnwindSafe(handler(batch)).catch_unwind().await;
                working.abort();
                let dispositions = match handled {
                    Ok(dispositions) => dispositions,
                    // A bug of the host's, not the event's: the consumer lives on, and the
                    // batch comes back later instead of this plugin stopping for good.
                    Err(_) => {
                        tracing::error!(consumer = durable, "the batch's handler panicked; the batch will be redelivered");
                        received.iter().map(|_| Disposition::Retry(host.delivery.max_delay)).collect()
                    }
                };
                // The fleet's filter as the server holds it now, asked once a batch, when needed.
                let mut fleet_filter: Option<Vec<String>> = None;
                for (msg, disposition) in received.iter().zip(dispositions) {
                    let acked = match disposition {
                        Disposition::Ack => msg.ack().await,
                        Disposition::Retry(delay) => msg.ack_with(AckKind::Nak(Some(delay))).await,
                        Disposition::DeadLettered => msg.ack_with(AckKind::Term).await,
                        Disposition::NotRead(delay) => {
                            if fleet_filter.is_none() {
                                // Not known: taken as reading everything, so nothing is acked unseen.
                                let info = consumer.get_info().await.inspect_err(|e| tracing::warn!(consumer = durable, error = %e, "consumer info unread; handing back"));
                                fleet_filter = Some(info.map_or_else(|_| vec![">".into()], |i| filter_of(&i.config)));
                            }
                            // Still in the fleet's filter: a version elsewhere reads it (or this
                            // host is about to bind narrower), so it is handed back. Out of it:
                            // no version the fleet binds reads it any more, and it is done.
                            if fleet_filter.as_deref().is_some_and(|f| super::subjects::reads(f, &msg.subject)) {
                                msg.ack_with(AckKind::Nak(Some(delay))).await
                            } else {
                                tracing::info!(consumer = durable, subject = %msg.subject, "no version the fleet runs reads this subject now: done, unhandled (a replay can run it)");
                                msg.ack().await
                            }
                        }
                    };
                    if let Err(e) = acked {
                        // Not fatal: JetStream redelivers after ack_wait and the inbox absorbs it.
                        tracing::warn!(consumer = durable, error = %e, "ack failed");
                    }
                }
            }
        }
        .await;
        // A binding that held a while ends a run of failures (one that fails at once does not:
        // it is still the same trouble).
        if bound_at.is_some_and(|at| at.elapsed() >= HELD) {
            (failures, delay) = (0, REBIND_FIRST);
        }
        if let Ok(Bound::Rebind) = result {
            tracing::info!(consumer = durable, "subjects changed; re-binding");
            continue;
        }
        if let Err(e) = result {
            failures += 1;
            if failures == 1 || failures % 10 == 0 {
                tracing::warn!(consumer = durable, error = %e, failures, retry_in_ms = delay.as_millis() as u64, "consumer interrupted; re-binding");
            } else {
                tracing::debug!(consumer = durable, error = %e, failures, "consumer still not bound");
            }
            tokio::select! {
                _ = tokio::time::sleep(delay) => {}
                _ = shutdown.changed() => {}
            }
            delay = (delay * 2).min(REBIND_MOST);
        }
    }
}
