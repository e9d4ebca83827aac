//! The WebAssembly side: one [`Engine`] and [`Linker`] for all plugins; each plugin version
//! compiled once into a [`LoadedPlugin`] (its `PluginPre`); a fresh [`Store`] per
//! invocation with a memory cap, fuel and an epoch deadline, so a plugin can neither hold
//! memory, nor spin, nor outlive its event. Traps are returned as errors, never panics.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, AtomicU8, Ordering},
        Arc,
    },
    time::Duration,
};

use sha2::{Digest, Sha256};
use wasmtime::{
    component::{Component, HasSelf, Linker},
    Config, Enabled, Engine, InstanceAllocationStrategy, PoolingAllocationConfig, Store, StoreLimitsBuilder,
};

pub use super::invocation::Seen;
use super::{
    invocation::Invocation,
    reads::{Parts, Snapshot},
    subjects,
};

// The contract's types, re-exported: what a plugin returns and reads is part of the runtime's API.
pub use super::wit::{
    capability_name, capability_named, capability_names, shop, AddPoints, AppendLog, Capability, Coupon, Effect, Event, Goods, LogKind, LogLevel, Manifest, Order, OrderCancelled,
    OrderConfirmed, PaySucceeded, Payload, Plugin, PluginError, PluginPre, RefundBalance, ReleaseCoupon, RestoreStock, Step,
    StepAction, StepRecord, User, CAPABILITIES,
};

/// The only interfaces a plugin may import. Anything else (WASI files, sockets, clocks,
/// environment) is refused at load, before the component ever runs.
const ALLOWED_IMPORTS: [&str; 2] = ["shop:plugin/types@0.1.0", "shop:plugin/host@0.1.0"];

/// Instances the pooling allocator keeps ready (an instantiation beyond that waits for none:
/// it fails and is retried like any other failed attempt).
const POOL_INSTANCES: u32 = 64;

/// How much of an instance's memory is reset in place between instances.
const KEEP_RESIDENT: usize = 1 << 20;

/// How often the epoch ticks: the unit of the invocation deadline.
const EPOCH_TICK: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub struct Limits {
    /// Linear memory a plugin instance may grow to. The five shop plugins use well under
    /// 1 MiB; 16 MiB leaves room for real business logic and still bounds a runaway.
    pub memory_bytes: usize,
    /// Wasm instructions per invocation (roughly). A give-back takes a few thousand.
    pub fuel: u64,
    /// Wall-clock bound of one invocation, enforced by epoch interruption.
    pub deadline: Duration,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits { memory_bytes: 16 << 20, fuel: 50_000_000, deadline: Duration::from_millis(500) }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("not a valid WebAssembly component: {0}")]
    Compile(String),
    #[error("imports {0:?}, but a plugin may import only shop:plugin/host")]
    ForbiddenImport(String),
    #[error("does not implement the shop:plugin/plugin world: {0}")]
    World(String),
    #[error("manifest() failed: {0}")]
    Manifest(String),
    #[error("manifest name {found:?} does not match the plugin name {expected:?}")]
    NameMismatch { expected: String, found: String },
    /// Why the name cannot name a plugin ([`super::name_refusal`]).
    #[error("{0}")]
    BadName(String),
    #[error("manifest version {0:?}: a version is 1 to 64 letters, digits, '.', '-', '+' and '_'")]
    BadVersion(String),
    /// Most often a grant not given yet: it says what the name holds.
    #[error("declares capability {}, which is not granted to {plugin} (granted: {})", capability_name(*.capability), capability_names(.granted))]
    CapabilityNotAllowed { capability: Capability, plugin: String, granted: Vec<Capability> },
    #[error("subjects {subjects:?}: {why}")]
    Subjects { subjects: Vec<String>, why: String },
    #[error(transparent)]
    Config(#[from] super::config::ConfigRefusal),
}

#[derive(Debug, thiserror::Error)]
pub enum InvokeError {
    #[error("instantiation failed: {0}")]
    Instantiate(String),
    /// The guest trapped: a panic, running out of fuel or time, growing past its memory cap.
    #[error("trapped: {0}")]
    Trap(String),
}

/// What a plugin's handler returns: the host's view (trap, instantiation) outside, the
/// plugin's own answer inside.
pub type Handled = Result<Result<Vec<Effect>, PluginError>, InvokeError>;

