//! Grants are data: a sixth plugin (vip-bonus, claiming add-points) is refused until an
//! operator grants its name the capability through the admin API, then runs on the next paid
//! order with no host release or restart; a revoked grant refuses the next host's load of
//! it and the running version's next effect that needs it, and the plugin status shows what
//! the name is granted.

use serde_json::{json, Value};

use std::time::Duration;

use crate::helpers::{component, spawn_app_with, test_settings, wait_consumers_idle, wait_for, with_plugins, Backend, TestApp};

async fn grants(app: &TestApp, name: &str, body: Option<&Value>) -> crate::helpers::Reply {
    let method = if body.is_some() { reqwest::Method::PUT } else { reqwest::Method::GET };
    app.admin(method, &format!("/api/admin/plugins/{name}/grants"), body).await
}

async fn a_sixth_plugin_runs_once_granted(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let vip = component("vip-bonus");

    let shown = grants(&app, "vip-bonus", None).await;
    assert_eq!(shown.status, 200);
    assert_eq!(shown.body, json!({"plugin": "vip-bonus", "capabilities": [], "source": "none"}));
    let refused = app.upload("vip-bonus", vip.clone(), "").await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert_eq!(refused.body["code"], "SHOP_PLUGIN_REJECTED");
    assert!(refused.body["message"].as_str().unwrap().contains("add-points"), "names the capability: {:?}", refused.body);

    let bad = grants(&app, "vip-bonus", Some(&json!({"capabilities": ["fly"]}))).await;
    assert_eq!(bad.status, 400);
    let message = bad.body["message"].as_str().unwrap();
    assert!(message.contains(r#"capabilities: "fly" is not one of "restore-stock""#), "names the value and the choices: {message}");
    let granted = grants(&app, "vip-bonus", Some(&json!({"capabilities": ["add-points"]}))).await;
    assert_eq!(granted.status, 200, "{:?}", granted.body);
    assert_eq!(granted.body["capabilities"], json!(["add-points"]));
    assert_eq!(granted.body["source"], "granted");
    assert!(granted.body["updated_by"].as_str().unwrap().starts_with("admin"));
    // Built-in grants are shown as such.
    assert_eq!(grants(&app, "points", None).await.body["source"], "built_in");

    // A payment before vip-bonus runs: history, which a plugin added to a running shop does
    // not run over (a replay can, when wanted).
    let before = app.fixture(5, "1500.00", "0.00", None).await;
    app.pay_order(&before, "1500.00").await;
    app.wait_events("shop.pay.success", 1).await;

    let up = app.upload("vip-bonus", vip.clone(), "").await;
    assert_eq!(up.status, 200, "{:?}", up.body);
    assert_eq!(up.body["active_version"], "1.0.0");
    assert_eq!(up.body["grants"], json!(["add-points"]));

    // The next paid order over 1,000.00: points' 1 per unit and the VIP bonus of 500.
    let fx = app.fixture(5, "1500.00", "0.00", None).await;
    app.pay_order(&fx, "1500.00").await;
    app.wait_events("shop.pay.success", 2).await;
    wait_consumers_idle(&app.nats_url, &["points", "vip-bonus"]).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 1500 + 500);
    assert_eq!(app.get(&format!("/api/users/{}", before.user_id)).await.body["user_score"], 1500, "no bonus for what was paid before");
    // What it would have done with that history, a dry-run shows: the one payment, new.
    let tried = app.cli(&["replay", "--plugin", "vip-bonus"]).await;
    assert_eq!(tried.code, Some(0), "{tried:?}");
    assert!(tried.stdout.contains("same 1  changed 0  new 1"), "{tried:?}");
    assert!(tried.stdout.contains("first new events:") && tried.stdout.contains("- → add-points points 500"), "{tried:?}");

    // Revoked: a host that loads vip-bonus from now on (a new one on the same database and
    // NATS, which finds it in the fleet's registry) refuses it.
    let revoked = grants(&app, "vip-bonus", Some(&json!({"capabilities": []}))).await;
    assert_eq!(revoked.body["capabilities"], json!([]));
    let status = app.admin(reqwest::Method::GET, "/api/admin/plugins/vip-bonus", None).await.body;
    assert_eq!(status["revoked"], json!(["add-points"]), "the running version shows what it lost: {status}");
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&app.db_url, &app.nats_url, data.path());
    settings.worker_id = 9;
    let second = shopmesh::startup::Application::build(settings).await.expect("a second host");
    let later = TestApp::attach(&app.db_url, &app.nats_url, &format!("http://{}", second.address())).await;
    let refused = later.upload("vip-bonus", vip, "").await;
    assert_eq!(refused.status, 400, "{:?}", refused.body);
    assert!(refused.body["message"].as_str().unwrap().contains("add-points"), "{:?}", refused.body);
    second.stop().await;

    // And the version already running stops adding points at once: its event is refused
    // (dead-lettered after its retries, with the reason), while points goes on.
    let order_id = app.pay_order(&fx, "1500.00").await;
    let letter = wait_for("vip-bonus's dead letter", Duration::from_secs(20), || async {
        let letters = app.admin(reqwest::Method::GET, "/api/admin/dead-letters?plugin=vip-bonus", None).await.body;
        letters.as_array().and_then(|l| l.first().cloned())
    })
    .await;
    assert!(letter["reason"].as_str().unwrap().contains("capability add-points is not allowed for plugin vip-bonus"), "{letter}");
    // The order's timeline says what became of the event for vip-bonus (there may be no
    // failed attempt in its inbox: a refused effect is dead-lettered at once).
    let vip_bonus = || async {
        let t = app.admin(reqwest::Method::GET, &format!("/api/admin/orders/{order_id}/timeline"), None).await.body;
        let events = t["events"].as_array().cloned().unwrap_or_default();
        events.iter().flat_map(|e| e["handled"].as_array().cloned().unwrap_or_default()).find(|h| h["plugin"] == "vip-bonus")
    };
    let shown = vip_bonus().await.expect("vip-bonus in the timeline");
    assert_eq!(shown["state"], "dead-lettered", "{shown}");
    assert!(shown["remark"].as_str().unwrap_or_default().contains("capability add-points is not allowed"), "{shown}");
    wait_consumers_idle(&app.nats_url, &["points"]).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 2 * 1500 + 500, "no bonus while revoked");
    // Granted again, the letter is redriven: the bonus lands, once.
    grants(&app, "vip-bonus", Some(&json!({"capabilities": ["add-points"]}))).await;
    assert_eq!(app.admin(reqwest::Method::GET, "/api/admin/plugins/vip-bonus", None).await.body["revoked"], json!([]));
    let redriven = app.admin(reqwest::Method::POST, &format!("/api/admin/dead-letters/{}/redrive", letter["id"].as_str().unwrap()), None).await;
    assert_eq!(redriven.body["result"], "applied", "{:?}", redriven.body);
    assert_eq!(vip_bonus().await.expect("vip-bonus in the timeline")["state"], "applied");
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 2 * 1500 + 2 * 500);

    // Handed back to the configuration: vip-bonus has none, so it holds nothing again; a
    // built-in grant that an operator replaced comes back.
    let reset = app.admin(reqwest::Method::DELETE, "/api/admin/plugins/vip-bonus/grants", None).await;
    assert_eq!((reset.status, &reset.body), (200, &json!({"plugin": "vip-bonus", "capabilities": [], "source": "none"})));
    assert_eq!(grants(&app, "vip-bonus", None).await.body["source"], "none");
    grants(&app, "log", Some(&json!({"capabilities": []}))).await;
    let reset = app.admin(reqwest::Method::DELETE, "/api/admin/plugins/log/grants", None).await;
    assert_eq!(reset.body, json!({"plugin": "log", "capabilities": ["append-log"], "source": "built_in"}));
    let again = app.admin(reqwest::Method::DELETE, "/api/admin/plugins/log/grants", None).await;
    assert_eq!((again.status, &again.body), (200, &reset.body), "nothing to hand back: answered as it is");
    let bad = app.admin(reqwest::Method::DELETE, "/api/admin/plugins/no%20such/grants", None).await;
    assert_eq!((bad.status, bad.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"), "{:?}", bad.body);
    // The guard's name is no plugin's: nothing is granted to it.
    let guard = grants(&app, "shopmesh-guard", Some(&json!({"capabilities": ["add-points"]}))).await;
    assert_eq!((guard.status, guard.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"), "{:?}", guard.body);
    assert!(guard.body["message"].as_str().unwrap().contains("is the host's own guard"), "{:?}", guard.body);
    assert_eq!(app.count("shop_plugin_grant", "plugin = 'shopmesh-guard'").await, 0);
}

crate::on_both_databases!(a_sixth_plugin_runs_once_granted);
