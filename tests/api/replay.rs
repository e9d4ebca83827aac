//! Replay: a dry-run of the active version on history finds every event the same and
//! changes nothing; a staged version with another rate changes every pay-success event and
//! shows recorded against candidate effects; apply skips what was applied and backfills what
//! was missed, once; live processing goes on meanwhile; bad requests start nothing; a replay
//! cut off by a killed host ends failed, saying so. On SQLite and Postgres, with a real
//! nats-server and the real components.

use std::time::Duration;

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{component, spawn_app_with, wait_consumers_idle, wait_for, with_plugins, Backend, Fixture, TestApp};

/// Pays `n` orders of 150.00 and waits until points and log have handled them.
async fn paid_orders(app: &TestApp, fx: &Fixture, n: usize) {
    let before = app.stream_events("shop.pay.success").await.len();
    for _ in 0..n {
        app.pay_order(fx, "150.00").await;
    }
    app.wait_events("shop.pay.success", before + n).await;
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;
}

/// Starts a replay and waits for it to end; returns its final record.
async fn replay(app: &TestApp, request: Value) -> Value {
    let started = app.admin(Method::POST, "/api/admin/replays", Some(&request)).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    assert!(started.body["replay_id"].is_string(), "{:?}", started.body);
    finished(app, started.body["replay_id"].as_str().unwrap()).await
}

async fn finished(app: &TestApp, id: &str) -> Value {
    wait_for("the replay to end", Duration::from_secs(60), || async {
        let r = app.admin(Method::GET, &format!("/api/admin/replays/{id}"), None).await.body;
        (r["state"] != "running").then_some(r)
    })
    .await
}

/// Everything a dry-run must leave as it was (the shop's rows, points, logs, inboxes).
async fn shop_state(app: &TestApp, user_id: &str) -> (std::collections::BTreeMap<String, String>, Value, i64, i64) {
    (
        app.snapshot().await,
        app.get(&format!("/api/users/{user_id}")).await.body["user_score"].clone(),
        app.count("shop_audit_log", "").await,
        app.count("trade_mq_consumer_log", "").await,
    )
}

async fn dry_run_of_the_active_version_is_all_same(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let fx = app.fixture(10, "150.00", "0.00", None).await;
    paid_orders(&app, &fx, 3).await;
    let before = shop_state(&app, &fx.user_id).await;

    let done = replay(&app, json!({"plugin": "points", "mode": "dry-run"})).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["version"], "1.0.0");
    assert_eq!(done["total"], 3, "the pay-success events (the stream also holds order-confirmed ones)");
    assert_eq!(done["processed"], 3);
    assert_eq!(done["summary"], json!({"same": 3, "changed": 0, "new": 0, "failed": 0, "applied": 0, "skipped": 0, "regressed": 0}));
    assert_eq!(shop_state(&app, &fx.user_id).await, before, "a dry-run changes nothing");

    let events = app.admin(Method::GET, &format!("/api/admin/replays/{}/events", done["replay_id"].as_str().unwrap()), None).await.body;
    let events = events.as_array().unwrap();
    assert_eq!(events.len(), 3);
    assert!(events.iter().all(|e| e["outcome"] == "same" && e["recorded"] == e["candidate"]), "{events:?}");
    assert_eq!(events[0]["candidate"][0]["kind"], "add-points");
    assert_eq!(events[0]["candidate"][0]["points"], 150);

    // The edges of a range are answered, not failed: a subject named twice is read once, and
    // a to_time at the end of the calendar means up to the last event.
    let edges = json!({"plugin": "points", "mode": "dry-run", "subjects": ["shop.pay.success", "shop.pay.success"], "to_time": "9999-12-31T23:59:59.999Z"});
    let edged = replay(&app, edges).await;
    assert_eq!((&edged["state"], &edged["total"], &edged["processed"]), (&json!("done"), &json!(3), &json!(3)), "{edged}");
    assert_eq!(edged["subjects"], json!(["shop.pay.success"]), "{edged}");
    // A while with no events since (a `--since` over an idle hour) is an empty replay.
    let now = shopmesh::timestamp::Timestamp(shopmesh::ids::now_ms()).to_string();
    let quiet = replay(&app, json!({"plugin": "points", "mode": "dry-run", "from_time": now})).await;
    assert_eq!((&quiet["state"], &quiet["total"], &quiet["processed"]), (&json!("done"), &json!(0), &json!(0)), "{quiet}");
    // So is a window between two events, once more have come after it.
    let then = shopmesh::timestamp::Timestamp(shopmesh::ids::now_ms()).to_string();
    paid_orders(&app, &fx, 1).await;
    let gap = replay(&app, json!({"plugin": "points", "mode": "dry-run", "from_time": now, "to_time": then})).await;
    assert_eq!((&gap["state"], &gap["total"], &gap["processed"]), (&json!("done"), &json!(0), &json!(0)), "{gap}");
}