/// What runs a plugin version's `handle`. In the product that is always a compiled
/// component ([`Runtime::load`]); the benchmark implements it with the same rule crates
/// compiled natively, to measure what the sandbox costs on the same path.
pub trait Handler: Send + Sync {
    fn handle(&self, runtime: &Runtime, plugin: &str, event: &Event, reads: Snapshot, config: Arc<HashMap<String, String>>, seen: &mut Seen) -> Handled;
}

/// A compiled component, instantiated afresh for every event.
struct Compiled(PluginPre<Invocation>);

impl Handler for Compiled {
    fn handle(&self, runtime: &Runtime, plugin: &str, event: &Event, reads: Snapshot, config: Arc<HashMap<String, String>>, seen: &mut Seen) -> Handled {
        let mut store = runtime.store(plugin, reads, config);
        let instance = self.0.instantiate(&mut store).map_err(|e| InvokeError::Instantiate(format!("{e:#}")))?;
        let handled = instance.call_handle(&mut store, event);
        let handled = handled.map_err(|e| InvokeError::Trap(store.data().trap_reason(&e)));
        *seen = store.data().seen;
        store.data().say_logs(&event.id);
        seen.fuel = runtime.limits.fuel.saturating_sub(store.get_fuel().unwrap_or(0));
        handled
    }
}

/// One compiled, validated version of a plugin.
pub struct LoadedPlugin {
    pub name: String,
    pub manifest: Manifest,
    /// Hex sha256 of the component bytes: which build produced an effect.
    pub sha256: String,
    /// The component itself, to hand to other hosts (None for a benchmark's native handler).
    pub bytes: Option<Arc<[u8]>>,
    handler: Box<dyn Handler>,
    /// The parts of a snapshot this version has been seen to read (see [`super::reads`]).
    reads: AtomicU8,
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl LoadedPlugin {
    /// A plugin version run by `handler` instead of a component (the benchmark's native
    /// baseline); it declares `manifest` and goes through every check a component does.
    pub fn with_handler(manifest: Manifest, handler: Box<dyn Handler>) -> LoadedPlugin {
        LoadedPlugin { name: manifest.name.clone(), manifest, sha256: "native".into(), bytes: None, handler, reads: AtomicU8::new(0) }
    }

    pub fn version(&self) -> &str {
        &self.manifest.version
    }

    pub fn subjects(&self) -> &[String] {
        &self.manifest.subjects
    }

    /// The parts of a snapshot to fetch for this version: those it was seen to read.
    pub fn reads(&self) -> Parts {
        Parts(self.reads.load(Ordering::Relaxed))
    }

    /// Widens [`reads`](Self::reads) by what an invocation used.
    pub fn learn(&self, used: Parts) {
        self.reads.fetch_or(used.0, Ordering::Relaxed);
    }
}

pub struct Runtime {
    engine: Engine,
    linker: Linker<Invocation>,
    limits: Limits,
    ticker_stop: Arc<AtomicBool>,
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

impl Runtime {
    pub fn new(limits: Limits) -> anyhow::Result<Runtime> {
        let mut config = Config::new();
        config.consume_fuel(true).epoch_interruption(true);
        // A fresh instance per event is the sandbox's rule (no state carries from one event
        // to the next); the pooling allocator makes that cheap by reusing pre-reserved slots.
        // Few invocations run at once (one per plugin consumer, two per replay), so a small
        // pool suffices; a memory can never grow past the per-invocation cap anyway.
        let mut pool = PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_INSTANCES)
            .total_core_instances(POOL_INSTANCES * 4)
            .total_memories(POOL_INSTANCES * 2)
            .total_tables(POOL_INSTANCES * 2)
            .max_memory_size(limits.memory_bytes)
            // Reset a slot's first pages (and tables) by overwriting them rather than handing
            // them back to the kernel (a system call per instance cost more than the plugin),
            // and only the pages the instance wrote where the kernel can say (Linux 6.7+).
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(KEEP_RESIDENT)
            .pagemap_scan(Enabled::Auto);
        config
            .allocation_strategy(InstanceAllocationStrategy::Pooling(pool))
            .memory_reservation(limits.memory_bytes.next_power_of_two() as u64)
            .memory_guard_size(64 << 10);
        let engine = Engine::new(&config)?;
        let mut linker = Linker::new(&engine);
        Plugin::add_to_linker::<_, HasSelf<_>>(&mut linker, |state: &mut Invocation| state)?;

