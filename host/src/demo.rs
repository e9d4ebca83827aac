//! Demo data from the original shop's test, loaded on first start: user "刘备" (balance
//! 900.00, 100 points), goods "华为P30" (stock 999, 5000.00) and his 100.00 coupon; plus, so
//! the API's examples work as they are on a fresh start, goods "荣耀20" (stock 100, 2999.00)
//! and one confirmed order of his for one of them (no coupon, no balance) with an unpaid
//! payment. Written through the shop's own code,
//! which leaves existing rows alone, so restarts and several hosts load it once.

use crate::{
    ids::Id,
    money::Money,
    shop::{
        coupons::NewCoupon,
        orders::{Order, PlaceOrder},
        payments::CreatePayment,
        stock::NewGoods,
        users::NewUser,
        NewRow, Shop, ShopError,
    },
};

pub const USER_ID: i64 = 345963634385633280;
pub const GOODS_ID: i64 = 345959443973935104;
pub const COUPON_ID: i64 = 345988230098857984;
pub const OTHER_GOODS_ID: i64 = 345990000000000003;
pub const ORDER_ID: i64 = 345990000000000001;
pub const PAY_ID: i64 = 345990000000000002;
/// 荣耀20's price: what the demo order and its payment come to.
pub const OTHER_PRICE: Money = Money::from_cents(2999_00);

/// An order as the demo user would place it: one of `goods_id` at `price` (above the free
/// shipping line), no coupon, no balance.
pub fn order(goods_id: i64, price: Money) -> PlaceOrder {
    PlaceOrder {
        user_id: Id(USER_ID),
        goods_id: Id(goods_id),
        goods_number: 1,
        goods_price: price,
        shipping_fee: Money::ZERO,
        order_amount: price,
        coupon_id: None,
        money_paid: Some(Money::ZERO),
        address: "成都".into(),
        consignee: "刘备".into(),
    }
}

/// Loads what is missing of it; `true` when this was its first load (the demo order is the
/// last row it writes, so its presence says an earlier start loaded the rest).
pub async fn load(shop: &Shop) -> Result<bool, ShopError> {
    let mut tx = shop.db.begin().await?;
    let user = NewUser {
        user_name: "刘备".into(),
        user_money: Money::from_cents(900_00),
        user_score: 100,
        user_mobile: "18888888888".into(),
    };
    user.insert(&mut tx, Id(USER_ID)).await?;
    let goods = NewGoods {
        goods_name: "华为P30".into(),
        goods_number: 999,
        goods_price: Money::from_cents(5000_00),
        goods_desc: "夜间拍照更美".into(),
    };
    goods.insert(&mut tx, Id(GOODS_ID)).await?;
    let other = NewGoods { goods_name: "荣耀20".into(), goods_number: 100, goods_price: OTHER_PRICE, goods_desc: "四摄".into() };
    other.insert(&mut tx, Id(OTHER_GOODS_ID)).await?;
    let coupon = NewCoupon { coupon_price: Money::from_cents(100_00), user_id: Id(USER_ID) };
    coupon.insert(&mut tx, Id(COUPON_ID)).await?;
    tx.commit().await?;
    let first = shop.get::<Order>(Id(ORDER_ID)).await.is_err();
    if first {
        let order = shop.place_order_as(Id(ORDER_ID), order(OTHER_GOODS_ID, OTHER_PRICE), None).await?;
        shop.create_payment_as(Id(PAY_ID), CreatePayment { order_id: order.order_id, pay_amount: order.pay_amount }).await?;
    }
    Ok(first)
}
