//! Putting events into stream `SHOP`: how the outbox relay publishes a batch (and the bench,
//! to publish as the relay does).
//!
//! A batch goes as one JetStream *atomic batch* (nats-server 2.14+, stream `allow_atomic`):
//! the server stores the whole batch with one write and, under `sync_interval: always`, one
//! fsync, instead of one per event. That fsync (~150 µs on our disk) is the broker's whole
//! budget: events one by one reach ~7,000/s here, a batch of 256 an order of magnitude more.
//!
//! Every event still carries `Nats-Msg-Id` = its outbox id. The server refuses an atomic batch
//! holding an id it has already stored (a relay died between publishing and marking its rows;
//! the next one leases them again): then, and whenever atomic batches are not available, the
//! events go one by one, each deduplicated on its own, so none reaches the stream twice.

use std::sync::atomic::{AtomicU64, Ordering};

use async_nats::{
    jetstream::{self, message::PublishMessage},
    HeaderMap,
};
use bytes::Bytes;

/// The most events the server takes in one atomic batch.
const MAX_ATOMIC: usize = 1000;

/// One event to publish.
pub struct Outgoing {
    pub subject: String,
    /// Its `Nats-Msg-Id`: the event id.
    pub id: String,
    pub body: Bytes,
    /// The W3C trace context of the publish, sent as the `traceparent` header.
    pub traceparent: Option<String>,
}

/// Publishes `events` in order; returns each one's stream sequence (a duplicate's is the
/// sequence it was first stored at) or why it was not stored. `atomic`: the stream takes
/// atomic batches ([`crate::bus::ensure_ready_to_publish`]).
pub async fn publish(js: &jetstream::Context, atomic: bool, events: &[Outgoing]) -> Vec<Result<u64, String>> {
    let mut out = Vec::with_capacity(events.len());
    for chunk in events.chunks(MAX_ATOMIC) {
        if atomic {
            match publish_atomic(js, chunk).await {
                Ok(first) => {
                    out.extend((0..chunk.len() as u64).map(|k| Ok(first + k)));
                    continue;
                }
                Err(e) => tracing::debug!(error = %e, events = chunk.len(), "atomic batch not taken; publishing one by one"),
            }
        }
        out.extend(publish_each(js, chunk).await);
    }
    out
}

/// One atomic batch: the first event asks for an answer (an early refusal: atomic publishing
/// not enabled), the middle ones are sent without one, the last commits. Returns the first
/// event's sequence: a batch is stored contiguously.
async fn publish_atomic(js: &jetstream::Context, events: &[Outgoing]) -> Result<u64, String> {
    static BATCHES: AtomicU64 = AtomicU64::new(0);
    // Unique among this server's open batches: a batch left open by a dead relay is
    // abandoned by the server after a while, and must not be continued by a new one. The
    // process id alone does not tell hosts apart (in containers each is pid 1): a random
    // number drawn once per process does.
    static PROCESS: std::sync::LazyLock<u64> = std::sync::LazyLock::new(|| {
        use std::hash::{BuildHasher, Hasher};
        std::collections::hash_map::RandomState::new().build_hasher().finish()
    });
    let batch = format!("{:x}-{}-{}", *PROCESS, crate::ids::now_ms(), BATCHES.fetch_add(1, Ordering::Relaxed));
    let client = js.client();
    let headers = |k: usize, e: &Outgoing| {
        let mut headers = HeaderMap::new();
        headers.insert("Nats-Msg-Id", e.id.as_str());
        headers.insert("Nats-Batch-Id", batch.as_str());
        headers.insert("Nats-Batch-Sequence", (k + 1).to_string().as_str());
        if let Some(tp) = &e.traceparent {
            headers.insert("traceparent", tp.as_str());
        }
        headers
    };
    let ask = |e: &Outgoing, headers: HeaderMap| {
        let client = client.clone();
        let (subject, body) = (e.subject.clone(), e.body.clone());
        async move {
            let reply = client.request_with_headers(subject, headers, body).await.map_err(|e| e.to_string())?;
            let answer: Answer = if reply.payload.is_empty() {
                Answer::default()
            } else {
                serde_json::from_slice(&reply.payload).map_err(|e| format!("unreadable answer: {e}"))?
            };
            match answer.error {
                Some(error) => Err(format!("{} (code {})", error.description, error.err_code)),
                None => Ok(answer),
            }
        }
    };
    let (last, rest) = events.split_last().ok_or("an empty batch")?;
    for (k, e) in rest.iter().enumerate() {
        if k == 0 {
            ask(e, headers(k, e)).await?;
        } else {
            client.publish_with_headers(e.subject.clone(), headers(k, e), e.body.clone()).await.map_err(|e| e.to_string())?;
        }
    }
    let mut commit = headers(rest.len(), last);
    commit.insert("Nats-Batch-Commit", "1");
    let answer = ask(last, commit).await?;
    let (seq, count) = answer.seq.zip(answer.count).ok_or("a commit answered without its sequence")?;
    if count != events.len() as u64 || seq < count {
        return Err(format!("the commit stored {count} of {} events", events.len()));
    }
    Ok(seq + 1 - count)
}

/// The server's answer to a batch's first event or its commit.
#[derive(Default, serde::Deserialize)]
struct Answer {
    error: Option<ApiError>,
    seq: Option<u64>,
    count: Option<u64>,
}

#[derive(serde::Deserialize)]
struct ApiError {
    #[serde(default)]
    err_code: u64,
    #[serde(default)]
    description: String,
}

/// Each event on its own, pipelined: all sent, then the acks collected (one round trip).
async fn publish_each(js: &jetstream::Context, events: &[Outgoing]) -> Vec<Result<u64, String>> {
    let mut pending = Vec::with_capacity(events.len());
    for e in events {
        let mut msg = PublishMessage::build().payload(e.body.clone()).message_id(e.id.as_str());
        if let Some(tp) = &e.traceparent {
            msg = msg.header("traceparent", tp.as_str());
        }
        pending.push(js.send_publish(e.subject.clone(), msg).await);
    }
    // Awaited together: each ack's timeout starts when it is awaited, so one after another,
    // acks lost to a server restart would cost a timeout each (256 × 5 s) before the relay
    // moved on.
    futures::future::join_all(pending.into_iter().map(|publish| async move {
        match publish {
            Ok(ack) => ack.await.map(|a| a.sequence).map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        }
    }))
    .await
}
