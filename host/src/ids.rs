//! 64-bit ids: snowflakes generated here, strings in JSON (a JavaScript number cannot hold
//! them exactly).

use std::{
    fmt,
    str::FromStr,
    sync::Mutex,
    time::{SystemTime, UNIX_EPOCH},
};

/// A positive 64-bit id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Id(pub i64);

impl fmt::Display for Id {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for Id {
    type Err = String;

    fn from_str(s: &str) -> Result<Id, String> {
        // The canonical form only (no sign, no leading zero), as the schema's pattern says.
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) || s.starts_with('0') {
            return Err(format!("not an id (1 to 19 digits, no leading zero): {s:?}"));
        }
        match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Id(n)),
            _ => Err(format!("id out of range: {s}")),
        }
    }
}

/// The schema's pattern for an id, 1 ..= i64::MAX written digit by digit: up to 18 digits,
/// then 19-digit numbers below the maximum's prefix at each position, then the maximum
/// itself. A unit test checks it against `FromStr`.
pub const PATTERN: &str = "^(?:[1-9][0-9]{0,17}|[1-8][0-9]{18}|9[0-1][0-9]{17}|92[0-1][0-9]{16}|922[0-2][0-9]{15}|9223[0-2][0-9]{14}|92233[0-6][0-9]{13}|922337[0-1][0-9]{12}|92233720[0-2][0-9]{10}|922337203[0-5][0-9]{9}|9223372036[0-7][0-9]{8}|92233720368[0-4][0-9]{7}|922337203685[0-3][0-9]{6}|9223372036854[0-6][0-9]{5}|92233720368547[0-6][0-9]{4}|922337203685477[0-4][0-9]{3}|9223372036854775[0-7][0-9]{2}|922337203685477580[0-6]|9223372036854775807)$";

crate::text_type::impl_text_type!(
    Id,
    "Id",
    "int64",
    PATTERN,
    "A 64-bit id as a decimal string: 1 to 9223372036854775807, no leading zero.",
    "345963634385633280"
);
crate::text_type::impl_bigint_column!(Id, Id, |id: &Id| id.0);

/// Twitter-style snowflake: 41 bits of milliseconds since `EPOCH_MS`, 10 bits of worker
/// id, 12 bits of sequence. Ids grow with time, so outbox rows publish in creation order.
pub struct Snowflake {
    worker: i64,
    state: Mutex<(i64, i64)>, // (last millisecond, sequence within it)
}

/// 2019-01-01T00:00:00Z: the era of the original shop's ids.
const EPOCH_MS: i64 = 1_546_300_800_000;
const WORKER_BITS: u32 = 10;
const SEQ_BITS: u32 = 12;

impl Snowflake {
    /// `worker` must differ between hosts that write to the same database.
    pub fn new(worker: u16) -> Snowflake {
        Snowflake {
            worker: i64::from(worker) & ((1 << WORKER_BITS) - 1),
            state: Mutex::new((0, 0)),
        }
    }

    pub fn next(&self) -> i64 {
        let mut state = self.state.lock().expect("snowflake lock");
        let mut now = now_ms();
        if now < state.0 {
            // Clock went back: keep issuing from the last millisecond, never reuse an id.
            now = state.0;
        }
        if now == state.0 {
            state.1 = (state.1 + 1) & ((1 << SEQ_BITS) - 1);
            if state.1 == 0 {
                // 4096 ids in one millisecond: borrow the next millisecond.
                now += 1;
            }
        } else {
            state.1 = 0;
        }
        state.0 = now;
        ((now - EPOCH_MS) << (WORKER_BITS + SEQ_BITS)) | (self.worker << SEQ_BITS) | state.1
    }
}

/// Unix time in milliseconds, the unit every time column uses.
pub fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snowflakes_are_unique_and_increasing() {
        let gen = Snowflake::new(3);
        let ids: Vec<i64> = (0..20_000).map(|_| gen.next()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
        assert!(ids[0] > 0);
    }

    #[test]
    fn the_schema_pattern_admits_exactly_what_parses() {
        let pattern = regex::Regex::new(PATTERN).unwrap();
        let mut probes: Vec<String> = ["0", "1", "01", "9", "10", "345963634385633280", "9223372036854775806", "9223372036854775807", "9223372036854775808", "9223372036854775810", "9300000000000000000", "9999999999999999999", "10000000000000000000"].map(String::from).to_vec();
        // Every 19-digit neighbour of the maximum, digit by digit, and spread samples.
        let max = i64::MAX.to_string();
        for i in 0..max.len() {
            for d in b'0'..=b'9' {
                let mut s = max.clone().into_bytes();
                s[i] = d;
                probes.push(String::from_utf8(s).unwrap());
            }
        }
        probes.extend((0..63).map(|b| (1u64 << b).to_string()));
        for p in probes {
            assert_eq!(pattern.is_match(&p), p.parse::<Id>().is_ok(), "{p}");
        }
    }

    #[test]
    fn id_parsing_is_strict() {
        assert_eq!("345963634385633280".parse::<Id>().unwrap().0, 345963634385633280);
        for bad in ["", "0", "-1", "01", "1.0", "abc", "99999999999999999999", " 1"] {
            assert!(bad.parse::<Id>().is_err(), "{bad:?}");
        }
    }
}
