//! The plugin host: WebAssembly plugins that do what must happen because of an event.
//!
//! - [`runtime`]: wasmtime, limits, loading and validating components;
//! - [`delivery`]: parsing and checking a message before any plugin sees it;
//! - [`reads`]: the snapshot a plugin reads from;
//! - [`effects`]: validating effects and applying them with the inbox row;
//! - [`consumer`]: one durable JetStream pull consumer per plugin.
//!
//! Plugins are kept per name as an `Arc<LoadedPlugin>` behind a lock: a delivery takes the
//! current `Arc` and finishes on it, so replacing a version never disturbs work in flight.

pub mod consumer;
pub mod delivery;
pub mod effects;
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

pub struct PluginHost {
    pub runtime: Runtime,
    shop: Arc<Shop>,
    plugins: RwLock<HashMap<String, Arc<LoadedPlugin>>>,
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
            config: config.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            delivery,
        }
    }

    /// Validates `bytes` as plugin `name` and makes it the current version. A rejected
    /// candidate leaves the running version untouched.
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, LoadError> {
        let loaded = self.install_loaded(self.runtime.load(name, bytes)?);
        tracing::info!(plugin = name, version = loaded.version(), sha256 = %loaded.sha256, "plugin active");
        Ok(loaded)
    }

    /// Makes an already built plugin (a native rule, in benchmarks) the current version.
    pub fn install_loaded(&self, plugin: LoadedPlugin) -> Arc<LoadedPlugin> {
        let plugin = Arc::new(plugin);
        self.plugins.write().expect("plugins lock").insert(plugin.name.clone(), plugin.clone());
        plugin
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

    pub fn current(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().expect("plugins lock").get(name).cloned()
    }

    pub fn names(&self) -> Vec<String> {
        let mut names: Vec<_> = self.plugins.read().expect("plugins lock").keys().cloned().collect();
        names.sort();
        names
    }

    fn backoff(&self, attempt: i64) -> Duration {
        let factor = 1u32 << attempt.clamp(1, 16).saturating_sub(1) as u32;
        self.delivery.base_delay.saturating_mul(factor).min(self.delivery.max_delay)
    }

    /// Handles one delivery of `body` on `subject` for plugin `name`; `attempt` counts from 1.
    /// The one path behind the consumers and redrive.
    pub async fn process(&self, name: &str, subject: &str, body: &[u8], attempt: i64) -> Disposition {
        let Some(plugin) = self.current(name) else {
            return Disposition::Retry(self.delivery.max_delay);
        };
        let delivery = match delivery::parse(subject, body) {
            Ok(d) => d,
            Err(reason) => {
                let text = String::from_utf8_lossy(body);
                let id = event_id_guess(&text);
                return self.dead_letter(&plugin, subject, &id, &text, &format!("malformed event: {reason}"), attempt).await;
            }
        };
        match self.attempt(&plugin, &delivery, attempt).await {
            Ok(()) => Disposition::Ack,
            Err(Failure::Permanent(reason)) => {
                self.dead_letter(&plugin, subject, &delivery.id, &delivery.body, &reason, attempt).await
            }
            Err(Failure::Transient(reason)) => {
                tracing::warn!(plugin = name, event = %delivery.id, attempt, %reason, "plugin attempt failed");
                if let Err(e) = effects::record_failure(&self.shop, name, subject, &delivery.id, &delivery.body, attempt, &reason).await {
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

    async fn attempt(&self, plugin: &Arc<LoadedPlugin>, d: &Delivery, attempt: i64) -> Result<(), Failure> {
        let done: Option<i64> = sqlx::query_scalar(
            "SELECT consumer_status FROM trade_mq_consumer_log WHERE group_name = $1 AND msg_tag = $2 AND msg_key = $3",
        )
        .bind(&plugin.name)
        .bind(&d.subject)
        .bind(&d.id)
        .fetch_optional(self.shop.db.pool())
        .await
        .map_err(|e| Failure::Transient(format!("database: {e}")))?;
        if done == Some(1) {
            return Ok(()); // a redelivery of an applied event: only ack
        }
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
            Ok(d) => match self.attempt(&current, &d, 1).await {
                Ok(()) => "applied".to_string(),
                Err(Failure::Permanent(r) | Failure::Transient(r)) => format!("failed: {r}"),
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
