//! The guest SDK: what every shopmesh plugin shares, so a plugin is only its rule.
//!
//! A plugin is a WebAssembly component of the `shop:plugin@0.1.0` world (`wit/plugin.wit`).
//! The host hands it one event at a time (an order cancelled, confirmed, or paid) with
//! read-only access to the shop, and applies the *effects* it returns: the plugin never
//! writes anything itself. `shopmesh plugin new NAME --on SUBJECT --cap CAPABILITY` writes a
//! crate on this SDK; `shopmesh plugin build` makes the component (see the README, "Write a
//! plugin").
//!
//! ```ignore
//! use shopmesh_guest::*;
//!
//! plugin! {
//!     pub struct StockRule = "stock" @ "1.0.0", on ["shop.order.cancel"], may [RestoreStock];
//!     fn handle(event, reads) {
//!         give_back(event, reads, Step::Stock, |c, quantity| {
//!             Effect::RestoreStock(RestoreStock { order_id: c.order_id, goods_id: c.goods_id, quantity })
//!         })
//!     }
//! }
//! ```
//!
//! The `plugin!` line is the manifest the host checks before it runs a version: the name
//! (it must be the name the plugin is uploaded under), the version (each upload a new one;
//! `env!("CARGO_PKG_VERSION")` keeps it in Cargo.toml alone, as `shopmesh plugin new` writes it),
//! the subjects it handles, and the capabilities it may use. A capability must also be
//! *granted* to the name by the operator (`PUT /api/admin/plugins/{name}/grants`).
//!
//! # Events
//!
//! [`Event`] carries the CloudEvent's id, subject and time and a [`Payload`]: an
//! [`OrderCancelled`] (`shop.order.cancel`: what the order took, to give back), an
//! [`OrderConfirmed`] (`shop.order.confirmed`) or a [`PaySucceeded`] (`shop.pay.success`).
//! Money is [`Cents`] (exact integers), ids are [`Id`]s.
//!
//! # Effects, one example each
//!
//! Each effect needs its capability, and the host checks its values against the event (the
//! event's own order, user, goods and coupon; no more than the order took):
//!
//! ```
//! use shopmesh_guest::*;
//! // restore-stock: give back `quantity` of the cancelled order's goods.
//! let stock = Effect::RestoreStock(RestoreStock { order_id: 7, goods_id: 9, quantity: 1 });
//! // release-coupon: make the cancelled order's coupon usable again.
//! let coupon = Effect::ReleaseCoupon(ReleaseCoupon { order_id: 7, coupon_id: 11 });
//! // refund-balance: give back balance the cancelled order used (cents).
//! let refund = Effect::RefundBalance(RefundBalance { order_id: 7, user_id: 8, amount: 10_000 });
//! // add-points: add points to the paying user.
//! let points = Effect::AddPoints(AddPoints { order_id: 7, user_id: 8, points: 4_800 });
//! // append-log: one audit row (the payment log, a cancellation).
//! let row = Effect::AppendLog(AppendLog { order_id: 7, user_id: 8, kind: LogKind::Paid, amount: 480_000, note: "paid".into() });
//! # let _ = (stock, coupon, refund, points, row);
//! ```
//!
//! What the host checks of each, before anything is applied (a refusal fails the attempt,
//! with a reason naming the effect and its bound): its ids are the event's; restore-stock,
//! release-coupon and refund-balance answer a `shop.order.cancel`, add-points a
//! `shop.pay.success`, append-log any event; a quantity is at most the order's goods number;
//! amounts are cents: a refund at most the balance the order used, a log row's at most what
//! was paid (on a cancellation, the balance used; on a confirmation, the order's amount);
//! the add-points of one event together at most 1000 a whole 1.00 paid; a note at most 500
//! characters; at most 64 effects an event.
//!
//! Give-backs are fenced by the order's step records: the host applies a give-back only for
//! what the order's forward step really took, and never twice, so a plugin may return it on
//! every delivery; [`give_back`] computes it from the records.
//!
//! # Reads
//!
//! [`Reads`] answers questions about the shop *as of the event's handling*: the order, its
//! goods, its user and coupon, the order's step records (what each step took or gave back),
//! and this plugin's configuration. The answers come from a snapshot the host took for the
//! batch the event is in, so a plugin is a pure function of (event, reads): replay runs it
//! again on the same recorded reads. `None` means the row does not exist (or is not the
//! event's). Natively, [`FakeReads`] stands in for the host in unit tests.
//!
//! # Configuration
//!
//! `config r#"{JSON Schema}"#` in `plugin!` declares the keys; the operator sets values
//! (`SHOPMESH_PLUGIN_CONFIG=name.key=value`); [`Reads::config`] returns the value as a
//! string, or `None` when unset (the plugin applies its default).
//!
//! # Errors and panics
//!
//! Return `Err(PluginError::InvalidEvent(why))` for an event this version will never handle:
//! it goes to the dead-letter store at once, with the reason. `Err(PluginError::Unavailable(why))`
//! means "not now": the host retries with backoff and dead-letters after the configured
//! attempts. A panic (or a trap) counts as a failed attempt, like `Unavailable`; nothing of
//! the attempt is applied.
//!
//! # Limits
//!
//! Each invocation runs in a fresh instance with a memory cap (16 MiB by default), a fuel
//! budget (50,000,000 instructions' worth) and a deadline (500 ms); past any of them it
//! traps. The component may import nothing but the `shop:plugin/host` interface: no WASI, no
//! files, clocks, randomness or sockets. On wasm32 this crate is `no_std` (with an allocator
//! and a panic handler) so nothing else gets imported.
//!
//! # How the contract evolves
//!
//! `shop:plugin@0.1.0` is frozen: its records, variants and functions never change. New
//! effect kinds or reads come in a new package version (`shop:plugin@0.2.0`) whose world is
//! a superset; the host links both worlds and keeps loading 0.1 components unchanged
//! (a 0.1 component can only return 0.1 effects, which 0.2 keeps). A component declares its
//! world by the package it imports, so an old plugin never sees a new kind it cannot handle.
//! Removing or changing anything is a new major version, announced with the releases that
//! still run the old one.

