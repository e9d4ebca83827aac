//! What happens to an event that fails, on the live path and when an operator redrives it:
//! each failed attempt is recorded in the inbox and retried with backoff; after the last
//! attempt (or at once, when the plugin refused the event or it is malformed) it goes to the
//! dead-letter store with its reason; the guard dead-letters malformed events on any subject;
//! redrive runs a dead letter through the plugin's current version once more.

use std::sync::Arc;

use super::{
    dead_letters::{self, DeadLetterError, Letter},
    delivery::{self, Delivery},
    dispatch::Failure,
    host::{trace_id, Applied, Message, PluginHost, Ready},
    inbox,
    runtime::LoadedPlugin,
    Disposition, GUARD,
};
use crate::{ids::Id, metrics::Outcome};

/// A redrive's result when the plugin applied the event (or had meanwhile): the letter closes.
const APPLIED: &str = "applied";

/// What came of a redrive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redriven {
    /// The letter is closed: the event is applied now (or had been), or, for one of the
    /// guard's, it is well-formed now. Otherwise it stays open.
    pub closed: bool,
    /// `applied`, `well-formed now`, or why it failed again.
    pub result: String,
}

impl PluginHost {
    /// Counts a run outside the live consumer (a redrive, an `apply` replay) as the live
    /// path counts, on the version that ran it, so the metrics and the console see it: without
    /// it a backfilled event looks lost for good. A failure counts as `failed`.
    pub(crate) fn count_outside(&self, plugin: &LoadedPlugin, result: &Result<Applied, Failure>, failed: Outcome) {
        self.registry.count(&plugin.name, result.is_err());
        self.metrics.invocation(&plugin.name, plugin.version(), result.as_ref().map_or(failed, |applied| applied.counted()));
    }

    /// A failed attempt: recorded, then retried later or dead-lettered.
    pub(super) async fn failed(&self, plugin: &LoadedPlugin, d: &Delivery, attempt: i64, failure: Failure) -> Disposition {
        let reason = failure.to_string();
        if failure.is_permanent() {
            self.metrics.invocation(&plugin.name, plugin.version(), Outcome::Refused);
            return self.dead_letter(plugin, d, &reason, attempt).await;
        }
        tracing::warn!(plugin = %plugin.name, version = plugin.version(), event = %d.id, trace_id = %trace_id(d), attempt, %reason, "plugin attempt failed");
        if let Err(e) = inbox::record_failure(&self.shop.db, &plugin.name, d, attempt, &reason).await {
            // Unrecorded, this attempt is not counted: better one retry too many than an
            // event dead-lettered early.
            tracing::warn!(error = %e, "could not record the failed attempt");
        }
        if attempt >= self.delivery.max_attempts {
            self.metrics.invocation(&plugin.name, plugin.version(), Outcome::DeadLettered);
            self.dead_letter(plugin, d, &reason, attempt).await
        } else {
            self.metrics.invocation(&plugin.name, plugin.version(), Outcome::Retried);
            Disposition::Retry(self.backoff(attempt))
        }
    }

    /// The guard's check of any event on `shop.>`: a malformed one is dead-lettered under
    /// the guard's name, so nothing malformed sits unread on a subject no plugin consumes.
    pub async fn guard(&self, m: &Message, attempt: i64) -> Disposition {
        match delivery::parse(&m.subject, &m.body) {
            Ok(_) => Disposition::Ack,
            Err(reason) => self.malformed(GUARD, "-", m, &reason, attempt).await,
        }
    }

    pub(super) async fn malformed(&self, plugin: &str, version: &str, m: &Message, reason: &str, attempts: i64) -> Disposition {
        let text = String::from_utf8_lossy(&m.body);
        let event_id = delivery::event_id_guess(&text);
        let reason = format!("malformed event: {reason}");
        self.metrics.invocation(plugin, version, Outcome::DeadLettered);
        let letter = Letter { plugin, version, subject: &m.subject, event_id: &event_id, stream_seq: m.stream_seq, body: &text, reason: &reason, attempts };
        self.store_dead_letter(&letter).await
    }

    async fn dead_letter(&self, plugin: &LoadedPlugin, d: &Delivery, reason: &str, attempts: i64) -> Disposition {
        tracing::warn!(plugin = %plugin.name, version = plugin.version(), event = %d.id, trace_id = %trace_id(d), attempts, %reason, "event dead-lettered");
        let letter = Letter {
            plugin: &plugin.name,
            version: plugin.version(),
            subject: &d.subject,
            event_id: &d.id,
            stream_seq: d.seq,
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
    /// The guard's letters are checked again, as the guard checks: closed once well-formed
    /// (after a host that reads the event better), else left open.
    pub async fn redrive(&self, id: Id) -> Result<Redriven, DeadLetterError> {
        let (plugin, subject, body) = dead_letters::pending(&self.shop.db, id).await?;
        let (closed, result) = match delivery::parse(&subject, body.as_bytes()) {
            Err(reason) => (false, format!("still malformed: {reason}")),
            // Nothing to run: the plugins reading its subject have letters of their own.
            Ok(_) if plugin == GUARD => (true, "well-formed now".to_string()),
            Ok(d) => match self.registry.current(&plugin) {
                None => return Ok(Redriven { closed: false, result: format!("plugin {plugin} is not loaded") }),
                Some(current) => {
                    let result = self.redrive_one(&current, &plugin, &d).await?;
                    (result == APPLIED, result)
                }
            },
        };
        dead_letters::record_redrive(&self.shop.db, id, closed, &result).await?;
        Ok(Redriven { closed, result })
    }

    async fn redrive_one(&self, current: &Arc<LoadedPlugin>, plugin: &str, d: &Delivery) -> Result<String, DeadLetterError> {
        Ok(match inbox::state(&self.shop.db, plugin, d).await? {
            inbox::State::Applied => APPLIED.to_string(), // applied meanwhile: nothing to do
            state => {
                let ready = Ready { delivery: d, attempt: state.next_attempt() };
                let result = self.run_and_apply(current, &[&ready]).await.pop().expect("one result");
                self.count_outside(current, &result, Outcome::RedriveFailed);
                match result {
                    Ok(_) => APPLIED.to_string(),
                    Err(failure) => format!("failed: {failure}"),
                }
            }
        })
    }

    /// Redrives every pending dead letter of `plugin`: what came of each.
    pub async fn redrive_all(&self, plugin: &str) -> Result<Vec<(Id, Redriven)>, DeadLetterError> {
        let mut results = Vec::new();
        for letter in dead_letters::list(&self.shop.db, Some(plugin)).await? {
            if letter.redriven_at.is_some() {
                continue;
            }
            match self.redrive(letter.id).await {
                Ok(result) => results.push((letter.id, result)),
                Err(DeadLetterError::NotFound(_) | DeadLetterError::Closed(..)) => {} // redriven meanwhile
                Err(e) => return Err(e),
            }
        }
        Ok(results)
    }
}
