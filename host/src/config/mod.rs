//! Configuration, layered with `figment`: defaults, then a TOML file (`--config FILE` or
//! `SHOPMESH_CONFIG`), then `SHOPMESH_<KEY>` environment variables (e.g. `SHOPMESH_HTTP_ADDR`).
//! Durations are human (`500ms`, `2s`, `1m30s`) or plain seconds (`0.5`); the older
//! `…_secs` names still work. Secrets are `secrecy` strings, so they never print.

use std::{collections::HashMap, net::SocketAddr, path::PathBuf, time::Duration};

use figment::{
    providers::{Format, Toml},
    Figment, Profile,
};
use secrecy::SecretString;
use serde::{de, Deserialize, Deserializer};

use crate::{shop::fault::Fault, store::SqliteSync};

mod env;
mod errors;
mod validate;
use env::EnvVars;
pub use errors::ConfigError;

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
    /// SQLite only: `full` (default: every commit survives a power cut) or `normal` (faster;
    /// a power cut can lose the last commits). See [`crate::store::SqliteSync`].
    pub sqlite_synchronous: SqliteSync,
    /// Unset: start a nats-server child process on loopback.
    pub nats_url: Option<String>,
    pub nats_server_bin: Option<PathBuf>,
    /// The NATS server's HTTP monitoring endpoint (e.g. `http://nats:8222`), where the
    /// durability guard reads its fsync setting. The embedded server's is known.
    pub nats_monitor_url: Option<String>,
    /// Refuse to start unless the NATS server fsyncs every acknowledged write
    /// (`sync_interval: always`); otherwise a lazy server is only warned about.
    pub require_sync_always: bool,
    /// An OTLP/HTTP collector (`http://host:4318`) to export spans to; unset: none.
    pub otlp_endpoint: Option<String>,
    /// The largest JSON request body, in bytes (larger: 413 before it is read).
    pub http_body_limit: usize,
    /// The largest plugin component upload, in bytes.
    pub plugin_upload_limit: usize,
    /// Requests in flight at most; more are answered 503 at once.
    pub http_max_in_flight: usize,
    /// How long a request's body may take to arrive; a slower one is answered 408, so a
    /// client that announces a body and sends nothing holds its slot no longer.
    #[serde(deserialize_with = "duration")]
    pub http_body_timeout: Duration,
    /// How long a SIGTERM/SIGINT waits for in-flight work before the process exits anyway.
    #[serde(deserialize_with = "duration")]
    pub shutdown_grace: Duration,
    pub callback_secret: SecretString,
    pub admin_token: SecretString,
    /// Test-only fault injection, e.g. `fail:stock` or `exit:coupon`.
    pub fault: Option<String>,
    /// Distinguishes hosts sharing a database in generated ids (0..1023).
    pub worker_id: u16,
    pub demo_data: bool,
    #[serde(deserialize_with = "duration", alias = "preorder_timeout_secs")]
    pub preorder_timeout: Duration,
    #[serde(deserialize_with = "duration", alias = "sweep_interval_secs")]
    pub sweep_interval: Duration,
    #[serde(deserialize_with = "duration", alias = "duplicate_window_secs")]
    pub duplicate_window: Duration,
    /// How long stream history is kept for replay (0 = forever).
    #[serde(deserialize_with = "duration", alias = "stream_max_age_secs")]
    pub stream_max_age: Duration,
    /// How long rows kept only for a while (published outbox rows, inbox rows, resolved
    /// dead letters, finished replays, idempotency keys) are kept (0 = forever); at least
    /// `stream_max_age` (see [`crate::retention`]).
    #[serde(deserialize_with = "duration")]
    pub retention: Duration,
    /// How often each host looks for rows past `retention`.
    #[serde(deserialize_with = "duration")]
    pub retention_interval: Duration,
    /// Copies of stream SHOP in a NATS cluster (1 for a single server; 3 survives one loss).
    pub stream_replicas: usize,
    pub relay_batch: i64,
    #[serde(deserialize_with = "duration", alias = "relay_lease_secs")]
    pub relay_lease: Duration,
    #[serde(deserialize_with = "duration", alias = "relay_poll_secs")]
    pub relay_poll: Duration,
    /// Folder of plugin components (`<name>.wasm`) loaded at start.
    pub plugins_dir: PathBuf,
    /// Attempts before an event is dead-lettered for a plugin.
    pub plugin_max_attempts: i64,
    /// The most deliveries a plugin consumer runs and commits together.
    pub plugin_batch: usize,
    #[serde(deserialize_with = "duration", alias = "plugin_retry_base_secs")]
    pub plugin_retry_base: Duration,
    #[serde(deserialize_with = "duration", alias = "plugin_retry_max_secs")]
    pub plugin_retry_max: Duration,
    pub plugin_memory_mib: u32,
    pub plugin_fuel: u64,
    #[serde(deserialize_with = "duration", alias = "plugin_deadline_secs")]
    pub plugin_deadline: Duration,
    /// Unacknowledged deliveries (a host died) go to another host after this long.
    #[serde(deserialize_with = "duration", alias = "plugin_ack_wait_secs")]
    pub plugin_ack_wait: Duration,
    /// How often the plugins folder is looked at for new components.
    #[serde(deserialize_with = "duration", alias = "plugin_watch_secs")]
    pub plugin_watch: Duration,
    /// Per-plugin configuration values: `[plugin_config.points] points_per_unit = "2"`, or
    /// `SHOPMESH_PLUGIN_CONFIG="points.points_per_unit=2,log.key=value"`.
    pub plugin_config: PluginConfig,
    /// Grants beyond the built-in ones: `vip-bonus=add-points,other=append-log+add-points`
    /// (an operator's grant through the admin API wins over this).
    pub plugin_grants: Option<String>,
    /// How each setting given was set (`SHOPMESH_RELAY_POLL`, `relay_poll in shopmesh.toml`),
    /// for messages about its value; a default has none.
    #[serde(skip)]
    pub origins: Origins,
}

