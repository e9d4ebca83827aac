//! Configuration: defaults, then a TOML file (`--config FILE` or `SHOPMESH_CONFIG`), then
//! `SHOPMESH_<FIELD>` environment variables (e.g. `SHOPMESH_HTTP_ADDR`). Durations are
//! seconds (fractions allowed). Secrets are wrapped so they never print.

use std::{collections::HashMap, fmt, net::SocketAddr, path::PathBuf, time::Duration};

use serde::Deserialize;

use crate::shop::fault::Fault;

/// A value that must not reach logs: `Debug` and `Display` print `[redacted]`.
#[derive(Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(s: impl Into<String>) -> Secret {
        Secret(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Development defaults: fine on a laptop, refused nowhere, warned about at start.
pub const DEV_CALLBACK_SECRET: &str = "dev-callback-secret";
pub const DEV_ADMIN_TOKEN: &str = "dev-admin-token";

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub http_addr: SocketAddr,
    /// Everything the embedded mode writes (SQLite file, nats-server store) lives here.
    pub data_dir: PathBuf,
    /// `sqlite://…` or `postgres://…`; unset: `sqlite://<data_dir>/shopmesh.db`.
    pub database_url: Option<String>,
    pub db_max_connections: u32,
    /// Unset: start a nats-server child process on loopback.
    pub nats_url: Option<String>,
    pub nats_server_bin: Option<PathBuf>,
    pub callback_secret: Secret,
    pub admin_token: Secret,
    /// Test-only fault injection, e.g. `fail:stock` or `exit:coupon`.
    pub fault: Option<String>,
    /// Distinguishes hosts sharing a database in generated ids (0..1023).
    pub worker_id: u16,
    pub demo_data: bool,
    pub preorder_timeout_secs: f64,
    pub sweep_interval_secs: f64,
    pub duplicate_window_secs: f64,
    pub stream_max_age_secs: f64,
    pub relay_batch: i64,
    pub relay_lease_secs: f64,
    pub relay_poll_secs: f64,
    /// Folder of plugin components (`<name>.wasm`) loaded at start.
    pub plugins_dir: PathBuf,
    /// Attempts before an event is dead-lettered for a plugin.
    pub plugin_max_attempts: i64,
    pub plugin_retry_base_secs: f64,
    pub plugin_retry_max_secs: f64,
    pub plugin_memory_mib: u32,
    pub plugin_fuel: u64,
    pub plugin_deadline_secs: f64,
    /// Unacknowledged deliveries (a host died) go to another host after this long.
    pub plugin_ack_wait_secs: f64,
    /// How often the plugins folder is looked at for new components.
    pub plugin_watch_secs: f64,
    /// Per-plugin configuration values: `[plugin_config.points] points_per_unit = "2"`, or
    /// `SHOPMESH_PLUGIN_CONFIG="points.points_per_unit=2,log.key=value"`.
    pub plugin_config: PluginConfig,
}

/// Configuration values handed to plugins, by plugin name.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(transparent)]
pub struct PluginConfig(pub HashMap<String, HashMap<String, String>>);

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            db_max_connections: 8,
            nats_url: None,
            nats_server_bin: None,
            callback_secret: Secret::new(DEV_CALLBACK_SECRET),
            admin_token: Secret::new(DEV_ADMIN_TOKEN),
            fault: None,
            worker_id: 1,
            demo_data: true,
            preorder_timeout_secs: 60.0,
            sweep_interval_secs: 5.0,
            duplicate_window_secs: 120.0,
            stream_max_age_secs: 7.0 * 24.0 * 3600.0,
            relay_batch: 256,
            relay_lease_secs: 30.0,
            relay_poll_secs: 0.5,
            plugins_dir: PathBuf::from("target/plugins"),
            plugin_max_attempts: 5,
            plugin_retry_base_secs: 0.5,
            plugin_retry_max_secs: 10.0,
            plugin_memory_mib: 16,
            plugin_fuel: 50_000_000,
            plugin_deadline_secs: 0.5,
            plugin_ack_wait_secs: 30.0,
            plugin_watch_secs: 1.0,
            plugin_config: PluginConfig::default(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("config file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("{var}: {message}")]
    Env { var: String, message: String },
    #[error("{0}")]
    Invalid(String),
}

/// A field that can be set from an environment variable's text.
trait FromEnv: Sized {
    fn from_env(s: &str) -> Result<Self, String>;
}

macro_rules! from_env_via_fromstr {
    ($($t:ty),*) => {$(
        impl FromEnv for $t {
            fn from_env(s: &str) -> Result<Self, String> {
                s.parse().map_err(|e| format!("{e}"))
            }
        }
    )*};
}
from_env_via_fromstr!(SocketAddr, PathBuf, u16, u32, u64, i64, f64, bool, String);

impl FromEnv for PluginConfig {
    /// `plugin.key=value` pairs separated by commas.
    fn from_env(s: &str) -> Result<Self, String> {
        let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, value) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not plugin.key=value"))?;
            let (plugin, key) = path.split_once('.').ok_or_else(|| format!("{path:?} is not plugin.key"))?;
            out.entry(plugin.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        }
        Ok(PluginConfig(out))
    }
}

impl FromEnv for Secret {
    fn from_env(s: &str) -> Result<Self, String> {
        Ok(Secret::new(s))
    }
}

