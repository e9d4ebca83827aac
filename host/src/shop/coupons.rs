//! Coupons (`trade_coupon`). The order flow's coupon step uses one and the release-coupon
//! effect releases it, both through [`Coupon::shift`], fenced by [`super::steps`] (the step
//! record's amount is the coupon id).

use poem_openapi::Object;
use sqlx::{any::AnyRow, Row};

use super::{id, money, not_negative, opt_id, steps::{Step, Taken}, time, FromRow, Shop, ShopError};
use crate::{
    ids::{now_ms, Id},
    money::Money,
    store::Tx,
};

#[derive(Debug, Clone, Object)]
pub struct Coupon {
    pub coupon_id: Id,
    pub coupon_price: Money,
    pub user_id: Id,
    /// The order that used it, once used.
    pub order_id: Option<Id>,
    /// 0 unused, 1 used.
    pub is_used: i64,
    pub used_time: Option<String>,
}

impl FromRow for Coupon {
    fn from_row(r: &AnyRow) -> Result<Coupon, sqlx::Error> {
        Ok(Coupon {
            coupon_id: id(r, "coupon_id")?,
            coupon_price: money(r, "coupon_price")?,
            user_id: id(r, "user_id")?,
            order_id: opt_id(r, "order_id")?,
            is_used: r.try_get("is_used")?,
            used_time: time(r, "used_time")?,
        })
    }
}

#[derive(Debug, Clone, Object)]
pub struct NewCoupon {
    pub coupon_price: Money,
    pub user_id: Id,
}

/// Writes an unused coupon unless `coupon_id` exists.
pub(crate) async fn insert(tx: &mut Tx, coupon_id: Id, new: &NewCoupon) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO trade_coupon (coupon_id, coupon_price, user_id, is_used) VALUES ($1, $2, $3, 0)
         ON CONFLICT (coupon_id) DO NOTHING",
    )
    .bind(coupon_id.0)
    .bind(new.coupon_price.cents())
    .bind(new.user_id.0)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

impl Shop {
    pub async fn coupon(&self, coupon_id: Id) -> Result<Coupon, ShopError> {
        self.fetch("SELECT * FROM trade_coupon WHERE coupon_id = $1", coupon_id)
            .await?
            .ok_or(ShopError::CouponNotFound(coupon_id))
    }

    pub async fn add_coupon(&self, new: NewCoupon) -> Result<Coupon, ShopError> {
        not_negative(new.coupon_price, "coupon_price")?;
        self.user(new.user_id).await?;
        let coupon_id = Id(self.ids.next());
        let mut tx = self.db.begin().await?;
        insert(&mut tx, coupon_id, &new).await?;
        tx.commit().await?;
        self.coupon(coupon_id).await
    }
}

/// A user's coupon, as an order step uses it and a cancellation releases it.
pub struct CouponUse {
    pub coupon_id: i64,
    pub user_id: i64,
}

impl Taken for CouponUse {
    const STEP: Step = Step::Coupon;

    /// `delta` < 0 uses the coupon for the order (only an unused coupon of this user);
    /// otherwise releases it (only from this order).
    async fn shift(&self, tx: &mut Tx, order_id: i64, delta: i64) -> Result<bool, sqlx::Error> {
        let query = if delta < 0 {
            sqlx::query(
                "UPDATE trade_coupon SET is_used = 1, order_id = $1, used_time = $2
                  WHERE coupon_id = $3 AND user_id = $4 AND is_used = 0",
            )
            .bind(order_id)
            .bind(now_ms())
        } else {
            sqlx::query(
                "UPDATE trade_coupon SET is_used = 0, order_id = NULL, used_time = NULL
                  WHERE order_id = $1 AND coupon_id = $2 AND user_id = $3",
            )
            .bind(order_id)
        };
        let changed = query.bind(self.coupon_id).bind(self.user_id).execute(&mut **tx).await?.rows_affected();
        Ok(changed == 1)
    }
}
