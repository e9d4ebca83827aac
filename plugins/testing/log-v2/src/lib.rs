//! The log plugin, version 2: the same rule, also subscribed to shop.order.confirmed (for
//! which it writes nothing). Swapping it in must re-bind the consumer to the new subjects.
#![no_std]
extern crate alloc;

use shopmesh_guest::*;

#[path = "../../../log/src/rule.rs"]
mod rule;

plugin! {
    pub struct LogV2 = "log" @ "2.0.0", on ["shop.pay.success", "shop.order.cancel", "shop.order.confirmed"], may [AppendLog];
    fn handle(event, reads) {
        rule::log_row(event)
    }
}
