//! vip-bonus: when a payment of at least `min_amount` whole units (config, default 1000)
//! succeeds, add `bonus` extra points (config, default 500) to the user. A sixth plugin, not
//! one of the shop's own: the host grants its name `add-points` by configuration or the
//! admin API, not by a release.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::{format, vec, vec::Vec};
use shopmesh_guest::*;

plugin! {
    pub struct VipBonus = "vip-bonus" @ "1.0.0", on ["shop.pay.success"], may [AddPoints],
        config r#"{"type":"object","properties":{"min_amount":{"type":"string","pattern":"^[0-9]{1,9}$","default":"1000"},"bonus":{"type":"string","pattern":"^[0-9]{1,6}$","default":"500"}}}"#;
    fn handle(event, reads) {
        bonus(event, reads)
    }
}

fn setting(reads: &impl Reads, key: &str, default: i64) -> Result<i64, PluginError> {
    match reads.config(key) {
        None => Ok(default),
        Some(v) => v.parse().map_err(|_| PluginError::InvalidEvent(format!("{key} is not a whole number: {v:?}"))),
    }
}

fn bonus(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
    let Payload::PaySuccess(paid) = &event.payload else {
        return Ok(vec![]);
    };
    let (min_amount, points) = (setting(reads, "min_amount", 1000)?, setting(reads, "bonus", 500)?);
    if paid.pay_amount < min_amount * 100 || points <= 0 {
        return Ok(vec![]);
    }
    Ok(vec![Effect::AddPoints(AddPoints { order_id: paid.order_id, user_id: paid.user_id, points })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_guest::testing::paid;

    #[test]
    fn a_bonus_from_the_threshold_up() {
        let none = FakeReads::default();
        assert!(VipBonus::handle(&paid(99_999), &none).unwrap().is_empty(), "999.99 is under 1000");
        match VipBonus::handle(&paid(100_000), &none).unwrap().as_slice() {
            [Effect::AddPoints(a)] => assert_eq!(a.points, 500),
            other => panic!("{}", other.len()),
        }
        let custom = FakeReads { config: vec![("min_amount".into(), "10".into()), ("bonus".into(), "7".into())], ..Default::default() };
        match VipBonus::handle(&paid(1_000), &custom).unwrap().as_slice() {
            [Effect::AddPoints(a)] => assert_eq!(a.points, 7),
            other => panic!("{}", other.len()),
        }
        let bad = FakeReads { config: vec![("bonus".into(), "lots".into())], ..Default::default() };
        assert!(VipBonus::handle(&paid(100_000), &bad).is_err());
    }
}
