//! [`Replays`]: starting a replay (checking the request, resolving its range), running it in
//! the background chunk by chunk with its own ordered consumer, and cancelling it.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use async_nats::jetstream::consumer::{pull, DeliverPolicy};
use futures::StreamExt;

use super::{range, store, Mode, Outcome, Replay, ReplayError, ReplayEvent, ReplayRequest, State};
use crate::{
    bus::{self, StreamSettings},
    ids::{now_ms, Id},
    plugins::{
        dead_letters,
        delivery::{self, Delivery},
        dispatch::{self, Failure},
        effects,
        host::{Applied, Ready},
        inbox::{self, Entry},
        reads::{self, Snapshot},
        runtime::LoadedPlugin,
        InstallError, PluginHost,
    },
};

/// Events read and run together: one inbox query, one snapshot query per table and one
/// write of results per chunk.
const CHUNK: usize = 500;

/// How long a replay waits for the next event before it looks around: cancelled meanwhile,
/// or the rest of its range gone (expired past the stream's max age, or deleted).
const IDLE: Duration = Duration::from_secs(2);

/// How often the host running a replay says so in its record, and how long a record may go
/// without it before any host reading it takes its host as gone (a host killed and never
/// started again under its name). Long beside the beat: a busy database, clocks that differ.
const BEAT: Duration = Duration::from_secs(10);
const SILENT: Duration = Duration::from_secs(90);

pub struct Replays {
    host: Arc<PluginHost>,
    client: async_nats::Client,
    stream: StreamSettings,
    /// This host's name in replay records (a restarted host fails its own running ones).
    name: String,
}

/// Why a host's replays stopped running.
#[derive(Debug, Clone, Copy)]
pub enum Interrupted {
    /// Found running as the host starts: it stopped before they ended.
    Restart,
    /// The host is stopping (SIGTERM).
    Stop,
}

impl Interrupted {
    fn reason(self) -> &'static str {
        match self {
            Interrupted::Restart => "interrupted: the host running it stopped without ending it",
            Interrupted::Stop => "interrupted: the host running it shut down",
        }
    }
}

/// One message of the range.
struct Event {
    seq: u64,
    subject: String,
    body: Vec<u8>,
}

impl Replays {
    pub fn new(host: Arc<PluginHost>, client: async_nats::Client, stream: StreamSettings, name: String) -> Replays {
        Replays { host, client, stream, name }
    }

    /// Marks the replays this host is running as failed, `why` (nothing runs them any more):
    /// at start, those of before a crash or a restart; at a stop, those it leaves. Each
    /// record keeps its `last_seq`, where a new replay goes on.
    pub async fn interrupt(&self, why: Interrupted) -> Result<(), sqlx::Error> {
        let failed = store::fail_interrupted(&self.host.shop().db, &self.name, why.reason()).await?;
        if failed > 0 {
            tracing::warn!(replays = failed, reason = why.reason(), "replays marked failed");
        }
        Ok(())
    }

