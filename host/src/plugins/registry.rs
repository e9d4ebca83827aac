//! The version registry: every plugin name's active version, the versions kept for rollback,
//! whether it is enabled, and its counters. Every way a version arrives ends in
//! [`Registry::offer`] or [`Registry::stage`], which compile and check a candidate before
//! anything changes; a rejected candidate leaves the running version untouched.
//!
//! Versions are kept per name as an `Arc<LoadedPlugin>` behind a lock: a delivery takes the
//! current `Arc` and finishes on it, so replacing a version never disturbs work in flight.
//! Uploads and rollbacks go through the fleet's registry ([`super::fleet`]) so every host
//! activates versions in the same order ([`Registry::distribute`]).

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use super::{
    fleet,
    config::Configs,
    grants::Grants,
    runtime::{self, LoadError, LoadedPlugin, Runtime},
    start, Source,
};
use crate::{bus::StreamSettings, ids::now_ms, metrics::Metrics};

/// Everything the host knows about one plugin name.
#[derive(Default)]
pub(super) struct Slot {
    /// The version deliveries run on; none while a new plugin is only staged.
    pub(super) active: Option<Arc<LoadedPlugin>>,
    /// Every version seen (active, rolled back from, or staged), oldest first.
    pub(super) kept: Vec<Arc<LoadedPlugin>>,
    /// When each kept version was kept and last made active (unix ms), by version.
    pub(super) times: HashMap<String, VersionTimes>,
    pub(super) invocations: u64,
    pub(super) failures: u64,
}

#[derive(Debug, Clone, Copy)]
pub(super) struct VersionTimes {
    pub(super) kept_at: i64,
    pub(super) activated_at: Option<i64>,
}

impl Slot {
    pub(super) fn is_active(&self, plugin: &Arc<LoadedPlugin>) -> bool {
        self.active.as_ref().is_some_and(|a| Arc::ptr_eq(a, plugin))
    }

    fn make_active(&mut self, plugin: &Arc<LoadedPlugin>) {
        self.active = Some(plugin.clone());
        if let Some(t) = self.times.get_mut(plugin.version()) {
            t.activated_at = Some(now_ms());
        }
    }
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
    #[error("version {version} of {name} ran before: going back to it is a rollback, activate it instead of uploading it again")]
    UseActivate { name: String, version: String },
    /// The fleet keeps another build under the version this host would hand it (its
    /// plugins folder's): activating it here would replace the fleet's.
    #[error("the fleet keeps {name} {version} as another build (sha256 {fleet}…) than this host's ({here}…, from its plugins folder): nothing changed; give the folder's build another version, or activate {version} through a host that holds the fleet's build")]
    OtherBuild { name: String, version: String, here: String, fleet: String },
    #[error("no kept version {version} of {name}")]
    UnknownVersion { name: String, version: String },
    #[error("no plugin {0}")]
    UnknownPlugin(String),
    /// The fleet's registry (or its switches) did not take the change (or not all of it: an
    /// activating upload keeps the version first, then makes it the one to run).
    #[error("the fleet's registry did not take it: {0}")]
    Registry(String),
    /// The fleet's registry took it, but this host did not follow in time.
    #[error("{0}")]
    NotFollowed(String),
}

/// What an offer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Installed {
    /// A new version (or a kept one) is now active.
    Activated,
    /// It was already the active version: nothing changed.
    Unchanged,
}

type NewPluginHook = Box<dyn Fn(String) + Send + Sync>;

