//! The plugin crates' rules, compiled natively and adapted to the host's plugin types. The
//! guest and the host each generate their own Rust types from the same WIT, so this file
//! only maps one spelling onto the other; the rules themselves are the plugins' code.

use std::{cell::Cell, collections::HashMap, sync::Arc};

use shopmesh::plugins::{
    reads::{Parts, Snapshot},
    runtime::{self as h, Handled, Handler, LoadedPlugin, Runtime, Seen},
};
use shopmesh_guest::{self as g, Rule};

// `fn() -> R`: the marker owns no R, so Native is Send + Sync whatever R is.
struct Native<R>(std::marker::PhantomData<fn() -> R>);

/// A guest `Reads` over the host's snapshot, noting what it reads as the host does.
struct SnapshotReads<'a> {
    snap: &'a Snapshot,
    config: &'a HashMap<String, String>,
    seen: Cell<Seen>,
}

impl SnapshotReads<'_> {
    fn read(&self, part: Parts) -> bool {
        let mut seen = self.seen.get();
        let held = seen.read(self.snap.held, part);
        self.seen.set(seen);
        held
    }
}

impl g::Reads for SnapshotReads<'_> {
    fn order(&self, order_id: g::Id) -> Option<g::Order> {
        if !self.read(Parts::ORDER) {
            return None;
        }
        let o = self.snap.order.as_ref().filter(|o| o.order_id == order_id)?;
        Some(g::Order {
            order_id: o.order_id,
            user_id: o.user_id,
            order_status: o.order_status,
            pay_status: o.pay_status,
            goods_id: o.goods_id,
            goods_number: o.goods_number,
            goods_price: o.goods_price,
            order_amount: o.order_amount,
            coupon_id: o.coupon_id,
            coupon_paid: o.coupon_paid,
            money_paid: o.money_paid,
            pay_amount: o.pay_amount,
        })
    }
    fn goods(&self, goods_id: g::Id) -> Option<g::Goods> {
        if !self.read(Parts::GOODS) {
            return None;
        }
        let x = self.snap.goods.as_ref().filter(|x| x.goods_id == goods_id)?;
        Some(g::Goods { goods_id: x.goods_id, goods_name: x.goods_name.clone(), goods_number: x.goods_number, goods_price: x.goods_price })
    }
    fn user(&self, user_id: g::Id) -> Option<g::User> {
        if !self.read(Parts::USER) {
            return None;
        }
        let u = self.snap.user.as_ref().filter(|u| u.user_id == user_id)?;
        Some(g::User { user_id: u.user_id, user_name: u.user_name.clone(), user_score: u.user_score, user_money: u.user_money })
    }
    fn coupon(&self, coupon_id: g::Id) -> Option<g::Coupon> {
        if !self.read(Parts::COUPON) {
            return None;
        }
        let c = self.snap.coupon.as_ref().filter(|c| c.coupon_id == coupon_id)?;
        Some(g::Coupon { coupon_id: c.coupon_id, coupon_price: c.coupon_price, user_id: c.user_id, order_id: c.order_id, is_used: c.is_used })
    }
    fn order_steps(&self, order_id: g::Id) -> Vec<g::StepRecord> {
        if !self.read(Parts::STEPS) || self.snap.order_id != Some(order_id) {
            return Vec::new();
        }
        self.snap
            .steps
            .iter()
            .map(|s| g::StepRecord {
                step: match s.step {
                    h::Step::Stock => g::Step::Stock,
                    h::Step::Coupon => g::Step::Coupon,
                    h::Step::Balance => g::Step::Balance,
                },
                action: match s.action {
                    h::StepAction::Forward => g::StepAction::Forward,
                    h::StepAction::Giveback => g::StepAction::Giveback,
                },
                amount: s.amount,
            })
            .collect()
    }
    fn config(&self, key: &str) -> Option<String> {
        self.config.get(key).cloned()
    }
}

