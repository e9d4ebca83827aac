//! The plugin host: WebAssembly plugins that do what must happen because of an event.
//!
//! - [`runtime`]: wasmtime, limits, loading and validating components;
//! - [`delivery`]: parsing and checking a message before any plugin sees it;
//! - [`reads`]: the snapshot a plugin reads from;
//! - [`effects`]: validating effects and applying them with the inbox row;
//! - [`consumer`]: one durable JetStream pull consumer per plugin, and the guard;
//! - [`folder`], [`fleet`]: new versions from the watched folder and the fleet's registry
//!   (uploads arrive through the admin API); all end in [`PluginHost::offer`].
//!
//! Plugins are kept per name as an `Arc<LoadedPlugin>` behind a lock: a delivery takes the
//! current `Arc` and finishes on it, so replacing a version never disturbs work in flight.

pub mod consumer;
pub mod delivery;
pub mod effects;
pub mod fleet;
pub mod folder;
pub mod reads;
pub mod runtime;

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, RwLock},
    time::Duration,
};

use poem_openapi::Object;
use sqlx::Row;

use self::{
    delivery::Delivery,
    effects::{Applied, ApplyError},
    runtime::{InvokeError, LoadError, LoadedPlugin, PluginError, Runtime},
};
use crate::{ids::{now_ms, Id}, shop::Shop};

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts before an event is dead-lettered.
    pub max_attempts: i64,
    /// Delay before the second attempt; doubles each time, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long JetStream waits for an ack before redelivering to another host. Must be
    /// far above an invocation's deadline plus a transaction: only a dead host's messages
    /// should come back this way.
    pub ack_wait: Duration,
}

/// What to tell JetStream about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (applied now, applied before, or nothing to do).
    Ack,
    /// Failed; deliver again after the delay.
    Retry(Duration),
    /// Stored in the dead-letter store; never deliver again.
    DeadLettered,
}

/// Everything the host knows about one plugin name.
struct Slot {
    active: Arc<LoadedPlugin>,
    enabled: bool,
    /// When `active` became active (unix ms).
    activated_at: i64,
    /// Every version seen, oldest first, for rollback.
    kept: Vec<Arc<LoadedPlugin>>,
    invocations: u64,
    failures: u64,
}

/// How many versions of a plugin are kept for rollback.
const KEPT_VERSIONS: usize = 10;

/// How long an upload or rollback waits for the registry to come back to this host.
const FLEET_PATIENCE: Duration = Duration::from_secs(5);

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error(transparent)]
    Load(#[from] LoadError),
    #[error("version {version} of {name} is already known with different bytes: give the new build a new version")]
    VersionExists { name: String, version: String },
    #[error("version {version} of {name} was uploaded before: activate it instead of uploading it again")]
    UseActivate { name: String, version: String },
    #[error("no kept version {version} of {name}")]
    UnknownVersion { name: String, version: String },
    #[error("no plugin {0}")]
    UnknownPlugin(String),
    /// The fleet's registry could not take the version, or it did not come back in time.
    #[error("{0}")]
    Registry(String),
}

/// What an offer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A new version (or a kept one) is now active.
    Activated,
    /// It was already the active version: nothing changed.
    Unchanged,
}

/// A plugin's state, for the admin API.
#[derive(Debug, Clone, Object)]
pub struct PluginStatus {
    pub name: String,
    pub active_version: String,
    /// sha256 of the active component.
    pub sha256: String,
    pub enabled: bool,
    pub subjects: Vec<String>,
    pub capabilities: Vec<String>,
    pub activated_at: Option<String>,
    pub invocations: i64,
    pub failures: i64,
    /// Versions kept for rollback, oldest first.
    pub kept_versions: Vec<String>,
}

pub struct PluginHost {
    pub runtime: Runtime,
    shop: Arc<Shop>,
    plugins: RwLock<HashMap<String, Slot>>,
    /// Called with a plugin name the first time it is installed (starts its consumer).
    on_new: std::sync::OnceLock<Box<dyn Fn(String) + Send + Sync>>,
    /// Where uploads and rollbacks are handed to the rest of the fleet.
    fleet: std::sync::OnceLock<(async_nats::Client, crate::bus::StreamSettings)>,
    config: HashMap<String, Arc<HashMap<String, String>>>,
    pub delivery: DeliverySettings,
}

