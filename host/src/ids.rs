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
        if s.is_empty() || s.len() > 19 || !s.bytes().all(|b| b.is_ascii_digit()) {
            return Err(format!("not an id (1 to 19 digits): {s:?}"));
        }
        match s.parse::<i64>() {
            Ok(n) if n > 0 => Ok(Id(n)),
            _ => Err(format!("id out of range: {s}")),
        }
    }
}

crate::text_type::impl_text_type!(
    Id,
    "Id",
    "int64",
    "^[0-9]{1,19}$",
    "A 64-bit id as a decimal string.",
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
    fn id_parsing_is_strict() {
        assert_eq!("345963634385633280".parse::<Id>().unwrap().0, 345963634385633280);
        for bad in ["", "0", "-1", "1.0", "abc", "99999999999999999999", " 1"] {
            assert!(bad.parse::<Id>().is_err(), "{bad:?}");
        }
    }
}
