//! The plugins folder, watched: a `<name>.wasm` written there is handed to `offer` (the
//! registry's [`super::Registry::receive`], wired at start-up). A file is read only once its
//! size and modification time have stayed the same for a whole poll interval, so a copy in
//! progress is not picked up half-written (and a truncated component would fail validation
//! anyway). Files starting with `.` are ignored, so writers may also write `.name.wasm` and
//! rename.

use std::{collections::HashMap, path::PathBuf, time::{Duration, SystemTime}};

use tokio::sync::watch;

use super::{config::ConfigRefusal, registry::Registry, runtime::LoadError, InstallError, Source};

type Seen = (u64, SystemTime);

/// Installs every `<name>.wasm` in `dir` at start. A bad component is logged, skipped and
/// said as refused (the host runs without it until a good version arrives: its events wait,
/// and the status, `/readyz` and the metrics say so); a component that the configured
/// values for its name do not fit is an error, so that the operator's mistake stops the
/// start where it was made rather than leaving the plugin out unnoticed.
pub fn install_all(registry: &Registry, dir: &std::path::Path) -> Result<(), String> {
    if !dir.is_dir() {
        tracing::warn!(dir = %dir.display(), "plugins folder not found: no plugins loaded");
        return Ok(());
    }
    let mut paths: Vec<PathBuf> = scan(dir).into_keys().collect();
    paths.sort();
    for path in paths {
        let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        let installed = std::fs::read(&path).map_err(|e| e.to_string()).map(|bytes| registry.install(&name, &bytes));
        match installed {
            Ok(Ok(_)) => {}
            Ok(Err(InstallError::Load(LoadError::Config(why)))) if !matches!(why, ConfigRefusal::Schema(_)) => {
                return Err(format!("plugin {name} ({}): {why}", path.display()));
            }
            Ok(Err(e)) => {
                tracing::error!(plugin = %name, error = %e, "plugin rejected");
                registry.refuse(Source::Folder, &name, format!("the plugins folder's {}: {e}", path.display()));
            }
            Err(e) => {
                tracing::error!(plugin = %name, error = %e, "cannot read plugin file");
                registry.refuse(Source::Folder, &name, format!("the plugins folder's {} cannot be read: {e}", path.display()));
            }
        }
    }
    Ok(())
}

pub async fn watch(offer: impl Fn(&str, &[u8]), dir: PathBuf, interval: Duration, mut shutdown: watch::Receiver<bool>) {
    // What each file looked like at the previous poll, and what we last offered.
    let mut previous: HashMap<PathBuf, Seen> = HashMap::new();
    let mut offered: HashMap<PathBuf, Seen> = HashMap::new();
    // Files present at start were installed by the start-up scan.
    for (path, seen) in scan(&dir) {
        offered.insert(path, seen);
    }
    while !*shutdown.borrow() {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = shutdown.changed() => return,
        }
        let now = scan(&dir);
        for (path, seen) in &now {
            let stable = previous.get(path) == Some(seen);
            if !stable || offered.get(path) == Some(seen) {
                continue;
            }
            offered.insert(path.clone(), *seen);
            let name = path.file_stem().unwrap_or_default().to_string_lossy().into_owned();
            match std::fs::read(path) {
                Ok(bytes) => offer(&name, &bytes),
                Err(e) => tracing::warn!(file = %path.display(), error = %e, "cannot read plugin file"),
            }
        }
        previous = now;
    }
}

fn scan(dir: &std::path::Path) -> HashMap<PathBuf, Seen> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return HashMap::new();
    };
    entries
        .flatten()
        .filter(|e| {
            let name = e.file_name();
            let name = name.to_string_lossy();
            !name.starts_with('.') && name.ends_with(".wasm")
        })
        .filter_map(|e| {
            let meta = e.metadata().ok()?;
            Some((e.path(), (meta.len(), meta.modified().ok()?)))
        })
        .collect()
}
