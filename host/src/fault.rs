//! Fault injection for tests: `SHOPMESH_FAULT=<fail|exit>:<stock|coupon|balance|confirm>`.
//! It comes only from the process configuration; no API caller can switch it on.

use std::{fmt, str::FromStr};

/// A forward step of the order flow after the pre-order is saved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Step {
    Stock,
    Coupon,
    Balance,
    Confirm,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Stock => "stock",
            Step::Coupon => "coupon",
            Step::Balance => "balance",
            Step::Confirm => "confirm",
        }
    }

    /// The original's code for this step's failure.
    pub fn failure_code(self) -> &'static str {
        match self {
            Step::Stock => "SHOP_REDUCE_GOODS_NUM_FAIL",
            Step::Coupon => "SHOP_COUPON_USE_FAIL",
            Step::Balance => "SHOP_USER_MONEY_REDUCE_FAIL",
            Step::Confirm => "SHOP_ORDER_CONFIRM_FAIL",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The step fails as if its service errored; the steps before it stay committed.
    Fail,
    /// The process exits right after the step commits (a crash between two steps).
    Exit,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    pub kind: FaultKind,
    pub step: Step,
}

impl FromStr for Fault {
    type Err = String;

    fn from_str(s: &str) -> Result<Fault, String> {
        let (kind, step) = s
            .split_once(':')
            .ok_or_else(|| format!("SHOPMESH_FAULT must be <fail|exit>:<step>, got {s:?}"))?;
        let kind = match kind {
            "fail" => FaultKind::Fail,
            "exit" => FaultKind::Exit,
            _ => return Err(format!("unknown fault kind {kind:?} (fail or exit)")),
        };
        let step = match step {
            "stock" => Step::Stock,
            "coupon" => Step::Coupon,
            "balance" => Step::Balance,
            "confirm" => Step::Confirm,
            _ => return Err(format!("unknown step {step:?} (stock, coupon, balance, confirm)")),
        };
        Ok(Fault { kind, step })
    }
}

/// Consulted by the order flow around each forward step.
pub trait FaultPoint {
    /// Before the step: `true` when the step must fail.
    fn fails(&self, step: Step) -> bool;
    /// After the step committed: exits the process when configured to.
    fn after_commit(&self, step: Step);
}

impl FaultPoint for Option<Fault> {
    fn fails(&self, step: Step) -> bool {
        matches!(self, Some(Fault { kind: FaultKind::Fail, step: s }) if *s == step)
    }

    fn after_commit(&self, step: Step) {
        if let Some(Fault { kind: FaultKind::Exit, step: s }) = self {
            if *s == step {
                tracing::error!(%step, "SHOPMESH_FAULT: exiting after the {step} step committed");
                std::process::exit(86);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_rejects() {
        assert_eq!(
            "exit:stock".parse::<Fault>().unwrap(),
            Fault { kind: FaultKind::Exit, step: Step::Stock }
        );
        assert!("fail:pay".parse::<Fault>().is_err());
        assert!("boom".parse::<Fault>().is_err());
        let f: Option<Fault> = Some("fail:coupon".parse().unwrap());
        assert!(f.fails(Step::Coupon));
        assert!(!f.fails(Step::Stock));
    }
}
