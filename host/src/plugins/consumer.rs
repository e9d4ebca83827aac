//! One durable JetStream pull consumer per plugin (`plugin-<name>`), filtered by the
//! plugin's subjects. Several hosts bind the same durable consumer and share its messages.
//! JetStream delivers at least once; the inbox row makes effects happen once.

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{
    consumer::{pull, AckPolicy, DeliverPolicy},
    AckKind,
};
use futures::StreamExt;
use tokio::sync::watch;

use super::{Disposition, PluginHost};
use crate::bus::{self, StreamSettings};

pub fn durable_name(plugin: &str) -> String {
    format!("plugin-{plugin}")
}

/// Consumes for plugin `name` until shutdown; reconnects and re-binds after any error.
pub async fn run(host: Arc<PluginHost>, client: async_nats::Client, stream: StreamSettings, name: String, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        if let Err(e) = consume(&host, &client, &stream, &name, &mut shutdown).await {
            tracing::warn!(plugin = %name, error = %e, "plugin consumer interrupted; re-binding");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

async fn consume(
    host: &PluginHost,
    client: &async_nats::Client,
    settings: &StreamSettings,
    name: &str,
    shutdown: &mut watch::Receiver<bool>,
) -> Result<(), String> {
    let plugin = host.current(name).ok_or_else(|| format!("plugin {name} is not loaded"))?;
    let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
    let stream = js.get_stream(bus::STREAM).await.map_err(|e| e.to_string())?;
    let durable = durable_name(name);
    let consumer = stream
        .get_or_create_consumer(
            &durable,
            pull::Config {
                durable_name: Some(durable.clone()),
                filter_subjects: plugin.subjects().to_vec(),
                ack_policy: AckPolicy::Explicit,
                ack_wait: host.delivery.ack_wait,
                deliver_policy: DeliverPolicy::All,
                // Unlimited here: the host counts attempts and dead-letters itself, so an
                // event is never dropped by the server without a record.
                max_deliver: -1,
                ..Default::default()
            },
        )
        .await
        .map_err(|e| e.to_string())?;
    let mut messages = consumer.messages().await.map_err(|e| e.to_string())?;
    loop {
        let next = tokio::select! {
            next = messages.next() => next,
            _ = shutdown.changed() => return Ok(()),
        };
        let msg = next.ok_or("message stream ended")?.map_err(|e| e.to_string())?;
        let attempt = msg.info().map(|i| i.delivered).unwrap_or(1);
        let disposition = host.process(name, msg.subject.as_str(), &msg.payload, attempt).await;
        let acked = match disposition {
            Disposition::Ack => msg.ack().await,
            Disposition::Retry(delay) => msg.ack_with(AckKind::Nak(Some(delay))).await,
            Disposition::DeadLettered => msg.ack_with(AckKind::Term).await,
        };
        if let Err(e) = acked {
            // Not fatal: JetStream redelivers after ack_wait and the inbox absorbs it.
            tracing::warn!(plugin = name, error = %e, "ack failed");
        }
    }
}
