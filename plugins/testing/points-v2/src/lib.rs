//! The points plugin, version 2: the same rule with 2 points per whole 1.00 by default.
#![no_std]
extern crate alloc;

use shopmesh_guest::*;

// The same rule source as version 1 (see plugins/points/src/rule.rs).
#[path = "../../../points/src/rule.rs"]
mod rule;

plugin! {
    pub struct PointsV2 = "points" @ "2.0.0", on ["shop.pay.success"], may [AddPoints];
    fn handle(event, reads) {
        rule::award(event, reads, 2)
    }
}