async fn a_staged_version_with_another_rate_changes_every_event(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let fx = app.fixture(10, "150.00", "0.00", None).await;
    paid_orders(&app, &fx, 3).await;
    let before = shop_state(&app, &fx.user_id).await;

    let staged = app.upload("points", component("points_v2"), "?activate=false").await;
    assert_eq!(staged.status, 200, "{:?}", staged.body);
    assert_eq!(staged.body["active_version"], "1.0.0", "staging does not activate");
    assert_eq!(staged.body["kept_versions"], json!(["1.0.0", "2.0.0"]));

    let done = replay(&app, json!({"plugin": "points", "mode": "dry-run", "version": "2.0.0"})).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["version"], "2.0.0");
    assert_eq!(done["summary"]["changed"], 3, "{done}");
    assert_eq!(done["summary"]["same"], 0);
    let id = done["replay_id"].as_str().unwrap();
    let changed = app.admin(Method::GET, &format!("/api/admin/replays/{id}/events?outcome=changed"), None).await.body;
    let changed = changed.as_array().unwrap();
    assert_eq!(changed.len(), 3);
    for e in changed {
        assert_eq!(e["recorded"][0]["points"], 150, "{e}");
        assert_eq!(e["candidate"][0]["points"], 300, "{e}");
        assert_eq!(e["recorded"][0]["user_id"], fx.user_id.as_str());
    }
    // Paged: after the first event's sequence, two remain.
    let after = changed[0]["seq"].as_i64().unwrap();
    let page = app.admin(Method::GET, &format!("/api/admin/replays/{id}/events?outcome=changed&after={after}&limit=10"), None).await.body;
    assert_eq!(page.as_array().unwrap().len(), 2);

    let status = app.admin(Method::GET, "/api/admin/plugins", None).await.body;
    let points = status.as_array().unwrap().iter().find(|p| p["name"] == "points").unwrap().clone();
    assert_eq!(points["active_version"], "1.0.0", "the active version is unchanged");
    assert_eq!(shop_state(&app, &fx.user_id).await, before, "nothing in the shop changed");

    // The CLI gates on it: exit 3 with --fail-on-change, and it prints the summary.
    let cli = replay_cli(&app, &["--version", "2.0.0", "--fail-on-change"]).await;
    let out = String::from_utf8_lossy(&cli.stdout);
    assert_eq!(cli.status.code(), Some(3), "{out}\n{}", String::from_utf8_lossy(&cli.stderr));
    assert!(out.contains("changed 3") && out.contains("add-points points 150 → add-points points 300"), "{out}");
    assert!(String::from_utf8_lossy(&cli.stderr).contains("--fail-on-change: 3 changed, 0 regressed (exit 3)"), "{cli:?}");
    let same = replay_cli(&app, &["--fail-on-change"]).await;
    assert_eq!(same.status.code(), Some(0), "{}", String::from_utf8_lossy(&same.stdout));
    // For a script: the record as JSON, the same exit code; subjects listed as a person types them.
    let json = replay_cli(&app, &["--version", "2.0.0", "--fail-on-change", "--json", "--subjects", "shop.pay.success, shop.pay.success"]).await;
    assert_eq!(json.status.code(), Some(3), "{json:?}");
    let record: Value = serde_json::from_slice(&json.stdout).expect("JSON on stdout");
    assert_eq!((&record["state"], &record["summary"]["changed"], &record["subjects"]), (&json!("done"), &json!(3), &json!(["shop.pay.success"])), "{record}");
    assert!(record["last_seq"].as_i64().is_some_and(|last| last <= record["to_seq"].as_i64().unwrap()), "{record}");
}

