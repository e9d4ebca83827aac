//! Hot swap: new versions arrive by upload, by folder or through the fleet's registry, are
//! validated, and replace the running version atomically: every event is applied exactly
//! once, by exactly one version, and the versions recorded show where the switches were.

use std::{
    collections::HashMap,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use serde_json::{json, Value};

use crate::helpers::{
    component, plugins_dir, spawn_app_with, wait_consumers_idle, wait_for, with_plugins, Backend, HostProcess, Reply,
    TestApp, TestDb, TestNats, ADMIN_TOKEN,
};

fn auth() -> [(&'static str, String); 1] {
    [("authorization", format!("Bearer {ADMIN_TOKEN}"))]
}

async fn upload(app: &TestApp, address: &str, name: &str, bytes: Vec<u8>) -> Reply {
    let resp = app
        .http
        .put(format!("{address}/api/admin/plugins/{name}"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .header("content-type", "application/octet-stream")
        .body(bytes)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    Reply { status, body: resp.json().await.unwrap_or(Value::Null) }
}

pub async fn plugin_status(app: &TestApp, address: &str, name: &str) -> Value {
    let list: Value = app
        .http
        .get(format!("{address}/api/admin/plugins"))
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    list.as_array().unwrap().iter().find(|p| p["name"] == name).cloned().unwrap_or(Value::Null)
}

/// Versions of the points plugin that handled pay events, in stream (event id) order, with
/// the points each event should have earned under that version.
async fn points_history(app: &TestApp) -> Vec<(i64, String, i64)> {
    let rows = sqlx::query("SELECT msg_key, plugin_version, msg_body FROM trade_mq_consumer_log WHERE group_name = 'points' AND consumer_status = 1")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    let mut history: Vec<(i64, String, i64)> = rows
        .iter()
        .map(|r| {
            use sqlx::Row;
            let id: String = r.try_get(0).unwrap();
            let version: String = r.try_get(1).unwrap();
            let body: Value = serde_json::from_str(&r.try_get::<String, _>(2).unwrap()).unwrap();
            let units = body["data"]["pay_amount"].as_str().unwrap().split('.').next().unwrap().parse::<i64>().unwrap();
            let rate = match version.as_str() {
                "1.0.0" => 1,
                "2.0.0" => 2,
                other => panic!("unexpected version {other}"),
            };
            (id.parse().unwrap(), version, units * rate)
        })
        .collect();
    history.sort();
    history
}

async fn swap_under_a_steady_flow(backend: Backend) {
    let app = Arc::new(spawn_app_with(backend, with_plugins).await);
    let fx = Arc::new(app.fixture(10_000, "150.00", "0.00", None).await);
    let flowing = Arc::new(AtomicBool::new(true));
    let flow = {
        let (app, fx, flowing) = (app.clone(), fx.clone(), flowing.clone());
        tokio::spawn(async move {
            let mut paid = 0;
            while flowing.load(Ordering::Relaxed) && paid < 400 {
                app.pay_order(&fx, "150.00").await;
                paid += 1;
            }
            paid
        })
    };
    let handled_by = |version: &'static str, at_least: usize| {
        let app = app.clone();
        async move {
            wait_for(&format!("{at_least} events handled by {version}"), Duration::from_secs(60), || async {
                let n = points_history(&app).await.iter().filter(|(_, v, _)| v == version).count();
                (n >= at_least).then_some(())
            })
            .await
        }
    };

    handled_by("1.0.0", 10).await;
    let up = upload(&app, &app.address, "points", component("points_v2")).await;
    assert_eq!(up.status, 200, "{:?}", up.body);
    assert_eq!(up.body["active_version"], "2.0.0");
    assert_eq!(up.body["kept_versions"], json!(["1.0.0", "2.0.0"]));
    handled_by("2.0.0", 10).await;
    let v1_before = points_history(&app).await.iter().filter(|(_, v, _)| v == "1.0.0").count();
    let back = app
        .request(reqwest::Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "1.0.0"})), &auth())
        .await;
    assert_eq!(back.body["active_version"], "1.0.0", "{:?}", back.body);
    handled_by("1.0.0", v1_before + 10).await;
    flowing.store(false, Ordering::Relaxed);
    let paid = flow.await.unwrap();

    app.wait_events("shop.pay.success", paid).await;
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;
    let history = points_history(&app).await;
    assert_eq!(history.len(), paid, "every event applied once, none lost");
    let versions: Vec<&str> = history.iter().map(|(_, v, _)| v.as_str()).collect();
    let switches = versions.windows(2).filter(|w| w[0] != w[1]).count();
    assert_eq!(switches, 2, "v1 … v2 … v1, each event by exactly one version: {versions:?}");
    let expected: i64 = history.iter().map(|(_, _, p)| p).sum();
    let score = app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"].as_i64().unwrap();
    assert_eq!(score, expected, "points equal what the recorded versions imply");
    assert_eq!(app.count("shop_audit_log", "kind = 'paid'").await as usize, paid, "the log plugin was never disturbed");
}