    /// Checks `req`, resolves its range and starts it in the background.
    pub async fn start(self: &Arc<Self>, req: ReplayRequest, requested_by: String) -> Result<Replay, ReplayError> {
        let registry = &self.host.registry;
        let unknown = |version: &str| match registry.kept(&req.plugin, version) {
            Err(InstallError::UnknownPlugin(_)) => ReplayError::UnknownPlugin(req.plugin.clone()),
            _ => ReplayError::UnknownVersion { plugin: req.plugin.clone(), version: version.to_owned() },
        };
        let plugin = match &req.version {
            Some(version) => registry.kept(&req.plugin, version).map_err(|_| unknown(version))?,
            None => registry.current(&req.plugin).ok_or_else(|| unknown("(active)"))?,
        };
        let js = bus::ensure_ready(&self.client, &self.stream).await.map_err(|e| ReplayError::Stream(e.to_string()))?;
        let mut stream = js.get_stream(bus::STREAM).await.map_err(|e| ReplayError::Stream(e.to_string()))?;
        let range = range::resolve(&mut stream, &req, plugin.subjects()).await?;
        let id = Id(self.host.shop().ids.next());
        let new = store::New {
            id,
            plugin: &plugin.name,
            version: plugin.version(),
            mode: req.mode,
            from_seq: range.from_seq,
            to_seq: range.to_seq,
            subjects: &range.subjects,
            max_rate: req.max_rate,
            total: range.total,
            requested_by: &requested_by,
            host: &self.name,
        };
        store::insert(&self.host.shop().db, &new).await?;
        tracing::info!(replay = %id, plugin = %plugin.name, version = plugin.version(), mode = store::mode_str(req.mode), from = range.from_seq, to = range.to_seq, total = range.total, %requested_by, "replay started");
        let this = self.clone();
        tokio::spawn(async move {
            let db = this.host.shop().db.clone();
            // Aborted when dropped, also if the run panics: a beat that outlived its replay
            // would keep it `running` for ever.
            let beating = tokio_util::task::AbortOnDropHandle::new(tokio::spawn(async move {
                let mut beats = tokio::time::interval(BEAT);
                loop {
                    beats.tick().await;
                    if let Err(e) = store::beat(&db, id).await {
                        tracing::warn!(replay = %id, error = %e, "could not say that the replay still runs");
                    }
                }
            }));
            let ran = this.run(id, &plugin, req.mode, req.max_rate, &range).await;
            drop(beating);
            let (state, error) = match ran {
                Ok(true) => (State::Done, None),
                Ok(false) => (State::Cancelled, None),
                Err(e) => (State::Failed, Some(e.to_string())),
            };
            let db = &this.host.shop().db;
            if let Err(e) = store::finish(db, id, state, error.as_deref()).await {
                tracing::error!(replay = %id, error = %e, "could not record the end of a replay");
            }
            // As recorded: a replay ended elsewhere (a cancel, its host stopping) says how.
            let (state, error) = store::get(db, id).await.map_or((state, error), |r| (r.state, r.error));
            let state = store::state_str(state);
            match error {
                Some(error) => tracing::warn!(replay = %id, state, %error, "replay ended"),
                None => tracing::info!(replay = %id, state, "replay ended"),
            }
        });
        self.get(id).await
    }

    /// Fails the running replays whose host went away for good, so that no reader sees one
    /// running for ever; at each read, as no host may be left that runs them.
    async fn reap(&self) -> Result<(), ReplayError> {
        let failed = store::fail_silent(&self.host.shop().db, now_ms() - SILENT.as_millis() as i64).await?;
        if failed > 0 {
            tracing::warn!(replays = failed, silent_secs = SILENT.as_secs(), "replays whose host stopped saying it runs them marked failed");
        }
        Ok(())
    }

    pub async fn get(&self, id: Id) -> Result<Replay, ReplayError> {
        self.reap().await?;
        store::get(&self.host.shop().db, id).await
    }

    pub async fn list(&self, plugin: Option<&str>, state: Option<State>, limit: i64) -> Result<Vec<Replay>, ReplayError> {
        self.reap().await?;
        Ok(store::list(&self.host.shop().db, plugin, state, limit).await?)
    }

    pub async fn running(&self) -> Result<Vec<Replay>, ReplayError> {
        self.reap().await?;
        Ok(store::running(&self.host.shop().db).await?)
    }

    pub async fn events(&self, id: Id, outcome: Option<Outcome>, regressed: Option<bool>, after: i64, limit: i64) -> Result<Vec<ReplayEvent>, ReplayError> {
        self.get(id).await?;
        Ok(store::events(&self.host.shop().db, id, outcome, regressed, after, limit).await?)
    }

