//! coupon: when an order is cancelled, release the coupon its coupon step used.
#![cfg_attr(target_arch = "wasm32", no_std)]

use shopmesh_guest::*;

plugin! {
    pub struct CouponRule = "coupon" @ "1.0.0", on ["shop.order.cancel"], may [ReleaseCoupon];
    fn handle(event, reads) {
        // The coupon step's record carries the coupon it used.
        give_back(event, reads, Step::Coupon, |c, coupon_id| Effect::ReleaseCoupon(ReleaseCoupon { order_id: c.order_id, coupon_id }))
    }
}