async fn apply_skips_what_was_applied_and_backfills_what_was_missed_once(backend: Backend) {
    // points traps on every event: they end up dead-lettered.
    let app = spawn_app_with(backend, |s| {
        with_plugins(s);
        s.plugin_max_attempts = 2;
        s.plugin_config.0.insert("points".into(), [("mode".to_string(), "trap".to_string())].into());
    })
    .await;
    app.registry().install("points", &component("rogue")).unwrap();
    let fx = app.fixture(10, "150.00", "0.00", None).await;
    paid_orders(&app, &fx, 3).await;
    async fn score(app: &TestApp, fx: &Fixture) -> i64 {
        app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"].as_i64().unwrap()
    }
    assert_eq!(app.count("shop_dead_letter", "plugin = 'points' AND redriven_at IS NULL").await, 3);
    assert_eq!(score(&app, &fx).await, 0);
    // Dry-run, the trapping version fails on each, but no version had applied them: nothing
    // regressed, and a release gate does not count them (they may be the stream's).
    let never = replay(&app, json!({"plugin": "points", "mode": "dry-run"})).await;
    assert_eq!((&never["summary"]["failed"], &never["summary"]["regressed"]), (&json!(3), &json!(0)), "{never}");
    let none = app_events(&app, never["replay_id"].as_str().unwrap(), "regressed=true").await;
    assert_eq!(none.len(), 0, "{none:?}");
    let passed = replay_cli(&app, &["--version", "0.0.1-rogue", "--fail-on-change"]).await;
    assert_eq!(passed.status.code(), Some(0), "{}", String::from_utf8_lossy(&passed.stdout));
    // An --apply with the trapping version applies none of them: no success (exit 1).
    let unapplied = replay_cli(&app, &["--apply"]).await;
    assert_eq!(unapplied.status.code(), Some(1), "{unapplied:?}");
    assert!(String::from_utf8_lossy(&unapplied.stderr).contains("3 events not applied (the version failed, or the event is malformed: see the failed events) (exit 1)"), "{unapplied:?}");
    assert!(String::from_utf8_lossy(&unapplied.stdout).contains("failed 3  applied 0"), "{unapplied:?}");
    assert_eq!(score(&app, &fx).await, 0);
    assert_eq!(invocations(&app, "0.0.1-rogue", "replay_failed").await, Some(3.0), "counted where operators look");

    // The log plugin applied everything already: all skipped, nothing changes.
    let logs = app.count("shop_audit_log", "").await;
    let done = replay(&app, json!({"plugin": "log", "mode": "apply"})).await;
    assert_eq!(done["state"], "done", "{done}");
    assert_eq!(done["summary"]["skipped"], done["total"]);
    assert_eq!(done["summary"]["applied"], 0);
    assert_eq!(app.count("shop_audit_log", "").await, logs);

    // The bug is fixed (back to the real points plugin); apply backfills each missed event once.
    let fixed = app.admin(Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "1.0.0"}))).await;
    assert_eq!(fixed.status, 200, "{:?}", fixed.body);
    let done = replay(&app, json!({"plugin": "points", "mode": "apply"})).await;
    assert_eq!(done["summary"]["applied"], 3, "{done}");
    assert_eq!(score(&app, &fx).await, 450);
    assert_eq!(invocations(&app, "1.0.0", "applied").await, Some(3.0), "a backfill is counted as applied");
    // Each applied event says what it wrote.
    let applied = app_events(&app, done["replay_id"].as_str().unwrap(), "outcome=applied").await;
    assert_eq!(applied.len(), 3, "{applied:?}");
    assert!(applied.iter().all(|e| e["candidate"][0]["kind"] == "add-points" && e["candidate"][0]["points"] == 150), "{applied:?}");
    assert_eq!(app.count("shop_dead_letter", "plugin = 'points' AND redriven_at IS NULL").await, 0, "the dead letters are resolved");
    assert_eq!(app.count("shop_dead_letter", "plugin = 'points' AND redrive_result LIKE 'applied (replay %'").await, 3);

    // A second apply changes nothing.
    let again = replay(&app, json!({"plugin": "points", "mode": "apply"})).await;
    assert_eq!(again["summary"]["skipped"], 3, "{again}");
    assert_eq!(again["summary"]["applied"], 0);
    assert_eq!(score(&app, &fx).await, 450);
    assert_eq!(app.count("trade_mq_consumer_log", "group_name = 'points' AND consumer_status = 1").await, 3);

    // Now that 1.0.0 applied them, the trapping version failing on them has regressed, and
    // the gate fails (exit 3), saying so.
    let broken = replay(&app, json!({"plugin": "points", "mode": "dry-run", "version": "0.0.1-rogue"})).await;
    assert_eq!((&broken["summary"]["failed"], &broken["summary"]["regressed"]), (&json!(3), &json!(3)), "{broken}");
    let failed = replay_cli(&app, &["--version", "0.0.1-rogue", "--fail-on-change", "--show", "1"]).await;
    let out = String::from_utf8_lossy(&failed.stdout);
    assert_eq!(failed.status.code(), Some(3), "{out}");
    assert!(out.contains("regressed 3") && out.contains("first regressed events:") && out.contains("rogue trap"), "{out}");
    assert!(out.contains("… and 2 more: GET /api/admin/replays/") && !out.contains("other failed events"), "all three regressed, one shown: {out}");
    assert!(String::from_utf8_lossy(&failed.stderr).contains("--fail-on-change: 0 changed, 3 regressed (exit 3)"), "{failed:?}");
    // Applying with a version that is not the active one says so (here, nothing is left to apply).
    let applied = replay_cli(&app, &["--version", "0.0.1-rogue", "--apply"]).await;
    assert_eq!(applied.status.code(), Some(0), "{applied:?}");
    let said = String::from_utf8_lossy(&applied.stderr);
    assert!(said.contains("note: applying with points 0.0.1-rogue, which is not the active version (1.0.0)"), "{said}");
    assert!(String::from_utf8_lossy(&applied.stdout).contains("applied 0  skipped 3"), "{applied:?}");
    // So does applying for a plugin an operator paused.
    assert_eq!(app.admin(Method::POST, "/api/admin/plugins/points/disable", None).await.status, 200);
    let paused = replay_cli(&app, &["--apply"]).await;
    assert_eq!(paused.status.code(), Some(0), "{paused:?}");
    assert!(String::from_utf8_lossy(&paused.stderr).contains("note: points is paused (its live events wait); --apply writes its effects all the same"), "{paused:?}");
    assert_eq!(app.admin(Method::POST, "/api/admin/plugins/points/enable", None).await.status, 200);
    let id = broken["replay_id"].as_str().unwrap();
    let marked = app_events(&app, id, "regressed=true").await;
    assert!(marked.len() == 3 && marked.iter().all(|e| e["regressed"] == true && e["outcome"] == "failed"), "{marked:?}");
    assert_eq!(app_events(&app, id, "outcome=failed&regressed=false").await.len(), 0);
}

