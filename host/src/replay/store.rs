//! The replays' records (`shop_replay`) and their events (`shop_replay_event`): every read
//! and write of both tables.

use sqlx::{any::AnyRow, Row};

use super::{Mode, Outcome, Replay, ReplayError, ReplayEvent, State, Summary};
use crate::{
    ids::{now_ms, Id},
    store::{placeholders, rows_per_statement, Db},
    timestamp::Timestamp,
};

/// A new replay, as it starts.
pub struct New<'a> {
    pub id: Id,
    pub plugin: &'a str,
    pub version: &'a str,
    pub mode: Mode,
    pub from_seq: u64,
    pub to_seq: u64,
    pub subjects: &'a [String],
    pub max_rate: Option<i64>,
    pub total: u64,
    pub requested_by: &'a str,
    pub host: &'a str,
}

/// One replayed event as stored.
pub struct EventRow {
    pub seq: u64,
    pub event_id: String,
    pub subject: String,
    pub outcome: Outcome,
    /// JSON; `None` when the outcome is `same` (the candidate's are the same) or nothing was recorded.
    pub recorded: Option<String>,
    pub candidate: Option<String>,
    pub reason: Option<String>,
    /// A failure of the candidate's own on an event applied live (see [`Summary::regressed`]).
    pub regressed: bool,
}

pub fn mode_str(mode: Mode) -> &'static str {
    match mode {
        Mode::DryRun => "dry-run",
        Mode::Apply => "apply",
    }
}

const STATES: [(State, &str); 4] =
    [(State::Running, "running"), (State::Done, "done"), (State::Failed, "failed"), (State::Cancelled, "cancelled")];
const OUTCOMES: [(Outcome, &str); 6] = [
    (Outcome::Same, "same"),
    (Outcome::Changed, "changed"),
    (Outcome::New, "new"),
    (Outcome::Failed, "failed"),
    (Outcome::Applied, "applied"),
    (Outcome::Skipped, "skipped"),
];

pub fn state_str(state: State) -> &'static str {
    STATES.iter().find(|(s, _)| *s == state).map(|(_, t)| *t).expect("every state has a name")
}

pub fn outcome_str(outcome: Outcome) -> &'static str {
    OUTCOMES.iter().find(|(o, _)| *o == outcome).map(|(_, t)| *t).expect("every outcome has a name")
}

fn decode_err(what: &str) -> sqlx::Error {
    sqlx::Error::Decode(format!("unknown {what}").into())
}

pub async fn insert(db: &Db, r: &New<'_>) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO shop_replay (id, plugin, version, mode, state, from_seq, to_seq, subjects, max_rate, total,
                   requested_by, host, created_at)
               VALUES ($1, $2, $3, $4, 'running', $5, $6, $7, $8, $9, $10, $11, $12)";
    let subjects = serde_json::to_string(r.subjects).expect("strings serialise");
    let query = sqlx::query(sql).bind(r.id).bind(r.plugin).bind(r.version).bind(mode_str(r.mode));
    let query = query.bind(r.from_seq as i64).bind(r.to_seq as i64).bind(subjects).bind(r.max_rate).bind(r.total as i64);
    db.execute(query.bind(r.requested_by).bind(r.host).bind(now_ms())).await?;
    Ok(())
}

fn replay_from_row(r: &AnyRow) -> Result<Replay, sqlx::Error> {
    let state: String = r.try_get("state")?;
    let state = STATES.iter().find(|(_, t)| *t == state).map(|(s, _)| *s).ok_or_else(|| decode_err("state"))?;
    let (processed, from_seq, to_seq, last_seq): (i64, i64, i64, Option<i64>) = (r.try_get("processed")?, r.try_get("from_seq")?, r.try_get("to_seq")?, r.try_get("last_seq")?);
    let next = match last_seq {
        Some(last) => Some(last + 1),
        None if processed == 0 => Some(from_seq),
        None => None, // ran before `last_seq` was recorded: where it stopped is not known
    };
    let mode: String = r.try_get("mode")?;
    let subjects: String = r.try_get("subjects")?;
    Ok(Replay {
        replay_id: r.try_get("id")?,
        plugin: r.try_get("plugin")?,
        version: r.try_get("version")?,
        mode: if mode == "apply" { Mode::Apply } else { Mode::DryRun },
        state,
        total: r.try_get("total")?,
        processed,
        from_seq,
        to_seq,
        last_seq,
        resume_from: next.filter(|next| matches!(state, State::Failed | State::Cancelled) && *next <= to_seq),
        subjects: serde_json::from_str(&subjects).map_err(|e| sqlx::Error::Decode(e.into()))?,
        max_rate: r.try_get("max_rate")?,
        summary: Summary {
            same: r.try_get("same_count")?,
            changed: r.try_get("changed_count")?,
            new: r.try_get("new_count")?,
            failed: r.try_get("failed_count")?,
            applied: r.try_get("applied_count")?,
            skipped: r.try_get("skipped_count")?,
            regressed: r.try_get("regressed_count")?,
        },
        requested_by: r.try_get("requested_by")?,
        error: r.try_get("error")?,
        started_at: r.try_get::<Timestamp, _>("created_at")?,
        finished_at: r.try_get("finished_at")?,
    })
}

