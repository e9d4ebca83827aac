//! Dispatch: one event through one given plugin version, on a given snapshot, to the effects
//! it would apply, each already checked against the plugin's capabilities and the event.
//! Nothing here touches the database, so the live consumer ([`super::host`]) and replay
//! call the same function: what a dry-run shows is what the live path would apply.

use std::{collections::HashMap, fmt, future::Future, sync::Arc};

use super::{
    delivery::Delivery,
    effects::{self, ApplyError, Refusal},
    reads::{Parts, Snapshot},
    runtime::{Capability, Effect, InvokeError, LoadedPlugin, PluginError, Runtime, Seen},
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

/// What the operator sets for a plugin's name, read once per batch: its configuration values
/// (handed to the guest) and its grant. Every effect is checked against the grant as it is
/// when its batch runs, not as it was when the version loaded, so a revoked capability stops
/// with the next batch.
pub struct Terms {
    pub config: Arc<HashMap<String, String>>,
    pub granted: Vec<Capability>,
}

impl Failure {
    /// Retrying cannot help: dead-letter at once.
    pub fn is_permanent(&self) -> bool {
        matches!(self, Failure::Refused(_) | Failure::Rejected(Refusal::NotWritten { .. }))
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

/// One event's run: what it produced, the snapshot it ran on, and the parts of that
/// snapshot that had to be fetched because the first snapshot did not hold them.
pub struct Ran {
    pub result: Result<Vec<Effect>, Failure>,
    pub snapshot: Snapshot,
    pub filled: Parts,
    /// What the last run read and used (fuel, time).
    pub seen: Seen,
}

/// Runs each event on its snapshot and checks every effect. An event whose run read a part
/// its snapshot did not hold runs again with that part fetched by `more` (a plugin is a
/// pure function of its inputs, so that is the run it would have had); the version learns
/// to have it fetched next time. The guests run on `threads` threads of this call, each for
/// at most its deadline.
pub async fn run_all<'a, F, Fut>(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    events: &[&'a Delivery],
    snapshots: Vec<Snapshot>,
    terms: &Terms,
    threads: usize,
    more: F,
) -> Vec<Ran>
where
    F: Fn(Vec<&'a Delivery>, Parts) -> Fut,
    Fut: Future<Output = Result<Vec<Snapshot>, sqlx::Error>>,
{
    let mut done: Vec<Option<Ran>> = events.iter().map(|_| None).collect();
    let mut todo: Vec<(usize, Snapshot, Parts)> = snapshots.into_iter().enumerate().map(|(i, s)| (i, s, Parts::NONE)).collect();
    // A run that reads a part it misses goes again with that part fetched; only then can it
    // read the next one (a guest reads the user of the order it read), so there may be a
    // round per part. Every round adds at least one part to each snapshot it reruns, and an
    // event whose misses are all held already is done: the loop ends within a round per part.
    while !todo.is_empty() {
        let ran = tokio::task::block_in_place(|| run_on_threads(runtime, plugin, events, todo, terms, threads));
        let mut again = Vec::new();
        for (i, result, seen, snapshot, filled) in ran {
            plugin.learn(seen.used);
            if snapshot.held.contains(seen.missed) {
                done[i] = Some(Ran { result, snapshot, filled, seen });
            } else {
                again.push((i, snapshot, filled.with(seen.missed), seen));
            }
        }
        if again.is_empty() {
            break;
        }
        let parts = again.iter().fold(Parts::NONE, |p, (_, _, _, seen)| p.with(seen.missed));
        match more(again.iter().map(|(i, ..)| events[*i]).collect(), parts).await {
            Ok(fetched) => {
                todo = again.into_iter().zip(fetched).map(|((i, snapshot, filled, _), more)| (i, snapshot.fill(more, parts), filled)).collect();
            }
            Err(e) => {
                for (i, snapshot, filled, seen) in again {
                    done[i] = Some(Ran { result: Err(Failure::Db(crate::store::copied(&e))), snapshot, filled, seen });
                }
                todo = Vec::new();
            }
        }
    }
    done.into_iter().map(|r| r.expect("every event ran")).collect()
}

type Run = (usize, Result<Vec<Effect>, Failure>, Seen, Snapshot, Parts);

fn run_on_threads(runtime: &Runtime, plugin: &LoadedPlugin, events: &[&Delivery], todo: Vec<(usize, Snapshot, Parts)>, terms: &Terms, threads: usize) -> Vec<Run> {
    let run = |part: Vec<(usize, Snapshot, Parts)>| -> Vec<Run> {
        part.into_iter()
            .map(|(i, snapshot, filled)| {
                let mut seen = Seen::default();
                let result = run(runtime, plugin, events[i], snapshot.clone(), terms, &mut seen);
                (i, result, seen, snapshot, filled)
            })
            .collect()
    };
    if threads < 2 || todo.len() < 2 {
        return run(todo);
    }
    let mut todo = todo;
    let rest = todo.split_off(todo.len().div_ceil(2));
    std::thread::scope(|scope| {
        let other = scope.spawn(|| run(rest));
        let mut out = run(todo);
        out.extend(other.join().expect("a plugin worker thread panicked"));
        out
    })
}

/// Runs `d` through `plugin` on `snapshot` and checks every effect it returns. The guest
/// runs on this thread for at most its deadline; `seen` says what it read.
pub fn run(
    runtime: &Runtime,
    plugin: &LoadedPlugin,
    d: &Delivery,
    snapshot: Snapshot,
    terms: &Terms,
    seen: &mut Seen,
) -> Result<Vec<Effect>, Failure> {
    let (start, started) = (std::time::Instant::now(), std::time::SystemTime::now());
    let handled = runtime.invoke(plugin, &d.to_wit(), snapshot, terms.config.clone(), seen);
    seen.took = start.elapsed();
    seen.started = Some(started);
    let effects = match handled {
        Ok(Ok(effects)) => effects,
        Ok(Err(PluginError::InvalidEvent(why))) => return Err(Failure::Refused(why)),
        Ok(Err(PluginError::Unavailable(why))) => return Err(Failure::Unavailable(why)),
        Err(e) => return Err(Failure::Invoke(e)),
    };
    effects::validate(plugin, &terms.granted, d, &effects).map_err(Failure::Rejected)?;
    Ok(effects)
}
