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
    collections::HashMap,
    path::Path,
    sync::{Arc, OnceLock, RwLock},
    time::Duration,
};

use poem_openapi::Object;

use super::{
    fleet, grants,
    runtime::{self, LoadError, LoadedPlugin, Runtime},
};
use crate::{bus::StreamSettings, ids::now_ms, timestamp::Timestamp};

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
    #[error("not activated through the fleet registry: {0}")]
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
    pub activated_at: Option<Timestamp>,
    pub invocations: i64,
    pub failures: i64,
    /// Versions kept for rollback, oldest first.
    pub kept_versions: Vec<String>,
}

type NewPluginHook = Box<dyn Fn(String) + Send + Sync>;

pub struct Registry {
    runtime: Arc<Runtime>,
    plugins: RwLock<HashMap<String, Slot>>,
    /// Called with a plugin name the first time it is installed (starts its consumer).
    on_new: OnceLock<NewPluginHook>,
    /// Where uploads and rollbacks are handed to the rest of the fleet.
    fleet: OnceLock<(async_nats::Client, StreamSettings)>,
}

impl Registry {
    pub fn new(runtime: Arc<Runtime>) -> Registry {
        Registry { runtime, plugins: RwLock::default(), on_new: OnceLock::new(), fleet: OnceLock::new() }
    }

    /// Compiles and checks a candidate for `name` against the capabilities it is granted.
    fn load(&self, name: &str, bytes: &[u8]) -> Result<LoadedPlugin, LoadError> {
        self.runtime.load(name, bytes, grants::granted(name))
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
        let candidate = self.load(name, bytes)?;
        let plugin = self.install_loaded(candidate)?;
        tracing::info!(plugin = name, version = plugin.version(), sha256 = %plugin.sha256, "plugin active");
        Ok((plugin, Installed::Activated))
    }

    /// [`offer`](Self::offer) for a version that arrived from `source` (the plugins folder,
    /// the fleet's registry), with its outcome logged.
    pub fn receive(&self, source: &str, name: &str, bytes: &[u8]) {
        match self.offer(name, bytes) {
            Ok((p, Installed::Activated)) => tracing::info!(plugin = name, version = p.version(), "activated from {source}"),
            Ok((_, Installed::Unchanged)) => {}
            Err(e) => tracing::error!(plugin = name, error = %e, "{source}: candidate rejected"),
        }
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
        let candidate = self.load(name, bytes)?;
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

    /// Makes a built plugin (a validated component, or a benchmark's native handler) the
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
    pub fn join_fleet(&self, client: async_nats::Client, stream: StreamSettings) {
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
                activated_at: Some(Timestamp(slot.activated_at)),
                invocations: slot.invocations as i64,
                failures: slot.failures as i64,
                kept_versions: slot.kept.iter().map(|k| k.version().to_owned()).collect(),
            })
            .collect();
        list.sort_by(|a, b| a.name.cmp(&b.name));
        list
    }

    /// Counts one invocation of `name` (and whether it failed) for the status.
    pub(crate) fn count(&self, name: &str, failed: bool) {
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
    pub(crate) fn runnable(&self, name: &str) -> Option<Arc<LoadedPlugin>> {
        self.plugins.read().expect("plugins lock").get(name).filter(|s| s.enabled).map(|s| s.active.clone())
    }
}
