//! What the registry tells an operator: each plugin name's state and versions (the admin
//! API's plugin status), the recent event rates the console charts, and which versions each
//! host of the fleet runs (the roll call, [`super::fleet::roll_call`]).

use std::{sync::Arc, time::Duration};

use poem_openapi::{Enum, Object};
use tokio::sync::watch;

use super::{
    fleet,
    registry::{Registry, Slot, VersionTimes},
    runtime::{self, LoadedPlugin},
};
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
    /// What the name is granted now: what its next version may claim, and what the running
    /// one's effects are checked against.
    pub grants: Vec<String>,
    /// Capabilities the active version declares that its name is no longer granted: its
    /// effects that need them are refused (and their events dead-lettered) until granted.
    pub revoked: Vec<String>,
    /// When the active version was last made active (as its entry in `versions` says).
    pub activated_at: Option<Timestamp>,
    /// Attempts on this host since it started (a retried event counts each time), and how
    /// many failed.
    pub invocations: i64,
    pub failures: i64,
    /// Versions kept for rollback or staged for activation, oldest first.
    pub kept_versions: Vec<String>,
    /// The same versions in detail: sha256, whether active, when kept and last activated.
    pub versions: Vec<PluginVersion>,
    /// Why this host refused the version the fleet runs (a configuration value or a grant of
    /// its own), or, as it started, its plugins folder's component (corrupt, another world):
    /// it runs another version, or none, and the readiness probe says so.
    pub refused: Option<String>,
}

/// One kept version of a plugin.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PluginVersion {
    pub version: String,
    pub sha256: String,
    pub state: VersionState,
    /// When it was kept: for a version that went through the fleet's registry (an upload, a
    /// rollback), as the registry records it, the same on every host and after a restart;
    /// for one only this host's plugins folder holds, when this host loaded it.
    pub kept_at: Timestamp,
    /// When it last became the active version, likewise; absent if it never did.
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

/// Who this host is, for the roll call.
#[derive(Debug, Clone)]
pub struct HostCard {
    /// The key in the roll call: `worker-<SHOPMESH_WORKER_ID>` (unique in a fleet).
    pub host: String,
    pub hostname: String,
    /// Where its HTTP API listens.
    pub address: String,
    pub started_at: Timestamp,
}

/// This machine's name (for its [`HostCard`]); empty if the system will not say.
pub fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname writes at most that much.
    let ok = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0;
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    if ok { String::from_utf8_lossy(&buf[..end]).into_owned() } else { String::new() }
}

/// One host of the fleet as it last answered the roll call.
#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
pub struct HostStatus {
    pub host: String,
    pub hostname: String,
    pub address: String,
    pub started_at: Timestamp,
    /// When it last answered (every few seconds while it runs).
    pub seen_at: Timestamp,
    /// What it runs: each plugin's active version and switch, as that host sees them.
    pub plugins: Vec<HostPlugin>,
}

#[derive(Debug, Clone, Object, serde::Serialize, serde::Deserialize)]
#[oai(skip_serializing_if_is_none)]
pub struct HostPlugin {
    pub name: String,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub active_version: Option<String>,
    pub enabled: bool,
    /// Events it handled per second over its last sample (applied, or applied before).
    #[serde(default)]
    pub events_per_second: f64,
    /// Attempts that failed per second over its last sample (retried or dead-lettered).
    #[serde(default)]
    pub failures_per_second: f64,
    /// It refused the version the fleet runs, or its folder's as it started (see the plugin
    /// status there).
    #[serde(default)]
    pub refused: bool,
}

/// How often the console's rate history samples the invocation counters (and the host
/// answers the roll call).
pub const RATE_SAMPLE: Duration = Duration::from_secs(5);

impl Registry {
    /// When `version` of `name` was kept and last made active here.
    pub(super) fn times(&self, name: &str, version: &str) -> Option<VersionTimes> {
        self.plugins.read().expect("plugins lock").get(name)?.times.get(version).copied()
    }

    /// Takes the fleet's times for a kept version over this host's (which start when this
    /// host first saw it): every host then shows the same history, across restarts.
    pub(super) fn stamp(&self, name: &str, version: &str, stamps: fleet::Stamps) {
        let mut plugins = self.plugins.write().expect("plugins lock");
        let Some(times) = plugins.get_mut(name).and_then(|slot| slot.times.get_mut(version)) else { return };
        times.kept_at = stamps.kept_at.unwrap_or(times.kept_at);
        times.activated_at = stamps.activated_at.or(times.activated_at);
    }