#![cfg_attr(target_arch = "wasm32", no_std)]

extern crate alloc;

use alloc::{string::String, vec::Vec};

pub mod arena;

/// 256 KiB of arena: a give-back or a point uses a few KiB; an order of a hundred goods
/// still fits. The pages an event does not touch cost nothing.
#[cfg(target_arch = "wasm32")]
#[global_allocator]
static ALLOCATOR: arena::Arena<dlmalloc::GlobalDlmalloc, { 256 << 10 }> = arena::Arena::new(dlmalloc::GlobalDlmalloc);

/// The component model's allocation hook (the host calls it to pass strings and lists in).
/// wit-bindgen's own copy is dropped by the linker in `no_std` builds (wit-bindgen #1680),
/// so the guest provides it from the global allocator.
#[cfg(target_arch = "wasm32")]
#[unsafe(no_mangle)]
pub unsafe extern "C" fn cabi_realloc(old: *mut u8, old_len: usize, align: usize, new_len: usize) -> *mut u8 {
    use alloc::alloc::{alloc, realloc, Layout};
    if new_len == 0 {
        return align as *mut u8;
    }
    let ptr = if old_len == 0 {
        alloc(Layout::from_size_align_unchecked(new_len, align))
    } else {
        realloc(old, Layout::from_size_align_unchecked(old_len, align), new_len)
    };
    if ptr.is_null() {
        core::arch::wasm32::unreachable();
    }
    ptr
}

/// A panic in a plugin becomes a trap: the host records the failure and retries. Its
/// message goes to the host first (logged at error level), so that the failure says why,
/// not only that the guest trapped.
#[cfg(target_arch = "wasm32")]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    use core::sync::atomic::{AtomicBool, Ordering};
    static PANICKED: AtomicBool = AtomicBool::new(false);
    // Once: a panic while saying the first (no memory left to format it, say) traps at once.
    if !PANICKED.swap(true, Ordering::Relaxed) {
        let at = info.location().map(|l| alloc::format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        log(LogLevel::Error, &alloc::format!("panicked{at}: {}", info.message()));
    }
    core::arch::wasm32::unreachable()
}

/// Generated bindings of the `shop:plugin/plugin` world. (In a module of its own: at the
/// crate root the public export macro collides with its own re-export.)
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "plugin",
        pub_export_macro: true,
        export_macro_name: "export_world",
        default_bindings_module: "shopmesh_guest::bindings",
    });
}

pub use bindings::shop::plugin::types::*;
pub use bindings::Guest;
use bindings::shop;

/// Read-only access to the shop, scoped to the event being handled (see the crate docs,
/// "Reads"). Each answer is `None` (or empty) when the row does not exist or is not the
/// event's own.
pub trait Reads {
    /// The event's order.
    fn order(&self, order_id: Id) -> Option<Order>;
    /// The event's goods.
    fn goods(&self, goods_id: Id) -> Option<Goods>;
    /// The event's user.
    fn user(&self, user_id: Id) -> Option<User>;
    /// The event's coupon.
    fn coupon(&self, coupon_id: Id) -> Option<Coupon>;
    /// The order's step records: what each forward step took, and what was given back.
    fn order_steps(&self, order_id: Id) -> Vec<StepRecord>;
    /// This plugin's configuration value for `key`, as the operator set it.
    fn config(&self, key: &str) -> Option<String>;
}

