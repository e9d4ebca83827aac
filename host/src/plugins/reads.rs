//! What a plugin may read, fetched before it runs: the event's order, user, goods and
//! coupon and the order's step records. Reading ahead keeps the guest call free of I/O (it
//! cannot block a database connection, and its deadline measures only its own work) and
//! makes a plugin a pure function of (event, snapshot, config), which replay relies on.

use super::{delivery::{Delivery, DomainEvent}, runtime::shop::plugin::types as wit};
use crate::{
    ids::Id,
    shop::{coupons::Coupon, orders::Order, steps::{self, Step}, stock::Goods, users::User, Shop, ShopError},
};

#[derive(Debug, Clone, Default)]
pub struct Snapshot {
    pub order_id: Option<i64>,
    pub order: Option<wit::Order>,
    pub goods: Option<wit::Goods>,
    pub user: Option<wit::User>,
    pub coupon: Option<wit::Coupon>,
    pub steps: Vec<wit::StepRecord>,
}

fn found<T>(r: Result<T, ShopError>) -> Result<Option<T>, sqlx::Error> {
    match r {
        Ok(v) => Ok(Some(v)),
        Err(ShopError::Storage(e)) => Err(e),
        Err(_) => Ok(None),
    }
}

pub async fn snapshot(shop: &Shop, d: &Delivery) -> Result<Snapshot, sqlx::Error> {
    let order_id = d.event.order_id();
    let order = found(shop.get::<Order>(Id(order_id)).await)?;
    let goods_id = match &d.event {
        DomainEvent::Cancel(e) => Some(e.goods_id),
        DomainEvent::Confirmed(e) => Some(e.goods_id),
        DomainEvent::Paid(_) => order.as_ref().map(|o| o.goods_id),
    };
    let coupon_id = order.as_ref().and_then(|o| o.coupon_id);
    let goods = match goods_id {
        Some(id) => found(shop.get::<Goods>(id).await)?,
        None => None,
    };
    let coupon = match coupon_id {
        Some(id) => found(shop.get::<Coupon>(id).await)?,
        None => None,
    };
    let user = found(shop.get::<User>(Id(d.event.user_id())).await)?;
    let steps = steps::of_orders(shop.db.pool(), &[order_id])
        .await?
        .into_iter()
        .map(|r| wit::StepRecord {
            step: match r.step {
                Step::Stock => wit::Step::Stock,
                Step::Coupon => wit::Step::Coupon,
                Step::Balance | Step::Confirm => wit::Step::Balance,
            },
            action: if r.forward { wit::StepAction::Forward } else { wit::StepAction::Giveback },
            amount: r.amount,
        })
        .collect();
    Ok(Snapshot {
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
    })
}
