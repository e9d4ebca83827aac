//! stock: when an order is cancelled, give back the stock its stock step took.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

pub struct StockRule;

impl Rule for StockRule {
    const NAME: &'static str = "stock";
    const VERSION: &'static str = "1.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.order.cancel"];
    const CAPABILITIES: &'static [Capability] = &[Capability::RestoreStock];

    fn handle(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        give_back(event, reads, Step::Stock, |c, quantity| Effect::RestoreStock(RestoreStock { order_id: c.order_id, goods_id: c.goods_id, quantity }))
    }
}

shopmesh_guest::plugin!(StockRule);

#[cfg(test)]
mod tests {
    use super::*;

    fn cancel() -> Event {
        Event {
            id: "1".into(),
            subject: "shop.order.cancel".into(),
            time: "2026-01-01T00:00:00Z".into(),
            payload: Payload::OrderCancel(OrderCancelled {
                order_id: 7,
                user_id: 8,
                goods_id: 9,
                goods_number: 3,
                coupon_id: None,
                money_paid: 0,
                reason: "test".into(),
            }),
        }
    }

    fn record(action: StepAction, amount: i64) -> (Id, StepRecord) {
        (7, StepRecord { step: Step::Stock, action, amount })
    }

    #[test]
    fn gives_back_what_was_taken() {
        let reads = FakeReads { steps: vec![record(StepAction::Forward, 3)], ..Default::default() };
        let effects = StockRule::handle(&cancel(), &reads).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::RestoreStock(RestoreStock { order_id: 7, goods_id: 9, quantity: 3 })]));
    }

    #[test]
    fn nothing_when_never_taken_or_already_given_back() {
        assert!(StockRule::handle(&cancel(), &FakeReads::default()).unwrap().is_empty());
        let both = FakeReads {
            steps: vec![record(StepAction::Forward, 3), record(StepAction::Giveback, 3)],
            ..Default::default()
        };
        assert!(StockRule::handle(&cancel(), &both).unwrap().is_empty());
    }
}
