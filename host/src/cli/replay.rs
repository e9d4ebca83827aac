//! `shopmesh replay`: starts a replay on a running host, follows it with a progress bar,
//! prints the summary and the first changed, regressed, new and other failed events, and exits
//! non-zero when it failed, when an `--apply` left events unapplied, or
//! (`--fail-on-change`) when anything changed or regressed, so a CI job can gate a plugin
//! release on "no unexpected change on last week's events".

use std::{process::ExitCode, time::Duration};

use anyhow::Context;
use clap::Args;
use serde_json::{json, Value};

use super::{
    client::{Client, HostArgs},
    follow::{follow, on_interrupt},
};
use crate::timestamp::Timestamp;

/// Exit code when the replay failed or was cancelled, or an `--apply` failed on an event
/// (it is not applied: a backfill that applied nothing is no success).
pub const EXIT_FAILED: u8 = 1;
/// Exit code, with `--fail-on-change`, when an event's effects changed or the version failed
/// on an event that was applied live (`regressed`).
pub const EXIT_CHANGED: u8 = 3;

#[derive(Debug, Clone, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    pub host: HostArgs,
    /// The plugin to run the events through
    #[arg(long)]
    pub plugin: String,
    /// A kept or staged version (default: the active one)
    #[arg(long)]
    pub version: Option<String>,
    /// First stream sequence (inclusive)
    #[arg(long, value_name = "N")]
    pub from_seq: Option<i64>,
    /// Last stream sequence (inclusive)
    #[arg(long, value_name = "N")]
    pub to_seq: Option<i64>,
    /// Events of the last while, e.g. 2h or 7days (instead of --from-time)
    #[arg(long, value_name = "DURATION", conflicts_with_all = ["from_time", "from_seq"], value_parser = humantime::parse_duration)]
    pub since: Option<Duration>,
    /// Events published at or after this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub from_time: Option<Timestamp>,
    /// Events published at or before this RFC 3339 time
    #[arg(long, value_name = "TIME")]
    pub to_time: Option<Timestamp>,
    /// Only these subjects (a subset of the plugin's), comma-separated
    #[arg(long, value_delimiter = ',')]
    pub subjects: Option<Vec<String>>,
    /// Apply the events the plugin has not applied yet (default: a dry-run that changes nothing)
    #[arg(long)]
    pub apply: bool,
    /// At most this many events per second
    #[arg(long, value_name = "EVENTS_PER_SEC")]
    pub max_rate: Option<i64>,
    /// Exit 3 when any event's effects changed, or it fails on one that was applied before
    #[arg(long)]
    pub fail_on_change: bool,
    /// How many events to list at the end, of each kind: changed, regressed, other failed
    #[arg(long, default_value_t = 10)]
    pub show: usize,
    /// Print the replay's record (state, range, last_seq, summary) as JSON instead; the exit
    /// code is the same
    #[arg(long)]
    pub json: bool,
}

impl ReplayArgs {
    /// A dry-run of `version` of `plugin` over the last `since` (None: the whole stream).
    pub fn dry_run(host: HostArgs, plugin: String, version: String, since: Option<Duration>, fail_on_change: bool) -> ReplayArgs {
        ReplayArgs {
            host,
            plugin,
            version: Some(version),
            from_seq: None,
            to_seq: None,
            since,
            from_time: None,
            to_time: None,
            subjects: None,
            apply: false,
            max_rate: None,
            fail_on_change,
            show: 10,
            json: false,
        }
    }

    fn request(&self) -> Value {
        let from_time = self.since.map(|d| Timestamp(crate::ids::now_ms() - d.as_millis() as i64)).or(self.from_time);
        let mut body = json!({ "plugin": self.plugin, "mode": if self.apply { "apply" } else { "dry-run" } });
        let fields = [
            ("version", self.version.clone().map(Value::from)),
            ("from_seq", self.from_seq.map(Value::from)),
            ("to_seq", self.to_seq.map(Value::from)),
            ("from_time", from_time.map(|t| Value::from(t.to_string()))),
            ("to_time", self.to_time.map(|t| Value::from(t.to_string()))),
            // `a, b` as well as `a,b`.
            ("subjects", self.subjects.as_ref().map(|s| s.iter().map(|s| s.trim()).filter(|s| !s.is_empty()).collect::<Vec<_>>().into())),
            ("max_rate", self.max_rate.map(Value::from)),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                body[key] = value;
            }
        }
        body
    }
}

