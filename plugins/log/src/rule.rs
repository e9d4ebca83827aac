//! The log rule itself, in its own file so version 2 of the plugin
//! (`plugins/testing/log-v2`) can include the same source (see plugins/points/src/rule.rs).

use alloc::{format, vec, vec::Vec};
use shopmesh_guest::*;

pub fn log_row(event: &Event) -> Result<Vec<Effect>, PluginError> {
    let (order_id, user_id, kind, amount, note) = match &event.payload {
        Payload::PaySuccess(p) => (p.order_id, p.user_id, LogKind::Paid, p.pay_amount, format!("payment {} paid", p.pay_id)),
        Payload::OrderCancel(c) => (c.order_id, c.user_id, LogKind::Cancelled, c.money_paid, format!("order cancelled: {}", c.reason)),
        Payload::OrderConfirmed(_) => return Ok(vec![]),
    };
    Ok(vec![Effect::AppendLog(AppendLog { order_id, user_id, kind, amount, note })])
}
