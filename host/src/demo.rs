//! Demo data from the original shop's test, loaded on first start: user "刘备" (balance
//! 900.00, 100 points), goods "华为P30" (stock 999, 5000.00) and her 100.00 coupon. Written
//! through the resources' own inserts, which leave existing rows alone, so restarts and
//! several hosts load it once.

use crate::{
    ids::Id,
    money::Money,
    shop::{coupons::{self, NewCoupon}, stock::{self, NewGoods}, users::{self, NewUser}, ShopError},
    store::Db,
};

pub const USER_ID: i64 = 345963634385633280;
pub const GOODS_ID: i64 = 345959443973935104;
pub const COUPON_ID: i64 = 345988230098857984;

pub async fn load(db: &Db) -> Result<(), ShopError> {
    let mut tx = db.begin().await?;
    let user = NewUser {
        user_name: "刘备".into(),
        user_money: Money::from_cents(900_00),
        user_score: 100,
        user_mobile: "18888888888".into(),
    };
    users::insert(&mut *tx, Id(USER_ID), &user).await?;
    let goods = NewGoods {
        goods_name: "华为P30".into(),
        goods_number: 999,
        goods_price: Money::from_cents(5000_00),
        goods_desc: "夜间拍照更美".into(),
    };
    stock::insert(&mut *tx, Id(GOODS_ID), &goods).await?;
    let coupon = NewCoupon { coupon_price: Money::from_cents(100_00), user_id: Id(USER_ID) };
    coupons::insert(&mut *tx, Id(COUPON_ID), &coupon).await?;
    Ok(tx.commit().await?)
}