    pub fn status(&self) -> Vec<PluginStatus> {
        let plugins = self.plugins.read().expect("plugins lock");
        let mut list: Vec<_> = plugins.iter().map(|(name, slot)| self.status_of(name, slot)).collect();
        // A name the fleet runs and this host refused from the start has no slot: listed too.
        let refused = self.refusals().into_iter().filter(|(name, _)| !plugins.contains_key(name));
        list.extend(refused.map(|(name, _)| self.status_of(&name, &Slot::default())));
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    fn status_of(&self, name: &str, slot: &Slot) -> PluginStatus {
        let capabilities: Vec<String> = slot
            .active
            .as_ref()
            .map(|a| a.manifest.capabilities.iter().map(|c| runtime::capability_name(*c).into()).collect())
            .unwrap_or_default();
        let grants = self.grants.lookup(name).capabilities;
        let revoked = capabilities.iter().filter(|c| !grants.contains(c)).cloned().collect();
        let version = |k: &Arc<LoadedPlugin>| {
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
        };
        PluginStatus {
            name: name.to_owned(),
            active_version: slot.active.as_ref().map(|a| a.version().into()),
            sha256: slot.active.as_ref().map(|a| a.sha256.clone()),
            enabled: self.is_enabled(name),
            subjects: slot.active.as_ref().map(|a| a.subjects().to_vec()).unwrap_or_default(),
            capabilities,
            grants,
            revoked,
            activated_at: slot.active.as_ref().and_then(|a| slot.times.get(a.version())).and_then(|t| t.activated_at).map(Timestamp),
            invocations: slot.invocations as i64,
            failures: slot.failures as i64,
            kept_versions: slot.kept.iter().map(|k| k.version().to_owned()).collect(),
            versions: slot.kept.iter().map(version).collect(),
            refused: self.refusal(name),
        }
    }

    /// Every [`RATE_SAMPLE`] until shutdown: samples this host's invocation counters into
    /// the rate history (so the console's chart has the last minutes when someone opens
    /// it), and answers the fleet's roll call with what this host runs.
    pub async fn report(&self, me: HostCard, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(RATE_SAMPLE);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let (mut answered, mut put, mut clash_said) = (true, false, None::<std::time::Instant>);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let status = self.status();
            let handled = status.iter().map(|s| (s.name.clone(), (s.invocations - s.failures) as u64));
            self.metrics.rates.record(handled);
            self.metrics.failure_rates.record(status.iter().map(|s| (s.name.clone(), s.failures as u64)));
            let (rates, failure_rates) = (self.metrics.rates.rates(), self.metrics.failure_rates.rates());
            let last = |rates: &std::collections::HashMap<String, Vec<f64>>, name: &str| rates.get(name).and_then(|r| r.last().copied()).unwrap_or(0.0);
            let Some((client, settings)) = self.fleet.get() else { continue };
            let entry = HostStatus {
                host: me.host.clone(),
                hostname: me.hostname.clone(),
                address: me.address.clone(),
                started_at: me.started_at,
                seen_at: Timestamp(crate::ids::now_ms()),
                plugins: status
                    .into_iter()
                    .map(|s| HostPlugin {
                        events_per_second: last(&rates, &s.name),
                        failures_per_second: last(&failure_rates, &s.name),
                        refused: s.refused.is_some(),
                        name: s.name,
                        active_version: s.active_version,
                        enabled: s.enabled,
                    })
                    .collect(),
            };
            // Once this host has answered, an entry under its name that is not its own was put
            // since by another host with the same SHOPMESH_WORKER_ID, whose ids collide with
            // this one's (refused orders, duplicate keys). Said loudly, once a minute while it lasts.
            if put {
                let now = tokio::time::timeout(RATE_SAMPLE, super::fleet::roll_call_entry(client, settings, &me.host)).await;
                let other = now.ok().and_then(Result::ok).flatten().and_then(|json| serde_json::from_slice::<HostStatus>(&json).ok());
                let other = other.filter(|o| (o.started_at, &o.address, &o.hostname) != (me.started_at, &me.address, &me.hostname));
                // Once, then once a minute while it lasts (the two alternate in the entry).
                if let Some(other) = other.filter(|_| clash_said.is_none_or(|at| at.elapsed() >= Duration::from_secs(60))) {
                    tracing::error!(host = %me.host, other = %other.address, other_hostname = %other.hostname, "another host runs with this host's SHOPMESH_WORKER_ID: the ids they make collide (orders refused, duplicate keys); give each host of a fleet its own");
                    clash_said = Some(std::time::Instant::now());
                }
            }
            let json = serde_json::to_vec(&entry).expect("a host status serialises");
            let result = tokio::time::timeout(RATE_SAMPLE, super::fleet::answer_roll_call(client, settings, &me.host, json)).await;
            // Said once per outage, not every five seconds.
            match result.map_err(|_| "timed out".to_string()).and_then(|r| r) {
                Ok(()) => (answered, put) = (true, true),
                Err(e) if answered => {
                    answered = false;
                    tracing::warn!(error = %e, "could not answer the fleet's roll call");
                }
                Err(_) => {}
            }
        }
    }

    /// Every live host of the fleet, as it last answered the roll call, by host; empty for
    /// a host on its own.
    pub async fn roll_call(&self) -> Result<Vec<HostStatus>, String> {
        let Some((client, settings)) = self.fleet.get() else { return Ok(Vec::new()) };
        let mut hosts: Vec<HostStatus> =
            super::fleet::roll_call(client, settings).await?.iter().filter_map(|json| serde_json::from_slice(json).ok()).collect();
        hosts.sort_by(|a, b| a.host.cmp(&b.host));
        Ok(hosts)
    }
}