/// The real reads: calls into the host.
pub struct Host;

impl Reads for Host {
    fn order(&self, order_id: Id) -> Option<Order> {
        shop::plugin::host::get_order(order_id)
    }
    fn goods(&self, goods_id: Id) -> Option<Goods> {
        shop::plugin::host::get_goods(goods_id)
    }
    fn user(&self, user_id: Id) -> Option<User> {
        shop::plugin::host::get_user(user_id)
    }
    fn coupon(&self, coupon_id: Id) -> Option<Coupon> {
        shop::plugin::host::get_coupon(coupon_id)
    }
    fn order_steps(&self, order_id: Id) -> Vec<StepRecord> {
        shop::plugin::host::order_steps(order_id)
    }
    fn config(&self, key: &str) -> Option<String> {
        shop::plugin::host::config(key)
    }
}

/// Logs through the host (the plugin has no stderr of its own). In a native test of a rule
/// there is no host: the line goes to stderr, which `cargo test` shows for a failing test.
pub fn log(level: LogLevel, message: &str) {
    #[cfg(target_arch = "wasm32")]
    shop::plugin::host::log(level, message);
    #[cfg(not(target_arch = "wasm32"))]
    std::eprintln!("[{level:?}] {message}");
}

/// A plugin's business rule and what it declares about itself.
pub trait Rule {
    const NAME: &'static str;
    const VERSION: &'static str;
    const SUBJECTS: &'static [&'static str];
    const CAPABILITIES: &'static [Capability];
    /// JSON Schema of the plugin's configuration.
    const CONFIG_SCHEMA: &'static str = "{}";

    fn handle(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError>;

    fn manifest() -> Manifest {
        Manifest {
            name: Self::NAME.into(),
            version: Self::VERSION.into(),
            subjects: Self::SUBJECTS.iter().map(|s| String::from(*s)).collect(),
            capabilities: Self::CAPABILITIES.to_vec(),
            config_schema: Self::CONFIG_SCHEMA.into(),
        }
    }
}

/// The step record of `step`/`action` for an order, if the order flow wrote one.
pub fn step(steps: &[StepRecord], step: Step, action: StepAction) -> Option<&StepRecord> {
    steps.iter().find(|r| r.step == step && r.action == action)
}

/// What a give-back plugin should give back for `step`: the forward amount, unless the
/// forward step never ran ("empty rollback") or was already given back.
pub fn to_give_back(steps: &[StepRecord], which: Step) -> Option<i64> {
    let forward = step(steps, which, StepAction::Forward)?;
    step(steps, which, StepAction::Giveback).is_none().then_some(forward.amount)
}

/// The whole shape of a give-back rule: on an order-cancel event, if the order's `which`
/// step took something and it was not given back yet, the effect `give` builds from the
/// event and the amount taken; otherwise nothing. Other events: nothing.
pub fn give_back(
    event: &Event,
    reads: &impl Reads,
    which: Step,
    give: impl FnOnce(&OrderCancelled, i64) -> Effect,
) -> Result<Vec<Effect>, PluginError> {
    let Payload::OrderCancel(cancel) = &event.payload else {
        return Ok(Vec::new());
    };
    Ok(to_give_back(&reads.order_steps(cancel.order_id), which)
        .map(|amount| alloc::vec![give(cancel, amount)])
        .unwrap_or_default())
}