        // The epoch clock behind every deadline; stops when the runtime is dropped.
        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (stop, ticking) = (ticker_stop.clone(), engine.clone());
        std::thread::Builder::new().name("wasm-epoch".into()).spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(EPOCH_TICK);
                ticking.increment_epoch();
            }
        })?;
        Ok(Runtime { engine, linker, limits, ticker_stop })
    }

    /// Compiles and validates a candidate for plugin `name`, which may hold the capabilities
    /// `granted`; nothing about it runs unless it passes.
    pub fn load(&self, name: &str, bytes: &[u8], granted: &[Capability]) -> Result<LoadedPlugin, LoadError> {
        self.load_with(Some(name), bytes, |_| granted.to_vec())
    }

    /// [`load`](Self::load) under the name the component's manifest declares, granted what
    /// `grants_of` gives that name (the offline tools, which know no name beforehand).
    pub fn load_declared(&self, bytes: &[u8], grants_of: impl FnOnce(&str) -> Vec<Capability>) -> Result<LoadedPlugin, LoadError> {
        self.load_with(None, bytes, grants_of)
    }

    fn load_with(&self, expected: Option<&str>, bytes: &[u8], grants_of: impl FnOnce(&str) -> Vec<Capability>) -> Result<LoadedPlugin, LoadError> {
        let component = Component::new(&self.engine, bytes).map_err(|e| LoadError::Compile(format!("{e:#}").split_whitespace().collect::<Vec<_>>().join(" ")))?; // one line: the parser spreads byte arrays over lines
        for (import, _) in component.component_type().imports(&self.engine) {
            if !ALLOWED_IMPORTS.contains(&import) {
                return Err(LoadError::ForbiddenImport(import.to_owned()));
            }
        }
        let instance_pre = self.linker.instantiate_pre(&component).map_err(|e| LoadError::World(format!("{e:#}")))?;
        let pre = PluginPre::new(instance_pre).map_err(|e| LoadError::World(format!("{e:#}")))?;

        let mut store = self.store(expected.unwrap_or("(candidate)"), Snapshot::default(), Arc::default());
        let manifest = pre
            .instantiate(&mut store)
            .and_then(|p| p.call_manifest(&mut store))
            .map_err(|e| LoadError::Manifest(format!("{e:#}")))?;
        if let Some(name) = expected.filter(|name| *name != manifest.name) {
            return Err(LoadError::NameMismatch { expected: name.into(), found: manifest.name });
        }
        if let Some(why) = super::name_refusal(&manifest.name) {
            return Err(LoadError::BadName(format!("manifest name: {why}")));
        }
        let granted = grants_of(&manifest.name);
        if let Some(c) = manifest.capabilities.iter().find(|c| !granted.contains(c)) {
            return Err(LoadError::CapabilityNotAllowed { capability: *c, plugin: manifest.name, granted });
        }
        if let Some(why) = subjects::refusal(&manifest.subjects) {
            return Err(LoadError::Subjects { subjects: manifest.subjects, why });
        }
        Ok(LoadedPlugin {
            name: manifest.name.clone(),
            manifest,
            sha256: sha256_hex(bytes),
            bytes: Some(bytes.into()),
            handler: Box::new(Compiled(pre)),
            reads: AtomicU8::new(0),
        })
    }

    /// Runs `handle(event)` in a fresh store. The outer error is the host's view (trap,
    /// instantiation); the inner one is what the plugin itself returned.
    pub fn invoke(
        &self,
        plugin: &LoadedPlugin,
        event: &Event,
        reads: Snapshot,
        config: Arc<HashMap<String, String>>,
        seen: &mut Seen,
    ) -> Handled {
        plugin.handler.handle(self, &plugin.name, event, reads, config, seen)
    }

    fn store(&self, plugin: &str, reads: Snapshot, config: Arc<HashMap<String, String>>) -> Store<Invocation> {
        let limits = StoreLimitsBuilder::new()
            .memory_size(self.limits.memory_bytes)
            // A component is several core instances (its module plus adapter shims); this
            // bounds instance count without getting in the way of a real component.
            .instances(16)
            .trap_on_grow_failure(true)
            .build();
        let mut store = Store::new(&self.engine, Invocation::new(plugin, reads, config, limits));
        store.limiter(|state| &mut state.limits);
        store.set_fuel(self.limits.fuel).expect("fuel is enabled");
        let ticks = (self.limits.deadline.as_millis() / EPOCH_TICK.as_millis()).max(1) as u64;
        store.set_epoch_deadline(ticks);
        store
    }
}
