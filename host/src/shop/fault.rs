//! Fault injection for tests: `SHOPMESH_FAULT=<fail|exit>:<stock|coupon|balance|confirm>`.
//! It comes only from the process configuration; no API caller can switch it on.

use std::str::FromStr;

use super::steps::Step;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The step fails as if its service errored; the steps before it stay committed.
    Fail,
    /// The process exits right after the step commits (a crash between two steps).
    Exit,
    /// The step commits, but its answer is lost (a connection dropped after COMMIT): the
    /// flow sees a failure of a step that took effect.
    Lost,
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
            .ok_or_else(|| format!("SHOPMESH_FAULT must be <fail|exit|lost>:<step>, got {s:?}"))?;
        let kind = match kind {
            "fail" => FaultKind::Fail,
            "exit" => FaultKind::Exit,
            "lost" => FaultKind::Lost,
            _ => return Err(format!("unknown fault kind {kind:?} (fail, exit or lost)")),
        };
        let step = Step::parse(step).ok_or_else(|| format!("unknown step {step:?} (stock, coupon, balance, confirm)"))?;
        Ok(Fault { kind, step })
    }
}

/// Consulted by the order flow around each forward step.
pub trait FaultPoint {
    /// Before the step: `true` when the step must fail.
    fn fails(&self, step: Step) -> bool;
    /// After the step committed: exits the process when configured to; `true` when the
    /// commit's answer must be lost.
    fn after_commit(&self, step: Step) -> bool;
}

impl FaultPoint for Option<Fault> {
    fn fails(&self, step: Step) -> bool {
        matches!(self, Some(Fault { kind: FaultKind::Fail, step: s }) if *s == step)
    }

    fn after_commit(&self, step: Step) -> bool {
        match self {
            Some(Fault { kind: FaultKind::Exit, step: s }) if *s == step => {
                tracing::error!(%step, "SHOPMESH_FAULT: exiting after the {step} step committed");
                std::process::exit(86);
            }
            Some(Fault { kind: FaultKind::Lost, step: s }) => *s == step,
            _ => false,
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
        let lost: Option<Fault> = Some("lost:confirm".parse().unwrap());
        assert!(!lost.fails(Step::Confirm), "it commits");
        assert!(lost.after_commit(Step::Confirm) && !lost.after_commit(Step::Stock));
    }
}
