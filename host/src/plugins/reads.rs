//! What a plugin may read, fetched before it runs: the event's order, user, goods and
//! coupon and the order's step records. Reading ahead keeps the guest call free of I/O (it
//! cannot block a database connection, and its deadline measures only its own work) and
//! makes a plugin a pure function of (event, snapshot, config), which replay relies on.

use std::collections::HashMap;

use super::{delivery::{Delivery, DomainEvent}, runtime::shop::plugin::types as wit};
use crate::{
    ids::Id,
    shop::{coupons::Coupon, orders::Order, steps::{self, Step}, stock::Goods, users::User, Shop},
};

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct Snapshot {
    pub order_id: Option<i64>,
    pub order: Option<wit::Order>,
    pub goods: Option<wit::Goods>,
    pub user: Option<wit::User>,
    pub coupon: Option<wit::Coupon>,
    pub steps: Vec<wit::StepRecord>,
}

/// The snapshot of one event.
pub async fn snapshot(shop: &Shop, d: &Delivery) -> Result<Snapshot, sqlx::Error> {
    Ok(snapshots(shop, &[d]).await?.pop().unwrap_or_default())
}

/// The snapshots of several events, read together: one query per table, whatever the count.
pub async fn snapshots(shop: &Shop, events: &[&Delivery]) -> Result<Vec<Snapshot>, sqlx::Error> {
    let order_ids = distinct(events.iter().map(|d| Id(d.event.order_id())));
    let orders = shop.get_many::<Order>(&order_ids).await?;
    let goods_of = |d: &Delivery| match &d.event {
        DomainEvent::Cancel(e) => Some(e.goods_id),
        DomainEvent::Confirmed(e) => Some(e.goods_id),
        DomainEvent::Paid(_) => orders.get(&Id(d.event.order_id())).map(|o| o.goods_id),
    };
    let goods = shop.get_many::<Goods>(&distinct(events.iter().filter_map(|d| goods_of(d)))).await?;
    let coupons = shop.get_many::<Coupon>(&distinct(orders.values().filter_map(|o| o.coupon_id))).await?;
    let users = shop.get_many::<User>(&distinct(events.iter().map(|d| Id(d.event.user_id())))).await?;
    let mut steps: HashMap<i64, Vec<wit::StepRecord>> = HashMap::new();
    for r in steps::of_orders(shop.db.pool(), &order_ids.iter().map(|id| id.0).collect::<Vec<_>>()).await? {
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
            assemble(order_id, order, goods, user, coupon, steps)
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
