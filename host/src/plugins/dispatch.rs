//! Dispatch: one event through one given plugin version, on a given snapshot, to the effects
//! it would apply, each already checked against the plugin's capabilities and the event.
//! Nothing here touches the database, so the live consumer ([`super::host`]) and replay
//! call the same function: what a dry-run shows is what the live path would apply.

use std::{collections::HashMap, fmt, sync::Arc};

use super::{
    delivery::Delivery,
    effects::{self, ApplyError, Refusal},
    reads::Snapshot,
    runtime::{Effect, InvokeError, LoadedPlugin, PluginError, Runtime},
};

/// Why an event did not produce applicable effects.
#[derive(Debug)]
pub enum Failure {
    /// The plugin refused the event (its `invalid-event`): this version never will.
    Refused(String),
    /// The plugin said it cannot handle the event now (its `unavailable`).
    Unavailable(String),
    /// The guest trapped (a panic, or a limit: fuel, deadline, memory) or did not instantiate.
    Invoke(InvokeError),
    /// An effect broke a rule: capability, event, or give-back fence.
    Rejected(Refusal),
    /// The database failed (the snapshot or the transaction).
    Db(sqlx::Error),
}

impl Failure {
    /// Retrying cannot help: dead-letter at once.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Failure::Refused(_))
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Refused(why) => write!(f, "plugin refused the event: {why}"),
            Failure::Unavailable(why) => write!(f, "plugin unavailable: {why}"),
            Failure::Invoke(e) => write!(f, "{e}"),
            Failure::Rejected(r) => write!(f, "effect rejected: {r}"),
            Failure::Db(e) => write!(f, "database: {e}"),
        }
    }
}

impl From<ApplyError> for Failure {
    fn from(e: ApplyError) -> Failure {
        match e {
            ApplyError::Rejected(r) => Failure::Rejected(r),
            ApplyError::Db(e) => Failure::Db(e),
        }
    }
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Failure {
        Failure::Db(e)
    }
}

/// Runs `d` through `plugin` on `snapshot` and checks every effect it returns. The guest
/// runs on this thread for at most its deadline.
pub fn run(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    d: &Delivery,
    snapshot: Snapshot,
    config: Arc<HashMap<String, String>>,
) -> Result<Vec<Effect>, Failure> {
    let effects = match runtime.invoke(plugin, &d.to_wit(), snapshot, config) {
        Ok(Ok(effects)) => effects,
        Ok(Err(PluginError::InvalidEvent(why))) => return Err(Failure::Refused(why)),
        Ok(Err(PluginError::Unavailable(why))) => return Err(Failure::Unavailable(why)),
        Err(e) => return Err(Failure::Invoke(e)),
    };
    for effect in &effects {
        effects::validate(plugin, d, effect).map_err(Failure::Rejected)?;
    }
    Ok(effects)
}