async fn rejected_uploads_leave_the_running_version(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let cases: [(&str, Vec<u8>, u16, &str, &str); 6] = [
        ("junk", b"\0asm definitely not".to_vec(), 400, "SHOP_PLUGIN_REJECTED", "not a valid WebAssembly component"),
        ("nothing", Vec::new(), 400, "SHOP_PLUGIN_REJECTED", "the body is empty"),
        ("capability", component("greedy"), 400, "SHOP_PLUGIN_REJECTED", "refund-balance"),
        ("wrong name", component("stock"), 400, "SHOP_PLUGIN_REJECTED", "does not match"),
        ("imports", component("extra_import"), 400, "SHOP_PLUGIN_REJECTED", "test:extra/clock"),
        ("same version", component("points"), 200, "", ""),
    ];
    for (what, bytes, status, code, reason) in cases {
        let r = upload(&app, &app.address, "points", bytes).await;
        assert_eq!(r.status, status, "{what}: {:?}", r.body);
        if status != 200 {
            assert_eq!(r.body["code"], code, "{what}");
            assert!(r.body["message"].as_str().unwrap().contains(reason), "{what}: {:?}", r.body);
        }
    }
    // A name no consumer could be bound for (a dot): refused under that name, and nothing
    // of it kept; and a component whose manifest carries it is refused by the checks.
    let rule = r#"a plugin name is 1 to 64 letters, digits, dashes and underscores: "vip.bonus""#;
    let dotted = replace_all(&component("vip-bonus"), b"vip-bonus", b"vip.bonus");
    let r = upload(&app, &app.address, "vip.bonus", dotted.clone()).await;
    assert_eq!((r.status, r.code()), (400, "SHOP_PLUGIN_REJECTED"), "{:?}", r.body);
    assert!(r.body["message"].as_str().unwrap().contains(rule), "{:?}", r.body);
    assert_eq!(app.admin(reqwest::Method::GET, "/api/admin/plugins/vip.bonus", None).await.status, 404);
    let file = tempfile::Builder::new().suffix(".wasm").tempfile().unwrap();
    std::fs::write(file.path(), &dotted).unwrap();
    let checked = std::process::Command::new(env!("CARGO_BIN_EXE_shopmesh")).args(["plugin", "check", "--grant", "add-points"]).arg(file.path()).output().unwrap();
    assert_eq!(checked.status.code(), Some(1), "{checked:?}");
    assert!(String::from_utf8_lossy(&checked.stderr).contains(rule), "{checked:?}");
    // A rogue build that reuses a released version number.
    let v2 = upload(&app, &app.address, "points", component("points_v2")).await;
    assert_eq!(v2.status, 200);
    let back = app
        .request(reqwest::Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "1.0.0"})), &auth())
        .await;
    assert_eq!(back.status, 200);
    let again = upload(&app, &app.address, "points", component("points_v2")).await;
    assert_eq!((again.status, again.body["code"].as_str()), (409, Some("SHOP_PLUGIN_VERSION_EXISTS")), "{:?}", again.body);
    let missing = app
        .request(reqwest::Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "9.9.9"})), &auth())
        .await;
    assert_eq!((missing.status, missing.code()), (404, "SHOP_PLUGIN_NOT_FOUND"));

    // The running version (1.0.0) still handles events.
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &["points"]).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150);
    let status = plugin_status(&app, &app.address, "points").await;
    assert_eq!(status["active_version"], "1.0.0");
    assert!(status["invocations"].as_i64().unwrap() >= 1);
}

