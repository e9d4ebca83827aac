//! A points plugin whose manifest also claims refund-balance: an upload the host must
//! refuse, since a plugin named points may only add points.
#![no_std]

use shopmesh_guest::*;

plugin! {
    pub struct Greedy = "points" @ "3.0.0", on ["shop.pay.success"], may [AddPoints, RefundBalance];
    fn handle(event, reads) {
        Ok(Default::default())
    }
}
