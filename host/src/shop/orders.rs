//! The order flow (the original's confirmOrder), fenced so that it never oversells, never
//! loses a compensation, and never gives back what it did not take:
//!
//! 1. validate (reads only; a rejected order leaves no trace);
//! 2. save the pre-order (status 0);
//! 3. take stock, 4. use the coupon, 5. deduct the balance, 6. confirm.
//!
//! Each forward step is its own transaction (as when they were separate services) that
//! first locks the order row and requires it still be a pre-order, then makes one
//! conditional change (`… WHERE goods_number >= $n`) and writes its step record. If any
//! step fails, the order is cancelled and an order-cancel event written to the outbox in
//! one transaction; if the process dies instead, the [`super::sweeper`] does the same
//! later. Because cancelling also needs the order row in status 0, a step and a cancel
//! never interleave: a step that comes after the cancel is refused ("suspension").

use poem_openapi::Object;
use sqlx::{any::AnyRow, Row};

use super::{
    balance::Balance,
    coupons::CouponUse,
    fault::FaultPoint,
    id, money, opt_id,
    steps::{self, Step},
    stock::Stock,
    time, FromRow, Shop, ShopError, StepFailure,
};
use crate::{
    events::{OrderCancelled, OrderConfirmed},
    ids::{now_ms, Id},
    money::Money,
    outbox,
    store::Tx,
};

/// Orders above this amount ship free (the shop's rule).
const FREE_SHIPPING_ABOVE: Money = Money::from_cents(100_00);
const SHIPPING_FEE: Money = Money::from_cents(10_00);

/// An order as the user submits it. The client states the price, shipping fee and order
/// amount it showed; they must match what the shop computes now.
#[derive(Debug, Clone, Object)]
pub struct PlaceOrder {
    pub user_id: Id,
    pub goods_id: Id,
    /// Quantity, at least 1.
    pub goods_number: i64,
    /// Unit price the client showed.
    pub goods_price: Money,
    pub shipping_fee: Money,
    pub order_amount: Money,
    /// A coupon of this user to use, if any.
    pub coupon_id: Option<Id>,
    /// Balance to use (default 0).
    pub money_paid: Option<Money>,
    #[oai(default, validator(max_length = 500))]
    pub address: String,
    #[oai(default, validator(max_length = 100))]
    pub consignee: String,
}

#[derive(Debug, Clone, Object)]
pub struct Order {
    pub order_id: Id,
    pub user_id: Id,
    /// 0 unconfirmed, 1 confirmed, 2 cancelled, 3 invalid, 4 refunded.
    pub order_status: i64,
    /// 0 unpaid, 1 paying, 2 paid.
    pub pay_status: i64,
    pub shipping_status: i64,
    pub address: String,
    pub consignee: String,
    pub goods_id: Id,
    pub goods_number: i64,
    pub goods_price: Money,
    pub goods_amount: Money,
    pub shipping_fee: Money,
    pub order_amount: Money,
    pub coupon_id: Option<Id>,
    pub coupon_paid: Money,
    pub money_paid: Money,
    pub pay_amount: Money,
    pub add_time: Option<String>,
    pub confirm_time: Option<String>,
    pub pay_time: Option<String>,
    pub cancel_time: Option<String>,
    pub cancel_reason: Option<String>,
}

impl FromRow for Order {
    fn from_row(r: &AnyRow) -> Result<Order, sqlx::Error> {
        Ok(Order {
            order_id: id(r, "order_id")?,
            user_id: id(r, "user_id")?,
            order_status: r.try_get("order_status")?,
            pay_status: r.try_get("pay_status")?,
            shipping_status: r.try_get("shipping_status")?,
            address: r.try_get("address")?,
            consignee: r.try_get("consignee")?,
            goods_id: id(r, "goods_id")?,
            goods_number: r.try_get("goods_number")?,
            goods_price: money(r, "goods_price")?,
            goods_amount: money(r, "goods_amount")?,
            shipping_fee: money(r, "shipping_fee")?,
            order_amount: money(r, "order_amount")?,
            coupon_id: opt_id(r, "coupon_id")?,
            coupon_paid: money(r, "coupon_paid")?,
            money_paid: money(r, "money_paid")?,
            pay_amount: money(r, "pay_amount")?,
            add_time: time(r, "add_time")?,
            confirm_time: time(r, "confirm_time")?,
            pay_time: time(r, "pay_time")?,
            cancel_time: time(r, "cancel_time")?,
            cancel_reason: r.try_get("cancel_reason")?,
        })
    }
}

