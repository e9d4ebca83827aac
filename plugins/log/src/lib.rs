//! log: one audit row per paid order (the payment log) and per cancelled order.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

pub struct LogRule;

impl Rule for LogRule {
    const NAME: &'static str = "log";
    const VERSION: &'static str = "1.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.pay.success", "shop.order.cancel"];
    const CAPABILITIES: &'static [Capability] = &[Capability::AppendLog];

    fn handle(event: &Event, _reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        rule::log_row(event)
    }
}

mod rule;

shopmesh_guest::plugin!(LogRule);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_row_per_payment() {
        let ev = Event {
            id: "1".into(),
            subject: "shop.pay.success".into(),
            time: String::new(),
            payload: Payload::PaySuccess(PaySucceeded { pay_id: 3, order_id: 7, user_id: 8, pay_amount: 480_000 }),
        };
        let effects = LogRule::handle(&ev, &FakeReads::default()).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::AppendLog(AppendLog { order_id: 7, user_id: 8, kind: LogKind::Paid, amount: 480_000, .. })]));
    }
}