pub async fn get(db: &Db, id: Id) -> Result<Replay, ReplayError> {
    let row = sqlx::query("SELECT * FROM shop_replay WHERE id = $1").bind(id).fetch_optional(db.pool()).await?;
    Ok(replay_from_row(&row.ok_or(ReplayError::NotFound(id))?)?)
}

/// The newest replays first, at most `limit`: of `plugin` and in `state` when given.
pub async fn list(db: &Db, plugin: Option<&str>, state: Option<State>, limit: i64) -> Result<Vec<Replay>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM shop_replay WHERE ($1 = '' OR plugin = $1) AND ($2 = '' OR state = $2) ORDER BY id DESC LIMIT $3")
        .bind(plugin.unwrap_or_default())
        .bind(state.map(state_str).unwrap_or_default())
        .bind(limit)
        .fetch_all(db.pool())
        .await?;
    rows.iter().map(replay_from_row).collect()
}

/// The replays running now (on any host).
pub async fn running(db: &Db) -> Result<Vec<Replay>, sqlx::Error> {
    let rows = sqlx::query("SELECT * FROM shop_replay WHERE state = 'running' ORDER BY id").fetch_all(db.pool()).await?;
    rows.iter().map(replay_from_row).collect()
}

/// Stores a chunk's events and adds them to the replay's counts, in one transaction.
/// `false`: the replay is no longer running (cancelled): nothing was stored, stop.
pub async fn record(db: &Db, id: Id, events: &[EventRow]) -> Result<bool, sqlx::Error> {
    let mut summary = Summary::default();
    for e in events {
        summary.add(e.outcome, e.regressed);
    }
    let mut tx = db.begin_background().await?;
    let running = sqlx::query(
        "UPDATE shop_replay SET processed = processed + $1, same_count = same_count + $2,
                changed_count = changed_count + $3, new_count = new_count + $4, failed_count = failed_count + $5,
                applied_count = applied_count + $6, skipped_count = skipped_count + $7, regressed_count = regressed_count + $8,
                last_seq = COALESCE($9, last_seq)
          WHERE id = $10 AND state = 'running'",
    );
    let running = running.bind(events.len() as i64).bind(summary.same).bind(summary.changed).bind(summary.new);
    let running = running.bind(summary.failed).bind(summary.applied).bind(summary.skipped).bind(summary.regressed);
    // A chunk is read in stream order, so its last event is the replay's furthest.
    let running = running.bind(events.iter().map(|e| e.seq as i64).max()).bind(id);
    if running.execute(&mut *tx).await?.rows_affected() == 0 {
        return Ok(false);
    }
    // Multi-row inserts, a few hundred parameters at a time.
    for piece in events.chunks(rows_per_statement(9)) {
        let rows: Vec<String> = (0..piece.len()).map(|i| format!("({})", placeholders(i * 9 + 1, 9))).collect();
        let sql = format!(
            "INSERT INTO shop_replay_event (replay_id, seq, event_id, subject, outcome, recorded, candidate, reason, regressed) VALUES {}",
            rows.join(", ")
        );
        let mut query = sqlx::query(&sql);
        for e in piece {
            query = query.bind(id).bind(e.seq as i64).bind(&e.event_id).bind(&e.subject).bind(outcome_str(e.outcome));
            query = query.bind(&e.recorded).bind(&e.candidate).bind(&e.reason).bind(i64::from(e.regressed));
        }
        query.execute(&mut *tx).await?;
    }
    tx.commit().await?;
    Ok(true)
}

/// Ends a running replay in `state` (with `error` when it failed).
pub async fn finish(db: &Db, id: Id, state: State, error: Option<&str>) -> Result<(), sqlx::Error> {
    db.execute(sqlx::query("UPDATE shop_replay SET state = $1, error = $2, finished_at = $3 WHERE id = $4 AND state = 'running'")
        .bind(state_str(state))
        .bind(error)
        .bind(now_ms())
        .bind(id))
        .await?;
    Ok(())
}

