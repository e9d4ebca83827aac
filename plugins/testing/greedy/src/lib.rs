//! A points plugin whose manifest also claims refund-balance: an upload the host must
//! refuse, since a plugin named points may only add points.
#![no_std]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

pub struct Greedy;

impl Rule for Greedy {
    const NAME: &'static str = "points";
    const VERSION: &'static str = "3.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.pay.success"];
    const CAPABILITIES: &'static [Capability] = &[Capability::AddPoints, Capability::RefundBalance];

    fn handle(_event: &Event, _reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        Ok(Vec::new())
    }
}

shopmesh_guest::plugin!(Greedy);
