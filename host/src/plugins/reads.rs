//! What a plugin may read, fetched before it runs: the event's order, user, goods and
//! coupon and the order's step records. Reading ahead keeps the guest call free of I/O (it
//! cannot block a database connection, and its deadline measures only its own work) and
//! makes a plugin a pure function of (event, snapshot, config), which replay relies on.
//!
//! Only the [`Parts`] a plugin version has been seen to read are fetched (most read one
//! table or none). A call that asks for a part the snapshot does not hold is answered
//! "missed"; its result is thrown away and the event runs again with that part fetched,
//! which a pure function makes safe. Each version learns its parts this way.

use std::collections::HashMap;

use super::{delivery::{Delivery, DomainEvent}, wit::shop::plugin::types as wit};
use crate::{
    ids::Id,
    shop::{coupons::Coupon, orders::Order, steps::{self, Step}, stock::Goods, users::User, Shop},
};

/// Which parts of the shop a snapshot holds, or a plugin read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(transparent)]
pub struct Parts(pub u8);

impl Parts {
    pub const NONE: Parts = Parts(0);
    pub const ORDER: Parts = Parts(1);
    pub const GOODS: Parts = Parts(2);
    pub const USER: Parts = Parts(4);
    pub const COUPON: Parts = Parts(8);
    pub const STEPS: Parts = Parts(16);
    pub const ALL: Parts = Parts(31);

