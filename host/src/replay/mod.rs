//! Replay: a range of stream `SHOP` run again through one version of one plugin, with its
//! own ordered consumer, so live processing is never disturbed and keeps its position.
//!
//! - `dry-run` writes nothing to the shop: each event the plugin applied before is run on the
//!   snapshot recorded with it (like for like) and its effects compared with the recorded
//!   ones (`same` / `changed`); an event it never applied is run on the current state
//!   (`new`); a trap, a limit, a refused effect or a plugin error is `failed`, with why.
//! - `apply` runs the events this plugin has not applied yet through the live path
//!   (validation, fences, inbox; a dead letter that now applies is marked resolved); events
//!   applied before are `skipped`, so a second apply changes nothing.
//!
//! [`range`] resolves what to read against what the stream holds, [`runner`] reads and runs
//! it in the background, [`store`] keeps each replay's record (`shop_replay`) and its events
//! (`shop_replay_event`), so a replay survives the request that started it and a restart
//! ends it in a defined state (`failed`, "interrupted").

pub mod range;
pub mod runner;
pub mod store;

use poem_openapi::{Enum, Object};

use crate::{ids::Id, timestamp::Timestamp};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "kebab-case")]
pub enum Mode {
    /// Compare a version's effects with what was recorded; write nothing to the shop.
    DryRun,
    /// Process the events the plugin has not applied yet.
    Apply,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Enum)]
#[oai(rename_all = "snake_case")]
pub enum State {
    Running,
    Done,
    Failed,
    Cancelled,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Enum)]
#[oai(rename_all = "snake_case")]
pub enum Outcome {
    /// Applied before; the candidate returns the same effects on the same inputs.
    Same,
    /// Applied before; the candidate returns other effects on the same inputs.
    Changed,
    /// Never applied by this plugin; what the candidate would do on the current state.
    New,
    /// The candidate failed (trap, limit, refused effect, plugin error), or the event could
    /// not be applied.
    Failed,
    /// `apply`: processed now.
    Applied,
    /// `apply`: applied before; left alone.
    Skipped,
}

/// What to replay.
#[derive(Debug, Clone, Object)]
// Its example leaves the optional fields out: a `null` is refused (leave a field out).
#[oai(example, skip_serializing_if_is_none)]
pub struct ReplayRequest {
    /// The plugin to run the events through.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub plugin: String,
    pub mode: Mode,
    /// First stream sequence (inclusive); default: the first the stream holds.
    #[oai(validator(minimum(value = "1")))]
    pub from_seq: Option<i64>,
    /// Last stream sequence (inclusive); default: the last the stream holds.
    #[oai(validator(minimum(value = "1")))]
    pub to_seq: Option<i64>,
    /// Events published at or after this time (instead of `from_seq`); after the last
    /// event, an empty replay; in the future, refused.
    pub from_time: Option<Timestamp>,
    /// Events published at or before this time (instead of `to_seq`).
    pub to_time: Option<Timestamp>,
    /// A subset of the plugin's subjects; default: all of them.
    pub subjects: Option<Vec<String>>,
    /// A kept or staged version; default: the active one.
    #[oai(validator(min_length = 1, max_length = 64))]
    pub version: Option<String>,
    /// At most this many events per second, so a big replay cannot starve live traffic.
    #[oai(validator(minimum(value = "1"), maximum(value = "1000000")))]
    pub max_rate: Option<i64>,
}

impl ReplayRequest {
    /// Every event the stream holds through the active version of `plugin`, at full speed.
    pub fn everything(plugin: &str, mode: Mode) -> ReplayRequest {
        ReplayRequest { plugin: plugin.into(), mode, from_seq: None, to_seq: None, from_time: None, to_time: None, subjects: None, version: None, max_rate: None }
    }
}

/// How many events ended each way.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Object)]
pub struct Summary {
    pub same: i64,
    pub changed: i64,
    pub new: i64,
    pub failed: i64,
    pub applied: i64,
    pub skipped: i64,
    /// Of `failed` (dry-run): events a version had applied live, on the inputs the recording
    /// holds, that this version fails on. Its own failures, where the others may be the
    /// stream's (a malformed event, one applied before inputs were recorded): what a release
    /// gate counts with `changed`.
    pub regressed: i64,
}

impl Summary {
    pub fn add(&mut self, outcome: Outcome, regressed: bool) {
        self.regressed += i64::from(regressed);
        *match outcome {
            Outcome::Same => &mut self.same,
            Outcome::Changed => &mut self.changed,
            Outcome::New => &mut self.new,
            Outcome::Failed => &mut self.failed,
            Outcome::Applied => &mut self.applied,
            Outcome::Skipped => &mut self.skipped,
        } += 1;
    }
}

/// A replay's record.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Replay {
    pub replay_id: Id,
    pub plugin: String,
    pub version: String,
    pub mode: Mode,
    pub state: State,
    /// Events in the range on the replayed subjects.
    pub total: i64,
    /// Events run so far.
    pub processed: i64,
    /// The range, inclusive; `from_seq` above `to_seq` when it holds no events (a time range
    /// after the last event).
    pub from_seq: i64,
    pub to_seq: i64,
    /// The last sequence run so far (absent before the first). A replay that ended before
    /// `to_seq` (cancelled, failed, interrupted by a restart) goes on with a new one from
    /// the next sequence: `from_seq` = `last_seq` + 1, the same `to_seq`.
    pub last_seq: Option<i64>,
    /// Where a new replay goes on from, once this one ended before its range did (cancelled,
    /// failed, interrupted): the sequence after `last_seq`, or `from_seq` when it ran none.
    /// Absent while it runs, once it is done, and for a record from before `last_seq`.
    pub resume_from: Option<i64>,
    pub subjects: Vec<String>,
    pub max_rate: Option<i64>,
    pub summary: Summary,
    /// Who asked (the admin, and from where).
    pub requested_by: String,
    /// Why it failed, when it did.
    pub error: Option<String>,
    pub started_at: Timestamp,
    pub finished_at: Option<Timestamp>,
}

/// One event of a replay.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct ReplayEvent {
    /// Its sequence in stream SHOP.
    pub seq: i64,
    pub event_id: String,
    pub subject: String,
    pub outcome: Outcome,
    /// The effects recorded when the event was applied (none if it never was).
    pub recorded: Option<Vec<serde_json::Value>>,
    /// The effects the replayed version returned (none if it failed); of an `applied` event,
    /// those it wrote.
    pub candidate: Option<Vec<serde_json::Value>>,
    /// Why it failed.
    pub reason: Option<String>,
    /// A failure of this version's own on an event applied before (see the summary's
    /// `regressed`).
    pub regressed: bool,
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error("no plugin {0}")]
    UnknownPlugin(String),
    #[error("plugin {plugin} has no kept or staged version {version}")]
    UnknownVersion { plugin: String, version: String },
    #[error("no replay {0}")]
    NotFound(Id),
    #[error("{0}")]
    Range(String),
    #[error("request parameter invalid: {0}")]
    Invalid(String),
    #[error("stream SHOP cannot be read: {0}")]
    Stream(String),
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
}
