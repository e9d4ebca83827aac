//! balance: when an order is cancelled, refund the balance its balance step deducted.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

pub struct BalanceRule;

impl Rule for BalanceRule {
    const NAME: &'static str = "balance";
    const VERSION: &'static str = "1.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.order.cancel"];
    const CAPABILITIES: &'static [Capability] = &[Capability::RefundBalance];

    fn handle(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        give_back(event, reads, Step::Balance, |c, amount| Effect::RefundBalance(RefundBalance { order_id: c.order_id, user_id: c.user_id, amount }))
    }
}

shopmesh_guest::plugin!(BalanceRule);

#[cfg(test)]
mod tests {
    use super::*;

    fn cancel() -> Event {
        Event {
            id: "1".into(),
            subject: "shop.order.cancel".into(),
            time: String::new(),
            payload: Payload::OrderCancel(OrderCancelled {
                order_id: 7, user_id: 8, goods_id: 9, goods_number: 1, coupon_id: None, money_paid: 10_000, reason: String::new(),
            }),
        }
    }

    #[test]
    fn refunds_exactly_what_was_deducted() {
        let reads = FakeReads {
            steps: vec![(7, StepRecord { step: Step::Balance, action: StepAction::Forward, amount: 10_000 })],
            ..Default::default()
        };
        let effects = BalanceRule::handle(&cancel(), &reads).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::RefundBalance(RefundBalance { order_id: 7, user_id: 8, amount: 10_000 })]));
    }

    #[test]
    fn nothing_twice() {
        let reads = FakeReads {
            steps: vec![
                (7, StepRecord { step: Step::Balance, action: StepAction::Forward, amount: 10_000 }),
                (7, StepRecord { step: Step::Balance, action: StepAction::Giveback, amount: 10_000 }),
            ],
            ..Default::default()
        };
        assert!(BalanceRule::handle(&cancel(), &reads).unwrap().is_empty());
    }
}
