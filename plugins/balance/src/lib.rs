//! balance: when an order is cancelled, refund the balance its balance step deducted.
#![cfg_attr(target_arch = "wasm32", no_std)]

use shopmesh_guest::*;

plugin! {
    pub struct BalanceRule = "balance" @ "1.0.0", on ["shop.order.cancel"], may [RefundBalance];
    fn handle(event, reads) {
        give_back(event, reads, Step::Balance, |c, amount| Effect::RefundBalance(RefundBalance { order_id: c.order_id, user_id: c.user_id, amount }))
    }
}