#[derive(Debug, Clone, Object)]
pub struct DeadLetter {
    pub id: Id,
    pub plugin: String,
    pub plugin_version: String,
    pub subject: String,
    pub event_id: String,
    pub reason: String,
    pub attempts: i64,
    pub created_at: Option<String>,
    pub redriven_at: Option<String>,
    pub redrive_result: Option<String>,
}

impl PluginHost {
    pub fn new(
        runtime: Runtime,
        shop: Arc<Shop>,
        config: HashMap<String, HashMap<String, String>>,
        delivery: DeliverySettings,
    ) -> PluginHost {
        PluginHost {
            runtime,
            shop,
            plugins: RwLock::default(),
            on_new: std::sync::OnceLock::new(),
            fleet: std::sync::OnceLock::new(),
            config: config.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            delivery,
        }
    }

    /// Validates `bytes` as plugin `name` and makes it the active version: the folder and
    /// the fleet's registry say "this is the version to run", so a kept version with the
    /// same bytes is re-activated (uploads go through [`stage`](Self::stage) instead). A
    /// rejected candidate leaves the running version untouched. Deliveries in flight finish
    /// on the version they started with: they hold its `Arc`.
    pub fn offer(&self, name: &str, bytes: &[u8]) -> Result<(Arc<LoadedPlugin>, Installed), InstallError> {
        let sha256 = runtime::sha256_hex(bytes);
        // Decide under the read lock, act after it is released (activate takes the write lock).
        let known = {
            let plugins = self.plugins.read().expect("plugins lock");
            plugins.get(name).and_then(|slot| {
                if slot.active.sha256 == sha256 {
                    Some(Err(slot.active.clone()))
                } else {
                    slot.kept.iter().find(|k| k.sha256 == sha256).map(|k| Ok(k.version().to_owned()))
                }
            })
        };
        match known {
            Some(Err(active)) => return Ok((active, Installed::Unchanged)),
            Some(Ok(version)) => return self.activate(name, &version).map(|p| (p, Installed::Activated)),
            None => {}
        }
        let candidate = self.runtime.load(name, bytes)?;
        let plugin = self.install_loaded(candidate)?;
        tracing::info!(plugin = name, version = plugin.version(), sha256 = %plugin.sha256, "plugin active");
        Ok((plugin, Installed::Activated))
    }

