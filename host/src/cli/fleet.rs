//! `shopmesh plugin status|activate|disable|enable`: the operator's side of a running fleet's
//! plugins, through one host's admin API. Each change goes through the fleet (the registry,
//! the switches) as the API's does, so every host follows; each prints the plugin's status
//! as this host then has it, for a person (`status --json`: the API's answer).

use std::process::ExitCode;

use anyhow::Context;
use serde_json::{json, Value};

use super::{client::HostArgs, text};
use crate::plugins::name_refusal;

/// `plugin status [NAME]`: every plugin as a table, or one in detail.
pub async fn status(name: Option<&str>, json: bool, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let client = host.client()?;
    let answer: Value = match name {
        Some(name) => client.get(&format!("/api/admin/plugins/{}", plugin_name(name)?)).await?,
        None => client.get("/api/admin/plugins").await?,
    };
    let text = match (json, answer.as_array()) {
        (true, _) => format!("{}\n", serde_json::to_string_pretty(&answer)?),
        (false, Some(list)) => table(list),
        (false, None) => detail(&answer),
    };
    super::print(&text)?;
    Ok(ExitCode::SUCCESS)
}

/// `plugin activate NAME VERSION`: a kept version becomes the active one on every host.
pub async fn activate(name: &str, version: &str, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let path = format!("/api/admin/plugins/{}/activate", plugin_name(name)?);
    let status: Value = host.client()?.post_json(&path, &json!({ "version": version })).await.with_context(|| format!("activating {name} {version}"))?;
    // The answer comes once this host runs it; the others follow the fleet's registry.
    eprintln!("{name} {version} is the active version here, and every host of the fleet follows");
    super::print(&detail(&status))?;
    Ok(ExitCode::SUCCESS)
}

/// `plugin disable|enable NAME`: pauses or resumes a plugin on every host.
pub async fn switch(name: &str, enable: bool, host: &HostArgs) -> anyhow::Result<ExitCode> {
    let action = if enable { "enable" } else { "disable" };
    let path = format!("/api/admin/plugins/{}/{action}", plugin_name(name)?);
    let status: Value = host.client()?.post(&path).await.with_context(|| format!("{action} {name}"))?;
    let done = if enable { "enabled (its events run)" } else { "paused (its events wait in JetStream)" };
    eprintln!("{name} {done} here, and every host of the fleet follows");
    super::print(&detail(&status))?;
    Ok(ExitCode::SUCCESS)
}

/// `name` when it can be a plugin's (it goes into a URL path), else why not.
pub fn plugin_name(name: &str) -> anyhow::Result<&str> {
    match name_refusal(name) {
        Some(why) => anyhow::bail!("{why}"),
        None => Ok(name),
    }
}

fn list(v: &Value) -> String {
    let items: Vec<&str> = v.as_array().into_iter().flatten().filter_map(Value::as_str).collect();
    if items.is_empty() { "(none)".to_owned() } else { items.join(", ") }
}

fn has_revoked(status: &Value) -> bool {
    status["revoked"].as_array().is_some_and(|r| !r.is_empty())
}

fn switch_word(status: &Value) -> &'static str {
    if status["enabled"] == true { "enabled" } else { "paused" }
}

/// Every plugin, a line each.
fn table(plugins: &[Value]) -> String {
    let rows: Vec<Vec<String>> = plugins
        .iter()
        .map(|p| {
            let versions: Vec<String> = p["versions"].as_array().into_iter().flatten().map(|v| format!("{} {}", text(&v["version"]), text(&v["state"]))).collect();
            // A revoked capability fails the events that need it: not to be missed in a list.
            let mut revoked = if has_revoked(p) { format!("  (revoked: {})", list(&p["revoked"])) } else { String::new() };
            if let Some(why) = p["refused"].as_str() {
                revoked.push_str(&format!("  (refused here: {why})"));
            }
            let count = |key: &str| p[key].as_i64().unwrap_or(0).to_string();
            vec![text(&p["name"]), text(&p["active_version"]), switch_word(p).to_owned(), count("invocations"), count("failures"), versions.join(", ") + &revoked]
        })
        .collect();
    let mut out = super::columns(&["plugin", "active", "switch", "attempts", "failed", "versions"], &rows, &[3, 4]);
    out.push_str("(attempts and failed: on this host since it started; a retried event counts each time)\n");
    out
}

