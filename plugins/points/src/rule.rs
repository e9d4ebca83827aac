//! The points rule itself. Its own file so that version 2 of the plugin
//! (`plugins/testing/points-v2`) can include the same source without linking this crate,
//! whose component exports would clash with its own.

use alloc::{format, vec, vec::Vec};
use shopmesh_guest::*;

/// The points rule with `default_rate` points per whole 1.00 when `points_per_unit` is not
/// configured. (Version 2 of the plugin changes only the default.)
pub fn award(event: &Event, reads: &impl Reads, default_rate: i64) -> Result<Vec<Effect>, PluginError> {
    let Payload::PaySuccess(paid) = &event.payload else {
        return Ok(vec![]);
    };
    let rate = match reads.config("points_per_unit") {
        None => default_rate,
        Some(v) => v
            .parse::<i64>()
            .map_err(|_| PluginError::InvalidEvent(format!("points_per_unit is not a whole number: {v:?}")))?,
    };
    let points = (paid.pay_amount / 100) * rate;
    if points <= 0 {
        return Ok(vec![]);
    }
    Ok(vec![Effect::AddPoints(AddPoints { order_id: paid.order_id, user_id: paid.user_id, points })])
}
