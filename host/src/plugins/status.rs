//! What the registry tells an operator: each plugin name's state and versions (the admin
//! API's plugin status), and the recent event rates the console charts.

use std::time::Duration;

use poem_openapi::{Enum, Object};
use tokio::sync::watch;

use super::{registry::Registry, runtime};
use crate::timestamp::Timestamp;

/// A plugin's state, for the admin API.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PluginStatus {
    pub name: String,
    /// None while the plugin is only staged.
    pub active_version: Option<String>,
    /// sha256 of the active component.
    pub sha256: Option<String>,
    pub enabled: bool,
    pub subjects: Vec<String>,
    pub capabilities: Vec<String>,
    /// What the name is granted now (what its next version may claim).
    pub grants: Vec<String>,
    pub activated_at: Option<Timestamp>,
    pub invocations: i64,
    pub failures: i64,
    /// Versions kept for rollback or staged for activation, oldest first.
    pub kept_versions: Vec<String>,
    /// The same versions in detail: sha256, whether active, when kept and last activated.
    pub versions: Vec<PluginVersion>,
}

/// One kept version of a plugin.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PluginVersion {
    pub version: String,
    pub sha256: String,
    pub state: VersionState,
    /// When this host kept it (uploaded, staged, or loaded at start).
    pub kept_at: Timestamp,
    /// When it last became the active version on this host; absent if it never did.
    pub activated_at: Option<Timestamp>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "lowercase")]
pub enum VersionState {
    /// What deliveries run on now.
    Active,
    /// Was active before; kept for rollback.
    Kept,
    /// Kept but never activated (uploaded with `activate=false`).
    Staged,
}

/// How often the console's rate history samples the invocation counters.
pub const RATE_SAMPLE: Duration = Duration::from_secs(5);

impl Registry {
    pub fn status(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.read().expect("plugins lock");
        let mut list: Vec<_> = plugins
            .iter()
            .map(|(name, slot)| PluginStatus {
                name: name.clone(),
                active_version: slot.active.as_ref().map(|a| a.version().into()),
                sha256: slot.active.as_ref().map(|a| a.sha256.clone()),
                enabled: self.is_enabled(name),
                subjects: slot.active.as_ref().map(|a| a.subjects().to_vec()).unwrap_or_default(),
                capabilities: slot
                    .active
                    .as_ref()
                    .map(|a| a.manifest.capabilities.iter().map(|c| runtime::capability_name(*c).into()).collect())
                    .unwrap_or_default(),
                grants: self.grants.lookup(name).capabilities,
                activated_at: slot.active.as_ref().map(|_| Timestamp(slot.activated_at)),
                invocations: slot.invocations as i64,
                failures: slot.failures as i64,
                kept_versions: slot.kept.iter().map(|k| k.version().to_owned()).collect(),
                versions: slot
                    .kept
                    .iter()
                    .map(|k| {
                        let times = slot.times.get(k.version());
                        let activated_at = times.and_then(|t| t.activated_at);
                        PluginVersion {
                            version: k.version().to_owned(),
                            sha256: k.sha256.clone(),
                            state: match (slot.is_active(k), activated_at) {
                                (true, _) => VersionState::Active,
                                (false, Some(_)) => VersionState::Kept,
                                (false, None) => VersionState::Staged,
                            },
                            kept_at: Timestamp(times.map_or(0, |t| t.kept_at)),
                            activated_at: activated_at.map(Timestamp),
                        }
                    })
                    .collect(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Samples this host's invocation counters into the rate history every [`RATE_SAMPLE`]
    /// until shutdown, so the console's chart has the last minutes when someone opens it.
    pub async fn sample_rates(&self, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RATE_SAMPLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let counters = self.status().into_iter().map(|s| (s.name, s.invocations as u64));
            self.metrics.rates.record(counters);
        }
    }
}