fn event(e: &h::Event) -> g::Event {
    let payload = match &e.payload {
        h::Payload::OrderCancel(c) => g::Payload::OrderCancel(g::OrderCancelled {
            order_id: c.order_id,
            user_id: c.user_id,
            goods_id: c.goods_id,
            goods_number: c.goods_number,
            coupon_id: c.coupon_id,
            money_paid: c.money_paid,
            reason: c.reason.clone(),
        }),
        h::Payload::OrderConfirmed(c) => g::Payload::OrderConfirmed(g::OrderConfirmed {
            order_id: c.order_id,
            user_id: c.user_id,
            goods_id: c.goods_id,
            goods_number: c.goods_number,
            goods_price: c.goods_price,
            order_amount: c.order_amount,
            coupon_id: c.coupon_id,
            coupon_paid: c.coupon_paid,
            money_paid: c.money_paid,
            pay_amount: c.pay_amount,
        }),
        h::Payload::PaySuccess(p) => g::Payload::PaySuccess(g::PaySucceeded {
            pay_id: p.pay_id,
            order_id: p.order_id,
            user_id: p.user_id,
            pay_amount: p.pay_amount,
        }),
    };
    g::Event { id: e.id.clone(), subject: e.subject.clone(), time: e.time.clone(), payload }
}

fn effect(e: g::Effect) -> h::Effect {
    match e {
        g::Effect::RestoreStock(x) => h::Effect::RestoreStock(h::RestoreStock { order_id: x.order_id, goods_id: x.goods_id, quantity: x.quantity }),
        g::Effect::ReleaseCoupon(x) => h::Effect::ReleaseCoupon(h::ReleaseCoupon { order_id: x.order_id, coupon_id: x.coupon_id }),
        g::Effect::RefundBalance(x) => h::Effect::RefundBalance(h::RefundBalance { order_id: x.order_id, user_id: x.user_id, amount: x.amount }),
        g::Effect::AddPoints(x) => h::Effect::AddPoints(h::AddPoints { order_id: x.order_id, user_id: x.user_id, points: x.points }),
        g::Effect::AppendLog(x) => h::Effect::AppendLog(h::AppendLog {
            order_id: x.order_id,
            user_id: x.user_id,
            kind: match x.kind {
                g::LogKind::Paid => h::LogKind::Paid,
                g::LogKind::Cancelled => h::LogKind::Cancelled,
            },
            amount: x.amount,
            note: x.note,
        }),
    }
}

fn capability(c: g::Capability) -> h::Capability {
    match c {
        g::Capability::RestoreStock => h::Capability::RestoreStock,
        g::Capability::ReleaseCoupon => h::Capability::ReleaseCoupon,
        g::Capability::RefundBalance => h::Capability::RefundBalance,
        g::Capability::AddPoints => h::Capability::AddPoints,
        g::Capability::AppendLog => h::Capability::AppendLog,
    }
}

impl<R: Rule> Handler for Native<R> {
    fn handle(&self, _: &Runtime, _: &str, e: &h::Event, snap: Snapshot, config: Arc<HashMap<String, String>>, seen: &mut Seen) -> Handled {
        let reads = SnapshotReads { snap: &snap, config: &config, seen: Cell::new(Seen::default()) };
        let handled = R::handle(&event(e), &reads)
            .map(|effects| effects.into_iter().map(effect).collect())
            .map_err(|err| match err {
                g::PluginError::InvalidEvent(m) => h::PluginError::InvalidEvent(m),
                g::PluginError::Unavailable(m) => h::PluginError::Unavailable(m),
            });
        *seen = reads.seen.get();
        Ok(handled)
    }
}

fn plugin<R: Rule + 'static>() -> LoadedPlugin {
    let m = R::manifest();
    let manifest = h::Manifest {
        name: m.name,
        version: m.version,
        subjects: m.subjects,
        capabilities: m.capabilities.into_iter().map(capability).collect(),
        config_schema: m.config_schema,
    };
    LoadedPlugin::with_handler(manifest, Box::new(Native::<R>(std::marker::PhantomData)))
}

pub fn cancel_plugins() -> Vec<LoadedPlugin> {
    vec![plugin::<stock::StockRule>(), plugin::<coupon::CouponRule>(), plugin::<balance::BalanceRule>()]
}

pub fn pay_plugins() -> Vec<LoadedPlugin> {
    vec![plugin::<points::PointsRule>(), plugin::<log::LogRule>()]
}