impl<T: FromEnv> FromEnv for Option<T> {
    fn from_env(s: &str) -> Result<Self, String> {
        if s.is_empty() {
            Ok(None)
        } else {
            T::from_env(s).map(Some)
        }
    }
}

impl Settings {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&str>) -> Result<Settings, ConfigError> {
        let mut s = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.into(), source })?;
                toml::from_str(&text)
                    .map_err(|e| ConfigError::Parse { path: path.into(), message: e.to_string() })?
            }
            None => Settings::default(),
        };
        s.apply_env(|var| std::env::var(var).ok())?;
        Ok(s)
    }

    fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        macro_rules! overlay {
            ($($field:ident),*) => {$(
                let var = concat!("SHOPMESH_", stringify!($field)).to_ascii_uppercase();
                if let Some(value) = get(&var) {
                    self.$field = FromEnv::from_env(&value)
                        .map_err(|message| ConfigError::Env { var: var.clone(), message })?;
                }
            )*};
        }
        overlay!(
            http_addr, data_dir, database_url, db_max_connections, nats_url, nats_server_bin,
            callback_secret, admin_token, fault, worker_id, demo_data, preorder_timeout_secs,
            sweep_interval_secs, duplicate_window_secs, stream_max_age_secs, relay_batch,
            relay_lease_secs, relay_poll_secs, plugins_dir, plugin_max_attempts,
            plugin_retry_base_secs, plugin_retry_max_secs, plugin_memory_mib, plugin_fuel,
            plugin_deadline_secs, plugin_ack_wait_secs, plugin_watch_secs, plugin_config
        );
        Ok(())
    }

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/shopmesh.db", self.data_dir.display()))
    }

    pub fn fault(&self) -> Result<Option<Fault>, ConfigError> {
        self.fault.as_deref().map(str::parse).transpose().map_err(ConfigError::Invalid)
    }

    pub fn secs(value: f64, name: &str) -> Result<Duration, ConfigError> {
        Duration::try_from_secs_f64(value)
            .map_err(|_| ConfigError::Invalid(format!("{name} must be a non-negative number of seconds")))
    }

    /// Checks that settings which depend on each other agree.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.fault()?;
        if self.worker_id > 1023 {
            return Err(ConfigError::Invalid("worker_id must be 0..=1023".into()));
        }
        if self.relay_lease_secs * 2.0 > self.duplicate_window_secs {
            // A lease that can run out inside the duplicate window is what makes a second
            // relay's re-publish a harmless duplicate (see outbox.rs).
            return Err(ConfigError::Invalid(
                "relay_lease_secs must be at most half of duplicate_window_secs".into(),
            ));
        }
        if self.plugin_ack_wait_secs < self.plugin_deadline_secs * 4.0 {
            return Err(ConfigError::Invalid(
                "plugin_ack_wait_secs must be at least 4 × plugin_deadline_secs, or live deliveries get redelivered".into(),
            ));
        }
        if self.plugin_max_attempts < 1 {
            return Err(ConfigError::Invalid("plugin_max_attempts must be at least 1".into()));
        }
        if self.callback_secret.expose().is_empty() || self.admin_token.expose().is_empty() {
            return Err(ConfigError::Invalid("callback_secret and admin_token must not be empty".into()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_overrides_and_reports_bad_values() {
        let mut s = Settings::default();
        let env = |k: &str| match k {
            "SHOPMESH_HTTP_ADDR" => Some("0.0.0.0:9000".to_string()),
            "SHOPMESH_NATS_URL" => Some("nats://x:4222".to_string()),
            "SHOPMESH_PREORDER_TIMEOUT_SECS" => Some("1.5".to_string()),
            _ => None,
        };
        s.apply_env(env).unwrap();
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.nats_url.as_deref(), Some("nats://x:4222"));
        assert_eq!(s.preorder_timeout_secs, 1.5);

        let bad = |k: &str| (k == "SHOPMESH_WORKER_ID").then(|| "many".to_string());
        let err = Settings::default().apply_env(bad).unwrap_err();
        assert!(err.to_string().contains("SHOPMESH_WORKER_ID"), "{err}");
    }

    #[test]
    fn plugin_config_from_env() {
        let mut s = Settings::default();
        s.apply_env(|k| (k == "SHOPMESH_PLUGIN_CONFIG").then(|| "points.points_per_unit=2, log.x=y".to_string()))
            .unwrap();
        assert_eq!(s.plugin_config.0["points"]["points_per_unit"], "2");
        assert_eq!(s.plugin_config.0["log"]["x"], "y");
        let bad = Settings::default().apply_env(|k| (k == "SHOPMESH_PLUGIN_CONFIG").then(|| "nope".to_string()));
        assert!(bad.is_err());
    }

    #[test]
    fn secrets_do_not_print() {
        let s = Settings { admin_token: Secret::new("hunter2"), ..Settings::default() };
        assert!(!format!("{s:?}").contains("hunter2"));
    }

    #[test]
    fn file_rejects_unknown_keys() {
        assert!(toml::from_str::<Settings>("htp_addr = '1.2.3.4:5'").is_err());
        let s: Settings = toml::from_str("admin_token = 't'\nrelay_batch = 5").unwrap();
        assert_eq!(s.relay_batch, 5);
    }
}