/// Declares a plugin: its [`Rule`] (name, version, subjects, capabilities, optionally a
/// config schema, and `handle`), exported as the component's `manifest` and `handle`.
/// `handle` gets the event and the [`Reads`] and returns the effects to apply.
#[macro_export]
macro_rules! plugin {
    (
        $(#[$meta:meta])*
        $vis:vis struct $rule:ident = $name:literal @ $version:expr,
            on [$($subject:literal),+ $(,)?], may [$($cap:ident),* $(,)?] $(, config $schema:literal)?;
        fn handle($event:ident, $reads:ident) $body:block
    ) => {
        $(#[$meta])*
        $vis struct $rule;

        impl $crate::Rule for $rule {
            const NAME: &'static str = $name;
            const VERSION: &'static str = $version;
            const SUBJECTS: &'static [&'static str] = &[$($subject),+];
            const CAPABILITIES: &'static [$crate::Capability] = &[$($crate::Capability::$cap),*];
            $(const CONFIG_SCHEMA: &'static str = $schema;)?

            #[allow(unused_variables)]
            fn handle(
                $event: &$crate::Event,
                $reads: &impl $crate::Reads,
            ) -> Result<$crate::alloc_vec::Vec<$crate::Effect>, $crate::PluginError> $body
        }

        $crate::export!($rule);
    };
}

/// Exports a [`Rule`] as the component's `manifest` and `handle` (what [`plugin!`] ends with).
#[macro_export]
macro_rules! export {
    ($rule:ty) => {
        struct __Component;

        impl $crate::Guest for __Component {
            fn manifest() -> $crate::Manifest {
                <$rule as $crate::Rule>::manifest()
            }

            fn handle(event: $crate::Event) -> Result<$crate::alloc_vec::Vec<$crate::Effect>, $crate::PluginError> {
                <$rule as $crate::Rule>::handle(&event, &$crate::Host)
            }
        }

        $crate::bindings::export_world!(__Component);
    };
}

#[doc(hidden)]
pub use alloc::vec as alloc_vec;

/// Events and step records for rules' native unit tests.
pub mod testing {
    use super::*;
    use alloc::string::String;

    /// An order-cancel event for order 7 of user 8, goods 9.
    pub fn cancelled(goods_number: i64, coupon_id: Option<Id>, money_paid: Cents) -> Event {
        let payload = OrderCancelled { order_id: 7, user_id: 8, goods_id: 9, goods_number, coupon_id, money_paid, reason: "test".into() };
        Event { id: "1".into(), subject: "shop.order.cancel".into(), time: String::new(), payload: Payload::OrderCancel(payload) }
    }

    /// A pay-success event for order 7 of user 8.
    pub fn paid(pay_amount: Cents) -> Event {
        let payload = PaySucceeded { pay_id: 3, order_id: 7, user_id: 8, pay_amount };
        Event { id: "1".into(), subject: "shop.pay.success".into(), time: String::new(), payload: Payload::PaySuccess(payload) }
    }

    /// Reads in which order 7's `step` took `amount` and, if `given_back`, gave it back.
    pub fn took(step: Step, amount: i64, given_back: bool) -> FakeReads {
        let mut steps = alloc::vec![(7, StepRecord { step, action: StepAction::Forward, amount })];
        if given_back {
            steps.push((7, StepRecord { step, action: StepAction::Giveback, amount }));
        }
        FakeReads { steps, ..Default::default() }
    }
}

/// A fake [`Reads`] for native unit tests of rules.
#[derive(Default, Clone)]
pub struct FakeReads {
    pub orders: Vec<Order>,
    pub goods: Vec<Goods>,
    pub users: Vec<User>,
    pub coupons: Vec<Coupon>,
    pub steps: Vec<(Id, StepRecord)>,
    pub config: Vec<(String, String)>,
}

impl Reads for FakeReads {
    fn order(&self, order_id: Id) -> Option<Order> {
        self.orders.iter().find(|o| o.order_id == order_id).cloned()
    }
    fn goods(&self, goods_id: Id) -> Option<Goods> {
        self.goods.iter().find(|g| g.goods_id == goods_id).cloned()
    }
    fn user(&self, user_id: Id) -> Option<User> {
        self.users.iter().find(|u| u.user_id == user_id).cloned()
    }
    fn coupon(&self, coupon_id: Id) -> Option<Coupon> {
        self.coupons.iter().find(|c| c.coupon_id == coupon_id).cloned()
    }
    fn order_steps(&self, order_id: Id) -> Vec<StepRecord> {
        self.steps.iter().filter(|(o, _)| *o == order_id).map(|(_, s)| *s).collect()
    }
    fn config(&self, key: &str) -> Option<String> {
        self.config.iter().find(|(k, _)| k == key).map(|(_, v)| v.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A rule's native test runs what the rule does: its log lines (to stderr, there being
    /// no host) and its reads of goods and coupons.
    #[test]
    fn a_rule_logs_and_reads_in_a_native_test() {
        log(LogLevel::Info, "a rule may log in a native test");
        let reads = FakeReads {
            goods: alloc::vec![Goods { goods_id: 3, goods_name: "华为P30".into(), goods_number: 10, goods_price: 500_000 }],
            coupons: alloc::vec![Coupon { coupon_id: 5, user_id: 1, coupon_price: 2_000, is_used: false, order_id: None }],
            ..Default::default()
        };
        assert_eq!(reads.goods(3).map(|g| g.goods_name), Some("华为P30".into()));
        assert!(reads.goods(4).is_none());
        assert_eq!(reads.coupon(5).map(|c| c.coupon_price), Some(2_000));
        assert!(reads.coupon(6).is_none());
    }
}