pub struct Registry {
    runtime: Arc<Runtime>,
    pub(super) plugins: RwLock<HashMap<String, Slot>>,
    pub(super) metrics: Arc<Metrics>,
    /// Which capabilities each name may hold.
    pub grants: Arc<Grants>,
    /// This host's configuration values, which a version's config schema must admit.
    pub configs: Configs,
    /// Plugin names paused (by the fleet's switches); installed or not.
    disabled: RwLock<HashSet<String>>,
    /// Called with a plugin name the first time it is installed (starts its consumer).
    on_new: OnceLock<NewPluginHook>,
    /// Where uploads and rollbacks are handed to the rest of the fleet.
    pub(super) fleet: OnceLock<(async_nats::Client, StreamSettings)>,
    /// Names whose version the fleet runs (or, at start, the folder holds) this host
    /// refused: from where, and why ([`super::arrivals`]).
    pub(super) refused: RwLock<HashMap<String, (Source, String)>>,
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>, metrics: Arc<Metrics>, grants: Arc<Grants>, configs: Configs) -> Registry {
        Registry { runtime, metrics, grants, configs, plugins: RwLock::default(), disabled: RwLock::default(), on_new: OnceLock::new(), fleet: OnceLock::new(), refused: RwLock::default() }
    }

    /// Compiles and checks a candidate for `name` against the capabilities it is granted
    /// and the configuration values set for it.
    fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        let loaded = self.runtime.load(name, bytes, &self.grants.granted(name)).and_then(|plugin| {
            self.configs.check(name, &plugin.manifest.config_schema)?;
            Ok(plugin)
        });
        if loaded.is_err() {
            self.metrics.swap(name, "rejected");
        }
        loaded
    }

    /// Validates `bytes` as plugin `name` and makes it the active version: the folder and
    /// the fleet's registry say "this is the version to run", so a kept version with the
    /// same bytes is re-activated (uploads go through [`stage`](Self::stage) instead). A
    /// rejected candidate leaves the running version untouched. Deliveries in flight finish
    /// on the version they started with: they hold its `Arc`.
    pub fn offer(&self, name: &str, bytes: &[u8]) -> Result<(Arc<LoadedPlugin>, Installed), InstallError> {
        match self.known(name, bytes) {
            Some((true, active)) => Ok((active, Installed::Unchanged)),
            Some((false, kept)) => self.activate(name, kept.version()).map(|p| (p, Installed::Activated)),
            None => {
                let plugin = self.keep(self.load(name, bytes)?, true)?;
                tracing::info!(plugin = name, version = plugin.version(), sha256 = %plugin.sha256, "plugin active");
                Ok((plugin, Installed::Activated))
            }
        }
    }

    /// The kept version of `name` with these bytes, if any, and whether it is the active one.
    fn known(&self, name: &str, bytes: &[u8]) -> Option<(bool, Arc<LoadedPlugin>)> {
        let sha256 = runtime::sha256_hex(bytes);
        let plugins = self.plugins.read().expect("plugins lock");
        let slot = plugins.get(name)?;
        let kept = slot.kept.iter().find(|k| k.sha256 == sha256)?.clone();
        Some((slot.is_active(&kept), kept))
    }

    /// Keeps a version without activating it, if it is not kept already (`true`: newly kept).
    pub fn keep_staged(&self, name: &str, bytes: &[u8]) -> Result<(Arc<LoadedPlugin>, bool), InstallError> {
        if let Some((_, kept)) = self.known(name, bytes) {
            return Ok((kept, false));
        }
        Ok((self.keep(self.load(name, bytes)?, false)?, true))
    }

    /// Validates an upload and keeps it without activating it: the fleet's registry decides
    /// the order in which every host, this one included, activates versions (see
    /// [`fleet`]). The active build again is an idempotent retry of an upload that succeeded,
    /// and a staged build again (`plugin try` staged it) is that version, to activate; a
    /// version that ran before is refused: going back to it is a rollback, activate it
    /// instead. `true` when this call kept it (and [`unstage`](Self::unstage) may take it back).
    pub fn stage(&self, name: &str, bytes: &[u8]) -> Result<(Arc<LoadedPlugin>, bool), InstallError> {
        match self.known(name, bytes) {
            Some((false, kept)) if self.times(name, kept.version()).is_some_and(|t| t.activated_at.is_some()) => {
                Err(InstallError::UseActivate { name: name.into(), version: kept.version().into() })
            }
            Some((_, kept)) => Ok((kept, false)),
            None => {
                let plugin = self.load(name, bytes)?;
                // Checked for a new upload only: a version kept before the rule still loads.
                if !super::is_version(plugin.version()) {
                    self.metrics.swap(name, "rejected");
                    return Err(LoadError::BadVersion(plugin.version().into()).into());
                }
                Ok((self.keep(plugin, false)?, true))
            }
        }
    }

    /// Takes back what [`stage`](Self::stage) kept when it never reached the fleet's
    /// registry, so that a refused upload changes nothing and may simply be sent again.
    /// The active version is never taken back.
    pub fn unstage(&self, name: &str, staged: &LoadedPlugin) {
        let mut plugins = self.plugins.write().expect("plugins lock");
        let Some(slot) = plugins.get_mut(name) else { return };
        if slot.active.as_ref().is_some_and(|a| a.sha256 == staged.sha256) {
            return;
        }
        slot.kept.retain(|k| k.sha256 != staged.sha256);
        slot.times.remove(staged.version());
        if slot.active.is_none() && slot.kept.is_empty() {
            plugins.remove(name); // a name that was only this staged version
        }
    }

    /// Waits (bounded) until `sha256` is the active version of `name` on this host.
    pub async fn await_active(&self, name: &str, sha256: &str, patience: Duration) -> bool {
        until(patience, || self.current(name).is_some_and(|p| p.sha256 == sha256)).await
    }

    /// [`offer`](Self::offer) as the folder does it at start.
    pub fn install(&self, name: &str, bytes: &[u8]) -> Result<Arc<LoadedPlugin>, InstallError> {
        self.offer(name, bytes).map(|(p, _)| p)
    }

    /// Makes a built plugin (a validated component, or a benchmark's native handler) the
    /// active version of its name.
    pub fn install_loaded(&self, plugin: LoadedPlugin) -> Result<Arc<LoadedPlugin>, InstallError> {
        self.keep(plugin, true)
    }

    /// Keeps a validated plugin; makes it active when `activate`.
    fn keep(&self, plugin: LoadedPlugin, activate: bool) -> Result<Arc<LoadedPlugin>, InstallError> {
        let plugin = Arc::new(plugin);
        let name = plugin.name.clone();
        let first_active = {
            let mut plugins = self.plugins.write().expect("plugins lock");
            let slot = plugins.entry(name.clone()).or_default();
            if slot.kept.iter().any(|k| k.version() == plugin.version()) {
                return Err(InstallError::VersionExists { name, version: plugin.version().into() });
            }
            slot.kept.push(plugin.clone());
            slot.times.insert(plugin.version().to_owned(), VersionTimes { kept_at: now_ms(), activated_at: None });
            if slot.kept.len() > KEPT_VERSIONS {
                let oldest_inactive = slot.kept.iter().position(|k| !slot.is_active(k)).unwrap_or(0);
                let gone = slot.kept.remove(oldest_inactive);
                slot.times.remove(gone.version());
            }
            let first_active = activate && slot.active.is_none();
            if activate {
                slot.make_active(&plugin);
            }
            self.metrics.swap(&name, if activate { "activated" } else { "staged" });
            first_active
        };
        if first_active {
            // Its consumer starts the first time the name has an active version.
            if let Some(start) = self.on_new.get() {
                start(name);
            }
        }
        Ok(plugin)
    }

    /// The kept `version` of `name`.
    pub fn kept(&self, name: &str, version: &str) -> Result<Arc<LoadedPlugin>, InstallError> {
        let plugins = self.plugins.read().expect("plugins lock");
        let slot = plugins.get(name).ok_or_else(|| InstallError::UnknownPlugin(name.into()))?;
        slot.kept
            .iter()
            .find(|k| k.version() == version)
            .cloned()
            .ok_or_else(|| InstallError::UnknownVersion { name: name.into(), version: version.into() })
    }

    /// Makes a kept version active (rollback, or a staged version's first activation).
    pub fn activate(&self, name: &str, version: &str) -> Result<Arc<LoadedPlugin>, InstallError> {
        let kept = self.kept(name, version)?;
        let first_active = {
            let mut plugins = self.plugins.write().expect("plugins lock");
            let slot = plugins.get_mut(name).ok_or_else(|| InstallError::UnknownPlugin(name.into()))?;
            let first_active = slot.active.is_none();
            if !slot.is_active(&kept) {
                slot.make_active(&kept);
                self.metrics.swap(name, "activated");
                tracing::info!(plugin = name, version, "plugin version activated");
            }
            first_active
        };
        if first_active {
            if let Some(start) = self.on_new.get() {
                start(name.to_owned());
            }
        }
        Ok(kept)
    }

    /// Pauses or resumes plugin `name` on this host: while disabled, its deliveries wait in
    /// JetStream. (The fleet's switches call this on every host; see [`switch`](Self::switch).)
    pub fn set_enabled(&self, name: &str, enabled: bool) {
        let mut disabled = self.disabled.write().expect("switches lock");
        let changed = if enabled { disabled.remove(name) } else { disabled.insert(name.to_owned()) };
        if changed {
            tracing::info!(plugin = name, enabled, "plugin switched");
        }
    }

    pub fn is_enabled(&self, name: &str) -> bool {
        !self.disabled.read().expect("switches lock").contains(name)
    }

    /// Pauses or resumes an installed plugin on every host: through the fleet's switches,
    /// answering once this host follows it.
    pub async fn switch(&self, name: &str, enabled: bool) -> Result<(), InstallError> {
        if !self.plugins.read().expect("plugins lock").contains_key(name) {
            return Err(InstallError::UnknownPlugin(name.into()));
        }
        let Some((client, stream)) = self.fleet.get() else {
            self.set_enabled(name, enabled); // a host on its own (the benchmark)
            return Ok(());
        };
        fleet::publish_switch(client, stream, name, enabled).await.map_err(InstallError::Registry)?;
        if !until(FLEET_PATIENCE, || self.is_enabled(name) == enabled).await {
            return Err(InstallError::NotFollowed(format!("switched in the fleet, but not followed here after {FLEET_PATIENCE:?}")));
        }
        Ok(())
    }

    /// Connects this host to the fleet's registry (once, at start).
    pub fn join_fleet(&self, client: async_nats::Client, stream: StreamSettings) {
        let _ = self.fleet.set((client, stream));
    }

    /// Hands a kept version to every host through the fleet's registry, to keep and (when
    /// `activate`) to run; with `activate`, waits until this host's registry follower has
    /// activated it, so every host activates versions in the registry's order.
    pub async fn distribute(&self, name: &str, version: &str, activate: bool) -> Result<Arc<LoadedPlugin>, InstallError> {
        let kept = self.kept(name, version)?;
        let registry = |why: String| InstallError::Registry(why);
        let bytes = kept.bytes.clone().ok_or_else(|| registry("a native plugin cannot be distributed".into()))?;
        let (client, stream) = self.fleet.get().ok_or_else(|| registry("this host has no fleet registry".into()))?;
        // Activating the active version again (a retried request) changes no time.
        let times = self.times(name, version);
        let before = fleet::Stamps { kept_at: times.map(|t| t.kept_at), activated_at: times.and_then(|t| t.activated_at) };
        let again = self.current(name).is_some_and(|active| active.sha256 == kept.sha256);
        let stamps = if activate && !again { fleet::Stamps { activated_at: Some(now_ms()), ..before } } else { before };
        let other = fleet::kept_build(client, stream, name, version).await.map_err(registry)?.filter(|fleet| *fleet != kept.sha256);
        if let Some(fleet) = other {
            return Err(InstallError::OtherBuild { name: name.into(), version: version.into(), here: kept.sha256[..12].into(), fleet: fleet[..12].into() });
        }
        // A plugin new to the shop begins with the next event, not the stream's history (should
        // the fleet not take the version, its consumer stays: it begins from this moment).
        if activate && self.current(name).is_none() {
            start::from_next_event(client, stream, name, kept.subjects()).await.map_err(registry)?;
        }
        fleet::publish(client, stream, (name, version, &bytes), activate, stamps).await.map_err(registry)?;
        if activate && !self.await_active(name, &kept.sha256, FLEET_PATIENCE).await {
            return Err(InstallError::NotFollowed(format!("in the fleet's registry, but not active here after {FLEET_PATIENCE:?}")));
        }
        // As the registry's follower stamps it too, perhaps a moment after it activated it:
        // the status this host answers with now already shows the fleet's times.
        self.stamp(name, version, stamps);
        Ok(kept)
    }

    /// Registers what to do when a plugin name appears for the first time (once).
    pub fn on_new_plugin(&self, start: impl Fn(String) + Send + Sync + 'static) {
        let _ = self.on_new.set(Box::new(start));
    }

    /// Counts one invocation of `name` (and whether it failed) for the status.
    pub(crate) fn count(&self, name: &str, failed: bool) {
        if let Some(slot) = self.plugins.write().expect("plugins lock").get_mut(name) {
            slot.invocations += 1;
            slot.failures += u64::from(failed);
        }
    }

    /// The active version of `name`.
    pub fn current(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().expect("plugins lock").get(name).and_then(|s| s.active.clone())
    }

    /// The active version of `name`, if it is enabled: what a delivery runs on.
    pub(crate) fn runnable(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.current(name).filter(|_| self.is_enabled(name))
    }
}

/// Waits (polling briefly) until `done` holds, at most `patience`; whether it did.
async fn until(patience: Duration, done: impl Fn() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        if done() {
            return true;
        }
        if tokio::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