    /// Cancels a running replay (its work so far is kept), saying who did in the log; a
    /// finished one is left as it is.
    pub async fn cancel(&self, id: Id, by: &str) -> Result<Replay, ReplayError> {
        let db = &self.host.shop().db;
        if self.get(id).await?.state == State::Running {
            store::finish(db, id, State::Cancelled, None).await?;
            tracing::info!(replay = %id, cancelled_by = by, "replay cancelled");
        }
        store::get(db, id).await // reaped by the read above
    }

    /// Reads the range and runs it chunk by chunk. `Ok(false)`: cancelled meanwhile.
    async fn run(&self, id: Id, plugin: &Arc<LoadedPlugin>, mode: Mode, max_rate: Option<i64>, range: &range::Resolved) -> Result<bool, ReplayError> {
        if range.total == 0 {
            return Ok(true);
        }
        let stream_err = |e: &dyn std::fmt::Display| ReplayError::Stream(e.to_string());
        let js = bus::ensure_ready(&self.client, &self.stream).await.map_err(|e| stream_err(&e))?;
        let stream = js.get_stream(bus::STREAM).await.map_err(|e| stream_err(&e))?;
        // Its own ordered consumer: ephemeral, never the plugin's durable one.
        let consumer = stream
            .create_consumer(pull::OrderedConfig {
                deliver_policy: DeliverPolicy::ByStartSequence { start_sequence: range.from_seq },
                filter_subjects: range.subjects.clone(),
                ..Default::default()
            })
            .await
            .map_err(|e| stream_err(&e))?;
        let chunk_size = max_rate.map_or(CHUNK, |rate| (rate as usize).clamp(1, CHUNK));
        let mut messages = consumer.messages().await.map_err(|e| stream_err(&e))?.ready_chunks(chunk_size);
        let (started, mut done) = (Instant::now(), 0u64);
        while done < range.total {
            let received = match tokio::time::timeout(IDLE, messages.next()).await {
                Ok(received) => received.ok_or_else(|| ReplayError::Stream("the stream ended".into()))?,
                Err(_) if store::get(&self.host.shop().db, id).await?.state != State::Running => return Ok(false),
                // The range was counted when the replay started and ends within the stream
                // as it was then: with nothing more to read, what is left of it is gone.
                Err(_) => {
                    tracing::info!(replay = %id, done, total = range.total, "the rest of the range is gone from the stream; replay ends");
                    break;
                }
            };
            let (mut chunk, mut past_end) = (Vec::with_capacity(received.len()), false);
            for m in received {
                let m = m.map_err(|e| stream_err(&e))?;
                let seq = m.info().map_err(|e| stream_err(&e))?.stream_sequence;
                if seq <= range.to_seq {
                    chunk.push(Event { seq, subject: m.subject.to_string(), body: m.payload.to_vec() });
                }
                past_end |= seq >= range.to_seq;
            }
            chunk.truncate((range.total - done) as usize);
            if chunk.is_empty() {
                break; // past the end of the range
            }
            done += chunk.len() as u64;
            let rows = match mode {
                Mode::DryRun => self.dry_run(plugin, &chunk).await?,
                Mode::Apply => self.apply(id, plugin, &chunk).await?,
            };
            if !store::record(&self.host.shop().db, id, &rows).await? {
                return Ok(false);
            }
            if past_end {
                break; // the range's end is read (a total counted high has nothing more)
            }
            if let Some(rate) = max_rate {
                let due = Duration::from_secs_f64(done as f64 / rate as f64);
                if let Some(wait) = due.checked_sub(started.elapsed()) {
                    tokio::time::sleep(wait).await;
                }
            }
        }
        Ok(true)
    }