    /// Validates an upload and keeps it without activating it: the fleet's registry decides
    /// the order in which every host, this one included, activates versions (see
    /// [`fleet`]). A kept version other than the active one is refused: activate it instead.
    pub fn stage(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, InstallError> {
        let sha256 = runtime::sha256_hex(bytes);
        let known = {
            let plugins = self.plugins.read().expect("plugins lock");
            plugins.get(name).and_then(|slot| {
                let kept = slot.kept.iter().find(|k| k.sha256 == sha256).cloned()?;
                Some((Arc::ptr_eq(&kept, &slot.active), kept))
            })
        };
        match known {
            // The active build again: an idempotent retry of an upload that succeeded.
            Some((true, active)) => return Ok(active),
            Some((false, kept)) => {
                return Err(InstallError::UseActivate { name: name.into(), version: kept.version().into() })
            }
            None => {}
        }
        let candidate = self.runtime.load(name, bytes)?;
        self.keep(candidate, false)
    }

    /// Waits (bounded) until `sha256` is the active version of `name` on this host.
    pub async fn await_active(&self, name: &str, sha256: &str, patience: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + patience;
        loop {
            if self.current(name).is_some_and(|p| p.sha256 == sha256) {
                return true;
            }
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// [`offer`](Self::offer) as the folder does it at start.
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, InstallError> {
        self.offer(name, bytes).map(|(p, _)| p)
    }

    /// Makes a built plugin (a validated component, or a native rule in benchmarks) the
    /// active version of its name.
    pub fn install_loaded(&self, plugin: LoadedPlugin) -> Result<Arc<LoadedPlugin>, InstallError> {
        self.keep(plugin, true)
    }

    /// Keeps a validated plugin; makes it active when `activate` (or when it is the first
    /// version of its name).
    fn keep(&self, plugin: LoadedPlugin, activate: bool) -> Result<Arc<LoadedPlugin>, InstallError> {
        let plugin = Arc::new(plugin);
        let name = plugin.name.clone();
        let is_new = {
            let mut plugins = self.plugins.write().expect("plugins lock");
            match plugins.get_mut(&name) {
                Some(slot) => {
                    if slot.kept.iter().any(|k| k.version() == plugin.version()) {
                        return Err(InstallError::VersionExists { name, version: plugin.version().into() });
                    }
                    slot.kept.push(plugin.clone());
                    if slot.kept.len() > KEPT_VERSIONS {
                        slot.kept.remove(0);
                    }
                    if activate {
                        slot.active = plugin.clone();
                        slot.activated_at = now_ms();
                    }
                    false
                }
                None => {
                    let slot = Slot {
                        active: plugin.clone(),
                        enabled: true,
                        activated_at: now_ms(),
                        kept: vec![plugin.clone()],
                        invocations: 0,
                        failures: 0,
                    };
                    plugins.insert(name.clone(), slot);
                    true
                }
            }
        };
        if is_new {
            if let Some(start) = self.on_new.get() {
                start(name);
            }
        }
        Ok(plugin)
    }

    /// The kept `version` of `name`.
    fn kept(&self, name: &str, version: &str) -> Result<Arc<LoadedPlugin>, InstallError> {
        let plugins = self.plugins.read().expect("plugins lock");
        let slot = plugins.get(name).ok_or_else(|| InstallError::UnknownPlugin(name.into()))?;
        slot.kept
            .iter()
            .find(|k| k.version() == version)
            .cloned()
            .ok_or_else(|| InstallError::UnknownVersion { name: name.into(), version: version.into() })
    }

    /// Makes a kept version active again (rollback).
    pub fn activate(&self, name: &str, version: &str) -> Result<Arc<LoadedPlugin>, InstallError> {
        let kept = self.kept(name, version)?;
        let mut plugins = self.plugins.write().expect("plugins lock");
        let slot = plugins.get_mut(name).ok_or_else(|| InstallError::UnknownPlugin(name.into()))?;
        if !Arc::ptr_eq(&slot.active, &kept) {
            slot.active = kept.clone();
            slot.activated_at = now_ms();
            tracing::info!(plugin = name, version, "plugin version re-activated");
        }
        Ok(kept)
    }

    /// Pauses or resumes a plugin: while disabled, its deliveries wait in JetStream.
    pub fn set_enabled(&self, name: &str, enabled: bool) -> Result<(), InstallError> {
        let mut plugins = self.plugins.write().expect("plugins lock");
        let slot = plugins.get_mut(name).ok_or_else(|| InstallError::UnknownPlugin(name.into()))?;
        slot.enabled = enabled;
        Ok(())
    }

    /// Connects this host to the fleet's registry (once, at start).
    pub fn join_fleet(&self, client: async_nats::Client, stream: crate::bus::StreamSettings) {
        let _ = self.fleet.set((client, stream));
    }

    /// Hands a kept version to every host through the fleet's registry, then waits until
    /// this host's registry follower has activated it.
    pub async fn distribute(&self, name: &str, version: &str) -> Result<Arc<LoadedPlugin>, InstallError> {
        let kept = self.kept(name, version)?;
        let registry = |why: String| InstallError::Registry(why);
        let bytes = kept.bytes.clone().ok_or_else(|| registry("a native plugin cannot be distributed".into()))?;
        let (client, stream) = self.fleet.get().ok_or_else(|| registry("this host has no fleet registry".into()))?;
        fleet::publish(client, stream, name, &bytes).await.map_err(registry)?;
        if !self.await_active(name, &kept.sha256, FLEET_PATIENCE).await {
            return Err(registry(format!("in the registry, but not active here after {FLEET_PATIENCE:?}")));
        }
        Ok(kept)
    }

    /// Registers what to do when a plugin name appears for the first time (once).
    pub fn on_new_plugin(&self, start: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.on_new.set(Box::new(start));
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.read().expect("plugins lock");
        let mut list: Vec<_> = plugins
            .iter()
            .map(|(name, slot)| PluginStatus {
                name: name.clone(),
                active_version: slot.active.version().into(),
                sha256: slot.active.sha256.clone(),
                enabled: slot.enabled,
                subjects: slot.active.subjects().to_vec(),
                capabilities: slot.active.manifest.capabilities.iter().map(|c| runtime::capability_name(*c).into()).collect(),
                activated_at: Some(crate::events::rfc3339(slot.activated_at)),
                invocations: slot.invocations as i64,
                failures: slot.failures as i64,
                kept_versions: slot.kept.iter().map(|k| k.version().to_owned()).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn count(&self, name: &str, failed: bool) {
        if let Some(slot) = self.plugins.write().expect("plugins lock").get_mut(name) {
            slot.invocations += 1;
            slot.failures += u64::from(failed);
        }
    }

    /// Installs every `<name>.wasm` in `dir`; a bad file is reported and skipped.
    pub fn install_dir(&self, dir: &Path) -> Vec<(String, Result<Arc<LoadedPlugin>, String>)> {
        let mut results = Vec::new();
        let Ok(entries) = std::fs::read_dir(dir) else {
            tracing::warn!(dir = %dir.display(), "plugins folder not found: no plugins loaded");
            return results;
        };
        let mut paths: Vec<_> = entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "wasm")).collect();
        paths.sort();
        for path in paths {
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            let result = std::fs::read(&path)
                .map_err(|e| e.to_string())
                .and_then(|bytes| self.install(&name, &bytes).map_err(|e| e.to_string()));
            if let Err(e) = &result {
                tracing::error!(plugin = %name, error = %e, "plugin rejected");
            }
            results.push((name, result));
        }
        results
    }

    /// The active version of `name`.
    pub fn current(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().expect("plugins lock").get(name).map(|s| s.active.clone())
    }

    /// The active version of `name`, if it is enabled: what a delivery runs on.
    fn runnable(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().expect("plugins lock").get(name).filter(|s| s.enabled).map(|s| s.active.clone())
    }


    fn backoff(&self, attempt: i64) -> Duration {
        let factor = 1u32 << attempt.clamp(1, 16).saturating_sub(1) as u32;
        self.delivery.base_delay.saturating_mul(factor).min(self.delivery.max_delay)
    }

    /// Handles one delivery of `body` on `subject` for plugin `name`. The one path behind
    /// the consumers and redrive. Attempts are counted from the failures this host recorded,
    /// not from JetStream's delivery count, which also grows while a plugin is disabled or
    /// when a dead host's deliveries come back: neither is the plugin failing.
    pub async fn process(&self, name: &str, subject: &str, body: &[u8]) -> Disposition {
        let Some(plugin) = self.runnable(name) else {
            // Unknown or disabled: the event waits in JetStream.
            return Disposition::Retry(self.delivery.max_delay);
        };
        let delivery = match delivery::parse(subject, body) {
            Ok(d) => d,
            Err(reason) => {
                let text = String::from_utf8_lossy(body);
                let id = event_id_guess(&text);
                return self.dead_letter(&plugin, subject, &id, &text, &format!("malformed event: {reason}"), 1).await;
            }
        };
        let attempt = match self.inbox(&plugin, &delivery).await {
            Ok(Inbox::Applied) => return Disposition::Ack, // a redelivery of an applied event
            Ok(Inbox::Failed(times)) => times + 1,
            Ok(Inbox::New) => 1,
            Err(e) => {
                tracing::warn!(plugin = name, error = %e, "inbox unreadable; will retry");
                return Disposition::Retry(self.backoff(1));
            }
        };
        let outcome = self.attempt(&plugin, &delivery, attempt).await;
        self.count(name, outcome.is_err());
        match outcome {
            Ok(()) => Disposition::Ack,
            Err(Failure::Permanent(reason)) => {
                self.dead_letter(&plugin, subject, &delivery.id, &delivery.body, &reason, attempt).await
            }
            Err(Failure::Transient(reason)) => {
                tracing::warn!(plugin = name, event = %delivery.id, attempt, %reason, "plugin attempt failed");
                if let Err(e) = effects::record_failure(&self.shop, name, subject, &delivery.id, &delivery.body, attempt, &reason).await {
                    // Unrecorded, this attempt is not counted: better one retry too many than
                    // an event dead-lettered early.
                    tracing::warn!(error = %e, "could not record the failed attempt");
                }
                if attempt >= self.delivery.max_attempts {
                    self.dead_letter(&plugin, subject, &delivery.id, &delivery.body, &reason, attempt).await
                } else {
                    Disposition::Retry(self.backoff(attempt))
                }
            }
        }
    }

    /// What this plugin's inbox says about the event.
    async fn inbox(&self, plugin: &LoadedPlugin, d: &Delivery) -> Result<Inbox, sqlx::Error> {
        let row = sqlx::query(
            "SELECT consumer_status, consumer_times FROM trade_mq_consumer_log
              WHERE group_name = $1 AND msg_tag = $2 AND msg_key = $3",
        )
        .bind(&plugin.name)
        .bind(&d.subject)
        .bind(&d.id)
        .fetch_optional(self.shop.db.pool())
        .await?;
        Ok(match row {
            None => Inbox::New,
            Some(r) if r.try_get::<i64, _>(0)? == 1 => Inbox::Applied,
            Some(r) => Inbox::Failed(r.try_get(1)?),
        })
    }

    /// Invokes the plugin and applies its effects (the inbox row guards the apply).
    async fn attempt(&self, plugin: &Arc<LoadedPlugin>, d: &Delivery, attempt: i64) -> Result<(), Failure> {
        let snapshot = reads::snapshot(&self.shop, d).await.map_err(|e| Failure::Transient(format!("database: {e}")))?;
        let config = self.config.get(&plugin.name).cloned().unwrap_or_default();
        let event = d.to_wit();
        let (plugin_for_call, runtime) = (plugin.clone(), &self.runtime);
        // The guest runs on this thread for at most its deadline; block_in_place keeps the
        // other tasks of the runtime moving meanwhile.
        let outcome = tokio::task::block_in_place(|| runtime.invoke(&plugin_for_call, &event, snapshot, config));
        let effects = match outcome {
            Ok(Ok(effects)) => effects,
            Ok(Err(PluginError::InvalidEvent(why))) => return Err(Failure::Permanent(format!("plugin refused the event: {why}"))),
            Ok(Err(PluginError::Unavailable(why))) => return Err(Failure::Transient(format!("plugin unavailable: {why}"))),
            Err(e @ (InvokeError::Trap(_) | InvokeError::Instantiate(_))) => return Err(Failure::Transient(e.to_string())),
        };
        match effects::apply(&self.shop, plugin, d, &effects, attempt).await {
            Ok(Applied::Now | Applied::Before) => Ok(()),
            Err(e @ ApplyError::Rejected(_)) => Err(Failure::Transient(e.to_string())),
            Err(e @ ApplyError::Db(_)) => Err(Failure::Transient(e.to_string())),
        }
    }

    /// The guard's check of any event on `shop.>`: a malformed one is dead-lettered under
    /// the guard's name, so nothing malformed sits unread on a subject no plugin consumes.
    pub async fn guard(&self, subject: &str, body: &[u8], attempt: i64) -> Disposition {
        match delivery::parse(subject, body) {
            Ok(_) => Disposition::Ack,
            Err(reason) => {
                let text = String::from_utf8_lossy(body);
                let id = event_id_guess(&text);
                let reason = format!("malformed event: {reason}");
                self.store_dead_letter(consumer::GUARD, "-", subject, &id, &text, &reason, attempt).await
            }
        }
    }

    async fn dead_letter(&self, plugin: &LoadedPlugin, subject: &str, event_id: &str, body: &str, reason: &str, attempts: i64) -> Disposition {
        self.store_dead_letter(&plugin.name, plugin.version(), subject, event_id, body, reason, attempts).await
    }

    #[allow(clippy::too_many_arguments)]
    async fn store_dead_letter(&self, plugin: &str, version: &str, subject: &str, event_id: &str, body: &str, reason: &str, attempts: i64) -> Disposition {
        tracing::error!(plugin, event = event_id, reason, "dead-lettered");
        let stored = sqlx::query(
            "INSERT INTO shop_dead_letter (id, plugin, plugin_version, subject, event_id, body, reason, attempts, created_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(self.shop.ids.next())
        .bind(plugin)
        .bind(version)
        .bind(subject)
        .bind(event_id)
        .bind(body)
        .bind(reason)
        .bind(attempts)
        .bind(now_ms())
        .execute(self.shop.db.pool())
        .await;
        match stored {
            Ok(_) => Disposition::DeadLettered,
            // Never drop an event: if it cannot be stored, JetStream keeps it.
            Err(e) => {
                tracing::error!(error = %e, "could not store the dead letter; will retry");
                Disposition::Retry(self.delivery.max_delay)
            }
        }
    }

    pub async fn dead_letters(&self, plugin: Option<&str>) -> Result<Vec<DeadLetter>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT * FROM shop_dead_letter WHERE ($1 = '' OR plugin = $1) ORDER BY id",
        )
        .bind(plugin.unwrap_or_default())
        .fetch_all(self.shop.db.pool())
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeadLetter {
                    id: Id(r.try_get("id")?),
                    plugin: r.try_get("plugin")?,
                    plugin_version: r.try_get("plugin_version")?,
                    subject: r.try_get("subject")?,
                    event_id: r.try_get("event_id")?,
                    reason: r.try_get("reason")?,
                    attempts: r.try_get("attempts")?,
                    created_at: crate::shop::time(r, "created_at")?,
                    redriven_at: crate::shop::time(r, "redriven_at")?,
                    redrive_result: r.try_get("redrive_result")?,
                })
            })
            .collect()
    }