async fn folder_drop_then_rollback(backend: Backend) {
    // A private copy of the plugins folder, watched every 100 ms.
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(plugins_dir()).unwrap() {
        let path = entry.unwrap().path();
        std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
    }
    // log's file cut short (a copy that broke off) as the host starts.
    let log = std::fs::read(dir.path().join("log.wasm")).unwrap();
    std::fs::write(dir.path().join("log.wasm"), &log[..log.len() / 3]).unwrap();
    let folder = dir.path().to_path_buf();
    let app = spawn_app_with(backend, move |s| {
        s.plugins_dir = folder;
        s.plugin_watch = std::time::Duration::from_millis(100);
    })
    .await;
    assert_eq!(plugin_status(&app, &app.address, "points").await["active_version"], "1.0.0");
    // Not left out unnoticed: refused here, said by the status, the probe and the metrics.
    let refused = plugin_status(&app, &app.address, "log").await;
    assert!(refused["refused"].as_str().is_some_and(|why| why.starts_with("the plugins folder's ") && why.contains("log.wasm")), "{refused}");
    // (vip-bonus too: this host grants it nothing.)
    assert_eq!(app.get("/readyz").await.body["plugins_refused"], serde_json::json!(["log", "vip-bonus"]));
    let metrics = app.get("/metrics").await.body;
    assert!(metrics.as_str().unwrap().contains("shopmesh_plugin_refused{plugin=\"log\"} 1"), "{metrics}");
    // A good file in its place runs, and ends the refusal.
    std::fs::write(dir.path().join("log.wasm"), &log).unwrap();
    wait_for("log 1.0.0 from the folder", Duration::from_secs(10), || async {
        (plugin_status(&app, &app.address, "log").await["active_version"] == "1.0.0").then_some(())
    })
    .await;
    assert!(plugin_status(&app, &app.address, "log").await.get("refused").is_none());
    assert_eq!(app.get("/readyz").await.body["plugins_refused"], serde_json::json!(["vip-bonus"]));

    // Written slowly in two halves: never offered half-written.
    let v2 = component("points_v2");
    let target = dir.path().join("points.wasm");
    std::fs::write(&target, &v2[..v2.len() / 2]).unwrap();
    tokio::time::sleep(Duration::from_millis(50)).await;
    std::fs::write(&target, &v2).unwrap();
    wait_for("points 2.0.0 from the folder", Duration::from_secs(10), || async {
        (plugin_status(&app, &app.address, "points").await["active_version"] == "2.0.0").then_some(())
    })
    .await;

    // The rollback, the pause and the resume as an operator runs them: the CLI.
    let status = app.cli(&["plugin", "status"]).await;
    let row = status.stdout.lines().find(|l| l.starts_with("points ")).unwrap_or_else(|| panic!("{status:?}"));
    assert!(row.contains(" 2.0.0 ") && row.contains("enabled") && row.contains("1.0.0 kept, 2.0.0 active"), "{status:?}");
    let back = app.cli(&["plugin", "activate", "points", "1.0.0"]).await;
    assert_eq!(back.code, Some(0), "{back:?}");
    assert!(back.stderr.contains("points 1.0.0 is the active version here, and every host of the fleet follows"), "{back:?}");
    assert!(back.stdout.starts_with("points 1.0.0, enabled, active since"), "{back:?}");
    assert_eq!(plugin_status(&app, &app.address, "points").await["active_version"], "1.0.0");
    let unknown = app.cli(&["plugin", "activate", "points", "9.9.9"]).await;
    assert_eq!(unknown.code, Some(1), "{unknown:?}");
    assert!(unknown.stderr.contains("SHOP_PLUGIN_NOT_FOUND"), "{unknown:?}");
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &["points"]).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150, "handled by 1.0.0 after the rollback");

    // Disabled: events wait; enabled: they are handled.
    let off = app.cli(&["plugin", "disable", "points"]).await;
    assert!(off.code == Some(0) && off.stdout.starts_with("points 1.0.0, paused"), "{off:?}");
    assert_eq!(plugin_status(&app, &app.address, "points").await["enabled"], false);
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150, "disabled: not handled");
    let on = app.cli(&["plugin", "enable", "points"]).await;
    assert!(on.code == Some(0) && on.stdout.starts_with("points 1.0.0, enabled"), "{on:?}");
    assert_eq!(plugin_status(&app, &app.address, "points").await["enabled"], true);
    wait_for("the waiting event to be handled", Duration::from_secs(30), || async {
        (app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"] == 300).then_some(())
    })
    .await;
}

