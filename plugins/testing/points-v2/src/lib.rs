//! The points plugin, version 2: the same rule with 2 points per whole 1.00 by default.
#![no_std]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

// The same rule source as version 1 (see plugins/points/src/rule.rs).
#[path = "../../../points/src/rule.rs"]
mod rule;

pub struct PointsV2;

impl Rule for PointsV2 {
    const NAME: &'static str = "points";
    const VERSION: &'static str = "2.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.pay.success"];
    const CAPABILITIES: &'static [Capability] = &[Capability::AddPoints];

    fn handle(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        rule::award(event, reads, 2)
    }
}

shopmesh_guest::plugin!(PointsV2);
