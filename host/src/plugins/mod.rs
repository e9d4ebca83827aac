//! The plugin host: WebAssembly plugins that do what must happen because of an event.
//!
//! Where an event goes, one file per hop:
//!
//! | file | job |
//! |---|---|
//! | [`consumer`] | one durable JetStream pull consumer per plugin, and the guard; acks per [`Disposition`] |
//! | [`start`] | where a plugin's consumer begins: the next event for a plugin added to a running shop |
//! | [`host`] | [`PluginHost`]: the live path of a batch of deliveries |
//! | [`failures`] | a failed event: attempts recorded, retry with backoff, dead-lettering, the guard, redrive |
//! | [`delivery`] | parsing and checking a message before any plugin sees it |
//! | [`inbox`] | `trade_mq_consumer_log`: applied once per (plugin, event), failed attempts |
//! | [`reads`] | the snapshot a plugin reads from |
//! | [`dispatch`] | one event through one plugin version → checked effects (live and replay) |
//! | [`runtime`] | wasmtime: engine, limits, loading and invoking components |
//! | [`invocation`] | what a guest may ask while it runs (its snapshot, config, `log`), and why it trapped |
//! | [`subjects`] | the subjects a version may ask for: a filter its consumer can bind |
//! | [`wit`] | the plugin contract as Rust types (wasmtime's bindgen of `wit/`), capabilities' names |
//! | [`effects`] | checking effects against capabilities and the event; handing them to the shop |
//! | [`grants`] | which capabilities each plugin name may hold |
//! | [`config`] | each plugin's configuration values, checked against a version's config schema |
//! | [`dead_letters`] | `shop_dead_letter`: what could not be handled, and redrive results |
//! | [`registry`] | versions: offer, stage, keep, activate, distribute |
//! | [`status`] | what the registry tells an operator: state, versions, recent rates |
//! | [`fleet`], [`folder`] | new versions from the fleet's registry and the watched folder |
//! | [`arrivals`] | what becomes of a version that arrives from either, and the fleet's versions refused here |
//! | [`watching`] | the fleet's buckets watched for ever: again after an outage, or a bucket made anew |

pub mod arrivals;
pub mod config;
pub mod consumer;
pub mod dead_letters;
pub mod delivery;
pub mod dispatch;
pub mod effects;
pub mod failures;
pub mod fleet;
pub mod folder;
pub mod grants;
pub mod host;
pub mod inbox;
mod invocation;
pub mod reads;
pub mod registry;
pub mod runtime;
pub mod start;
pub mod status;
pub mod watching;
pub mod subjects;
pub mod wit;

use std::time::Duration;

pub use self::{
    host::PluginHost,
    registry::{InstallError, Installed, Registry},
    status::PluginStatus,
};

/// Where a version arrived from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// This host's plugins folder (`SHOPMESH_PLUGINS_DIR`).
    Folder,
    /// The fleet's registry, which uploads and rollbacks go through.
    Fleet,
}

impl Source {
    fn said(self) -> &'static str {
        match self {
            Source::Folder => "the plugins folder",
            Source::Fleet => "the fleet registry",
        }
    }
}

/// The guard consumer's name, also what its dead letters are filed under.
pub const GUARD: &str = "shopmesh-guard";

/// The durable JetStream consumer of plugin `plugin` (shared by every host).
pub fn durable_name(plugin: &str) -> String {
    format!("plugin-{plugin}")
}

/// Why `name` cannot name a plugin, if it cannot. A name becomes a durable consumer's
/// ([`durable_name`]: no dots, spaces or wildcards), an object of the fleet's registry and a
/// segment of the admin API's paths, so it keeps to what all three take; and the guard's
/// name is taken (its consumer and dead letters are filed under it). Checked wherever a name
/// comes in: a loaded component's manifest, the grants API, `shopmesh plugin new`.
pub fn name_refusal(name: &str) -> Option<String> {
    if name.is_empty() || name.len() > 64 || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
        return Some(format!("a plugin name is 1 to 64 letters, digits, dashes and underscores: {name:?}"));
    }
    (name == GUARD).then(|| format!("{GUARD:?} is the host's own guard, not a plugin name"))
}

/// Whether `version` can be a new upload's version: it is a command line's argument
/// (`plugin activate NAME VERSION`, `replay --version`), the key of its kept builds, and what
/// the inbox records, so it keeps to semantic versioning's characters.
pub fn is_version(version: &str) -> bool {
    (1..=64).contains(&version.len()) && version.bytes().all(|b| b.is_ascii_alphanumeric() || b"-.+_".contains(&b))
}

#[derive(Debug, Clone)]
pub struct DeliverySettings {
    /// Attempts before an event is dead-lettered.
    pub max_attempts: i64,
    /// The most deliveries a consumer takes at once (run together, committed together).
    pub batch: usize,
    /// Delay before the second attempt; doubles each time, up to `max_delay`.
    pub base_delay: Duration,
    pub max_delay: Duration,
    /// How long JetStream waits for an ack before redelivering to another host. Must be
    /// far above an invocation's deadline plus a transaction: only a dead host's messages
    /// should come back this way.
    pub ack_wait: Duration,
}

/// What to tell JetStream about a delivery.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Disposition {
    /// Done (applied now, applied before, or nothing to do).
    Ack,
    /// Failed; deliver again after the delay.
    Retry(Duration),
    /// Stored in the dead-letter store; never deliver again.
    DeadLettered,
    /// The version running here does not read its subject. The consumer decides from the
    /// shared consumer's filter as the server holds it: a filter that reads it was bound by a
    /// version that does (elsewhere, or here a moment ago), and it is handed back after the
    /// delay; one that does not means no version bound reads it any more (a rollback to one
    /// that reads less), and it is done, unhandled. (A host that runs another version than
    /// the fleet's sets the filter when it binds: see the README on keeping a fleet on one.)
    NotRead(Duration),
}