async fn admin_plugin_endpoints_need_the_token(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    for (method, path) in [
        (reqwest::Method::GET, "/api/admin/plugins"),
        (reqwest::Method::GET, "/api/admin/plugins/points"),
        (reqwest::Method::PUT, "/api/admin/plugins/points"),
        (reqwest::Method::POST, "/api/admin/plugins/points/activate"),
        (reqwest::Method::POST, "/api/admin/plugins/points/disable"),
        (reqwest::Method::POST, "/api/admin/plugins/points/enable"),
        (reqwest::Method::GET, "/api/admin/dead-letters"),
        (reqwest::Method::POST, "/api/admin/plugins/points/redrive"),
    ] {
        let r = app.request(method.clone(), path, None, &[]).await;
        assert_eq!(r.status, 401, "{method} {path}: {:?}", r.body);
    }
    assert_eq!(plugin_status(&app, &app.address, "points").await["enabled"], true);
    // With the token: one plugin's status, as the list has it; an unknown name is 404.
    let one = app.admin(reqwest::Method::GET, "/api/admin/plugins/points", None).await;
    let list = app.admin(reqwest::Method::GET, "/api/admin/plugins", None).await.body;
    let listed = list.as_array().unwrap().iter().find(|p| p["name"] == "points").unwrap();
    assert_eq!((one.status, &one.body["sha256"], &one.body["versions"]), (200, &listed["sha256"], &listed["versions"]));
    let none = app.admin(reqwest::Method::GET, "/api/admin/plugins/nosuch", None).await;
    assert_eq!((none.status, none.code()), (404, "SHOP_PLUGIN_NOT_FOUND"));
}

crate::on_both_databases!(
    swap_under_a_steady_flow,
    rejected_uploads_leave_the_running_version,
    folder_drop_then_rollback,
    admin_plugin_endpoints_need_the_token
);

