//! The environment's layer: the `SHOPMESH_<KEY>` variables that name a setting (a duration's
//! older `…_SECS` name too). Ours rather than figment's `Env`, which reads the process's
//! environment itself: this layer is handed its variables, so the tests give theirs without
//! changing the process's (a variable set while another thread reads one, e.g. SQLite
//! looking for its temporary folder, is undefined behaviour in C, and crashed the unit tests
//! now and then), and a message names the variable that was set, not "environment
//! variable(s)".

use std::collections::BTreeMap;

use figment::{
    value::{Dict, Map},
    Error, Metadata, Profile, Provider,
};

/// The variables that name a setting, by setting: (variable, value).
pub struct EnvVars(BTreeMap<String, (String, String)>);

impl EnvVars {
    /// This process's variables.
    pub fn of_process() -> EnvVars {
        EnvVars::new(std::env::vars_os().map(|(k, v)| (k.to_string_lossy().into_owned(), v.to_string_lossy().into_owned())))
    }

    /// The variables among `vars` that name one of `keys`: `SHOPMESH_` (in any case) and the
    /// key, or the key and `_SECS`. Where both names of a setting are set, the newer wins.
    pub fn new(vars: impl IntoIterator<Item = (String, String)>) -> EnvVars {
        let mut named = BTreeMap::new();
        let mut older = BTreeMap::new();
        for (var, value) in vars {
            let lower = var.trim().to_ascii_lowercase();
            let Some(key) = lower.strip_prefix("shopmesh_") else { continue };
            let (key, into) = match key.strip_suffix("_secs") {
                Some(key) => (key, &mut older),
                None => (key, &mut named),
            };
            if super::Settings::KEYS.contains(&key) {
                into.insert(key.to_owned(), (var, value));
            }
        }
        older.extend(named);
        EnvVars(older)
    }
}

impl Provider for EnvVars {
    /// Named so that a message says ` in environment variable SHOPMESH_RELAY_POLL`.
    fn metadata(&self) -> Metadata {
        let vars: BTreeMap<String, String> = self.0.iter().map(|(key, (var, _))| (key.clone(), var.clone())).collect();
        Metadata::named("environment").interpolater(move |_: &Profile, keys: &[&str]| {
            // The setting is the first key; any after it are inside its value (plugin_config.points.x).
            let key = keys.first().copied().unwrap_or_default();
            vars.get(key).cloned().unwrap_or_else(|| format!("SHOPMESH_{}", key.to_ascii_uppercase()))
        })
    }

    /// Each value as figment's `Env` reads it (`2` a number, `true` a bool, else a string).
    fn data(&self) -> Result<Map<Profile, Dict>, Error> {
        let dict = self.0.iter().map(|(key, (_, value))| (key.clone(), value.parse::<figment::value::Value>().expect("infallible"))).collect();
        Ok(Profile::Default.collect(dict))
    }
}