    /// Parses a chunk; malformed events are `failed` rows at once.
    fn parse(chunk: &[Event]) -> (Vec<(&Event, Delivery)>, Vec<store::EventRow>) {
        let (mut parsed, mut malformed) = (Vec::new(), Vec::new());
        for e in chunk {
            match delivery::parse(&e.subject, &e.body) {
                Ok(d) => parsed.push((e, Delivery { seq: Some(e.seq), ..d })),
                Err(reason) => malformed.push(row(e, &delivery::event_id_guess(&String::from_utf8_lossy(&e.body)), Outcome::Failed, None, None, Some(format!("malformed event: {reason}")))),
            }
        }
        (parsed, malformed)
    }

    /// Runs each event on the inputs it was applied with (or, never applied, on the current
    /// state) and compares; writes nothing to the shop.
    async fn dry_run(&self, plugin: &Arc<LoadedPlugin>, chunk: &[Event]) -> Result<Vec<store::EventRow>, ReplayError> {
        let (parsed, mut rows) = Self::parse(chunk);
        let deliveries: Vec<&Delivery> = parsed.iter().map(|(_, d)| d).collect();
        let entries = inbox::lookup(&self.host.shop().db, &plugin.name, &deliveries).await?;
        // Applied events run on their recorded reads; the others on the current state.
        let never_applied: Vec<&Delivery> =
            deliveries.iter().zip(&entries).filter(|(_, e)| e.state != inbox::State::Applied).map(|(d, _)| *d).collect();
        let mut current = reads::snapshots(self.host.shop(), &never_applied, plugin.reads()).await?.into_iter();
        let mut unusable: Vec<Option<String>> = Vec::with_capacity(entries.len());
        let mut inputs = Vec::with_capacity(entries.len());
        for entry in &entries {
            let (input, why) = match (&entry.state, &entry.reads) {
                (inbox::State::Applied, Some(reads)) => match serde_json::from_str::<Snapshot>(reads) {
                    Ok(recorded) => (recorded, None),
                    Err(e) => (Snapshot::default(), Some(format!("recorded reads unreadable: {e}"))),
                },
                (inbox::State::Applied, None) => (Snapshot::default(), Some("applied before inputs were recorded: nothing to compare with".to_string())),
                _ => (current.next().expect("a current snapshot per event never applied"), None),
            };
            inputs.push(input);
            unusable.push(why);
        }
        let shop = self.host.shop();
        // A part the recording does not hold (the candidate reads more than the recorded
        // version did) comes from the current state, and the event says so.
        let terms = self.host.terms_of(&plugin.name);
        let ran = dispatch::run_all(self.host.runtime(), plugin, &deliveries, inputs, &terms, 2, |events, parts| async move {
            reads::snapshots(shop, &events, parts).await
        })
        .await;
        for ((((e, d), entry), ran), why) in parsed.iter().zip(&entries).zip(ran).zip(unusable) {
            // The candidate's own failure on an event applied before, on its recorded inputs
            // (a database error is the host's, not the candidate's).
            let regressed = why.is_none() && entry.state == inbox::State::Applied && matches!(&ran.result, Err(f) if !matches!(f, Failure::Db(_)));
            let candidate = match why {
                Some(why) => Err(why),
                None => ran.result.map(|effects| effects::view(&effects)).map_err(|f| f.to_string()),
            };
            let mut row = compare(e, d, entry, candidate);
            row.regressed = regressed;
            if !ran.filled.is_empty() && entry.state == inbox::State::Applied {
                let note = format!("read {} which the recording does not hold: taken from the current state", ran.filled.names().join(", "));
                row.reason = Some(match row.reason.take() {
                    Some(reason) => format!("{reason} ({note})"),
                    None => note,
                });
            }
            rows.push(row);
        }
        Ok(rows)
    }

