//! What every host of a fleet must agree on, kept in JetStream buckets that every host
//! watches: the plugin registry (components) and the switches (enabled or paused); and the
//! roll call, where each host says what it runs.
//!
//! The plugin registry: a JetStream Object Store bucket.
//! Two kinds of object: `<name>@<version>` holds every version uploaded anywhere (kept by
//! every host, staged or rolled back from), and `<name>` holds the component to run (put by an
//! activating upload or a rollback on any host). Each is handed to every host's registry
//! ([`super::Registry::receive`], wired at start-up) through the same validation as any
//! other candidate, in the bucket's order; a host that joins or restarts later starts from
//! the bucket's latest objects, so it keeps every version and runs the active one.
//! Each object carries, as metadata, when its version was kept and when the fleet last made
//! it active ([`Stamps`]): a host that starts later shows the fleet's history of the versions
//! that went through the registry, not its own start as the time of each.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    sync::Arc,
    time::Duration,
};

use async_nats::jetstream::{self, kv, object_store};
use futures::StreamExt;
use tokio::{io::AsyncReadExt, sync::watch};

use super::watching::keep_watching;
use crate::bus::{self, StreamSettings};

pub const BUCKET: &str = "shopmesh-plugins";
/// The switches: a Key-Value bucket, key = plugin name, value `enabled` or `disabled`. A
/// disable on any host pauses the plugin on every host (a host that starts later reads the
/// latest value first); a name need not be installed yet.
pub const SWITCHES: &str = "shopmesh-plugin-switches";

/// The roll call: a Key-Value bucket, key = a host, value = what it says it runs (JSON, see
/// [`super::status::HostStatus`]), put every few seconds. Entries expire after
/// [`ROLL_CALL_TTL`], so a host that died leaves the list by itself.
pub const ROLL_CALL: &str = "shopmesh-hosts";
pub const ROLL_CALL_TTL: Duration = Duration::from_secs(30);

/// The key-value bucket `config` names, made as `config` says if it is not there yet.
async fn key_value(js: &jetstream::Context, config: kv::Config) -> Result<kv::Store, String> {
    match js.get_key_value(&config.bucket).await {
        Ok(store) => Ok(store),
        Err(_) => js.create_key_value(config).await.map_err(|e| e.to_string()),
    }
}

