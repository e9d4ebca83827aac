//! points: when a payment succeeds, add points to the user: `points_per_unit` (config,
//! default 1) for every whole 1.00 of the amount paid.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use shopmesh_guest::*;

mod rule;
pub use rule::award;

plugin! {
    pub struct PointsRule = "points" @ "1.0.0", on ["shop.pay.success"], may [AddPoints],
        config r#"{"type":"object","properties":{"points_per_unit":{"type":"string","pattern":"^[0-9]{1,3}$","default":"1"}}}"#;
    fn handle(event, reads) {
        award(event, reads, 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_guest::testing::paid;

    fn points(effects: &[Effect]) -> i64 {
        match effects {
            [Effect::AddPoints(a)] => a.points,
            [] => 0,
            other => panic!("unexpected effects: {}", other.len()),
        }
    }

    #[test]
    fn whole_units_at_the_configured_rate() {
        assert_eq!(points(&PointsRule::handle(&paid(480_000), &FakeReads::default()).unwrap()), 4800);
        assert_eq!(points(&PointsRule::handle(&paid(199), &FakeReads::default()).unwrap()), 1, "cents do not count");
        assert_eq!(points(&PointsRule::handle(&paid(99), &FakeReads::default()).unwrap()), 0);
        let double = FakeReads { config: vec![("points_per_unit".into(), "2".into())], ..Default::default() };
        assert_eq!(points(&PointsRule::handle(&paid(480_000), &double).unwrap()), 9600);
    }

    #[test]
    fn bad_config_is_an_error_not_a_guess() {
        let bad = FakeReads { config: vec![("points_per_unit".into(), "1.5".into())], ..Default::default() };
        assert!(PointsRule::handle(&paid(100), &bad).is_err());
    }
}
