//! Points: `trade_user.user_score`. Only the add-points effect changes it; once per event
//! is guaranteed by the plugin's inbox row, written in the same transaction.

use crate::store::Conn;

pub async fn add(tx: &mut Conn, user_id: i64, points: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE trade_user SET user_score = user_score + $1 WHERE user_id = $2")
        .bind(points)
        .bind(user_id)
        .execute(&mut *tx)
        .await?;
    Ok(())
}
