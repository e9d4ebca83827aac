//! The three give-back rules, natively: each gives back exactly what its order step took,
//! once, and nothing when the step never ran. (They share [`shopmesh_guest::give_back`], so
//! they are checked side by side here rather than three times in three crates.)
#![cfg_attr(target_arch = "wasm32", no_std)]

#[cfg(test)]
mod tests {
    use balance::BalanceRule;
    use coupon::CouponRule;
    use shopmesh_guest::{testing::*, *};
    use stock::StockRule;

    /// `R` on `event`: `expected` effects after `step` took `amount`; nothing once given back;
    /// nothing when the step never ran.
    fn gives_back_once<R: Rule>(event: Event, step: Step, amount: i64, expected: fn(&[Effect]) -> bool) {
        let effects = R::handle(&event, &took(step, amount, false)).unwrap();
        assert!(expected(&effects), "{}: {} effect(s)", R::NAME, effects.len());
        assert!(R::handle(&event, &took(step, amount, true)).unwrap().is_empty(), "{}: given back before", R::NAME);
        assert!(R::handle(&event, &FakeReads::default()).unwrap().is_empty(), "{}: never taken", R::NAME);
    }

    #[test]
    fn stock_gives_back_what_was_taken_once() {
        gives_back_once::<StockRule>(cancelled(3, None, 0), Step::Stock, 3, |e| {
            matches!(e, [Effect::RestoreStock(RestoreStock { order_id: 7, goods_id: 9, quantity: 3 })])
        });
    }

    #[test]
    fn balance_refunds_exactly_what_was_deducted_once() {
        gives_back_once::<BalanceRule>(cancelled(1, None, 10_000), Step::Balance, 10_000, |e| {
            matches!(e, [Effect::RefundBalance(RefundBalance { order_id: 7, user_id: 8, amount: 10_000 })])
        });
    }

    #[test]
    fn coupon_releases_the_coupon_that_was_used_once() {
        gives_back_once::<CouponRule>(cancelled(1, Some(55), 0), Step::Coupon, 55, |e| {
            matches!(e, [Effect::ReleaseCoupon(ReleaseCoupon { order_id: 7, coupon_id: 55 })])
        });
        // An order without a coupon never had a coupon step.
        assert!(CouponRule::handle(&cancelled(1, None, 0), &FakeReads::default()).unwrap().is_empty());
    }
}