/// `shopmesh replay --plugin points ARGS` against `app` (not blocking a worker of the
/// runtime that runs the replay).
async fn replay_cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .args(["replay", "--plugin", "points", "--host", &app.address])
        .args(args)
        .env("SHOPMESH_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)
        .output()
        .await
        .expect("run the CLI")
}

/// `shopmesh_plugin_invocations_total` of points `version` with `outcome`, if any.
async fn invocations(app: &TestApp, version: &str, outcome: &str) -> Option<f64> {
    let scrape = app.get("/metrics").await.body;
    let line = scrape.as_str().unwrap().lines().find(|l| {
        l.starts_with("shopmesh_plugin_invocations_total{")
            && [format!("outcome=\"{outcome}\""), "plugin=\"points\"".into(), format!("version=\"{version}\"")].iter().all(|label| l.contains(label.as_str()))
    })?;
    line.rsplit(' ').next()?.parse().ok()
}

async fn app_events(app: &TestApp, id: &str, query: &str) -> Vec<Value> {
    let events = app.admin(Method::GET, &format!("/api/admin/replays/{id}/events?{query}"), None).await;
    assert_eq!(events.status, 200, "{:?}", events.body);
    events.body.as_array().cloned().unwrap_or_default()
}

async fn live_processing_goes_on_during_a_replay(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let fx = app.fixture(100, "150.00", "0.00", None).await;
    paid_orders(&app, &fx, 10).await;
    // Slow on purpose: 5 events a second over 10 events.
    let started = app.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "max_rate": 5}))).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let id = started.body["replay_id"].as_str().unwrap().to_owned();
    paid_orders(&app, &fx, 5).await;
    let running = app.admin(Method::GET, &format!("/api/admin/replays/{id}"), None).await.body;
    assert_eq!(running["state"], "running", "still replaying while the new orders were handled: {running}");
    // Each new order got its points, once.
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 15 * 150);
    assert_eq!(app.count("trade_mq_consumer_log", "group_name = 'points' AND consumer_status = 1").await, 15);
    let done = finished(&app, &id).await;
    assert_eq!(done["summary"]["same"], 10, "{done}");

    // Cancel: a running replay stops, keeping what it did.
    let slow = app.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "max_rate": 1}))).await;
    let slow_id = slow.body["replay_id"].as_str().unwrap().to_owned();
    let cancelled = app.admin(Method::DELETE, &format!("/api/admin/replays/{slow_id}"), None).await;
    assert_eq!((cancelled.status, cancelled.body["state"].as_str()), (200, Some("cancelled")), "{:?}", cancelled.body);
    let ended = finished(&app, &slow_id).await;
    assert_eq!(ended["state"], "cancelled");
    assert!(ended["processed"].as_i64().unwrap() < 15, "{ended}");
    let list = app.admin(Method::GET, "/api/admin/replays", None).await.body;
    assert_eq!(list[0]["replay_id"], slow_id.as_str(), "newest first");
    let done_id = id.clone();
    let both = vec![slow_id.as_str(), done_id.as_str()];
    for (query, ids) in [("plugin=points", both), ("state=done", vec![done_id.as_str()]), ("plugin=points&state=cancelled", vec![slow_id.as_str()]), ("limit=1", vec![slow_id.as_str()]), ("plugin=log", vec![])] {
        let found = app.admin(Method::GET, &format!("/api/admin/replays?{query}"), None).await.body;
        let found: Vec<&str> = found.as_array().unwrap().iter().map(|r| r["replay_id"].as_str().unwrap()).collect();
        assert_eq!(found, ids, "{query}");
    }

    // Ctrl-C on the CLI cancels its replay on the host, which would otherwise run on; so
    // does SIGTERM (how a CI runner cancels a job).
    let mut before = slow_id.clone();
    for (signal, said) in [("-INT", "Ctrl-C"), ("-TERM", "SIGTERM")] {
        let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
            .args(["replay", "--plugin", "points", "--max-rate", "1", "--host", &app.address])
            .env("SHOPMESH_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run the CLI");
        let cli_id = wait_for("the CLI's replay", Duration::from_secs(10), || async {
            let list = app.admin(Method::GET, "/api/admin/replays", None).await.body;
            list[0]["replay_id"].as_str().filter(|id| *id != before).map(str::to_owned)
        })
        .await;
        let pid = cli.id().expect("the CLI runs").to_string();
        assert!(tokio::process::Command::new("kill").args([signal, &pid]).status().await.unwrap().success());
        let out = cli.wait_with_output().await.unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "cancelled: {err}");
        assert!(err.contains(&format!("{said}: cancelling replay {cli_id} on the host")), "{err}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("state cancelled"), "{err}");
        let ended = finished(&app, &cli_id).await;
        assert_eq!(ended["state"], "cancelled", "{ended}");
        assert!(ended["processed"].as_i64().unwrap() < 15, "{ended}");
        // Its record says how far it got, and the CLI how to go on from there.
        let ran: Vec<i64> = app_events(&app, &cli_id, "limit=100").await.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
        assert_eq!(ended["last_seq"].as_i64(), ran.last().copied(), "the last sequence run: {ended}");
        let next = ran.last().map_or(ended["from_seq"].as_i64().unwrap(), |last| last + 1);
        let to = ended["to_seq"].as_i64().unwrap();
        assert_eq!(ended["resume_from"].as_i64(), Some(next), "{ended}");
        let hint = format!("to go on from where it stopped: shopmesh replay --plugin points --version 1.0.0 --from-seq {next} --to-seq {to} --host {} --max-rate 1", app.address);
        assert!(err.contains(&hint), "{err}");
        before = cli_id;
    }
    // Going on as told (at full speed) runs the rest of the range: together, every event once.
    let cancelled = finished(&app, &before).await;
    let next = cancelled["resume_from"].as_i64().expect("a cancelled replay goes on");
    let (from, to) = (next.to_string(), cancelled["to_seq"].to_string());
    let rest = replay_cli(&app, &["--version", "1.0.0", "--from-seq", &from, "--to-seq", &to]).await;
    assert_eq!(rest.status.code(), Some(0), "{}", String::from_utf8_lossy(&rest.stderr));
    let rest_replay = app.admin(Method::GET, "/api/admin/replays", None).await.body[0].clone();
    assert_eq!(rest_replay["from_seq"].as_i64(), Some(next), "{rest_replay}");
    assert_eq!(rest_replay["processed"].as_i64().unwrap() + cancelled["processed"].as_i64().unwrap(), cancelled["total"].as_i64().unwrap(), "{rest_replay} after {cancelled}");
    assert_eq!(rest_replay["summary"]["same"], rest_replay["processed"], "{rest_replay}");
    assert!(rest_replay["resume_from"].is_null(), "done: nothing to go on with: {rest_replay}");
}

