//! `shopmesh dead-letters`: the events a plugin gave up on, through a running host's admin
//! API: list them, read one with its event, run them again after a fix (redrive), or close
//! one that can never succeed (dismiss). A redrive exits 1 when a letter stays open, so a
//! script knows its fix did not take.

use std::process::ExitCode;

use clap::Subcommand;
use serde_json::Value;

use super::{
    client::{Client, HostArgs},
    fleet::plugin_name,
    text,
};
use crate::{ids::Id, plugins::GUARD};

#[derive(Debug, Subcommand)]
pub enum DeadLetterCommand {
    /// The open dead letters, oldest first (--all: the closed ones too)
    List {
        /// Only this plugin's (shopmesh-guard: the malformed events the host's own check kept)
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        /// Also the letters closed already (redriven, dismissed)
        #[arg(long)]
        all: bool,
        /// The letters as JSON, as the API gives them (the open ones unless --all)
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// One dead letter, with its event as it arrived
    Show {
        /// The letter's id, as `dead-letters list` shows it
        id: String,
        /// The API's answer as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Run letters' events through their plugin's current version again (after a fix):
    /// the given letters, or every open one of --plugin. Exit 1 when one stays open
    Redrive {
        /// The letters' ids, as `dead-letters list` shows them
        #[arg(required_unless_present = "plugin", conflicts_with = "plugin", value_name = "ID")]
        ids: Vec<String>,
        /// Every open letter of this plugin
        #[arg(long, value_name = "NAME")]
        plugin: Option<String>,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Close letters without running their events (one that can never succeed, or is not wanted)
    Dismiss {
        /// The letters' ids, as `dead-letters list` shows them
        #[arg(required = true, value_name = "ID")]
        ids: Vec<String>,
        #[command(flatten)]
        host: HostArgs,
    },
}

pub async fn run(command: DeadLetterCommand) -> anyhow::Result<ExitCode> {
    match command {
        DeadLetterCommand::List { plugin, all, json, host } => {
            let path = match &plugin {
                Some(name) => format!("/api/admin/dead-letters?plugin={}", letters_of(name)?),
                None => "/api/admin/dead-letters".to_owned(),
            };
            let client = host.client()?;
            let letters: Vec<Value> = client.get(&path).await?;
            if let Some(name) = plugin.as_deref().filter(|name| letters.is_empty() && *name != GUARD) {
                // None at all: say so if no plugin has that name (a typo is not "all clear").
                let _: Value = client.get(&format!("/api/admin/plugins/{name}")).await?;
            }
            let shown: Vec<Value> = letters.into_iter().filter(|l| all || is_open(l)).collect();
            if json {
                super::print(&format!("{}\n", serde_json::to_string_pretty(&shown)?))?;
            } else if shown.is_empty() {
                eprintln!("no {}dead letters{}", if all { "" } else { "open " }, plugin.map(|p| format!(" of {p}")).unwrap_or_default());
            } else {
                super::print(&table(&shown))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::Show { id, json, host } => {
            let letter: Value = host.client()?.get(&format!("/api/admin/dead-letters/{}", letter_id(&id)?)).await?;
            super::print(&if json { format!("{}\n", serde_json::to_string_pretty(&letter)?) } else { detail(&letter) })?;
            Ok(ExitCode::SUCCESS)
        }
        DeadLetterCommand::Redrive { ids, plugin, host } => {
            let client = host.client()?;
            let results: Vec<Result<Value, anyhow::Error>> = match plugin {
                Some(name) => {
                    let all: Vec<Value> = client.post(&format!("/api/admin/plugins/{}/redrive", letters_of(&name)?)).await?;
                    if all.is_empty() {
                        eprintln!("no open dead letters of {name}");
                    }
                    all.into_iter().map(Ok).collect()
                }
                None => post_each(&client, &ids, |id| format!("/api/admin/dead-letters/{id}/redrive")).await,
            };
            report(results, |r| format!("{}  {}  {}", text(&r["id"]), if r["closed"] == true { "closed" } else { "open  " }, text(&r["result"])), |r| r["closed"] == true)
        }
        DeadLetterCommand::Dismiss { ids, host } => {
            let client = host.client()?;
            let results = post_each(&client, &ids, |id| format!("/api/admin/dead-letters/{id}/dismiss")).await;
            report(results, |l| format!("{}  {}", text(&l["id"]), text(&l["redrive_result"])), |_| true)
        }
    }
}

/// POSTs to `path(id)` for each id in turn (a bad one does not stop the others).
async fn post_each(client: &Client, ids: &[String], path: impl Fn(&str) -> String) -> Vec<anyhow::Result<Value>> {
    let mut results = Vec::new();
    for id in ids {
        results.push(match letter_id(id) {
            Ok(id) => client.post(&path(id)).await,
            Err(e) => Err(e),
        });
    }
    results
}

/// Prints a line per result (an error's on stderr); exit 1 unless every one is `done`.
fn report(results: Vec<anyhow::Result<Value>>, line: impl Fn(&Value) -> String, done: impl Fn(&Value) -> bool) -> anyhow::Result<ExitCode> {
    let mut all_done = true;
    for result in results {
        match result {
            Ok(value) => {
                all_done &= done(&value);
                super::print(&format!("{}\n", line(&value)))?;
            }
            Err(e) => {
                all_done = false;
                eprintln!("error: {e:#}");
            }
        }
    }
    Ok(if all_done { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}

/// A plugin's name, or the guard's, for the query and the path.
fn letters_of(name: &str) -> anyhow::Result<&str> {
    if name == GUARD { Ok(name) } else { plugin_name(name) }
}

fn letter_id(id: &str) -> anyhow::Result<&str> {
    match id.parse::<Id>() {
        Ok(_) => Ok(id),
        Err(why) => anyhow::bail!("{why}: a dead letter's id is a number, as `shopmesh dead-letters list` shows them"),
    }
}

fn is_open(letter: &Value) -> bool {
    // A host from before `state` says it by `redriven_at` alone.
    letter.get("state").map_or(letter["redriven_at"].is_null(), |state| state == "open")
}

/// Where a letter stands: open, or closed and how.
fn state(letter: &Value) -> String {
    match letter["state"].as_str() {
        _ if is_open(letter) => "open".to_owned(),
        Some("dismissed") => text(&letter["redrive_result"]),
        state => format!("{}: {}", state.unwrap_or("closed"), text(&letter["redrive_result"])),
    }
}

/// Letters, a line each, the reason last (it may be long).
fn table(letters: &[Value]) -> String {
    let rows: Vec<Vec<String>> = letters
        .iter()
        .map(|l| {
            let state = if is_open(l) { "open".to_owned() } else { text(&l["state"]) };
            let cells = ["id", "plugin", "plugin_version", "subject", "stream_seq", "attempts", "created_at"].map(|k| text(&l[k]));
            cells.into_iter().chain([state, text(&l["reason"])]).collect()
        })
        .collect();
    super::columns(&["id", "plugin", "version", "subject", "seq", "tries", "created", "state", "reason"], &rows, &[4, 5])
}

/// One letter: what, why, where it stands, how to look again, and its event.
fn detail(l: &Value) -> String {
    let mut out = format!("dead letter {} ({})\n", text(&l["id"]), state(l));
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<9} {value}\n"));
    line("plugin", format!("{} {}", text(&l["plugin"]), text(&l["plugin_version"])));
    line("subject", text(&l["subject"]));
    let seq = match l["stream_seq"].as_i64() {
        Some(seq) if l["plugin"] != GUARD => {
            format!(", stream sequence {seq} (dry-run it: shopmesh replay --plugin {} --from-seq {seq} --to-seq {seq})", text(&l["plugin"]))
        }
        Some(seq) => format!(", stream sequence {seq}"),
        None => String::new(),
    };
    line("event", format!("{}{seq}", text(&l["event_id"])));
    line("attempts", text(&l["attempts"]));
    line("created", text(&l["created_at"]));
    line("reason", text(&l["reason"]));
    if !is_open(l) {
        line("closed", text(&l["redriven_at"]));
    } else if !l["redrive_result"].is_null() {
        // A redrive that failed again leaves the letter open with its new reason here.
        line("redriven", format!("still open: {}", text(&l["redrive_result"])));
    }
    // The event as it arrived: pretty when it is JSON, as it is when not (why it may be here).
    let body = l["event"].as_str().unwrap_or_default();
    let shown = serde_json::from_str::<Value>(body).ok().and_then(|v| serde_json::to_string_pretty(&v).ok()).unwrap_or_else(|| body.to_owned());
    out.push_str(&format!("the event, as it arrived:\n{shown}\n"));
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    #[test]
    fn a_letter_reads_as_a_person_would_say_it() {
        let letter = json!({"id": "1049915046840242176", "state": "open", "plugin": "points", "plugin_version": "1.0.0", "subject": "shop.pay.success",
            "event_id": "e-1", "stream_seq": 42, "reason": "failed: rogue\ntrap", "attempts": 5, "created_at": "2026-12-07T14:00:00Z",
            "event": "{\"id\":\"e-1\"}"});
        let detail = super::detail(&letter);
        assert!(detail.starts_with("dead letter 1049915046840242176 (open)\n"), "{detail}");
        assert!(detail.contains("shopmesh replay --plugin points --from-seq 42 --to-seq 42"), "{detail}");
        assert!(detail.contains("  reason    failed: rogue trap\n"), "one line: {detail}");
        assert!(detail.ends_with("the event, as it arrived:\n{\n  \"id\": \"e-1\"\n}\n"), "the event, pretty: {detail}");
        let mut closed = letter.clone();
        closed["redriven_at"] = json!("2026-12-07T15:00:00Z");
        closed["redrive_result"] = json!("dismissed by admin");
        closed["state"] = json!("dismissed");
        closed["plugin_version"] = json!("0.0.1-rogue"); // longer than its column's header
        assert!(super::detail(&closed).starts_with("dead letter 1049915046840242176 (dismissed by admin)\n"));
        let table = super::table(&[letter, closed]);
        let rows: Vec<&str> = table.lines().collect();
        assert_eq!(rows.len(), 3, "{table}");
        let at = |l: &str, word: &str| l.find(word).unwrap();
        assert_eq!(at(rows[0], "state"), at(rows[1], "open"), "{table}");
        assert_eq!(at(rows[1], "open"), at(rows[2], "dismissed"), "{table}");
        assert_eq!(at(rows[1], "shop.pay"), at(rows[2], "shop.pay"), "a long version keeps the columns in line: {table}");
        assert!(super::letter_id("12a").is_err() && super::letter_id("012").is_err() && super::letter_id("12").is_ok());
        let mut failed_again = json!({"id": "7", "state": "open", "plugin": "points", "redrive_result": "failed: still no grant"});
        assert!(super::detail(&failed_again).contains("  redriven  still open: failed: still no grant\n"));
        failed_again["redriven_at"] = json!("2026-12-07T15:00:00Z");
        failed_again["state"] = json!("redriven");
        assert!(!super::detail(&failed_again).contains("still open"));
        // A host from before `state` says it by `redriven_at`.
        assert!(super::is_open(&json!({"id": "7"})) && !super::is_open(&json!({"id": "7", "redriven_at": "2026-12-07T15:00:00Z"})));
    }
}