/// Running replays of this host end `failed`, `why`: nothing runs them any more, and their
/// record says so.
pub async fn fail_interrupted(db: &Db, host: &str, why: &str) -> Result<u64, sqlx::Error> {
    let result = db.execute(sqlx::query(
        "UPDATE shop_replay SET state = 'failed', error = $1, finished_at = $2 WHERE state = 'running' AND host = $3",
    )
    .bind(why)
    .bind(now_ms())
    .bind(host))
    .await?;
    Ok(result.rows_affected())
}

/// The host running replay `id` says it still does (see [`fail_silent`]).
pub async fn beat(db: &Db, id: Id) -> Result<(), sqlx::Error> {
    db.execute(sqlx::query("UPDATE shop_replay SET beat_at = $1 WHERE id = $2 AND state = 'running'").bind(now_ms()).bind(id)).await?;
    Ok(())
}

/// Running replays whose host has not said it runs them since `cutoff` (ms) end `failed`:
/// that host went away and did not come back under its name, which would have failed them
/// ([`fail_interrupted`]). Their record keeps its `last_seq`, where a new replay goes on.
pub async fn fail_silent(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    // Read first: reads are frequent (a CLI following a replay, scrapes), silent hosts rare,
    // and on SQLite a write waits for the writer's turn.
    const SILENT: &str = "state = 'running' AND COALESCE(beat_at, created_at) < $1";
    let silent: i64 = sqlx::query_scalar(&format!("SELECT COUNT(*) FROM shop_replay WHERE {SILENT}")).bind(cutoff).fetch_one(db.pool()).await?;
    if silent == 0 {
        return Ok(0);
    }
    let result = db.execute(sqlx::query(&format!(
        "UPDATE shop_replay SET state = 'failed', finished_at = $2,
                error = 'interrupted: its host, ' || host || ', stopped saying it runs it (gone for good, or cut off from the database)'
          WHERE {SILENT}",
    ))
    .bind(cutoff)
    .bind(now_ms()))
    .await?;
    Ok(result.rows_affected())
}

/// A replay's events after `after` (a sequence), in order, at most `limit`: of one outcome, and regressed or not,
/// when asked.
pub async fn events(db: &Db, id: Id, outcome: Option<Outcome>, regressed: Option<bool>, after: i64, limit: i64) -> Result<Vec<ReplayEvent>, sqlx::Error> {
    let rows = sqlx::query(
        "SELECT seq, event_id, subject, outcome, recorded, candidate, reason, regressed FROM shop_replay_event
          WHERE replay_id = $1 AND seq > $2 AND ($3 = '' OR outcome = $3) AND ($4 < 0 OR regressed = $4) ORDER BY seq LIMIT $5",
    )
    .bind(id)
    .bind(after)
    .bind(outcome.map(outcome_str).unwrap_or_default())
    .bind(regressed.map_or(-1, i64::from))
    .bind(limit)
    .fetch_all(db.pool())
    .await?;
    rows.iter().map(event_from_row).collect()
}

fn event_from_row(r: &AnyRow) -> Result<ReplayEvent, sqlx::Error> {
    let outcome: String = r.try_get("outcome")?;
    let outcome = OUTCOMES.iter().find(|(_, t)| *t == outcome).map(|(o, _)| *o).ok_or_else(|| decode_err("outcome"))?;
    let list = |col: &str| -> Result<Option<Vec<serde_json::Value>>, sqlx::Error> {
        r.try_get::<Option<String>, _>(col)?
            .map(|text| serde_json::from_str(&text).map_err(|e| sqlx::Error::Decode(e.into())))
            .transpose()
    };
    let candidate = list("candidate")?;
    // A `same` event's recorded effects are its candidate's: stored once.
    let recorded = if outcome == Outcome::Same { candidate.clone() } else { list("recorded")? };
    Ok(ReplayEvent {
        seq: r.try_get("seq")?,
        event_id: r.try_get("event_id")?,
        subject: r.try_get("subject")?,
        outcome,
        recorded,
        candidate,
        reason: r.try_get("reason")?,
        regressed: r.try_get::<i64, _>("regressed")? != 0,
    })
}

/// Deletes the replays that finished before `cutoff`, with their events (see `retention`);
/// a running replay is never old. Events first: a pass cut short leaves a replay without
/// events for the next pass, never events without their replay.
pub async fn prune(db: &Db, cutoff: i64) -> Result<u64, sqlx::Error> {
    let events = db.prune("shop_replay_event", "replay_id, seq", "replay_id IN (SELECT id FROM shop_replay WHERE finished_at < $1)", cutoff).await?;
    Ok(events + db.prune("shop_replay", "id", "finished_at < $1", cutoff).await?)
}
