//! The log plugin, version 2: the same rule, also subscribed to shop.order.confirmed (for
//! which it writes nothing). Swapping it in must re-bind the consumer to the new subjects.
#![no_std]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

#[path = "../../../log/src/rule.rs"]
mod rule;

pub struct LogV2;

impl Rule for LogV2 {
    const NAME: &'static str = "log";
    const VERSION: &'static str = "2.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.pay.success", "shop.order.cancel", "shop.order.confirmed"];
    const CAPABILITIES: &'static [Capability] = &[Capability::AppendLog];

    fn handle(event: &Event, _reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        rule::log_row(event)
    }
}

shopmesh_guest::plugin!(LogV2);
