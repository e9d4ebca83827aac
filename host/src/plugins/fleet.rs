//! The fleet's plugin registry: a JetStream Object Store bucket that every host watches.
//! Whatever version is put there (an upload to any host, a rollback on any host) is handed
//! to every host's registry ([`super::Registry::receive`], wired at start-up), through the same
//! validation as any other candidate; a host that joins later starts from the bucket's
//! latest objects.

use std::time::Duration;

use async_nats::jetstream::{self, object_store};
use futures::StreamExt;
use tokio::{io::AsyncReadExt, sync::watch};

use crate::bus::{self, StreamSettings};

pub const BUCKET: &str = "shopmesh-plugins";

async fn bucket(js: &jetstream::Context) -> Result<object_store::ObjectStore, String> {
    match js.get_object_store(BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: BUCKET.into(),
                description: Some("shopmesh plugin components, by plugin name".into()),
                storage: jetstream::stream::StorageType::File,
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string()),
    }
}

/// Puts `bytes` as plugin `name` into the fleet's registry.
pub async fn publish(client: &async_nats::Client, settings: &StreamSettings, name: &str, bytes: &[u8]) -> Result<(), String> {
    let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
    let store = bucket(&js).await?;
    let mut reader = bytes;
    store.put(name, &mut reader).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Follows the registry until shutdown, handing each new object (name, bytes) to `offer`.
pub async fn follow(
    offer: impl Fn(&str, &[u8]),
    client: async_nats::Client,
    settings: StreamSettings,
    mut shutdown: watch::Receiver<bool>,
) {
    while !*shutdown.borrow() {
        let result = async {
            let js = bus::ensure_ready(&client, &settings).await.map_err(|e| e.to_string())?;
            let store = bucket(&js).await?;
            let mut updates = store.watch_with_history().await.map_err(|e| e.to_string())?;
            loop {
                let info = tokio::select! {
                    next = updates.next() => next.ok_or("registry watch ended")?.map_err(|e| e.to_string())?,
                    _ = shutdown.changed() => return Ok::<(), String>(()),
                };
                if info.deleted {
                    continue;
                }
                let mut bytes = Vec::with_capacity(info.size);
                let mut object = store.get(&info.name).await.map_err(|e| e.to_string())?;
                object.read_to_end(&mut bytes).await.map_err(|e| e.to_string())?;
                offer(&info.name, &bytes);
            }
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "plugin registry watch interrupted; re-watching");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}
