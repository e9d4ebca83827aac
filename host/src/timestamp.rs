//! Moments: unix milliseconds (UTC) in BIGINT columns, RFC 3339 strings in JSON and events.

use std::{fmt, str::FromStr};

use time::{format_description::well_known::Rfc3339, OffsetDateTime};

/// A moment, in unix milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(pub i64);

/// `ms` as RFC 3339 (UTC), e.g. `2026-11-26T21:25:21.123Z`: always three decimals, so every
/// moment has one width and moments sort as text (`.1Z` would sort after `.15Z`).
pub fn rfc3339(ms: i64) -> String {
    let Ok(t) = OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000) else { return String::new() };
    if !(0..=9999).contains(&t.year()) {
        return t.format(&Rfc3339).unwrap_or_default();
    }
    let (date, time) = (t.date(), t.time());
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        date.year(),
        u8::from(date.month()),
        date.day(),
        time.hour(),
        time.minute(),
        time.second(),
        time.millisecond()
    )
}

impl From<OffsetDateTime> for Timestamp {
    fn from(t: OffsetDateTime) -> Timestamp {
        Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64)
    }
}

impl From<Timestamp> for OffsetDateTime {
    fn from(t: Timestamp) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(t.0) * 1_000_000).unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&rfc3339(self.0))
    }
}

impl FromStr for Timestamp {
    type Err = String;

    fn from_str(s: &str) -> Result<Timestamp, String> {
        let t = OffsetDateTime::parse(s, &Rfc3339).map_err(|e| format!("not an RFC 3339 time ({e}): {s:?}"))?;
        Ok(Timestamp((t.unix_timestamp_nanos() / 1_000_000) as i64))
    }
}

crate::text_type::impl_text_type!(
    Timestamp,
    "Timestamp",
    "date-time",
    r"^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?(Z|[+-][0-9]{2}:[0-9]{2})$",
    "A moment as an RFC 3339 date-time.",
    "2026-11-26T21:25:21.123Z"
);
crate::text_type::impl_bigint_column!(Timestamp, Timestamp, |t: &Timestamp| t.0);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_through_rfc3339() {
        let t = Timestamp(1_764_192_321_123);
        assert_eq!(t.to_string(), "2025-11-26T21:25:21.123Z");
        assert_eq!(t.to_string().parse::<Timestamp>().unwrap(), t);
        assert!("yesterday".parse::<Timestamp>().is_err());
        // One width: a whole second and a tenth keep their three decimals.
        assert_eq!(Timestamp(1_764_192_321_000).to_string(), "2025-11-26T21:25:21.000Z");
        assert_eq!(Timestamp(1_764_192_321_100).to_string(), "2025-11-26T21:25:21.100Z");
    }
}
