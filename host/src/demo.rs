//! Demo data from the original shop's test, loaded on first start: user "刘备" (balance
//! 900.00, 100 points), goods "华为P30" (stock 999, 5000.00) and her 100.00 coupon. Inserted
//! with ON CONFLICT DO NOTHING, so restarts and several hosts load it once.

use crate::{ids::now_ms, store::Db};

pub const USER_ID: i64 = 345963634385633280;
pub const GOODS_ID: i64 = 345959443973935104;
pub const COUPON_ID: i64 = 345988230098857984;

pub async fn load(db: &Db) -> Result<(), sqlx::Error> {
    let now = now_ms();
    let mut tx = db.begin().await?;
    sqlx::query(
        "INSERT INTO trade_user (user_id, user_name, user_mobile, user_score, user_reg_time, user_money)
         VALUES ($1, '刘备', '18888888888', 100, $2, 90000) ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(USER_ID)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO trade_goods (goods_id, goods_name, goods_number, goods_price, goods_desc, add_time)
         VALUES ($1, '华为P30', 999, 500000, '夜间拍照更美', $2) ON CONFLICT (goods_id) DO NOTHING",
    )
    .bind(GOODS_ID)
    .bind(now)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "INSERT INTO trade_coupon (coupon_id, coupon_price, user_id, is_used)
         VALUES ($1, 10000, $2, 0) ON CONFLICT (coupon_id) DO NOTHING",
    )
    .bind(COUPON_ID)
    .bind(USER_ID)
    .execute(&mut *tx)
    .await?;
    tx.commit().await
}
