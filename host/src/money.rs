//! Exact money. Stored as integer minor units (cents) in the database, carried as
//! `rust_decimal::Decimal`-compatible decimal strings ("4800.00") in JSON.

use std::{fmt, str::FromStr};

use rust_decimal::Decimal;

/// The largest amount accepted from outside: 99,999,999,999.99. Far above any real order,
/// and small enough that price × quantity (quantity ≤ 1,000,000) cannot overflow an i64.
const MAX_CENTS: i64 = 9_999_999_999_999;

/// An amount of money in cents. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Money(i64);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    #[error("not a decimal number: {0:?}")]
    NotDecimal(String),
    #[error("more than 2 decimal places: {0}")]
    TooPrecise(String),
    #[error("out of range: {0}")]
    OutOfRange(String),
}

impl Money {
    pub const ZERO: Money = Money(0);

    pub const fn from_cents(cents: i64) -> Money {
        Money(cents)
    }

    pub const fn cents(self) -> i64 {
        self.0
    }

    pub fn to_decimal(self) -> Decimal {
        Decimal::new(self.0, 2)
    }

    /// Exact conversion; refuses more than two decimal places instead of rounding.
    pub fn from_decimal(d: Decimal) -> Result<Money, MoneyError> {
        let text = d.to_string();
        let d = d.normalize();
        if d.scale() > 2 {
            return Err(MoneyError::TooPrecise(text));
        }
        d.checked_mul(Decimal::ONE_HUNDRED).and_then(|c| i64::try_from(c).ok()).and_then(Money::within).ok_or(MoneyError::OutOfRange(text))
    }

    // Arithmetic stays within what the API can write (at most 11 integer digits): a result
    // past it is `None`, like an overflow, so no error asks a client for an amount the API
    // would refuse to read.
    pub fn checked_add(self, other: Money) -> Option<Money> {
        self.0.checked_add(other.0).and_then(Money::within)
    }

    pub fn checked_sub(self, other: Money) -> Option<Money> {
        self.0.checked_sub(other.0).and_then(Money::within)
    }

    pub fn checked_mul(self, n: i64) -> Option<Money> {
        self.0.checked_mul(n).and_then(Money::within)
    }

    fn within(cents: i64) -> Option<Money> {
        (cents.unsigned_abs() <= MAX_CENTS.unsigned_abs()).then_some(Money(cents))
    }

    pub fn is_negative(self) -> bool {
        self.0 < 0
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Always two places, the way the shop shows prices: "5000.00".
        write!(f, "{}", self.to_decimal())
    }
}

impl FromStr for Money {
    type Err = MoneyError;

    fn from_str(s: &str) -> Result<Money, MoneyError> {
        // Decimal::from_str accepts forms like "1e3" or "_"; money wants plain digits.
        let plain = s.strip_prefix('-').unwrap_or(s);
        let (int, frac) = plain.split_once('.').unwrap_or((plain, ""));
        let digits_ok = !int.is_empty()
            && int.bytes().all(|b| b.is_ascii_digit())
            && (frac.bytes().all(|b| b.is_ascii_digit()))
            && !(plain.contains('.') && frac.is_empty());
        if !digits_ok || int.len() > 11 {
            return Err(MoneyError::NotDecimal(s.to_owned()));
        }
        let d = Decimal::from_str(s).map_err(|_| MoneyError::NotDecimal(s.to_owned()))?;
        Money::from_decimal(d)
    }
}

crate::text_type::impl_text_type!(
    Money,
    "Money",
    "decimal",
    // At most 11 integer digits: MAX_CENTS, so what matches also fits.
    r"^-?[0-9]{1,11}(\.[0-9]{1,2})?$",
    "An exact amount as a decimal string: at most 11 digits before the point and 2 after.",
    "5000.00"
);
crate::text_type::impl_bigint_column!(Money, Money::from_cents, |m: &Money| m.cents());

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_decimals_exactly() {
        assert_eq!("5000.00".parse::<Money>().unwrap().cents(), 500_000);
        assert_eq!("0.1".parse::<Money>().unwrap().cents(), 10);
        assert_eq!("-3".parse::<Money>().unwrap().cents(), -300);
        assert_eq!("4800.50".parse::<Money>().unwrap().to_string(), "4800.50");
    }

    #[test]
    fn refuses_what_is_not_plain_money() {
        for bad in ["", "1.", ".5", "1e3", "1.005", "abc", "1,00", "+1", "9999999999999999"] {
            assert!(bad.parse::<Money>().is_err(), "{bad:?} should be refused");
        }
    }

    /// What arithmetic makes can be read back: a result past 11 integer digits is refused,
    /// as the API refuses to read it.
    #[test]
    fn arithmetic_stays_within_what_the_api_reads() {
        let most: Money = "99999999999.99".parse().unwrap();
        assert_eq!(most.checked_mul(1), Some(most));
        assert_eq!(most.checked_mul(2), None);
        assert_eq!(most.checked_add(Money::from_cents(1)), None);
        assert_eq!(Money::ZERO.checked_sub(most), Some(Money::from_cents(-most.cents())));
        assert!(most.to_string().parse::<Money>().is_ok());
    }

    #[test]
    fn displays_two_places() {
        assert_eq!(Money::from_cents(480_000).to_string(), "4800.00");
        assert_eq!(Money::from_cents(5).to_string(), "0.05");
    }
}
