//! Points: `trade_user.user_score`. Only the add-points effect changes it; once per event
//! is guaranteed by the plugin's inbox row, written in the same transaction.

use crate::store::Conn;

/// Adds points per `(user, points)`: one statement per distinct user.
pub async fn add(tx: &mut Conn, awards: &[(i64, i64)]) -> Result<(), sqlx::Error> {
    let mut sums: Vec<(i64, i64)> = Vec::new();
    for (user, points) in awards {
        match sums.iter_mut().find(|(u, _)| u == user) {
            Some((_, sum)) => *sum += points,
            None => sums.push((*user, *points)),
        }
    }
    for (user, points) in sums {
        sqlx::query("UPDATE trade_user SET user_score = user_score + $1 WHERE user_id = $2")
            .bind(points)
            .bind(user)
            .execute(&mut *tx)
            .await?;
    }
    Ok(())
}
