//! Balances: `trade_user.user_money` and its log (`trade_user_money_log`, money_log_type
//! 1 = paid, 2 = refund). The order flow's balance step deducts and the refund-balance
//! effect refunds through the one [`Balance::shift`], fenced by [`super::steps`].

use super::steps::{counted_shift, Step, Taken};
use crate::store::Conn;

/// A user's balance, in cents.
pub struct Balance {
    pub user_id: i64,
}

impl Taken for Balance {
    const STEP: Step = Step::Balance;

    async fn shift(tx: &mut Conn, moves: &[(i64, &Balance, i64)]) -> Result<Vec<bool>, sqlx::Error> {
        // Conditional, never read-modify-write: a balance never goes below zero. The log
        // row carries the amount; its type says which way it went.
        const SQL: (&str, &str) = (
            "UPDATE trade_user SET user_money = user_money + $1 WHERE user_id = $2 AND user_money + $1 >= 0",
            "INSERT INTO trade_user_money_log (user_id, order_id, money_log_type, use_money, create_time) VALUES ($1, $2, $3, $4, $5)",
        );
        let moves: Vec<(i64, i64, i64)> = moves.iter().map(|(order, balance, delta)| (*order, balance.user_id, *delta)).collect();
        counted_shift(tx, SQL, &moves, i64::abs).await
    }
}