async fn bad_requests_start_nothing(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let fx = app.fixture(10, "150.00", "0.00", None).await;
    paid_orders(&app, &fx, 2).await;
    let no_token = app.post("/api/admin/replays", &json!({"plugin": "points", "mode": "dry-run"})).await;
    assert_eq!(no_token.status, 401);
    for (body, status, code) in [
        (json!({"plugin": "nope", "mode": "dry-run"}), 404, "SHOP_NOT_FOUND"),
        (json!({"plugin": "points", "mode": "dry-run", "version": "9.9.9"}), 404, "SHOP_NOT_FOUND"),
        (json!({"plugin": "points", "mode": "dry-run", "from_seq": 5, "to_seq": 2}), 400, "SHOP_REPLAY_RANGE_INVALID"),
        (json!({"plugin": "points", "mode": "dry-run", "to_seq": 1_000_000}), 400, "SHOP_REPLAY_RANGE_INVALID"),
        (json!({"plugin": "points", "mode": "dry-run", "from_time": "2001-01-01T00:00:00Z", "to_time": "2001-01-02T00:00:00Z"}), 400, "SHOP_REPLAY_RANGE_INVALID"),
        (json!({"plugin": "points", "mode": "dry-run", "from_time": "2999-01-01T00:00:00Z"}), 400, "SHOP_REPLAY_RANGE_INVALID"),
        (json!({"plugin": "points", "mode": "rewind"}), 400, "SHOP_REQUEST_PARAMETER_INVALID"),
        (json!({"plugin": "points", "mode": "dry-run", "subjects": ["shop.order.cancel"]}), 400, "SHOP_REQUEST_PARAMETER_INVALID"),
        (json!({"plugin": "points", "mode": "dry-run", "version": ""}), 400, "SHOP_REQUEST_PARAMETER_INVALID"),
        (json!({"plugin": "points", "mode": "dry-run", "from_time": "2026-13-45T16:54:09Z"}), 400, "SHOP_REQUEST_PARAMETER_INVALID"),
    ] {
        let reply = app.admin(Method::POST, "/api/admin/replays", Some(&body)).await;
        assert_eq!((reply.status, reply.code()), (status, code), "{body}: {:?}", reply.body);
    }
    let future = app.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "from_time": "2999-01-01T00:00:00Z"}))).await;
    assert!(future.body["message"].as_str().unwrap().contains("from_time 2999-01-01T00:00:00") && future.body["message"].as_str().unwrap().contains("is in the future"), "{:?}", future.body);
    // A time of the right shape that is no time is told as plainly as one of the wrong shape.
    let month13 = app.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "from_time": "2026-13-45T16:54:09Z"}))).await;
    let said = month13.body["message"].as_str().unwrap();
    assert!(said.contains("from_time: must be an RFC 3339 time, like") && !said.contains("occurred while parsing"), "{said}");
    let beyond = app.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "to_seq": 1_000_000}))).await;
    assert!(beyond.body["message"].as_str().unwrap().contains("stream SHOP holds sequences 1..="), "{:?}", beyond.body);
    assert_eq!(app.admin(Method::GET, "/api/admin/replays", None).await.body, json!([]), "nothing was started");
    assert_eq!(app.count("shop_replay", "").await, 0);
}

