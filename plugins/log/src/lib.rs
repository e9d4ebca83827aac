//! log: one audit row per paid order (the payment log) and per cancelled order.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::{format, vec, vec::Vec};
use shopmesh_guest::*;

pub struct LogRule;

impl Rule for LogRule {
    const NAME: &'static str = "log";
    const VERSION: &'static str = "1.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.pay.success", "shop.order.cancel"];
    const CAPABILITIES: &'static [Capability] = &[Capability::AppendLog];

    fn handle(event: &Event, _reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        let row = match &event.payload {
            Payload::PaySuccess(p) => AppendLog {
                order_id: p.order_id,
                user_id: p.user_id,
                kind: LogKind::Paid,
                amount: p.pay_amount,
                note: format!("payment {} paid", p.pay_id),
            },
            Payload::OrderCancel(c) => AppendLog {
                order_id: c.order_id,
                user_id: c.user_id,
                kind: LogKind::Cancelled,
                amount: c.money_paid,
                note: format!("order cancelled: {}", c.reason),
            },
            Payload::OrderConfirmed(_) => return Ok(vec![]),
        };
        Ok(vec![Effect::AppendLog(row)])
    }
}

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