pub const STATUS_PREORDER: i64 = 0;
pub const STATUS_CONFIRMED: i64 = 1;
pub const STATUS_CANCELLED: i64 = 2;

/// What validation settled: the amounts the pre-order is saved with.
struct Plan {
    goods_amount: Money,
    shipping_fee: Money,
    order_amount: Money,
    coupon_paid: Money,
    money_paid: Money,
    pay_amount: Money,
}

/// The shop's shipping rule.
pub fn shipping_fee_for(goods_amount: Money) -> Money {
    if goods_amount > FREE_SHIPPING_ABOVE {
        Money::ZERO
    } else {
        SHIPPING_FEE
    }
}

impl Shop {
    pub async fn order(&self, order_id: Id) -> Result<Order, ShopError> {
        self.fetch("SELECT * FROM trade_order WHERE order_id = $1", order_id)
            .await?
            .ok_or(ShopError::OrderNotFound(order_id))
    }

    /// Places and confirms an order; see the module documentation for the steps.
    pub async fn place_order(&self, req: PlaceOrder) -> Result<Order, ShopError> {
        let plan = self.validate(&req).await?;
        let order_id = Id(self.ids.next());
        self.save_preorder(order_id, &req, &plan).await?;

        let mut steps = vec![Step::Stock];
        if req.coupon_id.is_some() {
            steps.push(Step::Coupon);
        }
        if plan.money_paid > Money::ZERO {
            steps.push(Step::Balance);
        }
        steps.push(Step::Confirm);
        for step in steps {
            if let Err(reason) = self.forward(order_id, step, &req, &plan).await {
                let why = format!("{step} step failed: {reason}");
                if let Err(e) = self.cancel_preorder(order_id, &why).await {
                    // The sweeper will cancel it once the database answers again.
                    tracing::error!(%order_id, error = %e, "cancelling the order failed");
                }
                return Err(ShopError::StepFailed { order_id, step, reason });
            }
        }
        self.order(order_id).await
    }

    async fn validate(&self, req: &PlaceOrder) -> Result<Plan, ShopError> {
        let goods = self.goods(req.goods_id).await?;
        let user = self.user(req.user_id).await?;
        if req.goods_price != goods.goods_price {
            return Err(ShopError::GoodsPriceInvalid {
                current: goods.goods_price.to_string(),
                ordered: req.goods_price.to_string(),
            });
        }
        if req.goods_number <= 0 {
            return Err(ShopError::GoodsNumInvalid(req.goods_number));
        }
        if req.goods_number > goods.goods_number {
            return Err(ShopError::GoodsNumNotEnough {
                stock: goods.goods_number,
                wanted: req.goods_number,
            });
        }
        let goods_amount = goods
            .goods_price
            .checked_mul(req.goods_number)
            .ok_or_else(|| ShopError::RequestParameterInvalid("order amount too large".into()))?;
        let shipping_fee = shipping_fee_for(goods_amount);
        if req.shipping_fee != shipping_fee {
            return Err(ShopError::ShippingFeeInvalid {
                expected: shipping_fee.to_string(),
                given: req.shipping_fee.to_string(),
            });
        }
        // The original computed `orderAmount.add(shippingFee)` and threw the result away.
        let order_amount = goods_amount
            .checked_add(shipping_fee)
            .ok_or_else(|| ShopError::RequestParameterInvalid("order amount too large".into()))?;
        if req.order_amount != order_amount {
            return Err(ShopError::OrderAmountInvalid {
                expected: order_amount.to_string(),
                given: req.order_amount.to_string(),
            });
        }
        let coupon_paid = match req.coupon_id {
            None => Money::ZERO,
            Some(coupon_id) => {
                let coupon = self.coupon(coupon_id).await?;
                if coupon.user_id != req.user_id {
                    return Err(ShopError::CouponNotOwned(coupon_id));
                }
                if coupon.is_used != 0 {
                    return Err(ShopError::CouponIsUsed(coupon_id));
                }
                coupon.coupon_price
            }
        };
        let money_paid = req.money_paid.unwrap_or(Money::ZERO);
        if money_paid.is_negative() {
            return Err(ShopError::MoneyPaidLessZero);
        }
        // Compared in cents: the original truncated through longValue().
        if money_paid > user.user_money {
            return Err(ShopError::MoneyPaidInvalid {
                wanted: money_paid.to_string(),
                balance: user.user_money.to_string(),
            });
        }
        let pay_amount = coupon_paid
            .checked_add(money_paid)
            .and_then(|discount| order_amount.checked_sub(discount))
            .filter(|p| !p.is_negative())
            .ok_or_else(|| ShopError::DiscountExceedsAmount {
                coupon: coupon_paid.to_string(),
                money: money_paid.to_string(),
                amount: order_amount.to_string(),
            })?;
        Ok(Plan { goods_amount, shipping_fee, order_amount, coupon_paid, money_paid, pay_amount })
    }

