//! How a configuration mistake is said: in one line, naming the setting and how it was set
//! (the file or the variable), so that it can be found and fixed from the message alone.

use super::Settings;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Said in one line (see [`one_line`]); not its source too, or it would print twice.
    #[error("configuration: {}", one_line(.0))]
    Load(Box<figment::Error>),
    #[error("{0}")]
    Invalid(String),
}

/// A figment error in one line: its first error (the others follow from it), an unknown key
/// with the known one it is closest to instead of the list of all of them, the setting (as
/// the README's table names it: `relay_poll` for `SHOPMESH_RELAY_POLL` too), and the layer.
fn one_line(e: &figment::Error) -> String {
    use figment::error::Kind;
    let what = match &e.kind {
        Kind::UnknownField(found, known) => match known.iter().min_by_key(|k| edits(found, k)).filter(|k| edits(found, k) <= 2) {
            Some(near) => format!("unknown setting `{found}` (did you mean `{near}`?)"),
            None => format!("unknown setting `{found}` (the settings are listed in the README)"),
        },
        kind => kind.to_string(),
    };
    let key = if e.path.is_empty() || matches!(e.kind, Kind::UnknownField(..)) { String::new() } else { format!(" for {}", e.path.join(".")) };
    let layer = e.metadata.as_ref().map(|md| layer(md, e)).unwrap_or_default();
    format!("{what}{key}{layer}").split_whitespace().collect::<Vec<_>>().join(" ")
}

/// Where a value was read: ` in shopmesh.toml (TOML file)`, ` (set by SHOPMESH_RELAY_POLL)`.
fn layer(md: &figment::Metadata, e: &figment::Error) -> String {
    match &md.source {
        Some(source) => format!(" in {source} ({})", md.name),
        None if e.path.is_empty() => format!(" in the {}", md.name),
        None => format!(" (set by {})", md.interpolate(e.profile.as_ref().unwrap_or(&figment::Profile::Default), &e.path)),
    }
}

/// How many single-character edits turn `a` into `b` (Levenshtein).
fn edits(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let next = (row[j + 1] + 1).min(row[j] + 1).min(diagonal + usize::from(ca != *cb));
            diagonal = row[j + 1];
            row[j + 1] = next;
        }
    }
    row[b.len()]
}

impl Settings {
    /// Where a plugin's configuration values come from, or how to give them, for a message
    /// about a value its schema refuses or requires.
    pub fn plugin_config_hint(&self) -> String {
        match self.origins.0.get("plugin_config") {
            Some(origin) => format!("the values come from {origin}"),
            None => "set them with SHOPMESH_PLUGIN_CONFIG, or [plugin_config.<plugin>] in the configuration file".into(),
        }
    }

    /// A value refused: `why`, then where the `keys` it names were set (those not left at
    /// their defaults).
    pub(super) fn invalid(&self, keys: &[&str], why: &str) -> ConfigError {
        let set: Vec<String> = keys.iter().filter(|k| self.origins.0.contains_key(*k)).map(|k| self.origin(k)).collect();
        if set.is_empty() {
            return ConfigError::Invalid(why.into());
        }
        ConfigError::Invalid(format!("{why} (set by {})", set.join("; ")))
    }
}