/// Runs `shopmesh replay`.
pub async fn run(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let client = args.host.client()?;
    let interrupted = on_interrupt()?;
    // Applying with a kept version the fleet does not run, or for a plugin an operator paused
    // (perhaps for a bug), writes its effects all the same. Advice only: an unknown plugin or
    // version is the host's answer to the start below.
    let status: Option<Value> = if args.apply { client.get(&format!("/api/admin/plugins/{}", args.plugin)).await.ok() } else { None };
    if let (Some(status), Some(version)) = (&status, &args.version) {
        let kept = status["versions"].as_array().is_some_and(|vs| vs.iter().any(|v| v["version"] == version.as_str()));
        if kept && status["active_version"] != version.as_str() {
            eprintln!("note: applying with {} {version}, which is not the active version ({}): its effects are written as they come", args.plugin, status["active_version"].as_str().unwrap_or("none"));
        }
    }
    if status.is_some_and(|s| s["enabled"] == false) {
        eprintln!("note: {} is paused (its live events wait); --apply writes its effects all the same", args.plugin);
    }
    let started: Value = client.post_json("/api/admin/replays", &args.request()).await.context("starting the replay")?;
    let id = started["replay_id"].as_str().context("the host answered without a replay_id")?.to_owned();
    let range = match started["total"].as_u64().unwrap_or(0) {
        0 if args.subjects.is_some() => "no events on those subjects in that range".to_owned(),
        0 => "no events in that range".to_owned(),
        total => format!("sequences {} to {}, {total} event{}", started["from_seq"], started["to_seq"], plural(total as i64)),
    };
    eprintln!(
        "replay {id}: {} of {} {} ({range}) on {}",
        started["mode"].as_str().unwrap_or_default(),
        started["plugin"].as_str().unwrap_or_default(),
        started["version"].as_str().unwrap_or_default(),
        client.base()
    );
    let replay = follow(&client, &id, started["total"].as_u64().unwrap_or(0), interrupted).await?;
    if args.json {
        super::print(&format!("{}\n", serde_json::to_string_pretty(&replay)?))?;
    } else {
        report(&client, &replay, args.show).await?;
    }
    if let Some(error) = replay["error"].as_str() {
        eprintln!("error: {error}");
    }
    if let Some(command) = go_on(&replay, &args) {
        eprintln!("to go on from where it stopped: {command}");
    }
    let count = |key: &str| replay["summary"][key].as_i64().unwrap_or(0);
    let (changed, regressed, failed) = (count("changed"), count("regressed"), count("failed"));
    Ok(if replay["state"] != "done" {
        ExitCode::from(EXIT_FAILED)
    } else if replay["mode"] == "apply" && failed > 0 {
        eprintln!("{failed} event{} not applied (the version failed, or the event is malformed: see the failed events) (exit {EXIT_FAILED})", plural(failed));
        ExitCode::from(EXIT_FAILED)
    } else if args.fail_on_change && changed + regressed > 0 {
        eprintln!("--fail-on-change: {changed} changed, {regressed} regressed (exit {EXIT_CHANGED})");
        ExitCode::from(EXIT_CHANGED)
    } else {
        ExitCode::SUCCESS
    })
}

/// Prints a replay's summary for a person, then its first changed, regressed, new and other
/// failed events (at most `show` of each).
async fn report(client: &Client, replay: &Value, show: usize) -> anyhow::Result<()> {
    let (id, summary) = (replay["replay_id"].as_str().unwrap_or_default(), &replay["summary"]);
    super::print(&format!(
        "state {}  processed {}/{}\nsame {}  changed {}  new {}  failed {}  applied {}  skipped {}\n",
        replay["state"].as_str().unwrap_or_default(),
        replay["processed"],
        replay["total"],
        summary["same"],
        summary["changed"],
        summary["new"],
        summary["failed"],
        summary["applied"],
        summary["skipped"],
    ))?;
    let count = |key: &str| summary[key].as_i64().unwrap_or(0);
    let (changed, failed, regressed) = (count("changed"), count("failed"), count("regressed"));
    if regressed > 0 {
        super::print(&format!("regressed {regressed}: failed events that were applied before (live, by a redrive or an --apply replay), on the same inputs\n"))?;
    }
    // What a release gate fails on first (changed, regressed), what the version would do
    // that was never done (a new plugin's every event), then the other failed events, which
    // may be the stream's.
    let lists = [
        ("changed", "outcome=changed", changed),
        ("regressed", "outcome=failed&regressed=true", regressed),
        ("new", "outcome=new", count("new")),
        (if regressed > 0 { "other failed" } else { "failed" }, "outcome=failed&regressed=false", failed - regressed),
    ];
    for (title, query, count) in lists {
        if count > 0 && show > 0 {
            let events: Vec<Value> = client.get(&format!("/api/admin/replays/{id}/events?{query}&limit={show}")).await?;
            super::print(&table(title, &events))?;
            if count > events.len() as i64 {
                super::print(&format!("… and {} more: GET /api/admin/replays/{id}/events?{query}\n", count - events.len() as i64))?;
            }
        }
    }
    Ok(())
}