/// One plugin in detail: what runs, what it may do, and what it keeps.
pub fn detail(p: &Value) -> String {
    let head = match p["active_version"].as_str() {
        Some(version) => format!("{} {version}, {}, active since {}", text(&p["name"]), switch_word(p), text(&p["activated_at"])),
        None if p["refused"].is_string() => format!("{} (no active version here: refused, see below), {}", text(&p["name"]), switch_word(p)),
        None => format!("{} (no active version: staged only), {}", text(&p["name"]), switch_word(p)),
    };
    let mut out = format!("{head}\n");
    let mut line = |label: &str, value: String| out.push_str(&format!("  {label:<13} {value}\n"));
    line("sha256", text(&p["sha256"]));
    line("subjects", list(&p["subjects"]));
    line("capabilities", list(&p["capabilities"]));
    line("grants", list(&p["grants"]));
    if has_revoked(p) {
        line("revoked", format!("{} (its effects that need them are refused until granted again)", list(&p["revoked"])));
    }
    if let Some(why) = p["refused"].as_str() {
        // The reason says which: the version the fleet runs, or the folder's file at start.
        line("refused here", why.to_owned());
    }
    line("attempts", format!("{} on this host since it started, {} failed (a retried event counts each time)", p["invocations"].as_i64().unwrap_or(0), p["failures"].as_i64().unwrap_or(0)));
    for (i, v) in p["versions"].as_array().into_iter().flatten().enumerate() {
        let activated = v["activated_at"].as_str().map(|t| format!("  last activated {t}")).unwrap_or_default();
        let label = if i == 0 { "versions" } else { "" };
        line(label, format!("{:<10} {:<7} kept {}{activated}", text(&v["version"]), text(&v["state"]), text(&v["kept_at"])));
    }
    out
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn points() -> serde_json::Value {
        json!({"name": "points", "active_version": "1.0.0", "sha256": "ab12", "enabled": false, "subjects": ["shop.pay.success"],
            "capabilities": ["add-points"], "grants": ["add-points"], "revoked": [], "activated_at": "2026-12-07T14:00:00Z",
            "invocations": 12, "failures": 1, "kept_versions": ["1.0.0", "2.0.0"],
            "versions": [{"version": "1.0.0", "sha256": "ab12", "state": "active", "kept_at": "2026-12-07T13:00:00Z", "activated_at": "2026-12-07T14:00:00Z"},
                         {"version": "2.0.0", "sha256": "cd34", "state": "staged", "kept_at": "2026-12-07T13:30:00Z"}]})
    }

    #[test]
    fn a_plugin_reads_as_a_person_would_say_it() {
        let detail = super::detail(&points());
        assert!(detail.starts_with("points 1.0.0, paused, active since 2026-12-07T14:00:00Z\n"), "{detail}");
        assert!(detail.contains("  attempts      12 on this host since it started, 1 failed (a retried event counts each time)\n"), "{detail}");
        assert!(detail.contains("  versions      1.0.0      active  kept 2026-12-07T13:00:00Z  last activated 2026-12-07T14:00:00Z\n"), "{detail}");
        assert!(detail.contains("                2.0.0      staged  kept 2026-12-07T13:30:00Z\n"), "{detail}");
        assert!(!detail.contains("revoked"), "nothing revoked, nothing said: {detail}");
        let table = super::table(&[points()]);
        let row = table.lines().nth(1).unwrap();
        assert!(row.starts_with("points") && row.contains("paused") && row.ends_with("1.0.0 active, 2.0.0 staged"), "{table}");
        let columns = |l: &str| l.find("attempts").or(l.find("12")).unwrap();
        assert_eq!(columns(table.lines().next().unwrap()) + "attempts".len(), columns(row) + "12".len(), "right-aligned: {table}");
        let mut revoked = points();
        revoked["revoked"] = json!(["add-points"]);
        assert!(super::table(&[revoked]).lines().nth(1).unwrap().ends_with("2.0.0 staged  (revoked: add-points)"));
    }
}
