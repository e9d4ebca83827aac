//! The spec's examples, built from the demo data, so "Try it out" works as it stands on a
//! fresh `scripts/run`: an order the demo user can place again and again, a payment for the
//! demo's confirmed order, and the demo rows to look up.

use poem_openapi::types::Example;

use crate::{
    demo,
    ids::Id,
    money::Money,
    shop::{coupons::NewCoupon, orders::PlaceOrder, payments::{CreatePayment, PaymentNotice}, stock::NewGoods, users::NewUser},
};

impl Example for PlaceOrder {
    fn example() -> PlaceOrder {
        demo::order(demo::GOODS_ID, Money::from_cents(5000_00))
    }
}

impl Example for CreatePayment {
    fn example() -> CreatePayment {
        CreatePayment { order_id: Id(demo::ORDER_ID), pay_amount: demo::OTHER_PRICE }
    }
}

impl Example for PaymentNotice {
    fn example() -> PaymentNotice {
        PaymentNotice { pay_id: Id(demo::PAY_ID), pay_amount: demo::OTHER_PRICE, is_paid: 2 }
    }
}

impl Example for NewGoods {
    fn example() -> NewGoods {
        NewGoods { goods_name: "小米9".into(), goods_number: 100, goods_price: Money::from_cents(2999_00), goods_desc: "新品".into() }
    }
}

impl Example for NewUser {
    fn example() -> NewUser {
        NewUser { user_name: "关羽".into(), user_money: Money::from_cents(500_00), user_score: 0, user_mobile: "13800000000".into() }
    }
}

impl Example for NewCoupon {
    fn example() -> NewCoupon {
        NewCoupon { coupon_price: Money::from_cents(50_00), user_id: Id(demo::USER_ID) }
    }
}

pub fn order_id() -> Id {
    Id(demo::ORDER_ID)
}

pub fn goods_id() -> Id {
    Id(demo::GOODS_ID)
}

pub fn user_id() -> Id {
    Id(demo::USER_ID)
}

pub fn coupon_id() -> Id {
    Id(demo::COUPON_ID)
}

pub fn pay_id() -> Id {
    Id(demo::PAY_ID)
}

/// A plugin the demo runs: its status, versions and grants are there to look at.
pub fn plugin_name() -> String {
    "points".into()
}

impl Example for crate::replay::ReplayRequest {
    /// A dry-run of the demo's points over all the stream holds: it changes nothing.
    fn example() -> Self {
        crate::replay::ReplayRequest::everything("points", crate::replay::Mode::DryRun)
    }
}