    /// Runs a dead letter through the plugin's current version once more. Applied (or
    /// already applied): marked redriven. Failing again: it stays, with the new reason.
    pub async fn redrive(&self, id: Id) -> Result<Option<String>, sqlx::Error> {
        let row = sqlx::query("SELECT plugin, subject, body FROM shop_dead_letter WHERE id = $1 AND redriven_at IS NULL")
            .bind(id.0)
            .fetch_optional(self.shop.db.pool())
            .await?;
        let Some(row) = row else { return Ok(None) };
        let (plugin, subject, body): (String, String, String) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let Some(current) = self.current(&plugin) else {
            return Ok(Some(format!("plugin {plugin} is not loaded")));
        };
        let result = match delivery::parse(&subject, body.as_bytes()) {
            Err(reason) => format!("still malformed: {reason}"),
            Ok(d) => match self.inbox(&current, &d).await? {
                Inbox::Applied => "applied".to_string(), // applied meanwhile: nothing to do
                Inbox::Failed(times) => self.redrive_attempt(&current, &d, times + 1).await,
                Inbox::New => self.redrive_attempt(&current, &d, 1).await,
            },
        };
        let applied = result == "applied";
        sqlx::query("UPDATE shop_dead_letter SET redriven_at = $1, redrive_result = $2 WHERE id = $3")
            .bind(applied.then(now_ms))
            .bind(&result)
            .bind(id.0)
            .execute(self.shop.db.pool())
            .await?;
        Ok(Some(result))
    }
}

impl PluginHost {
    async fn redrive_attempt(&self, plugin: &Arc<LoadedPlugin>, d: &Delivery, attempt: i64) -> String {
        match self.attempt(plugin, d, attempt).await {
            Ok(()) => "applied".to_string(),
            Err(Failure::Permanent(r) | Failure::Transient(r)) => format!("failed: {r}"),
        }
    }
}

/// A plugin's inbox row for one event.
enum Inbox {
    Applied,
    /// Failed this many times so far.
    Failed(i64),
    New,
}

enum Failure {
    /// Will never succeed with this plugin version: dead-letter now.
    Permanent(String),
    /// May succeed later: retry, then dead-letter.
    Transient(String),
}

/// The envelope id of a malformed message, if it has one, for the dead-letter record.
fn event_id_guess(text: &str) -> String {
    serde_json::from_str::<serde_json::Value>(text)
        .ok()
        .and_then(|v| v.get("id").and_then(|id| id.as_str().map(str::to_owned)))
        .unwrap_or_else(|| "unknown".into())
}