/// Two host processes sharing NATS and Postgres: an upload through one host's API is
/// running on both soon after, and no event is applied twice across the hosts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_reaches_the_whole_fleet() {
    let app = spawn_app_with(Backend::Postgres, |_| {}).await; // database, NATS and demo data
    let dir = plugins_dir().display().to_string();
    let env = [("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_WORKER_ID", "7")];
    let a = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    let env_b = [("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_WORKER_ID", "8")];
    let b = HostProcess::start(&app.db_url, &app.nats_url, &env_b).await;

    let started = Instant::now();
    let up = upload(&app, &a.address, "points", component("points_v2")).await;
    assert_eq!(up.status, 200, "{:?}", up.body);
    wait_for("host B to run points 2.0.0", Duration::from_secs(10), || async {
        (plugin_status(&app, &b.address, "points").await["active_version"] == "2.0.0").then_some(())
    })
    .await;
    eprintln!("upload on A → active on B: {:?}", started.elapsed());

    let fx = app.fixture(50, "150.00", "0.00", None).await;
    let mut pays = HashMap::new();
    for i in 0..20 {
        let host = if i % 2 == 0 { &a.address } else { &b.address };
        let order: Value = app.http.post(format!("{host}/api/orders")).json(&fx.order(1, "150.00", "0")).send().await.unwrap().json().await.unwrap();
        let pay: Value = app
            .http
            .post(format!("{host}/api/payments"))
            .json(&json!({"order_id": order["order_id"], "pay_amount": "150.00"}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        pays.insert(i, pay["pay_id"].as_str().unwrap().to_owned());
    }
    for pay_id in pays.values() {
        assert_eq!(app.signed_callback(pay_id, "150.00").await.status, 200);
    }
    app.wait_events("shop.pay.success", 20).await;
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;
    let history = points_history(&app).await;
    assert_eq!(history.len(), 20, "each event once across both hosts");
    assert!(history.iter().all(|(_, v, _)| v == "2.0.0"));
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 20 * 300);
}

/// A host whose plugins folder holds another build under a version the fleet keeps (points
/// 1.0.0 with an extra custom section) cannot hand the fleet its build as that version: the
/// rollback through it is refused, and the fleet's 1.0.0 stays the fleet's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_folders_other_build_never_replaces_the_fleets() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let ours = component("points");
    assert_eq!(upload(&app, &app.address, "points", component("points_v2")).await.status, 200);
    let back = app.admin(reqwest::Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "1.0.0"}))).await;
    assert_eq!(back.status, 200, "the fleet now keeps this host's 1.0.0: {:?}", back.body);

    // A custom section (id 0: name "note", no payload) changes the bytes, not the component.
    let mut other = ours.clone();
    other.extend_from_slice(&[0x00, 0x05, 0x04, b'n', b'o', b't', b'e']);
    let folder = tempfile::tempdir().unwrap();
    std::fs::write(folder.path().join("points.wasm"), &other).unwrap();
    let dir = folder.path().display().to_string();
    let c = HostProcess::start(&app.db_url, &app.nats_url, &[("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_WORKER_ID", "3")]).await;
    let refused = app.http.post(format!("{}/api/admin/plugins/points/activate", c.address)).header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .json(&json!({"version": "1.0.0"})).send().await.unwrap();
    let status = refused.status().as_u16();
    let body: Value = refused.json().await.unwrap();
    assert_eq!((status, body["code"].as_str()), (409, Some("SHOP_PLUGIN_VERSION_EXISTS")), "{body}");
    assert!(body["message"].as_str().unwrap().contains("the fleet keeps points 1.0.0 as another build"), "{body}");
    // And C says why it does not run the fleet's 1.0.0, and what to do about it.
    let here = wait_for("C to refuse the fleet's 1.0.0", Duration::from_secs(10), || async {
        plugin_status(&app, &c.address, "points").await["refused"].as_str().map(str::to_owned)
    })
    .await;
    assert!(here.contains("this host holds another build of points 1.0.0") && here.contains("then restart"), "{here}");

    let sha = shopmesh::plugins::runtime::sha256_hex(&ours);
    let fleet = plugin_status(&app, &app.address, "points").await;
    assert_eq!((fleet["active_version"].as_str(), fleet["sha256"].as_str()), (Some("1.0.0"), Some(sha.as_str())), "{fleet}");
    // A host started now takes the fleet's 1.0.0, not C's.
    let fresh = HostProcess::start(&app.db_url, &app.nats_url, &[("SHOPMESH_WORKER_ID", "4")]).await;
    let taken = wait_for("the new host to run the fleet's points", Duration::from_secs(10), || async {
        let taken = plugin_status(&app, &fresh.address, "points").await;
        taken["active_version"].is_string().then_some(taken)
    })
    .await;
    assert_eq!((taken["active_version"].as_str(), taken["sha256"].as_str()), (Some("1.0.0"), Some(sha.as_str())), "{taken}");
    drop((c, fresh));
}

