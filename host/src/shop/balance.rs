//! Balances: `trade_user.user_money` and its log (`trade_user_money_log`, money_log_type
//! 1 = paid, 2 = refund). The order flow's balance step deducts and the refund-balance
//! effect refunds through the one [`Balance::shift`], fenced by [`super::steps`].

use super::steps::{Step, Taken};
use crate::{ids::now_ms, store::Tx};

/// A user's balance, in cents.
pub struct Balance {
    pub user_id: i64,
}

impl Taken for Balance {
    const STEP: Step = Step::Balance;

    async fn shift(&self, tx: &mut Tx, order_id: i64, delta: i64) -> Result<bool, sqlx::Error> {
        // Conditional, never read-modify-write: a balance never goes below zero.
        let changed = sqlx::query(
            "UPDATE trade_user SET user_money = user_money + $1 WHERE user_id = $2 AND user_money + $1 >= 0",
        )
        .bind(delta)
        .bind(self.user_id)
        .execute(&mut **tx)
        .await?
        .rows_affected()
            == 1;
        if changed {
            sqlx::query(
                "INSERT INTO trade_user_money_log (user_id, order_id, money_log_type, use_money, create_time)
                 VALUES ($1, $2, $3, $4, $5)",
            )
            .bind(self.user_id)
            .bind(order_id)
            .bind(if delta < 0 { 1i64 } else { 2 })
            .bind(delta.abs())
            .bind(now_ms())
            .execute(&mut **tx)
            .await?;
        }
        Ok(changed)
    }
}
