//! coupon: when an order is cancelled, release the coupon its coupon step used.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

pub struct CouponRule;

impl Rule for CouponRule {
    const NAME: &'static str = "coupon";
    const VERSION: &'static str = "1.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.order.cancel"];
    const CAPABILITIES: &'static [Capability] = &[Capability::ReleaseCoupon];

    fn handle(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        // The coupon step's record carries the coupon it used.
        give_back(event, reads, Step::Coupon, |c, coupon_id| Effect::ReleaseCoupon(ReleaseCoupon { order_id: c.order_id, coupon_id }))
    }
}

shopmesh_guest::plugin!(CouponRule);

#[cfg(test)]
mod tests {
    use super::*;

    fn cancel(coupon_id: Option<Id>) -> Event {
        Event {
            id: "1".into(),
            subject: "shop.order.cancel".into(),
            time: String::new(),
            payload: Payload::OrderCancel(OrderCancelled {
                order_id: 7, user_id: 8, goods_id: 9, goods_number: 1, coupon_id, money_paid: 0, reason: String::new(),
            }),
        }
    }

    #[test]
    fn releases_the_coupon_that_was_used() {
        let reads = FakeReads {
            steps: vec![(7, StepRecord { step: Step::Coupon, action: StepAction::Forward, amount: 55 })],
            ..Default::default()
        };
        let effects = CouponRule::handle(&cancel(Some(55)), &reads).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::ReleaseCoupon(ReleaseCoupon { order_id: 7, coupon_id: 55 })]));
    }

    #[test]
    fn nothing_when_the_coupon_step_never_ran() {
        assert!(CouponRule::handle(&cancel(Some(55)), &FakeReads::default()).unwrap().is_empty());
        assert!(CouponRule::handle(&cancel(None), &FakeReads::default()).unwrap().is_empty());
    }
}
