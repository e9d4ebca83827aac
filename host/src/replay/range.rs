//! What a replay reads: its request's range resolved against what stream `SHOP` still holds,
//! as inclusive sequences, the subjects, and how many events that is. Times become sequences
//! here, so the runner only ever compares sequences.

use std::time::Duration;

use async_nats::jetstream::{
    consumer::{pull, AckPolicy, DeliverPolicy},
    stream::Stream,
};
use time::OffsetDateTime;

use super::{ReplayError, ReplayRequest};
use crate::timestamp::Timestamp;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolved {
    pub from_seq: u64,
    pub to_seq: u64,
    pub subjects: Vec<String>,
    /// Events in the range on those subjects.
    pub total: u64,
}

/// How far ahead of this host's clock a `from_time` may be (the CLI's `--since` is reckoned
/// on the client's) before it counts as in the future.
const CLOCKS_DIFFER_MS: i64 = 5_000;

/// Resolves `req` for a plugin version reading `plugin_subjects`.
pub async fn resolve(stream: &mut Stream, req: &ReplayRequest, plugin_subjects: &[String]) -> Result<Resolved, ReplayError> {
    let subjects = match &req.subjects {
        None => plugin_subjects.to_vec(),
        Some(asked) if asked.is_empty() => return Err(ReplayError::Invalid("subjects: give at least one, or leave it out".into())),
        Some(asked) => {
            if let Some(other) = asked.iter().find(|s| !plugin_subjects.contains(s)) {
                return Err(ReplayError::Invalid(format!(
                    "subjects: {other:?} is not one of the plugin's subjects {plugin_subjects:?}"
                )));
            }
            // Once each: the server refuses a consumer whose filters overlap.
            asked.iter().fold(Vec::new(), |mut once, s| {
                if !once.contains(s) {
                    once.push(s.clone());
                }
                once
            })
        }
    };
    if req.from_seq.is_some() && req.from_time.is_some() || req.to_seq.is_some() && req.to_time.is_some() {
        return Err(ReplayError::Invalid("give a range by sequence or by time, not both for one end".into()));
    }
    let state = stream.info().await.map_err(|e| ReplayError::Stream(e.to_string()))?.state.clone();
    let (first, last) = (state.first_sequence, state.last_sequence);
    let holds = if state.messages == 0 {
        "stream SHOP holds no events".to_string()
    } else {
        format!(
            "stream SHOP holds sequences {first}..={last} ({} to {})",
            Timestamp::from(state.first_timestamp),
            Timestamp::from(state.last_timestamp)
        )
    };
    let out_of_range = |what: String| Err(ReplayError::Range(format!("{what}; {holds}")));
    if let (Some(from), Some(to)) = (req.from_time, req.to_time) {
        if from > to {
            return out_of_range(format!("from_time {from} is after to_time {to}"));
        }
    }
    // A time range that starts after the last event (a `--since 1h` over an idle hour, or
    // over a stream with nothing left) holds nothing yet: an empty replay, not an error;
    // unless it starts in the future (beyond a few seconds' difference of clocks).
    let quiet = |t: &Timestamp| if state.messages == 0 { req.to_time.is_none() } else { *t > Timestamp::from(state.last_timestamp) };
    if let Some(t) = req.from_time.filter(quiet) {
        if t > Timestamp(crate::ids::now_ms() + CLOCKS_DIFFER_MS) {
            return out_of_range(format!("from_time {t} is in the future"));
        }
        if req.from_seq.is_none() && req.to_seq.is_none() {
            return Ok(Resolved { from_seq: last + 1, to_seq: last, subjects, total: 0 });
        }
    }
    let explicit = req.from_seq.is_some() || req.to_seq.is_some() || req.from_time.is_some() || req.to_time.is_some();
    if state.messages == 0 {
        return if explicit { out_of_range("nothing to replay in that range".into()) } else { Ok(Resolved { from_seq: first, to_seq: last, subjects, total: 0 }) };
    }
    let from_seq = match (req.from_seq, req.from_time) {
        (Some(seq), _) => seq as u64,
        (None, Some(t)) if t > Timestamp::from(state.last_timestamp) => last + 1,
        (None, Some(t)) => last + 1 - pending(stream, DeliverPolicy::ByStartTime { start_time: t.into() }, &[]).await?,
        (None, None) => first,
    };
    let to_seq = match (req.to_seq, req.to_time) {
        (Some(seq), _) => seq as u64,
        (None, Some(t)) if t < Timestamp::from(state.first_timestamp) => return out_of_range(format!("to_time {t} is before the first event")),
        // At or after the last event: all of it (and no date arithmetic near year 9999).
        (None, Some(t)) if t >= Timestamp::from(state.last_timestamp) => last,
        // The last event at or before `t`: one before the first after it.
        (None, Some(t)) => last - pending(stream, DeliverPolicy::ByStartTime { start_time: OffsetDateTime::from(t) + time::Duration::milliseconds(1) }, &[]).await?,
        (None, None) => last,
    };
    // A time window between two events (an idle while, more events after it) holds nothing:
    // the first event after its start is the one after the last before its end. (Only
    // with both ends times: with a sequence at one end, from > to is the caller's.)
    if from_seq == to_seq + 1 && req.from_time.is_some() && req.to_time.is_some() {
        return Ok(Resolved { from_seq, to_seq, subjects, total: 0 });
    }
    if from_seq > to_seq {
        return out_of_range(format!("from {from_seq} is after to {to_seq}"));
    }
    if from_seq < first || to_seq > last {
        return out_of_range(format!("sequences {from_seq}..={to_seq} are not all there"));
    }
    // Counted after the range first: events published between the two counts then make the
    // total too large, which the runner notices as events past the range, never too small,
    // which would end the replay before its last events.
    let after = if to_seq < last {
        pending(stream, DeliverPolicy::ByStartSequence { start_sequence: to_seq + 1 }, &subjects).await?
    } else {
        0
    };
    let from_on = pending(stream, DeliverPolicy::ByStartSequence { start_sequence: from_seq }, &subjects).await?;
    Ok(Resolved { from_seq, to_seq, subjects, total: from_on.saturating_sub(after) })
}

/// How many events on `subjects` (all, when empty) a consumer starting at `policy` would
/// get: a throwaway consumer's pending count.
async fn pending(stream: &Stream, policy: DeliverPolicy, subjects: &[String]) -> Result<u64, ReplayError> {
    let consumer = stream
        .create_consumer(pull::Config {
            deliver_policy: policy,
            filter_subjects: subjects.to_vec(),
            ack_policy: AckPolicy::None,
            inactive_threshold: Duration::from_secs(10),
            ..Default::default()
        })
        .await
        .map_err(|e| ReplayError::Stream(e.to_string()))?;
    let info = consumer.cached_info();
    let count = info.num_pending;
    let _ = stream.delete_consumer(&info.name).await; // it would expire by itself anyway
    Ok(count)
}