/// A replay whose host is killed ends `failed`, saying it was interrupted, once that host is
/// back, or once it has been silent long enough when it never comes back: its record never
/// stays `running` with nothing running it.
async fn a_replay_cut_off_by_a_killed_host_ends_failed(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let fx = app.fixture(10, "150.00", "0.00", None).await;
    paid_orders(&app, &fx, 3).await;
    let plugins = crate::helpers::plugins_dir().display().to_string();
    let env = [("SHOPMESH_PLUGINS_DIR", plugins.as_str()), ("SHOPMESH_DEMO_DATA", "false"), ("SHOPMESH_WORKER_ID", "2")];
    let mut host = crate::helpers::HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    let other = TestApp::attach(&app.db_url, &app.nats_url, &host.address).await;
    let started = other.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "max_rate": 1}))).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let id = started.body["replay_id"].as_str().unwrap().to_owned();
    let gone = other.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run", "max_rate": 1}))).await;
    let gone = gone.body["replay_id"].as_str().unwrap().to_owned();
    wait_for("the host's beat", Duration::from_secs(10), || async {
        (app.count("shop_replay", &format!("id = {gone} AND beat_at IS NOT NULL")).await == 1).then_some(())
    })
    .await;
    host.child.start_kill().expect("SIGKILL");
    host.child.wait().await.unwrap();
    for id in [&id, &gone] {
        let cut_off = app.admin(Method::GET, &format!("/api/admin/replays/{id}"), None).await.body;
        assert_eq!(cut_off["state"], "running", "its host was heard from a moment ago: {cut_off}");
    }
    // Two minutes on without a beat (its host gone for good): the next read fails it.
    let silent = shopmesh::ids::now_ms() - 120_000;
    sqlx::query(&format!("UPDATE shop_replay SET beat_at = $1, created_at = $1 WHERE id = {gone}")).bind(silent).execute(app.db.pool()).await.unwrap();
    let ended = app.admin(Method::GET, &format!("/api/admin/replays/{gone}"), None).await.body;
    assert_eq!(ended["state"], "failed", "{ended}");
    let row = sqlx::query(&format!("SELECT host FROM shop_replay WHERE id = {gone}")).fetch_one(app.db.pool()).await.unwrap();
    let host_name: String = sqlx::Row::try_get(&row, 0).unwrap();
    assert_eq!(ended["error"], format!("interrupted: its host, {host_name}, stopped saying it runs it (gone for good, or cut off from the database)"), "{ended}");
    assert!(ended["finished_at"].is_string() && ended["resume_from"].is_i64(), "{ended}");
    let metrics = app.get("/metrics").await.body;
    let metrics = metrics.as_str().unwrap();
    assert!(metrics.contains("shopmesh_replays_running 1\n"), "the other one still counts as running:\n{metrics}");

    let back = crate::helpers::HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    let ended = app.admin(Method::GET, &format!("/api/admin/replays/{id}"), None).await.body;
    assert_eq!((&ended["state"], &ended["error"]), (&json!("failed"), &json!("interrupted: the host running it stopped without ending it")), "{ended}");
    assert!(ended["finished_at"].is_string());

    // A host that stops cleanly ends its replays as it stops, not at a next start that may
    // never come.
    // The CLI following it bears with the silence a while, then says where to look.
    let mut back = back;
    let other = TestApp::attach(&app.db_url, &app.nats_url, &back.address).await;
    let cli = tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .args(["replay", "--plugin", "points", "--max-rate", "1", "--host", back.address.trim_start_matches("http://")])
        .env("SHOPMESH_ADMIN_TOKEN", crate::helpers::ADMIN_TOKEN)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run the CLI");
    let id = wait_for("the CLI's replay", Duration::from_secs(10), || async {
        other.admin(Method::GET, "/api/admin/replays", None).await.body[0]["replay_id"].as_str().filter(|new| ![&id, &gone].contains(&&new.to_string())).map(str::to_owned)
    })
    .await;
    let pid = back.child.id().expect("the host runs") as i32;
    let told = std::time::Instant::now();
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    assert!(back.child.wait().await.unwrap().success(), "a clean stop");
    let ended = app.admin(Method::GET, &format!("/api/admin/replays/{id}"), None).await.body;
    assert_eq!((&ended["state"], &ended["error"]), (&json!("failed"), &json!("interrupted: the host running it shut down")), "{ended}");
    assert!(ended["finished_at"].is_string(), "{ended}");
    let out = cli.wait_with_output().await.unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(told.elapsed() >= Duration::from_secs(10), "it asked again for a while first: {:?}", told.elapsed());
    assert!(err.contains(&format!("following replay {id}: it ends `failed` if its host stopped")) && err.contains("cannot reach the host"), "{err}");
}

crate::on_both_databases!(
    a_replay_cut_off_by_a_killed_host_ends_failed,
    dry_run_of_the_active_version_is_all_same,
    a_staged_version_with_another_rate_changes_every_event,
    apply_skips_what_was_applied_and_backfills_what_was_missed_once,
    live_processing_goes_on_during_a_replay,
    bad_requests_start_nothing,
);
