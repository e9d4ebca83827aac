//! Coupons (`trade_coupon`). The order flow's coupon step uses one and the release-coupon
//! effect releases it, both through [`CouponUse::shift`], fenced by [`super::steps`] (the step
//! record's amount is the coupon id).

use poem_openapi::Object;

use super::{not_negative, steps::{Step, Taken}, NewRow, ShopError};
use crate::{
    timestamp::Timestamp,
    ids::{now_ms, Id},
    money::Money,
    store::{placeholders, rows_per_statement, Conn},
};

#[derive(Debug, Clone, Object, sqlx::FromRow)]
#[oai(skip_serializing_if_is_none)]
pub struct Coupon {
    pub coupon_id: Id,
    pub coupon_price: Money,
    pub user_id: Id,
    /// The order that used it, once used.
    pub order_id: Option<Id>,
    /// 0 unused, 1 used.
    pub is_used: i64,
    pub used_time: Option<Timestamp>,
}

#[derive(Debug, Clone, Object)]
#[oai(example)]
pub struct NewCoupon {
    pub coupon_price: Money,
    pub user_id: Id,
}

entity!(Coupon, "trade_coupon", coupon_id, CouponNotFound);

/// An unused coupon of an existing user.
impl NewRow for NewCoupon {
    type Row = Coupon;

    async fn insert(&self, tx: &mut Conn, coupon_id: Id) -> Result<(), ShopError> {
        not_negative(self.coupon_price, "coupon_price")?;
        // The write first, its owner checked in it: a transaction that reads before it writes
        // fails on SQLite when another connection wrote in between (it cannot upgrade its
        // snapshot), instead of waiting its turn.
        let sql = "INSERT INTO trade_coupon (coupon_id, coupon_price, user_id, is_used)
                   SELECT $1, $2, $3, 0 WHERE EXISTS (SELECT 1 FROM trade_user WHERE user_id = $3)
                   ON CONFLICT (coupon_id) DO NOTHING";
        let written = sqlx::query(sql).bind(coupon_id).bind(self.coupon_price).bind(self.user_id).execute(&mut *tx).await?;
        // Nothing written: no such user, or the coupon is there already (the demo's, again).
        if written.rows_affected() == 0 {
            let owner = sqlx::query("SELECT 1 FROM trade_user WHERE user_id = $1").bind(self.user_id).fetch_optional(&mut *tx).await?;
            if owner.is_none() {
                return Err(ShopError::UserNotFound(self.user_id));
            }
        }
        Ok(())
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
    /// otherwise releases it (only from this order), all releases in one statement.
    async fn shift(tx: &mut Conn, moves: &[(i64, &CouponUse, i64)]) -> Result<Vec<bool>, sqlx::Error> {
        let mut done = Vec::with_capacity(moves.len());
        for (order, c, delta) in moves {
            if *delta >= 0 {
                done.push(true);
                continue;
            }
            let sql = "UPDATE trade_coupon SET is_used = 1, order_id = $1, used_time = $2
                        WHERE coupon_id = $3 AND user_id = $4 AND is_used = 0";
            let query = sqlx::query(sql).bind(*order).bind(now_ms()).bind(c.coupon_id).bind(c.user_id);
            done.push(query.execute(&mut *tx).await?.rows_affected() == 1);
        }
        let releases: Vec<&(i64, &CouponUse, i64)> = moves.iter().filter(|(_, _, delta)| *delta >= 0).collect();
        for releases in releases.chunks(rows_per_statement(3)) {
            let rows: Vec<String> = (0..releases.len()).map(|i| format!("({})", placeholders(i * 3 + 1, 3))).collect();
            let coupons: Vec<String> = (0..releases.len()).map(|i| format!("${}", i * 3 + 1)).collect();
            // The plain IN on the key lets SQLite find the rows by index; the row values
            // then hold each coupon to its order and user.
            let sql = format!(
                "UPDATE trade_coupon SET is_used = 0, order_id = NULL, used_time = NULL
                  WHERE coupon_id IN ({}) AND (coupon_id, order_id, user_id) IN (VALUES {})",
                coupons.join(", "),
                rows.join(", ")
            );
            let query = releases.iter().fold(sqlx::query(&sql), |q, (order, c, _)| q.bind(c.coupon_id).bind(*order).bind(c.user_id));
            query.execute(&mut *tx).await?;
        }
        Ok(done)
    }
}