    /// Processes the events this plugin has not applied yet through the live path.
    async fn apply(&self, id: Id, plugin: &Arc<LoadedPlugin>, chunk: &[Event]) -> Result<Vec<store::EventRow>, ReplayError> {
        let (parsed, mut rows) = Self::parse(chunk);
        let deliveries: Vec<&Delivery> = parsed.iter().map(|(_, d)| d).collect();
        let entries = inbox::lookup(&self.host.shop().db, &plugin.name, &deliveries).await?;
        let todo: Vec<(usize, Ready)> = deliveries
            .iter()
            .zip(&entries)
            .enumerate()
            .filter(|(_, (_, entry))| entry.state != inbox::State::Applied)
            .map(|(i, (d, entry))| (i, Ready { delivery: d, attempt: entry.state.next_attempt() }))
            .collect();
        let ready: Vec<&Ready> = todo.iter().map(|(_, r)| r).collect();
        let results = self.host.run_and_apply(plugin, &ready).await;
        let mut outcomes: Vec<Option<Result<Applied, Failure>>> = deliveries.iter().map(|_| None).collect();
        for ((i, _), result) in todo.iter().zip(results) {
            self.host.count_outside(plugin, &result, crate::metrics::Outcome::ReplayFailed);
            outcomes[*i] = Some(result);
        }
        let mut resolved = Vec::new();
        for (((e, d), entry), result) in parsed.iter().zip(&entries).zip(outcomes) {
            rows.push(match result {
                None | Some(Ok(Applied::Before)) => row(e, &d.id, Outcome::Skipped, entry.effects.clone(), None, None),
                Some(Ok(Applied::Now)) => {
                    resolved.push(d.id.clone());
                    row(e, &d.id, Outcome::Applied, None, None, None)
                }
                Some(Err(failure)) => {
                    let attempt = entry.state.next_attempt();
                    if let Err(err) = inbox::record_failure(&self.host.shop().db, &plugin.name, d, attempt, &failure.to_string()).await {
                        tracing::warn!(error = %err, "could not record a replay's failed attempt");
                    }
                    row(e, &d.id, Outcome::Failed, entry.effects.clone(), None, Some(failure.to_string()))
                }
            });
        }
        let result = format!("applied (replay {id})");
        dead_letters::resolve(&self.host.shop().db, &plugin.name, &resolved, &result).await?;
        // What each event applied now wrote, as its inbox row records it: a backfill's audit.
        let applied: Vec<&Delivery> = deliveries.iter().copied().filter(|d| resolved.contains(&d.id)).collect();
        let written = inbox::lookup(&self.host.shop().db, &plugin.name, &applied).await?;
        let mut written: std::collections::HashMap<Option<u64>, Option<String>> = applied.iter().map(|d| d.seq).zip(written.into_iter().map(|e| e.effects)).collect();
        for row in rows.iter_mut().filter(|r| r.outcome == Outcome::Applied) {
            row.candidate = written.remove(&Some(row.seq)).flatten();
        }
        Ok(rows)
    }
}

/// The dry-run outcome of one event.
fn compare(e: &Event, d: &Delivery, entry: &Entry, candidate: Result<serde_json::Value, String>) -> store::EventRow {
    let applied = entry.state == inbox::State::Applied;
    match candidate {
        Err(reason) => row(e, &d.id, Outcome::Failed, entry.effects.clone(), None, Some(reason)),
        Ok(effects) if !applied => row(e, &d.id, Outcome::New, None, Some(effects.to_string()), None),
        Ok(effects) => {
            let recorded: Option<serde_json::Value> = entry.effects.as_deref().and_then(|r| serde_json::from_str(r).ok());
            if recorded.as_ref() == Some(&effects) {
                row(e, &d.id, Outcome::Same, None, Some(effects.to_string()), None)
            } else {
                row(e, &d.id, Outcome::Changed, entry.effects.clone(), Some(effects.to_string()), None)
            }
        }
    }
}

fn row(e: &Event, event_id: &str, outcome: Outcome, recorded: Option<String>, candidate: Option<String>, reason: Option<String>) -> store::EventRow {
    store::EventRow { seq: e.seq, event_id: event_id.to_owned(), subject: e.subject.clone(), outcome, recorded, candidate, reason, regressed: false }
}
