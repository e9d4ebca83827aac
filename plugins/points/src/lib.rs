//! points: when a payment succeeds, add points to the user: `points_per_unit` (config,
//! default 1) for every whole 1.00 of the amount paid.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::vec::Vec;
use shopmesh_guest::*;

pub struct PointsRule;

impl Rule for PointsRule {
    const NAME: &'static str = "points";
    const VERSION: &'static str = "1.0.0";
    const SUBJECTS: &'static [&'static str] = &["shop.pay.success"];
    const CAPABILITIES: &'static [Capability] = &[Capability::AddPoints];
    const CONFIG_SCHEMA: &'static str = r#"{"type":"object","properties":{"points_per_unit":{"type":"string","pattern":"^[0-9]{1,3}$","default":"1"}}}"#;

    fn handle(event: &Event, reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
        award(event, reads, 1)
    }
}

mod rule;
pub use rule::award;

shopmesh_guest::plugin!(PointsRule);

#[cfg(test)]
mod tests {
    use super::*;

    fn paid(cents: i64) -> Event {
        Event {
            id: "1".into(),
            subject: "shop.pay.success".into(),
            time: String::new(),
            payload: Payload::PaySuccess(PaySucceeded { pay_id: 1, order_id: 7, user_id: 8, pay_amount: cents }),
        }
    }

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
