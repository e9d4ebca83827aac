//! log: one audit row per paid order (the payment log) and per cancelled order.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use shopmesh_guest::*;

mod rule;

plugin! {
    pub struct LogRule = "log" @ "1.0.0", on ["shop.pay.success", "shop.order.cancel"], may [AppendLog];
    fn handle(event, reads) {
        rule::log_row(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_guest::testing::{cancelled, paid};

    #[test]
    fn one_row_per_payment_and_per_cancellation() {
        let effects = LogRule::handle(&paid(480_000), &FakeReads::default()).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::AppendLog(AppendLog { order_id: 7, user_id: 8, kind: LogKind::Paid, amount: 480_000, .. })]));
        let effects = LogRule::handle(&cancelled(1, None, 500), &FakeReads::default()).unwrap();
        assert!(matches!(effects.as_slice(), [Effect::AppendLog(AppendLog { order_id: 7, kind: LogKind::Cancelled, amount: 500, .. })]));
    }
}