    pub fn contains(self, other: Parts) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn with(self, other: Parts) -> Parts {
        Parts(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    pub fn names(self) -> Vec<&'static str> {
        [(Parts::ORDER, "order"), (Parts::GOODS, "goods"), (Parts::USER, "user"), (Parts::COUPON, "coupon"), (Parts::STEPS, "steps")]
            .into_iter()
            .filter(|(p, _)| self.contains(*p))
            .map(|(_, name)| name)
            .collect()
    }
}

/// Snapshots recorded before parts were tracked held everything.
fn all() -> Parts {
    Parts::ALL
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    /// What this snapshot holds; asking for anything else is a miss.
    #[serde(default = "all")]
    pub held: Parts,
    pub order_id: Option<i64>,
    pub order: Option<wit::Order>,
    pub goods: Option<wit::Goods>,
    pub user: Option<wit::User>,
    pub coupon: Option<wit::Coupon>,
    pub steps: Vec<wit::StepRecord>,
}

impl Snapshot {
    /// This snapshot with `parts` taken from `other` (a fetch of what it missed).
    pub fn fill(mut self, other: Snapshot, parts: Parts) -> Snapshot {
        if parts.contains(Parts::ORDER) {
            self.order = other.order;
        }
        if parts.contains(Parts::GOODS) {
            self.goods = other.goods;
        }
        if parts.contains(Parts::USER) {
            self.user = other.user;
        }
        if parts.contains(Parts::COUPON) {
            self.coupon = other.coupon;
        }
        if parts.contains(Parts::STEPS) {
            self.steps = other.steps;
        }
        self.held = self.held.with(parts);
        self
    }
}

/// The whole snapshot of one event.
pub async fn snapshot(shop: &Shop, d: &Delivery) -> Result<Snapshot, sqlx::Error> {
    Ok(snapshots(shop, &[d], Parts::ALL).await?.pop().unwrap_or_default())
}

/// The `parts` of several events' snapshots, read together: one query per table needed,
/// whatever the count.
pub async fn snapshots(shop: &Shop, events: &[&Delivery], parts: Parts) -> Result<Vec<Snapshot>, sqlx::Error> {
    let order_ids = distinct(events.iter().map(|d| Id(d.event.order_id())));
    // The order leads to a paid order's goods and to its coupon.
    let needs_order = parts.contains(Parts::ORDER) || parts.contains(Parts::GOODS) || parts.contains(Parts::COUPON);
    let orders = if needs_order { shop.get_many::<Order>(&order_ids).await? } else { HashMap::new() };
    let goods_of = |d: &Delivery| match &d.event {
        DomainEvent::Cancel(e) => Some(e.goods_id),
        DomainEvent::Confirmed(e) => Some(e.goods_id),
        DomainEvent::Paid(_) => orders.get(&Id(d.event.order_id())).map(|o| o.goods_id),
    };
    let (wants, none) = (|p: Parts| parts.contains(p), Vec::new);
    let goods = shop.get_many::<Goods>(&if wants(Parts::GOODS) { distinct(events.iter().filter_map(|d| goods_of(d))) } else { none() }).await?;
    let coupons = shop.get_many::<Coupon>(&if wants(Parts::COUPON) { distinct(orders.values().filter_map(|o| o.coupon_id)) } else { none() }).await?;
    let users = shop.get_many::<User>(&if wants(Parts::USER) { distinct(events.iter().map(|d| Id(d.event.user_id()))) } else { none() }).await?;
    let step_orders: Vec<i64> = if wants(Parts::STEPS) { order_ids.iter().map(|id| id.0).collect() } else { Vec::new() };
    let mut steps: HashMap<i64, Vec<wit::StepRecord>> = HashMap::new();
    for r in steps::of_orders(shop.db.pool(), &step_orders).await? {
        let step = match r.step {
            Step::Stock => wit::Step::Stock,
            Step::Coupon => wit::Step::Coupon,
            Step::Balance | Step::Confirm => wit::Step::Balance,
        };
        let action = if r.forward { wit::StepAction::Forward } else { wit::StepAction::Giveback };
        steps.entry(r.order_id).or_default().push(wit::StepRecord { step, action, amount: r.amount });
    }
    Ok(events
        .iter()
        .map(|d| {
            let order_id = d.event.order_id();
            let order = orders.get(&Id(order_id)).cloned();
            let coupon = order.as_ref().and_then(|o| o.coupon_id).and_then(|c| coupons.get(&c).cloned());
            let goods = goods_of(d).and_then(|g| goods.get(&g).cloned());
            let user = users.get(&Id(d.event.user_id())).cloned();
            let steps = steps.get(&order_id).cloned().unwrap_or_default();
            let mut snapshot = assemble(order_id, order.filter(|_| wants(Parts::ORDER)), goods, user, coupon, steps);
            snapshot.held = parts;
            snapshot
        })
        .collect())
}

fn distinct(ids: impl Iterator<Item = Id>) -> Vec<Id> {
    let mut ids: Vec<Id> = ids.collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// The shop's rows as the plugin world spells them.
fn assemble(order_id: i64, order: Option<Order>, goods: Option<Goods>, user: Option<User>, coupon: Option<Coupon>, steps: Vec<wit::StepRecord>) -> Snapshot {
    Snapshot {
        held: Parts::ALL,
        order_id: Some(order_id),
        order: order.map(|o| wit::Order {
            order_id: o.order_id.0,
            user_id: o.user_id.0,
            order_status: o.order_status,
            pay_status: o.pay_status,
            goods_id: o.goods_id.0,
            goods_number: o.goods_number,
            goods_price: o.goods_price.cents(),
            order_amount: o.order_amount.cents(),
            coupon_id: o.coupon_id.map(|c| c.0),
            coupon_paid: o.coupon_paid.cents(),
            money_paid: o.money_paid.cents(),
            pay_amount: o.pay_amount.cents(),
        }),
        goods: goods.map(|g| wit::Goods {
            goods_id: g.goods_id.0,
            goods_name: g.goods_name,
            goods_number: g.goods_number,
            goods_price: g.goods_price.cents(),
        }),
        user: user.map(|u| wit::User {
            user_id: u.user_id.0,
            user_name: u.user_name,
            user_score: u.user_score,
            user_money: u.user_money.cents(),
        }),
        coupon: coupon.map(|c| wit::Coupon {
            coupon_id: c.coupon_id.0,
            coupon_price: c.coupon_price.cents(),
            user_id: c.user_id.0,
            order_id: c.order_id.map(|o| o.0),
            is_used: c.is_used != 0,
        }),
        steps,
    }
}
