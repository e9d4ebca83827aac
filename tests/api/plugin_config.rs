//! A plugin's configuration values must fit the config schema its manifest declares. A value
//! that does not fit stops the start (for the folder's version), refuses an upload and fails
//! `shopmesh plugin check`, each naming the key and the rule; nothing of that version is
//! loaded, kept or staged. Values that fit load as before.

use serde_json::json;

use std::time::Duration;

use crate::helpers::{component, plugins_dir, spawn_app_with, test_settings, wait_for, with_plugins, Backend, TestApp, TestDb, TestNats};

fn config(pairs: &[(&str, &str)]) -> std::collections::HashMap<String, String> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_schema_refuses_stops_the_start() {
    let (db, nats, data) = (TestDb::new(Backend::Sqlite).await, TestNats::start().await, tempfile::tempdir().unwrap());
    let mut settings = test_settings(&db.url, &nats.url(), data.path());
    with_plugins(&mut settings);
    settings.plugin_config.0.insert("points".into(), config(&[("points_per_unit", "1.5")]));
    let refused = shopmesh::startup::Application::build(settings).await.err().expect("the start is refused");
    let text = format!("{refused:#}");
    assert!(text.contains("plugin points"), "names the plugin: {text}");
    assert!(text.contains(r#"points_per_unit = "1.5""#) && text.contains("must match ^[0-9]{1,3}$"), "names the key and the rule: {text}");

    // The same value, offline: `plugin check` refuses the component the way the host does.
    let check = |value: &str| {
        std::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
            .args(["plugin", "check"])
            .arg(plugins_dir().join("points.wasm"))
            .env("SHOPMESH_PLUGIN_CONFIG", format!("points.points_per_unit={value}"))
            .output()
            .expect("run shopmesh")
    };
    let offline = check("1.5");
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert_eq!(offline.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(r#"points_per_unit = "1.5""#), "{stderr}");
    let fits = check("7");
    assert!(fits.status.success(), "{}", String::from_utf8_lossy(&fits.stderr));

    // Not a component at all, and no file: one line each, the refusal and our own error.
    let check_file = |file: &std::path::Path| {
        let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"));
        let out = command.args(["plugin", "check"]).arg(file).env_remove("SHOPMESH_PLUGIN_GRANTS").output().expect("run shopmesh");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).trim_end().to_owned())
    };
    let text_file = data.path().join("notes.wasm");
    std::fs::write(&text_file, "# not a component\n").unwrap();
    let (code, stderr) = check_file(&text_file);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains("notes.wasm: refused: not a valid WebAssembly component"), "{stderr}");
    let (code, stderr) = check_file(&data.path().join("missing.wasm"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.starts_with("error: reading ") && stderr.lines().count() == 1, "{stderr}");
    // A capability its name is not granted: the refusal says what the name has, nothing.
    let (code, stderr) = check_file(&plugins_dir().join("vip-bonus.wasm"));
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("add-points") && stderr.contains("which is not granted to vip-bonus (granted: none)") && stderr.ends_with("(grant with --grant, or SHOPMESH_PLUGIN_GRANTS as on the host; this check is offline and does not see a grant made through the admin API)"), "{stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_the_values_do_not_fit_is_refused_and_nothing_is_staged() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_plugins(s);
        s.plugin_config.0.insert("points".into(), config(&[("points_per_unit", "3")]));
        s.plugin_config.0.insert("vip-bonus".into(), config(&[("bonus", "lots")]));
    })
    .await;
    // Values that fit: points loaded at start as usual.
    let points = app.admin(reqwest::Method::GET, "/api/admin/plugins/points", None).await;
    assert_eq!(points.status, 200, "{:?}", points.body);
    assert_eq!(points.body["active_version"], "1.0.0");

    // vip-bonus is granted, so its capability passes and only its configuration is left.
    let grant = json!({"capabilities": ["add-points"]});
    let granted = app.admin(reqwest::Method::PUT, "/api/admin/plugins/vip-bonus/grants", Some(&grant)).await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    for query in ["", "?activate=true"] {
        let refused = app.upload("vip-bonus", component("vip-bonus"), query).await;
        assert_eq!(refused.status, 400, "{:?}", refused.body);
        assert_eq!(refused.code(), "SHOP_PLUGIN_REJECTED");
        let message = refused.body["message"].as_str().unwrap();
        assert!(message.contains(r#"bonus = "lots""#) && message.contains("must match ^[0-9]{1,6}$"), "{message}");
    }
    let status = app.admin(reqwest::Method::GET, "/api/admin/plugins/vip-bonus", None).await;
    // Listed only for its folder's component, refused as the host started (not granted then).
    assert_eq!((&status.body["kept_versions"], &status.body["versions"]), (&json!([]), &json!([])), "nothing kept or staged: {:?}", status.body);
    assert!(status.body["refused"].as_str().is_some_and(|why| why.starts_with("the plugins folder's ")), "{:?}", status.body);
}

/// A version that reaches a host through the fleet's registry is checked against that host's
/// own values too: refused there, the plugin status says why, and the readiness probe and
/// the metrics name the plugin (the probe without the reason, which quotes a value; the host
/// stays ready); the host that took it says nothing of the kind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_version_a_hosts_values_refuse_is_said_there() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&app.db_url, &app.nats_url, data.path());
    settings.worker_id = 2;
    settings.plugin_config.0.insert("vip-bonus".into(), config(&[("bonus", "lots")]));
    let other = shopmesh::startup::Application::build(settings).await.expect("the second host starts: its folder holds no vip-bonus");
    let second = TestApp::attach(&app.db_url, &app.nats_url, &format!("http://{}", other.address())).await;

    let grant = json!({"capabilities": ["add-points"]});
    assert_eq!(app.admin(reqwest::Method::PUT, "/api/admin/plugins/vip-bonus/grants", Some(&grant)).await.status, 200);
    let uploaded = app.upload("vip-bonus", component("vip-bonus"), "").await;
    assert_eq!(uploaded.body["active_version"], "1.0.0", "{:?}", uploaded.body);

    let status = wait_for("the second host to refuse it", Duration::from_secs(15), || async {
        let s = second.admin(reqwest::Method::GET, "/api/admin/plugins/vip-bonus", None).await;
        (s.status == 200 && s.body["refused"].is_string()).then_some(s.body)
    })
    .await;
    assert!(status["refused"].as_str().unwrap().contains(r#"bonus = "lots""#), "{status}");
    assert!(status.get("active_version").is_none(), "{status}");
    let ready = |app: &TestApp| app.http.get(format!("{}/readyz", app.address)).send();
    let probe = ready(&second).await.unwrap();
    assert_eq!(probe.status(), 200, "one plugin refused does not take the host's API out");
    let body = probe.text().await.unwrap();
    assert!(body.contains(r#""plugins_refused":["vip-bonus"]"#) && !body.contains("lots"), "{body}");
    let scrape = |app: &TestApp| app.http.get(format!("{}/metrics", app.address)).send();
    let metrics = scrape(&second).await.unwrap().text().await.unwrap();
    assert!(metrics.lines().any(|l| l == r#"shopmesh_plugin_refused{plugin="vip-bonus"} 1"#), "{metrics}");
    let took = ready(&app).await.unwrap().text().await.unwrap();
    assert!(took.contains(r#""plugins_refused":[]"#), "{took}");
    assert!(scrape(&app).await.unwrap().text().await.unwrap().lines().any(|l| l == r#"shopmesh_plugin_refused{plugin="vip-bonus"} 0"#));
    let here = app.admin(reqwest::Method::GET, "/api/admin/plugins/vip-bonus", None).await.body;
    assert!(here.get("refused").is_none(), "{here}");
    drop(other);
}