    async fn save_preorder(&self, order_id: Id, req: &PlaceOrder, plan: &Plan) -> Result<(), ShopError> {
        sqlx::query(
            "INSERT INTO trade_order (order_id, user_id, order_status, pay_status, shipping_status,
                address, consignee, goods_id, goods_number, goods_price, goods_amount, shipping_fee,
                order_amount, coupon_id, coupon_paid, money_paid, pay_amount, add_time)
             VALUES ($1, $2, 0, 0, 0, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(order_id.0)
        .bind(req.user_id.0)
        .bind(&req.address)
        .bind(&req.consignee)
        .bind(req.goods_id.0)
        .bind(req.goods_number)
        .bind(req.goods_price.cents())
        .bind(plan.goods_amount.cents())
        .bind(plan.shipping_fee.cents())
        .bind(plan.order_amount.cents())
        .bind(req.coupon_id.map(|c| c.0))
        .bind(plan.coupon_paid.cents())
        .bind(plan.money_paid.cents())
        .bind(plan.pay_amount.cents())
        .bind(now_ms())
        .execute(self.db.pool())
        .await?;
        Ok(())
    }

    /// Runs one forward step in its own transaction.
    async fn forward(&self, order_id: Id, step: Step, req: &PlaceOrder, plan: &Plan) -> Result<(), StepFailure> {
        if self.fault.fails(step) {
            return Err(StepFailure::Unavailable);
        }
        let outcome = async {
            let mut tx = self.db.begin().await?;
            // Lock the order row (Postgres: row lock; SQLite: the write lock) and require a
            // pre-order, so a concurrent cancel is either wholly before or wholly after us.
            let locked = sqlx::query(
                "UPDATE trade_order SET order_status = order_status WHERE order_id = $1 AND order_status = 0",
            )
            .bind(order_id.0)
            .execute(&mut *tx)
            .await?
            .rows_affected()
                == 1;
            let done = locked && self.apply_step(&mut tx, order_id, step, req, plan).await?;
            if done {
                tx.commit().await?;
            }
            Ok::<bool, sqlx::Error>(done)
        }
        .await;
        match outcome {
            Ok(true) => {
                self.fault.after_commit(step);
                if step == Step::Confirm {
                    self.outbox_wake.notify_one();
                }
                Ok(())
            }
            Ok(false) => Err(StepFailure::Conflict),
            Err(e) => {
                tracing::warn!(%order_id, %step, error = %e, "order step failed");
                Err(StepFailure::Unavailable)
            }
        }
    }

    /// The step's conditional change plus its record; `false` when the condition failed.
    async fn apply_step(&self, tx: &mut Tx, order_id: Id, step: Step, req: &PlaceOrder, plan: &Plan) -> Result<bool, sqlx::Error> {
        let (user_id, order_id) = (req.user_id.0, order_id.0);
        match step {
            Step::Stock => steps::take(tx, order_id, &Stock { goods_id: req.goods_id.0 }, req.goods_number).await,
            Step::Coupon => {
                let coupon_id = req.coupon_id.expect("coupon step only with a coupon").0;
                steps::take(tx, order_id, &CouponUse { coupon_id, user_id }, coupon_id).await
            }
            Step::Balance => steps::take(tx, order_id, &Balance { user_id }, plan.money_paid.cents()).await,
            Step::Confirm => self.confirm(tx, Id(order_id), req, plan).await,
        }
    }

    /// Confirms the pre-order and writes its order-confirmed event.
    async fn confirm(&self, tx: &mut Tx, order_id: Id, req: &PlaceOrder, plan: &Plan) -> Result<bool, sqlx::Error> {
        let n = sqlx::query(
            "UPDATE trade_order SET order_status = 1, confirm_time = $1
              WHERE order_id = $2 AND order_status = 0",
        )
        .bind(now_ms())
        .bind(order_id.0)
        .execute(&mut **tx)
        .await?
        .rows_affected();
        if n == 1 {
            let event = OrderConfirmed {
                order_id,
                user_id: req.user_id,
                goods_id: req.goods_id,
                goods_number: req.goods_number,
                goods_price: req.goods_price,
                order_amount: plan.order_amount,
                coupon_id: req.coupon_id,
                coupon_paid: plan.coupon_paid,
                money_paid: plan.money_paid,
                pay_amount: plan.pay_amount,
            };
            outbox::enqueue(tx, &self.ids, event).await?;
        }
        Ok(n == 1)
    }

    /// Pre-orders added before `cutoff_ms` and still unconfirmed, oldest first.
    pub async fn abandoned_preorders(&self, cutoff_ms: i64, limit: i64) -> Result<Vec<Id>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT order_id FROM trade_order WHERE order_status = 0 AND add_time < $1 ORDER BY add_time LIMIT $2",
        )
        .bind(cutoff_ms)
        .bind(limit)
        .fetch_all(self.db.pool())
        .await?;
        rows.iter().map(|r| id(r, "order_id")).collect()
    }

    /// Cancels a pre-order and writes its order-cancel event, in one transaction.
    /// Returns `false` when the order is no longer a pre-order (confirmed, or already
    /// cancelled by someone else): then nothing is written, so there is one event at most.
    pub async fn cancel_preorder(&self, order_id: Id, reason: &str) -> Result<bool, sqlx::Error> {
        let mut tx = self.db.begin().await?;
        let row = sqlx::query(
            "UPDATE trade_order SET order_status = 2, cancel_time = $1, cancel_reason = $2
              WHERE order_id = $3 AND order_status = 0
            RETURNING user_id, goods_id, goods_number, coupon_id, money_paid",
        )
        .bind(now_ms())
        .bind(reason)
        .bind(order_id.0)
        .fetch_optional(&mut *tx)
        .await?;
        let Some(row) = row else {
            return Ok(false);
        };
        let event = OrderCancelled {
            order_id,
            user_id: id(&row, "user_id")?,
            goods_id: id(&row, "goods_id")?,
            goods_number: row.try_get("goods_number")?,
            coupon_id: opt_id(&row, "coupon_id")?,
            money_paid: money(&row, "money_paid")?,
            reason: reason.to_owned(),
        };
        outbox::enqueue(&mut tx, &self.ids, event).await?;
        tx.commit().await?;
        self.outbox_wake.notify_one();
        tracing::info!(%order_id, reason, "order cancelled");
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shipping_is_free_only_above_100() {
        assert_eq!(shipping_fee_for(Money::from_cents(100_00)), SHIPPING_FEE);
        assert_eq!(shipping_fee_for(Money::from_cents(100_01)), Money::ZERO);
        assert_eq!(shipping_fee_for(Money::from_cents(1)), SHIPPING_FEE);
    }
}
