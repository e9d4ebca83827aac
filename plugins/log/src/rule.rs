//! The log rule itself, in its own file so version 2 of the plugin
//! (`plugins/testing/log-v2`) can include the same source (see plugins/points/src/rule.rs).

use alloc::{format, vec, vec::Vec};
use shopmesh_guest::*;

pub fn log_row(event: &Event) -> Result<Vec<Effect>, PluginError> {
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