/// How each setting given was set, by key (see [`Settings::origin`]).
#[derive(Debug, Clone, Default)]
pub struct Origins(HashMap<&'static str, String>);

impl Default for Settings {
    fn default() -> Settings {
        Settings {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 8080)),
            data_dir: PathBuf::from("data"),
            database_url: None,
            db_max_connections: 8,
            sqlite_synchronous: SqliteSync::Full,
            nats_url: None,
            nats_server_bin: None,
            nats_monitor_url: None,
            require_sync_always: false,
            otlp_endpoint: None,
            http_body_limit: 64 * 1024,
            plugin_upload_limit: 8 * 1024 * 1024,
            http_max_in_flight: 1024,
            http_body_timeout: Duration::from_secs(60),
            shutdown_grace: Duration::from_secs(30),
            callback_secret: DEV_CALLBACK_SECRET.into(),
            admin_token: DEV_ADMIN_TOKEN.into(),
            fault: None,
            worker_id: 1,
            demo_data: true,
            preorder_timeout: Duration::from_secs(60),
            sweep_interval: Duration::from_secs(5),
            duplicate_window: Duration::from_secs(120),
            stream_max_age: Duration::from_secs(7 * 24 * 3600),
            retention: Duration::from_secs(30 * 24 * 3600),
            retention_interval: Duration::from_secs(3600),
            stream_replicas: 1,
            relay_batch: 256,
            relay_lease: Duration::from_secs(30),
            relay_poll: Duration::from_millis(500),
            plugins_dir: PathBuf::from("target/plugins"),
            plugin_max_attempts: 5,
            plugin_batch: 256,
            plugin_retry_base: Duration::from_millis(500),
            plugin_retry_max: Duration::from_secs(10),
            plugin_memory_mib: 16,
            plugin_fuel: 50_000_000,
            plugin_deadline: Duration::from_millis(500),
            plugin_ack_wait: Duration::from_secs(30),
            plugin_watch: Duration::from_secs(1),
            plugin_config: PluginConfig::default(),
            plugin_grants: None,
            origins: Origins::default(),
        }
    }
}

/// A duration as a message says it: `1m 30s`, `500ms`.
fn human(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(d)
}

/// A duration as a human string (`500ms`, `2s`, `1h`) or a number of seconds (`0.5`).
fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Human {
        Seconds(f64),
        Text(String),
    }
    match Human::deserialize(d)? {
        Human::Seconds(s) => Duration::try_from_secs_f64(s).map_err(|_| de::Error::custom("a duration must not be negative")),
        Human::Text(t) => match t.trim().parse::<f64>() {
            Ok(s) => Duration::try_from_secs_f64(s).map_err(|_| de::Error::custom("a duration must not be negative")),
            Err(_) => humantime::parse_duration(&t)
                .map_err(|e| de::Error::custom(format!("{t:?} is not a duration like 500ms, 2s or 1m ({e})"))),
        },
    }
}

/// Configuration values handed to plugins, by plugin name: a table in the file, or
/// `plugin.key=value` pairs separated by commas in the environment.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig(pub HashMap<String, HashMap<String, String>>);

