//! One invocation's side of the plugin world: what a guest may ask the host while it handles
//! an event (its reads snapshot, its configuration, `log`); what it read, in [`Seen`]; its
//! log lines, said once its run stands; and why it trapped, in one line.

use std::{collections::HashMap, sync::Arc};

use wasmtime::StoreLimits;

use super::{
    reads::{Parts, Snapshot},
    wit::{
        shop::{self, plugin::types as wit},
        LogLevel,
    },
};

/// What one invocation read of its snapshot, and what it asked for but the snapshot did
/// not hold (its answer is then not to be trusted: run it again with those parts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Seen {
    pub used: Parts,
    pub missed: Parts,
    /// Fuel the invocation used (0 for a native handler).
    pub fuel: u64,
    /// Time in the handler, instantiation included, and when it started.
    pub took: std::time::Duration,
    pub started: Option<std::time::SystemTime>,
}

impl Seen {
    /// Notes a read of `part`; `false`: the snapshot does not hold it.
    pub fn read(&mut self, held: Parts, part: Parts) -> bool {
        self.used = self.used.with(part);
        if held.contains(part) {
            true
        } else {
            self.missed = self.missed.with(part);
            false
        }
    }
}

/// The most log lines one invocation keeps; a guest logging in a loop is bounded by its
/// fuel, and its lines by this.
const MAX_LOG_LINES: usize = 100;

/// Per-invocation state: the reads snapshot, the plugin's config, and the memory limiter.
pub(super) struct Invocation {
    plugin: String,
    reads: Snapshot,
    config: Arc<HashMap<String, String>>,
    pub(super) limits: StoreLimits,
    pub(super) seen: Seen,
    /// What the guest last logged at error level: an SDK guest's panic message, said
    /// before it traps.
    last_error: Option<String>,
    /// What the guest logged, held until its run is known to stand: a run on a snapshot
    /// that lacked a part it asked for is run again with it (see `dispatch::run_all`), and
    /// what the first run said (an empty goods name, a panic over a row that exists) was
    /// never true.
    logs: Vec<(LogLevel, String)>,
    dropped: usize,
}

impl Invocation {
    pub(super) fn new(plugin: &str, reads: Snapshot, config: Arc<HashMap<String, String>>, limits: StoreLimits) -> Invocation {
        Invocation { plugin: plugin.to_owned(), reads, config, limits, seen: Seen::default(), last_error: None, logs: Vec::new(), dropped: 0 }
    }

    /// Says what the guest logged for `event`, if its run stands: it read nothing its snapshot
    /// lacked.
    pub(super) fn say_logs(&self, event: &str) {
        if !self.seen.missed.is_empty() {
            return;
        }
        let plugin = self.plugin.as_str();
        for (level, message) in &self.logs {
            match level {
                LogLevel::Debug => tracing::debug!(plugin, event, message),
                LogLevel::Info => tracing::info!(plugin, event, message),
                LogLevel::Warn => tracing::warn!(plugin, event, message),
                LogLevel::Error => tracing::error!(plugin, event, message),
            }
        }
        if self.dropped > 0 {
            tracing::warn!(plugin, event, dropped = self.dropped, "the plugin logged more than {MAX_LOG_LINES} lines for one event; the rest were dropped");
        }
    }

    /// Why the invocation trapped, in one line: the limit it hit, the panic message the
    /// guest logged, or the trap (without wasmtime's backtrace of function indices).
    pub(super) fn trap_reason(&self, e: &wasmtime::Error) -> String {
        let last_error = self.last_error.as_deref();
        match e.downcast_ref::<wasmtime::Trap>() {
            Some(wasmtime::Trap::Interrupt) => "deadline exceeded (epoch interruption)".into(),
            Some(wasmtime::Trap::OutOfFuel) => "fuel exhausted".into(),
            Some(wasmtime::Trap::UnreachableCodeReached) if last_error.is_some_and(|m| m.starts_with("panicked")) => {
                last_error.unwrap_or_default().to_owned()
            }
            Some(trap) => trap.to_string(),
            // The cause alone: the context wasmtime adds is its backtrace of function indices.
            None if format!("{e:#}").contains("memory") => format!("memory limit: {}", e.root_cause()),
            None => e.root_cause().to_string(),
        }
    }
}

impl wit::Host for Invocation {}

impl shop::plugin::host::Host for Invocation {
    fn get_order(&mut self, order_id: wit::Id) -> Option<wit::Order> {
        self.seen.read(self.reads.held, Parts::ORDER).then(|| self.reads.order.clone().filter(|o| o.order_id == order_id)).flatten()
    }

    fn get_goods(&mut self, goods_id: wit::Id) -> Option<wit::Goods> {
        self.seen.read(self.reads.held, Parts::GOODS).then(|| self.reads.goods.clone().filter(|g| g.goods_id == goods_id)).flatten()
    }

    fn get_user(&mut self, user_id: wit::Id) -> Option<wit::User> {
        self.seen.read(self.reads.held, Parts::USER).then(|| self.reads.user.clone().filter(|u| u.user_id == user_id)).flatten()
    }

    fn get_coupon(&mut self, coupon_id: wit::Id) -> Option<wit::Coupon> {
        self.seen.read(self.reads.held, Parts::COUPON).then(|| self.reads.coupon.clone().filter(|c| c.coupon_id == coupon_id)).flatten()
    }

    fn order_steps(&mut self, order_id: wit::Id) -> Vec<wit::StepRecord> {
        if self.seen.read(self.reads.held, Parts::STEPS) && self.reads.order_id == Some(order_id) {
            self.reads.steps.clone()
        } else {
            Vec::new()
        }
    }

    fn config(&mut self, key: String) -> Option<String> {
        self.config.get(&key).cloned()
    }

    fn log(&mut self, level: LogLevel, message: String) {
        // A guest's text is not trusted: bounded, and logged as a value, not a format.
        let message: String = message.chars().take(1000).map(|c| if c.is_control() { ' ' } else { c }).collect();
        if matches!(level, LogLevel::Error) {
            self.last_error = Some(message.clone());
        }
        if self.logs.len() < MAX_LOG_LINES {
            self.logs.push((level, message));
        } else {
            self.dropped += 1;
        }
    }
}