async fn roll_call_bucket(client: &async_nats::Client, settings: &StreamSettings) -> Result<kv::Store, String> {
    let (js, replicas) = (bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?, settings.replicas);
    let config = kv::Config {
        bucket: ROLL_CALL.into(),
        description: "shopmesh hosts: what each runs, refreshed every few seconds".into(),
        max_age: ROLL_CALL_TTL,
        // Lost on a restart of NATS, and put again within seconds: no disk needed.
        storage: jetstream::stream::StorageType::Memory,
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    key_value(&js, config).await
}

/// Puts this host's entry (`status`, JSON) in the roll call under `host`.
pub async fn answer_roll_call(client: &async_nats::Client, settings: &StreamSettings, host: &str, status: Vec<u8>) -> Result<(), String> {
    roll_call_bucket(client, settings).await?.put(host, status.into()).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// The roll call's entry under `host` now, if any.
pub async fn roll_call_entry(client: &async_nats::Client, settings: &StreamSettings, host: &str) -> Result<Option<Vec<u8>>, String> {
    let store = roll_call_bucket(client, settings).await?;
    Ok(store.get(host).await.map_err(|e| e.to_string())?.map(|value| value.to_vec()))
}

/// Every live host's entry in the roll call.
pub async fn roll_call(client: &async_nats::Client, settings: &StreamSettings) -> Result<Vec<Vec<u8>>, String> {
    let store = roll_call_bucket(client, settings).await?;
    Ok(latest(&store).await?.into_iter().map(|(_, value)| value).collect())
}

/// What a key-value bucket holds now: each key with its latest value.
async fn latest(store: &kv::Store) -> Result<Vec<(String, Vec<u8>)>, String> {
    let mut keys = store.keys().await.map_err(|e| e.to_string())?;
    let mut entries = Vec::new();
    while let Some(key) = keys.next().await {
        let key = key.map_err(|e| e.to_string())?;
        if let Some(value) = store.get(&key).await.map_err(|e| e.to_string())? {
            entries.push((key, value.to_vec()));
        }
    }
    Ok(entries)
}

/// Whether this host has applied what the fleet's two buckets held when it started: the
/// registry's versions and the switches. The plugins' consumers wait for it (wired at
/// start-up): the events waiting for a restarted host must not run on a version the fleet
/// has replaced since, nor for a plugin the fleet has paused, before it has read so.
#[derive(Clone)]
pub struct CaughtUp(Arc<watch::Sender<[bool; 2]>>);

const REGISTRY_READ: usize = 0;
const SWITCHES_READ: usize = 1;

impl Default for CaughtUp {
    fn default() -> CaughtUp {
        CaughtUp(Arc::new(watch::channel([false; 2]).0))
    }
}

impl CaughtUp {
    fn mark(&self, bucket: usize) {
        self.0.send_modify(|read| read[bucket] = true);
    }

    /// Waits until both buckets were read; `false` when the shutdown comes first.
    pub async fn wait(&self, mut shutdown: watch::Receiver<bool>) -> bool {
        let mut read = self.0.subscribe();
        tokio::select! {
            both = read.wait_for(|read| read.iter().all(|r| *r)) => both.is_ok(),
            _ = shutdown.wait_for(|stop| *stop) => false,
        }
    }
}

/// The fleet's registry bucket, stream `SHOP` ready first (see [`bus::ensure_ready`]).
async fn registry(client: &async_nats::Client, settings: &StreamSettings) -> Result<object_store::ObjectStore, String> {
    let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
    bucket(&js, settings.replicas).await
}

async fn bucket(js: &jetstream::Context, replicas: usize) -> Result<object_store::ObjectStore, String> {
    match js.get_object_store(BUCKET).await {
        Ok(store) => Ok(store),
        Err(_) => js
            .create_object_store(object_store::Config {
                bucket: BUCKET.into(),
                description: Some("shopmesh plugin components, by plugin name".into()),
                storage: jetstream::stream::StorageType::File,
                num_replicas: replicas.max(1),
                ..Default::default()
            })
            .await
            .map_err(|e| e.to_string()),
    }
}

/// An object of the registry: a plugin's name and whether it says "run this" or "keep this".
fn object(name: &str, version: &str, activate: bool) -> String {
    if activate { name.to_owned() } else { format!("{name}@{version}") }
}

/// When a version was kept (by the host that put it into the registry) and last made active
/// in the fleet (unix ms), as an object's metadata says; each is absent where the object does
/// not say (a version never made active, or an object put by a host from before these were
/// recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stamps {
    pub kept_at: Option<i64>,
    pub activated_at: Option<i64>,
}

const KEPT_AT: &str = "kept-at";
const ACTIVATED_AT: &str = "activated-at";

impl Stamps {
    fn to_metadata(self) -> HashMap<String, String> {
        [(KEPT_AT, self.kept_at), (ACTIVATED_AT, self.activated_at)]
            .into_iter()
            .filter_map(|(key, at)| Some((key.to_owned(), at?.to_string())))
            .collect()
    }

    fn from_metadata(metadata: &HashMap<String, String>) -> Stamps {
        let at = |key| metadata.get(key).and_then(|v: &String| v.parse().ok());
        Stamps { kept_at: at(KEPT_AT), activated_at: at(ACTIVATED_AT) }
    }
}

/// Puts version `version` (`bytes`) of plugin `name` into the fleet's registry, to keep
/// and, with `activate` (at `stamps.activated_at`), to run.
pub async fn publish(
    client: &async_nats::Client,
    settings: &StreamSettings,
    (name, version, bytes): (&str, &str, &[u8]),
    activate: bool,
    stamps: Stamps,
) -> Result<(), String> {
    let store = registry(client, settings).await?;
    // Kept first: if the run object cannot be put, the fleet keeps the version and runs what
    // it ran (its kept object then says it was made active, though it never ran: the price of
    // one put per object). Each object once: a put replaces the object's chunks, which a host
    // may still be reading (see `FETCH_STALL`).
    let puts = if activate { vec![false, true] } else { vec![false] };
    for run in puts {
        let mut reader = bytes;
        let meta = object_store::ObjectMetadata { name: object(name, version, run), metadata: stamps.to_metadata(), ..Default::default() };
        store.put(meta, &mut reader).await.map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Follows the registry until shutdown, handing each new object to `offer` as (plugin
/// name, bytes, run it, its stamps); what it holds at first is handed over before
/// `caught_up` is told.
pub async fn follow<F: Future<Output = ()>>(
    offer: impl Fn(String, Vec<u8>, bool, Stamps) -> F,
    client: async_nats::Client,
    settings: StreamSettings,
    caught_up: CaughtUp,
    shutdown: watch::Receiver<bool>,
) {
    let (client, settings, offer, caught_up) = (&client, &settings, &offer, &caught_up);
    let unread = &std::sync::atomic::AtomicU32::new(0);
    keep_watching("plugin registry", client, &format!("OBJ_{BUCKET}"), shutdown, move |mut shutdown| async move {
        let store = registry(client, settings).await?;
        // What the bucket holds now, then the watch. The watch starts with the latest of
        // every object again, so nothing put after the list is missed, and it hands them over
        // in the bucket's order (a version the list missed lands before a later activation);
        // an object already handed over unchanged (same nuid) is not fetched twice. A kept
        // version that cannot be fetched now is left to the watch rather than holding every
        // consumer back; the version to run is what they wait for, so the read starts again,
        // a few times: one that never comes must not hold every plugin for ever.
        let mut handed = HashSet::new();
        let mut now = store.list().await.map_err(|e| e.to_string())?;
        while let Some(info) = now.next().await {
            let info = info.map_err(|e| e.to_string())?;
            match hand_over(&store, &info, offer).await {
                Ok(nuid) => {
                    handed.insert(nuid);
                }
                Err(e) if !info.name.contains('@') && unread.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < RUN_OBJECT_TRIES => return Err(e),
                Err(e) => tracing::error!(object = %info.name, error = %e, "plugin registry: could not fetch an object; the watch tries again"),
            }
        }
        caught_up.mark(REGISTRY_READ);
        let mut updates = store.watch_with_history().await.map_err(|e| e.to_string())?;
        loop {
            let info = tokio::select! {
                next = updates.next() => next.ok_or("registry watch ended")?.map_err(|e| e.to_string())?,
                _ = shutdown.changed() => return Ok(()),
            };
            if !handed.remove(&info.nuid) {
                match hand_over(&store, &info, offer).await {
                    // A newer one than `info` (fetched by name): the watch brings its info next.
                    Ok(nuid) if nuid != info.nuid => {
                        handed.insert(nuid);
                    }
                    Ok(_) => {}
                    // Put again (or deleted) meanwhile, its chunks gone with it: what replaced
                    // it is the watch's next.
                    Err(e) if replaced(&store, &info).await => {
                        tracing::warn!(object = %info.name, error = %e, "plugin registry: an object replaced while it was fetched");
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    })
    .await
}

/// How long a fetch may wait for the next piece of an object. An object put again while a
/// host reads it loses the chunks that host is reading, and the read would wait for them
/// for ever (and with it every later change of the registry).
const FETCH_STALL: Duration = Duration::from_secs(2);

/// How many times in a row a start's read of the registry begins again for a version to run
/// that cannot be fetched, before the consumers are let go without it.
const RUN_OBJECT_TRIES: u32 = 10;

/// Fetches the object `info` names, as it is now (a newer one than `info`, if it was put
/// again since), and offers it; the nuid of what it offered (nothing for a deleted one).
/// Object `name` and its bytes, each answer and chunk within [`FETCH_STALL`].
async fn read(store: &object_store::ObjectStore, name: &str) -> Result<(object_store::ObjectInfo, Vec<u8>), String> {
    let stalled = |what| format!("{name}: no {what} within {FETCH_STALL:?}");
    let got = tokio::time::timeout(FETCH_STALL, store.get(name)).await.map_err(|_| stalled("answer"))?;
    let mut object = got.map_err(|e| e.to_string())?;
    let info = object.info().clone();
    let (mut bytes, mut piece) = (Vec::with_capacity(info.size), vec![0; 128 * 1024]);
    loop {
        let read = tokio::time::timeout(FETCH_STALL, object.read(&mut piece)).await.map_err(|_| stalled("chunk"))?;
        match read.map_err(|e| e.to_string())? {
            0 => break,
            n => bytes.extend_from_slice(&piece[..n]),
        }
    }
    Ok((info, bytes))
}

/// Whether the fleet ever ran a version of `name` (its registry holds the object that says
/// which version to run).
pub async fn ran(client: &async_nats::Client, settings: &StreamSettings, name: &str) -> Result<bool, String> {
    match registry(client, settings).await?.info(object(name, "", true)).await {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == object_store::InfoErrorKind::NotFound => Ok(false),
        Err(e) => Err(e.to_string()),
    }
}

/// The sha256 of the build the fleet keeps as `version` of `name`, if it keeps one: a host
/// must not hand the fleet another build under that version (its folder's) as the fleet's.
pub async fn kept_build(client: &async_nats::Client, settings: &StreamSettings, name: &str, version: &str) -> Result<Option<String>, String> {
    let store = registry(client, settings).await?;
    let kept = object(name, version, false);
    match store.info(&kept).await {
        Ok(info) if !info.deleted => Ok(Some(super::runtime::sha256_hex(&read(&store, &kept).await?.1))),
        Err(e) if e.kind() != object_store::InfoErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(None), // never kept, or deleted
    }
}

async fn hand_over<F: Future<Output = ()>>(
    store: &object_store::ObjectStore,
    info: &object_store::ObjectInfo,
    offer: &impl Fn(String, Vec<u8>, bool, Stamps) -> F,
) -> Result<String, String> {
    if info.deleted {
        return Ok(info.nuid.clone());
    }
    let (info, bytes) = read(store, &info.name).await?;
    let stamps = Stamps::from_metadata(&info.metadata);
    match info.name.split_once('@') {
        Some((name, _version)) => offer(name.to_owned(), bytes, false, stamps).await,
        None => offer(info.name.clone(), bytes, true, stamps).await,
    }
    Ok(info.nuid)
}

async fn switches(js: &jetstream::Context, replicas: usize) -> Result<kv::Store, String> {
    let config = kv::Config {
        bucket: SWITCHES.into(),
        description: "shopmesh plugin switches: enabled or disabled, by plugin name".into(),
        storage: jetstream::stream::StorageType::File,
        num_replicas: replicas.max(1),
        ..Default::default()
    };
    key_value(js, config).await
}

/// Sets plugin `name`'s switch for the whole fleet.
pub async fn publish_switch(client: &async_nats::Client, settings: &StreamSettings, name: &str, enabled: bool) -> Result<(), String> {
    let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
    let value = if enabled { "enabled" } else { "disabled" };
    switches(&js, settings.replicas).await?.put(name, value.into()).await.map_err(|e| e.to_string())?;
    Ok(())
}

/// Follows the switches until shutdown, handing each to `set` as (plugin name, enabled);
/// what they are at first is handed over before `caught_up` is told.
pub async fn follow_switches(
    set: impl Fn(&str, bool),
    client: async_nats::Client,
    settings: StreamSettings,
    caught_up: CaughtUp,
    shutdown: watch::Receiver<bool>,
) {
    let (client, settings, set, caught_up) = (&client, &settings, &set, &caught_up);
    // Every name a switch was seen for: one the bucket no longer holds when it is read again
    // (a bucket made anew) is back to the default, enabled, as a deleted key is.
    let seen = &std::sync::Mutex::new(HashSet::<String>::new());
    keep_watching("plugin switches", client, &format!("KV_{SWITCHES}"), shutdown, move |mut shutdown| async move {
        let js = bus::ensure_ready(client, settings).await.map_err(|e| e.to_string())?;
        let store = switches(&js, settings.replicas).await?;
        // What they are now, then the watch, which starts with the latest of each again (so
        // nothing set after the read is missed, and setting one twice changes nothing).
        let now = latest(&store).await?;
        let gone: Vec<String> = seen.lock().expect("switches seen").drain().filter(|name| !now.iter().any(|(key, _)| key == name)).collect();
        for name in gone {
            set(&name, true);
        }
        for (name, value) in now {
            seen.lock().expect("switches seen").insert(name.clone());
            set(&name, value != b"disabled");
        }
        caught_up.mark(SWITCHES_READ);
        let mut updates = store.watch_with_history(">").await.map_err(|e| e.to_string())?;
        loop {
            let entry = tokio::select! {
                next = updates.next() => next.ok_or("switch watch ended")?.map_err(|e| e.to_string())?,
                _ = shutdown.changed() => return Ok(()),
            };
            // A deleted or purged key means "back to the default": enabled.
            seen.lock().expect("switches seen").insert(entry.key.clone());
            set(&entry.key, entry.value.as_ref() != b"disabled" || entry.operation != kv::Operation::Put);
        }
    })
    .await
}

/// Whether the object `info` describes was put again or deleted since.
async fn replaced(store: &object_store::ObjectStore, info: &object_store::ObjectInfo) -> bool {
    match store.info(&info.name).await {
        Ok(now) => now.nuid != info.nuid || now.deleted,
        Err(e) => {
            tracing::warn!(object = %info.name, error = %e, "plugin registry: could not ask whether an object was replaced");
            false
        }
    }
}