impl<'de> Deserialize<'de> for PluginConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<PluginConfig, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Table(HashMap<String, HashMap<String, Scalar>>),
            Pairs(String),
        }
        // A value as TOML writes it (`points_per_unit = 2`); the plugin reads it as text,
        // as it reads SHOPMESH_PLUGIN_CONFIG's.
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Scalar {
            Text(String),
            Integer(i64),
            Float(f64),
            Bool(bool),
        }
        let text = |v: Scalar| match v {
            Scalar::Text(s) => s,
            Scalar::Integer(n) => n.to_string(),
            Scalar::Float(f) => f.to_string(),
            Scalar::Bool(b) => b.to_string(),
        };
        match Form::deserialize(d)? {
            Form::Table(t) => Ok(PluginConfig(t.into_iter().map(|(plugin, keys)| (plugin, keys.into_iter().map(|(k, v)| (k, text(v))).collect())).collect())),
            Form::Pairs(s) => PluginConfig::from_pairs(&s).map_err(de::Error::custom),
        }
    }
}

impl PluginConfig {
    fn from_pairs(s: &str) -> Result<PluginConfig, String> {
        let mut out: HashMap<String, HashMap<String, String>> = HashMap::new();
        for pair in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (path, value) = pair.split_once('=').ok_or_else(|| format!("{pair:?} is not plugin.key=value"))?;
            let (plugin, key) = path.split_once('.').ok_or_else(|| format!("{path:?} is not plugin.key"))?;
            out.entry(plugin.to_owned()).or_default().insert(key.to_owned(), value.to_owned());
        }
        Ok(PluginConfig(out))
    }
}

impl Settings {
    /// Defaults, then `file` (if any), then the environment.
    pub fn load(file: Option<&str>) -> Result<Settings, ConfigError> {
        Settings::read(Settings::figment(file, EnvVars::of_process())).map_err(|e| ConfigError::Load(Box::new(e)))
    }

    /// The settings the layers give, with how each was set.
    fn read(figment: Figment) -> Result<Settings, figment::Error> {
        let mut settings: Settings = figment.extract()?;
        // The file, or the variable the operator set (a duration's older `…_SECS` name, if that one).
        let origin = |key: &str, md: &figment::Metadata| match &md.source {
            Some(file) => format!("{key} in {file}"),
            None => md.interpolate(&Profile::Default, &[key]),
        };
        settings.origins = Origins(Settings::KEYS.iter().filter_map(|key| Some((*key, origin(key, figment.find_metadata(key)?)))).collect());
        Ok(settings)
    }

    /// How `key` was set, to name in a message about its value: `SHOPMESH_PLUGIN_CONFIG`,
    /// `plugin_config in shopmesh.toml`, or the key alone for a default.
    pub fn origin(&self, key: &str) -> String {
        self.origins.0.get(key).cloned().unwrap_or_else(|| key.to_owned())
    }

    /// The layers: the file, then the variables that name a setting (see [`EnvVars`]).
    fn figment(file: Option<&str>, env: EnvVars) -> Figment {
        let mut figment = Figment::new();
        if let Some(path) = file {
            figment = figment.merge(Toml::file_exact(path));
        }
        figment.merge(env)
    }

    /// Every key a setting can be given by (what the environment layer reads).
    const KEYS: &'static [&'static str] = &[
        "http_addr", "data_dir", "database_url", "db_max_connections", "sqlite_synchronous", "nats_url", "nats_server_bin",
        "nats_monitor_url", "require_sync_always", "shutdown_grace", "otlp_endpoint",
        "http_body_limit", "plugin_upload_limit", "http_max_in_flight", "http_body_timeout",
        "callback_secret", "admin_token", "fault", "worker_id", "demo_data", "preorder_timeout",
        "sweep_interval", "duplicate_window", "stream_max_age", "retention", "retention_interval", "stream_replicas", "relay_batch", "relay_lease",
        "relay_poll", "plugins_dir", "plugin_max_attempts", "plugin_batch", "plugin_retry_base", "plugin_retry_max",
        "plugin_memory_mib", "plugin_fuel", "plugin_deadline", "plugin_ack_wait", "plugin_watch",
        "plugin_config", "plugin_grants",
    ];

    pub fn database_url(&self) -> String {
        self.database_url
            .clone()
            .unwrap_or_else(|| format!("sqlite://{}/shopmesh.db", self.data_dir.display()))
    }

    /// The configured grants (see [`crate::plugins::grants`]).
    pub fn plugin_grants(&self) -> Result<HashMap<String, Vec<crate::plugins::runtime::Capability>>, ConfigError> {
        crate::plugins::grants::parse_configured(self.plugin_grants.as_deref().unwrap_or_default()).map_err(ConfigError::Invalid)
    }

    pub fn fault(&self) -> Result<Option<Fault>, ConfigError> {
        self.fault.as_deref().map(str::parse).transpose().map_err(ConfigError::Invalid)
    }
}

#[cfg(test)]
mod tests;