/// A version that reads other subjects re-binds its durable consumer: events on the new
/// subject reach it after the swap, without a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_version_with_new_subjects_rebinds_its_consumer() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let fx = app.fixture(10, "150.00", "0.00", None).await;
    let confirmed_rows = || app.count("trade_mq_consumer_log", "group_name = 'log' AND msg_tag = 'shop.order.confirmed'");

    assert_eq!(app.post("/api/orders", &fx.order(1, "150.00", "0")).await.status, 201);
    app.wait_events("shop.order.confirmed", 1).await;
    wait_consumers_idle(&app.nats_url, &["log"]).await;
    assert_eq!(confirmed_rows().await, 0, "log 1.0.0 does not read confirmations");

    let up = upload(&app, &app.address, "log", component("log_v2")).await;
    assert_eq!(up.body["subjects"], json!(["shop.pay.success", "shop.order.cancel", "shop.order.confirmed"]), "{:?}", up.body);
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    let stream = async_nats::jetstream::new(client).get_stream("SHOP").await.unwrap();
    wait_for("the log consumer to read confirmations", Duration::from_secs(10), || {
        let stream = stream.clone();
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("plugin-log").await.ok()?;
            let info = consumer.info().await.ok()?;
            info.config.filter_subjects.iter().any(|s| s == "shop.order.confirmed").then_some(())
        }
    })
    .await;

    assert_eq!(app.post("/api/orders", &fx.order(1, "150.00", "0")).await.status, 201);
    app.wait_events("shop.order.confirmed", 2).await;
    wait_for("log 2.0.0 to handle a confirmation", Duration::from_secs(10), || async {
        (confirmed_rows().await >= 1).then_some(())
    })
    .await;
    assert_eq!(app.count("shop_audit_log", "").await, 0, "it writes nothing for confirmations");

    // Back to 1.0.0, which reads no confirmations, with some delivered to this host (it
    // hands them back while log is paused) as it swaps: redelivered after the filter is
    // narrowed again, they are done, unhandled, not handed back for ever.
    wait_consumers_idle(&app.nats_url, &["log"]).await;
    let handled = confirmed_rows().await;
    app.registry().set_enabled("log", false);
    for _ in 0..4 {
        assert_eq!(app.post("/api/orders", &fx.order(1, "150.00", "0")).await.status, 201);
    }
    app.wait_events("shop.order.confirmed", 6).await;
    tokio::time::sleep(Duration::from_millis(600)).await; // handed back at least once
    app.registry().activate("log", "1.0.0").unwrap();
    app.registry().set_enabled("log", true);
    wait_consumers_idle(&app.nats_url, &["log"]).await;
    assert_eq!(confirmed_rows().await, handled, "1.0.0 handled none of them");
}

/// A host process with the plugins folder (points 1.0.0) on which points 2.0.0 was uploaded
/// and activated, through the fleet's registry; its database and NATS outlive a restart.
async fn a_host_on_points_v2() -> (TestDb, TestNats, HostProcess, TestApp) {
    let db = TestDb::new(Backend::Sqlite).await;
    let nats = TestNats::start().await;
    let (host, app) = HostProcess::start_with_plugins(&db, &nats).await;
    let v2 = app.upload("points", component("points_v2"), "").await;
    assert_eq!(v2.body["active_version"], "2.0.0", "{:?}", v2.body);
    (db, nats, host, app)
}

