//! A points-shaped plugin that misbehaves on request, for the sandbox tests. Its config
//! key `mode` picks the behaviour: each violation has an obeyed twin.
//!   spin          loops forever             spin-briefly   loops a little, then ok
//!   grow          allocates without end     grow-a-little  allocates 2 MiB, then ok
//!   trap          panics (a trap)           ok             1 point per whole 1.00 paid
//!   overreach     refunds a balance (a capability it does not have)
//!   points-twice  awards the payment's whole points cap twice (each alone is allowed)
//!   read-chain    reads the order, then its user, goods and steps, then ok: each read
//!                 needs the one before, so a snapshot that starts empty fills in four rounds
#![no_std]
extern crate alloc;

use alloc::{vec, vec::Vec};
use shopmesh_guest::*;

fn ok(paid: &PaySucceeded) -> Vec<Effect> {
    vec![Effect::AddPoints(AddPoints { order_id: paid.order_id, user_id: paid.user_id, points: paid.pay_amount / 100 })]
}

plugin! {
    pub struct Rogue = "points" @ "0.0.1-rogue", on ["shop.pay.success"], may [AddPoints];
    fn handle(event, reads) {
        let Payload::PaySuccess(paid) = &event.payload else {
            return Ok(vec![]);
        };
        let mode = reads.config("mode").unwrap_or_default();
        match mode.as_str() {
            "spin" => loop {
                core::hint::black_box(&mode);
            },
            "spin-briefly" => {
                for i in 0..100_000u64 {
                    core::hint::black_box(i);
                }
                Ok(ok(paid))
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 1 << 20]);
                    core::hint::black_box(&hoard);
                }
            }
            "grow-a-little" => {
                let hoard = vec![1u8; 2 << 20];
                core::hint::black_box(&hoard);
                Ok(ok(paid))
            }
            "trap" => panic!("rogue trap"),
            "overreach" => Ok(vec![Effect::RefundBalance(RefundBalance {
                order_id: paid.order_id,
                user_id: paid.user_id,
                amount: paid.pay_amount,
            })]),
            "points-twice" => {
                let cap = || Effect::AddPoints(AddPoints { order_id: paid.order_id, user_id: paid.user_id, points: paid.pay_amount / 100 * 1000 });
                Ok(vec![cap(), cap()])
            }
            "read-chain" => {
                let missing = |what: &str| PluginError::Unavailable(alloc::format!("no {what}"));
                let order = reads.order(paid.order_id).ok_or_else(|| missing("order"))?;
                let user = reads.user(order.user_id).ok_or_else(|| missing("user"))?;
                reads.goods(order.goods_id).ok_or_else(|| missing("goods"))?;
                if reads.order_steps(order.order_id).is_empty() || user.user_id != paid.user_id {
                    return Err(missing("steps"));
                }
                Ok(ok(paid))
            }
            _ => Ok(ok(paid)),
        }
    }
}
