//! Where a plugin's consumer begins in stream SHOP. A plugin an operator adds to a running
//! shop (no version of it ever ran in the fleet; uploaded and activated, or a staged version
//! activated, through the API) begins with the next event: its consumer is made, from that
//! moment, before the version is activated anywhere, so no host binds it first from the
//! stream's start and runs the plugin over days of history (`replay --apply` is how history is backfilled, when wanted). Every other
//! consumer that is not there yet begins with the first event the stream holds: the shop's
//! plugins at its first start (nothing is published before them), and a consumer that was
//! lost (removed, or NATS' store wiped), whose applied events the inbox skips.
//!
//! A consumer's start cannot change once it is made (JetStream refuses), so a binding keeps
//! whatever start the consumer has.

use async_nats::jetstream::{
    consumer::{self, pull, AckPolicy, DeliverPolicy},
    context::ConsumerInfoErrorKind,
    stream::Stream,
};

use super::{durable_name, fleet};
use crate::bus::{self, StreamSettings};

/// The consumer `durable` as a binding asks for it: its filter, the host's ack wait, and the
/// start it already has (or the stream's first event, made now).
pub async fn binding(stream: &Stream, durable: &str, filter: Vec<String>, ack_wait: std::time::Duration) -> Result<pull::Config, String> {
    let deliver_policy = existing(stream, durable).await?.map_or(DeliverPolicy::All, |info| info.config.deliver_policy);
    Ok(pull::Config { ack_wait, ..config(durable, filter, deliver_policy) })
}

/// Consumer `durable` as the server has it, if it has it.
async fn existing(stream: &Stream, durable: &str) -> Result<Option<consumer::Info>, String> {
    match stream.consumer_info(durable).await {
        Ok(info) => Ok(Some(info)),
        Err(e) if e.kind() == ConsumerInfoErrorKind::NotFound => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// Makes plugin `name`'s consumer begin with the next event published, when it is new to
/// the shop: it has no consumer, and the fleet never ran a version of it (a plugin that ran
/// goes on where its consumer is, or, its consumer lost, from the stream's start). Called
/// before a version of `name` that this host does not run yet is activated through the
/// fleet.
pub async fn from_next_event(client: &async_nats::Client, settings: &StreamSettings, name: &str, subjects: &[String]) -> Result<(), String> {
    let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
    let stream = js.get_stream(bus::STREAM).await.map_err(|e| e.to_string())?;
    let durable = durable_name(name);
    if existing(&stream, &durable).await?.is_some() || fleet::ran(client, settings, name).await? {
        return Ok(());
    }
    // Strict: never an update of one another host made a moment ago (its start holds). The
    // ack wait is the server's default until a host binds it with its own.
    match stream.create_consumer_strict(config(&durable, subjects.to_vec(), DeliverPolicy::New)).await {
        Ok(_) => {
            tracing::info!(plugin = name, "a plugin new to the shop: its consumer begins with the next event");
            Ok(())
        }
        Err(_) if stream.consumer_info(&durable).await.is_ok() => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

fn config(durable: &str, filter: Vec<String>, deliver_policy: DeliverPolicy) -> pull::Config {
    pull::Config {
        durable_name: Some(durable.to_owned()),
        filter_subjects: filter,
        ack_policy: AckPolicy::Explicit,
        deliver_policy,
        // Unlimited here: the host counts attempts and dead-letters itself, so the server
        // never drops an event without a record.
        max_deliver: -1,
        ..Default::default()
    }
}