/// The command that replays the rest of a range this replay did not finish (cancelled,
/// failed, interrupted): the same plugin, version, mode, subjects, rate, host and configuration, from its
/// `resume_from`. `None` when there is nothing to go on with.
fn go_on(replay: &Value, args: &ReplayArgs) -> Option<String> {
    let (next, to) = (replay["resume_from"].as_i64()?, replay["to_seq"].as_i64()?);
    let mut command = format!("shopmesh replay --plugin {} --version {} --from-seq {next} --to-seq {to}", replay["plugin"].as_str()?, replay["version"].as_str()?);
    if let Some(host) = &args.host.host {
        command.push_str(&format!(" --host {}", quoted(host)));
    }
    if let Some(config) = &args.host.config.config {
        command.push_str(&format!(" --config {}", quoted(&config.display().to_string())));
    }
    if args.subjects.is_some() {
        let subjects: Vec<&str> = replay["subjects"].as_array()?.iter().filter_map(Value::as_str).collect();
        command.push_str(&format!(" --subjects {}", subjects.join(",")));
    }
    if replay["mode"] == "apply" {
        command.push_str(" --apply");
    }
    if let Some(rate) = replay["max_rate"].as_i64() {
        command.push_str(&format!(" --max-rate {rate}"));
    }
    if args.fail_on_change {
        command.push_str(" --fail-on-change");
    }
    if args.json {
        command.push_str(" --json");
    }
    // The token is never printed: the same --token again, or SHOPMESH_ADMIN_TOKEN.
    Some(command)
}

fn plural(n: i64) -> &'static str {
    if n == 1 { "" } else { "s" }
}

/// `word` as a shell reads it back: as it is when it is plain, else in single quotes.
fn quoted(word: &str) -> String {
    if word.chars().all(|c| c.is_ascii_alphanumeric() || "/._-+:,=@".contains(c)) {
        word.to_owned()
    } else {
        format!("'{}'", word.replace('\'', "'\\''"))
    }
}

/// The first events of one kind as a table: sequence, event, recorded → candidate (or, for
/// one that failed, why).
fn table(title: &str, events: &[Value]) -> String {
    let effects = |v: &Value| match v.as_array() {
        None => "-".to_string(),
        Some(list) if list.is_empty() => "(none)".to_string(),
        Some(list) => list.iter().map(short).collect::<Vec<_>>().join("; "),
    };
    let rows: Vec<Vec<String>> = events
        .iter()
        .map(|e| {
            let candidate = match e["reason"].as_str() {
                Some(reason) if e["outcome"] == "failed" => reason.to_owned(),
                _ => effects(&e["candidate"]),
            };
            vec![super::text(&e["seq"]), super::text(&e["event_id"]), super::text(&e["subject"]), format!("{} → {}", effects(&e["recorded"]), candidate)]
        })
        .collect();
    format!("\nfirst {title} events:\n{}", super::columns(&["seq", "event", "subject", "recorded → candidate"], &rows, &[0]))
}

/// One effect, briefly: its kind, its amounts and the start of its note (a log row that
/// changed only its words must not read the same on both sides).
fn short(effect: &Value) -> String {
    const NOTE: usize = 80;
    let kind = effect["kind"].as_str().unwrap_or("?");
    let mut parts: Vec<String> = ["quantity", "amount", "points"]
        .iter()
        .filter_map(|k| effect.get(*k).map(|v| format!("{k} {}", v.as_str().map(str::to_owned).unwrap_or_else(|| v.to_string()))))
        .collect();
    if let Some(note) = effect["note"].as_str().filter(|n| !n.is_empty()) {
        let cut: String = note.chars().take(NOTE).collect();
        parts.push(format!("note {:?}", if note.chars().count() > NOTE { cut + "…" } else { cut }));
    }
    if parts.is_empty() { kind.to_owned() } else { format!("{kind} {}", parts.join(" ")) }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn the_table_lines_up() {
        let event = |seq: u64| json!({"seq": seq, "event_id": "1049915046840242176", "subject": "shop.pay.success",
            "recorded": [{"kind": "add-points", "points": 4800}], "candidate": [{"kind": "add-points", "points": 9600}]});
        let table = super::table("changed", &[event(3), event(12345)]);
        let lines: Vec<&str> = table.lines().filter(|l| l.contains("event") || l.contains("shop.")).skip(1).collect();
        assert_eq!(lines.len(), 3, "{table}");
        let columns: Vec<(usize, usize)> = lines.iter().map(|l| (l.find("event").or(l.find("1049")).unwrap(), l.find("subject").or(l.find("shop.")).unwrap())).collect();
        assert!(columns.iter().all(|c| *c == columns[0]), "columns line up: {table}");
        assert!(table.contains("add-points points 4800 → add-points points 9600"), "{table}");
    }

    #[test]
    fn a_log_row_that_changed_its_words_shows_them() {
        let log = |note: &str| json!([{"kind": "append-log", "amount": "20.00", "note": note}]);
        let long = "x".repeat(100);
        let event = json!({"seq": 7, "event_id": "1", "subject": "shop.order.cancel", "recorded": log("cancelled"), "candidate": log(&long)});
        let table = super::table("changed", &[event]);
        let cut = format!("note \"{}…\"", "x".repeat(80));
        assert!(table.contains(&format!("append-log amount 20.00 note \"cancelled\" → append-log amount 20.00 {cut}")), "{table}");
    }
}