/// A restarted host runs what the fleet runs now. Its folder holds points 1.0.0; the fleet
/// activated 2.0.0 and paused points before the restart, with a payment's event waiting.
/// The restarted host must neither handle that event with 1.0.0 nor while points is
/// paused (its consumer waits until the fleet's versions and switches are read); once
/// enabled, 2.0.0 handles it, once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_follows_the_fleet_before_it_handles_anything() {
    let (db, nats, mut host, app) = a_host_on_points_v2().await;
    let paused = app.admin(reqwest::Method::POST, "/api/admin/plugins/points/disable", None).await;
    assert_eq!(paused.status, 200, "{:?}", paused.body);
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    host.child.start_kill().unwrap();
    host.child.wait().await.unwrap();

    let (host, app) = HostProcess::start_with_plugins(&db, &nats).await;
    wait_for("the restarted host to read the fleet", Duration::from_secs(10), || async {
        let status = plugin_status(&app, &host.address, "points").await;
        (status["active_version"] == "2.0.0" && status["enabled"] == false).then_some(())
    })
    .await;
    // Long enough for a consumer that started blind to fetch and apply the waiting event.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(points_history(&app).await, vec![], "nothing handled while the fleet has points paused");

    let resumed = app.admin(reqwest::Method::POST, "/api/admin/plugins/points/enable", None).await;
    assert_eq!(resumed.status, 200, "{:?}", resumed.body);
    let history = wait_for("the waiting event to be handled", Duration::from_secs(10), || async {
        let history = points_history(&app).await;
        (!history.is_empty()).then_some(history)
    })
    .await;
    assert_eq!(history.len(), 1, "{history:?}");
    assert_eq!(history[0].1, "2.0.0", "the fleet's version handled it: {history:?}");
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 300);
}

/// A plugin's version history is the fleet's, not the host's: after points 2.0.0 was
/// activated and rolled back from, a restarted host shows it as kept (not staged), and
/// every version with the times it had before the restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_host_shows_the_fleets_version_history() {
    let (db, nats, mut host, app) = a_host_on_points_v2().await;
    let back = app.admin_post("/api/admin/plugins/points/activate", &json!({"version": "1.0.0"})).await;
    assert_eq!(back.body["active_version"], "1.0.0", "{:?}", back.body);
    let before = back.body["versions"].clone();
    assert_eq!(before[1]["version"], "2.0.0", "{before}");
    assert_eq!(before[1]["state"], "kept", "{before}");
    assert_eq!(plugin_status(&app, &host.address, "points").await["versions"], before, "the status answers as the rollback did");
    host.child.start_kill().unwrap();
    host.child.wait().await.unwrap();
    tokio::time::sleep(Duration::from_millis(20)).await; // so a time taken anew would differ

    let (host, app) = HostProcess::start_with_plugins(&db, &nats).await;
    // It reads the registry a moment after it answers: until then the times are its own.
    let after = wait_for("the restarted host to show the versions as they were", Duration::from_secs(10), || async {
        let status = plugin_status(&app, &host.address, "points").await;
        (status["versions"] == before).then_some(status)
    })
    .await;
    assert_eq!(after["active_version"], "1.0.0", "{after}");
    assert_eq!(after["activated_at"], before[0]["activated_at"], "{after}");
    // Activating the active version again (a retried request) changes no time.
    let again = app.admin_post("/api/admin/plugins/points/activate", &json!({"version": "1.0.0"})).await;
    assert_eq!(again.body["versions"], before, "{:?}", again.body);
}

/// `bytes` with every `from` replaced by `to` (of the same length, so nothing moves).
fn replace_all(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    assert_eq!(from.len(), to.len());
    let mut out = bytes.to_vec();
    let starts: Vec<usize> = out.windows(from.len()).enumerate().filter(|(_, w)| *w == from).map(|(i, _)| i).collect();
    assert!(!starts.is_empty(), "{:?} not in the component", String::from_utf8_lossy(from));
    for i in starts {
        out[i..i + from.len()].copy_from_slice(to);
    }
    out
}
