//! [`PluginHost`]: the live path of a delivery, from a message to its disposition. For one
//! plugin and one message: parse ([`super::delivery`]) → inbox ([`super::inbox`]) → snapshot
//! ([`super::reads`]) → dispatch ([`super::dispatch`]) → effects and inbox row in one
//! transaction ([`super::effects`]) → ack; failures are recorded, retried with backoff and
//! finally dead-lettered ([`super::dead_letters`]). Redrive takes the same path.

use std::{collections::HashMap, sync::Arc, time::Duration};

use super::{
    dead_letters::{self, DeadLetterError, Letter},
    delivery::{self, Delivery},
    dispatch::{self, Failure},
    effects, inbox, reads,
    registry::Registry,
    runtime::{LoadedPlugin, Runtime},
    DeliverySettings, Disposition, GUARD,
};
use crate::{ids::Id, shop::Shop};

pub struct PluginHost {
    pub registry: Registry,
    runtime: Arc<Runtime>,
    shop: Arc<Shop>,
    config: HashMap<String, Arc<HashMap<String, String>>>,
    pub delivery: DeliverySettings,
}

impl PluginHost {
    pub fn new(
        runtime: Runtime,
        shop: Arc<Shop>,
        config: HashMap<String, HashMap<String, String>>,
        delivery: DeliverySettings,
    ) -> PluginHost {
        let runtime = Arc::new(runtime);
        PluginHost {
            registry: Registry::new(runtime.clone()),
            runtime,
            shop,
            config: config.into_iter().map(|(k, v)| (k, Arc::new(v))).collect(),
            delivery,
        }
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
        let Some(plugin) = self.registry.runnable(name) else {
            // Unknown or disabled: the event waits in JetStream.
            return Disposition::Retry(self.delivery.max_delay);
        };
        let d = match delivery::parse(subject, body) {
            Ok(d) => d,
            Err(reason) => return self.malformed(&plugin.name, plugin.version(), subject, body, &reason, 1).await,
        };
        let attempt = match inbox::state(&self.shop.db, name, &d).await {
            Ok(inbox::State::Applied) => return Disposition::Ack, // a redelivery of an applied event
            Ok(state) => state.next_attempt(),
            Err(e) => {
                tracing::warn!(plugin = name, error = %e, "inbox unreadable; will retry");
                return Disposition::Retry(self.backoff(1));
            }
        };
        let outcome = self.attempt(&plugin, &d, attempt).await;
        self.registry.count(name, outcome.is_err());
        let failure = match outcome {
            Ok(()) => return Disposition::Ack,
            Err(failure) => failure,
        };
        let reason = failure.to_string();
        if failure.is_permanent() {
            return self.dead_letter(&plugin, &d, &reason, attempt).await;
        }
        tracing::warn!(plugin = name, event = %d.id, attempt, %reason, "plugin attempt failed");
        if let Err(e) = inbox::record_failure(&self.shop.db, name, &d, attempt, &reason).await {
            // Unrecorded, this attempt is not counted: better one retry too many than an
            // event dead-lettered early.
            tracing::warn!(error = %e, "could not record the failed attempt");
        }
        if attempt >= self.delivery.max_attempts {
            self.dead_letter(&plugin, &d, &reason, attempt).await
        } else {
            Disposition::Retry(self.backoff(attempt))
        }
    }

    /// Invokes the plugin on a fresh snapshot and applies its effects with the inbox row.
    async fn attempt(&self, plugin: &Arc<LoadedPlugin>, d: &Delivery, attempt: i64) -> Result<(), Failure> {
        let snapshot = reads::snapshot(&self.shop, d).await?;
        let config = self.config.get(&plugin.name).cloned().unwrap_or_default();
        // block_in_place keeps the runtime's other tasks moving while the guest runs.
        let effects = tokio::task::block_in_place(|| dispatch::run(&self.runtime, plugin, d, snapshot, config))?;
        let mut tx = self.shop.db.begin().await?;
        if !inbox::mark_applied(&mut tx, plugin, d, attempt, effects.len()).await? {
            return Ok(()); // applied meanwhile, by another delivery or host
        }
        effects::apply(&mut tx, &self.shop.ids, plugin, d, &effects).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The guard's check of any event on `shop.>`: a malformed one is dead-lettered under
    /// the guard's name, so nothing malformed sits unread on a subject no plugin consumes.
    pub async fn guard(&self, subject: &str, body: &[u8], attempt: i64) -> Disposition {
        match delivery::parse(subject, body) {
            Ok(_) => Disposition::Ack,
            Err(reason) => self.malformed(GUARD, "-", subject, body, &reason, attempt).await,
        }
    }

    async fn malformed(&self, plugin: &str, version: &str, subject: &str, body: &[u8], reason: &str, attempts: i64) -> Disposition {
        let text = String::from_utf8_lossy(body);
        let event_id = delivery::event_id_guess(&text);
        let reason = format!("malformed event: {reason}");
        let letter = Letter { plugin, version, subject, event_id: &event_id, body: &text, reason: &reason, attempts };
        self.store_dead_letter(&letter).await
    }

    async fn dead_letter(&self, plugin: &LoadedPlugin, d: &Delivery, reason: &str, attempts: i64) -> Disposition {
        let letter = Letter {
            plugin: &plugin.name,
            version: plugin.version(),
            subject: &d.subject,
            event_id: &d.id,
            body: &d.body,
            reason,
            attempts,
        };
        self.store_dead_letter(&letter).await
    }

    async fn store_dead_letter(&self, letter: &Letter<'_>) -> Disposition {
        match dead_letters::store(&self.shop.db, &self.shop.ids, letter).await {
            Ok(()) => Disposition::DeadLettered,
            // Never drop an event: if it cannot be stored, JetStream keeps it.
            Err(e) => {
                tracing::error!(error = %e, "could not store the dead letter; will retry");
                Disposition::Retry(self.delivery.max_delay)
            }
        }
    }

    /// Runs a dead letter through the plugin's current version once more. Applied (or
    /// already applied): marked redriven. Failing again: it stays, with the new reason.
    pub async fn redrive(&self, id: Id) -> Result<String, DeadLetterError> {
        let (plugin, subject, body) = dead_letters::pending(&self.shop.db, id).await?;
        let Some(current) = self.registry.current(&plugin) else {
            return Ok(format!("plugin {plugin} is not loaded"));
        };
        let result = match delivery::parse(&subject, body.as_bytes()) {
            Err(reason) => format!("still malformed: {reason}"),
            Ok(d) => match inbox::state(&self.shop.db, &plugin, &d).await? {
                inbox::State::Applied => "applied".to_string(), // applied meanwhile: nothing to do
                state => match self.attempt(&current, &d, state.next_attempt()).await {
                    Ok(()) => "applied".to_string(),
                    Err(failure) => format!("failed: {failure}"),
                },
            },
        };
        dead_letters::record_redrive(&self.shop.db, id, result == "applied", &result).await?;
        Ok(result)
    }

    /// Redrives every pending dead letter of `plugin`: (id, result) of each.
    pub async fn redrive_all(&self, plugin: &str) -> Result<Vec<(Id, String)>, DeadLetterError> {
        let mut results = Vec::new();
        for letter in dead_letters::list(&self.shop.db, Some(plugin)).await? {
            if letter.redriven_at.is_some() {
                continue;
            }
            match self.redrive(letter.id).await {
                Ok(result) => results.push((letter.id, result)),
                Err(DeadLetterError::NotFound(_)) => {} // redriven meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }
}
