//! The operator console: its session rules over plain HTTP, and every page driven in a real
//! headless Chromium (tests/console/console_test.py) against a real host.

use std::time::Duration;

use reqwest::{header, redirect, Method, StatusCode};
use serde_json::Value;
use shopmesh::startup::Application;

use crate::helpers::{
    component, plugins_dir, spawn_app_with, test_settings, wait_consumers_idle, wait_for, with_plugins, Backend, TestApp, ADMIN_TOKEN,
};

const FIVE: [&str; 5] = ["stock", "coupon", "balance", "points", "log"];

fn no_redirects() -> reqwest::Client {
    reqwest::Client::builder().redirect(redirect::Policy::none()).build().unwrap()
}

/// Logs in through the form; the session cookie (`name=value`).
async fn login(http: &reqwest::Client, address: &str) -> String {
    let resp = http.post(format!("{address}/console/login")).form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(resp.status(), StatusCode::SEE_OTHER);
    assert_eq!(resp.headers()[header::LOCATION], "/console");
    let set = resp.headers()[header::SET_COOKIE].to_str().unwrap().to_owned();
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
        assert!(set.contains(attr), "{set}");
    }
    set.split(';').next().unwrap().to_owned()
}

/// The CSRF token the console page carries for its session.
async fn csrf_of(http: &reqwest::Client, address: &str, cookie: &str) -> String {
    let page = http.get(format!("{address}/console")).header(header::COOKIE, cookie).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let csp = page.headers()[header::CONTENT_SECURITY_POLICY].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"), "{csp}");
    let html = page.text().await.unwrap();
    assert!(!html.contains(ADMIN_TOKEN), "the token is never in a page");
    let token = html.split(r#"name="csrf-token" content=""#).nth(1).and_then(|r| r.split('"').next()).unwrap().to_owned();
    assert_eq!(token.len(), 64, "{token}");
    token
}

async fn points_enabled(app: &TestApp) -> bool {
    let plugins = app.admin(Method::GET, "/api/admin/plugins", None).await.body;
    plugins.as_array().unwrap().iter().find(|p| p["name"] == "points").unwrap()["enabled"].as_bool().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_a_session_nothing_opens_and_forgeries_are_refused() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let (http, a) = (no_redirects(), app.address.as_str());

    // What the console's routes answer themselves is in the API's shape too.
    let put = http.put(format!("{a}/console/login")).send().await.unwrap();
    assert_eq!((put.status(), put.headers()[header::ALLOW].to_str().unwrap()), (StatusCode::METHOD_NOT_ALLOWED, "GET, POST"));
    assert!(put.text().await.unwrap().contains("SHOP_METHOD_NOT_ALLOWED"));
    let asset = http.get(format!("{a}/console/assets/x.js")).send().await.unwrap();
    assert_eq!(asset.status(), StatusCode::NOT_FOUND);
    assert!(asset.text().await.unwrap().contains("SHOP_NOT_FOUND"));

    // No session: every page sends the browser to the login form; the API answers 401.
    for path in ["/console", "/console/", "/console/plugins/points", "/console/dead-letters", "/console/replay", "/console/replay/7", "/console/orders/1", "/console/x"] {
        let resp = http.get(format!("{a}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::SEE_OTHER, "{path}");
        // To the login form, which brings the operator back to the page afterwards.
        assert_eq!(resp.headers()[header::LOCATION], format!("/console/login?next={path}").as_str(), "{path}");
    }
    let with_query = http.get(format!("{a}/console/dead-letters?plugin=points&x=1")).send().await.unwrap();
    assert_eq!(with_query.headers()[header::LOCATION], "/console/login?next=/console/dead-letters%3Fplugin%3Dpoints%26x%3D1");
    let login_page = http.get(format!("{a}/console/login?next=/console/dead-letters%3Fplugin%3Dpoints%26x%3D1")).send().await.unwrap().text().await.unwrap();
    assert!(login_page.contains(r#"name="next" value="/console/dead-letters?plugin=points&amp;x=1""#), "{login_page}");
    for (method, path) in [(Method::POST, "/api/admin/plugins/points/disable"), (Method::GET, "/api/admin/overview"), (Method::POST, "/console/logout")] {
        let resp = http.request(method.clone(), format!("{a}{path}")).send().await.unwrap();
        assert_eq!(resp.status(), StatusCode::UNAUTHORIZED, "{method} {path}");
        assert_eq!(resp.json::<Value>().await.unwrap()["code"], "SHOP_UNAUTHORIZED");
    }
    // A wrong token logs nobody in; another site cannot log a browser in.
    let wrong = http.post(format!("{a}/console/login")).form(&[("token", "nope")]).send().await.unwrap();
    assert_eq!(wrong.status(), StatusCode::UNAUTHORIZED);
    assert!(wrong.headers().get(header::SET_COOKIE).is_none());
    assert!(wrong.text().await.unwrap().contains("admin token wrong"));
    let foreign = http.post(format!("{a}/console/login")).header(header::ORIGIN, "http://evil.example").form(&[("token", ADMIN_TOKEN)]).send().await.unwrap();
    assert_eq!(foreign.status(), StatusCode::FORBIDDEN);
    assert!(foreign.headers().get(header::SET_COOKIE).is_none());

    let cookie = login(&http, a).await;
    let csrf = csrf_of(&http, a, &cookie).await;
    let with_cookie = |method: Method, path: &str| http.request(method, format!("{a}{path}")).header(header::COOKIE, &cookie);

    // The session reads the admin API like the token does.
    let overview: Value = with_cookie(Method::GET, "/api/admin/overview").send().await.unwrap().json().await.unwrap();
    let names: Vec<&str> = overview["plugins"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert!(FIVE.iter().all(|n| names.contains(n)), "{names:?}");

    // Forged: the cookie without the CSRF token, or with it from another origin. Nothing changes.
    let forged = with_cookie(Method::POST, "/api/admin/plugins/points/disable").send().await.unwrap();
    assert_eq!(forged.status(), StatusCode::FORBIDDEN);
    assert_eq!(forged.json::<Value>().await.unwrap()["code"], "SHOP_CSRF_REFUSED");
    let other_origin = with_cookie(Method::POST, "/api/admin/plugins/points/disable").header("x-csrf-token", &csrf).header(header::ORIGIN, "http://evil.example").send().await.unwrap();
    assert_eq!(other_origin.status(), StatusCode::FORBIDDEN);
    let wrong_token = with_cookie(Method::POST, "/api/admin/plugins/points/disable").header("x-csrf-token", "0".repeat(64)).send().await.unwrap();
    assert_eq!(wrong_token.status(), StatusCode::FORBIDDEN);
    assert!(points_enabled(&app).await, "no forgery disabled anything");

    // With the token from the page, from the host's own origin: done.
    let own = with_cookie(Method::POST, "/api/admin/plugins/points/disable").header("x-csrf-token", &csrf).header(header::ORIGIN, a).send().await.unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert!(!points_enabled(&app).await);
    let back = with_cookie(Method::POST, "/api/admin/plugins/points/enable").header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(back.status(), StatusCode::OK);
    assert!(points_enabled(&app).await);

    // Logout needs the CSRF token too, and ends the session for good.
    assert_eq!(with_cookie(Method::POST, "/console/logout").send().await.unwrap().status(), StatusCode::FORBIDDEN);
    let out = with_cookie(Method::POST, "/console/logout").header("x-csrf-token", &csrf).send().await.unwrap();
    assert_eq!(out.status(), StatusCode::NO_CONTENT);
    assert!(out.headers()[header::SET_COOKIE].to_str().unwrap().contains("Max-Age=0"));
    assert_eq!(with_cookie(Method::GET, "/api/admin/plugins").send().await.unwrap().status(), StatusCode::UNAUTHORIZED);
    assert_eq!(with_cookie(Method::GET, "/console").send().await.unwrap().status(), StatusCode::SEE_OTHER);
}

/// Paid orders for points to replay, a dead letter of points, a cancelled order; then the
/// browser does the rest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_page_in_a_real_browser() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_plugins(s);
        s.plugin_max_attempts = 2;
        // Read only by the rogue guest below; the real points plugin has no settings.
        s.plugin_config.0.insert("points".into(), [("mode".to_string(), "trap".to_string())].into());
    })
    .await;
    // Enough payments that a replay held to 1 event/s runs for a while (the browser watches
    // one run and cancels it).
    const PAID: usize = 8;
    let fx = app.fixture(20, "150.00", "0.00", None).await;
    let mut paid_order = String::new();
    for _ in 0..PAID {
        paid_order = app.pay_order(&fx, "150.00").await;
    }
    app.wait_events("shop.pay.success", PAID).await;
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;

    // A version that traps: the next payment's event is dead-lettered; 1.0.0 comes back.
    app.registry().install("points", &component("rogue")).unwrap();
    app.pay_order(&fx, "150.00").await;
    let dead_letter = wait_for("the rogue's dead letter", Duration::from_secs(30), || async {
        let letters = app.admin(Method::GET, "/api/admin/dead-letters?plugin=points", None).await.body;
        letters.as_array().and_then(|l| l.first()).map(|l| l["id"].as_str().unwrap().to_owned())
    })
    .await;
    app.registry().install("points", &component("points")).unwrap();

    // A second host of the fleet whose order confirmation fails: its order is cancelled and
    // the first host's plugins give stock, coupon and balance back.
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&app.db_url, &app.nats_url, data.path());
    settings.worker_id = 2;
    settings.fault = Some("fail:confirm".parse().unwrap());
    let failing = Application::build(settings).await.expect("second host builds");
    let failing_client = TestApp::attach(&app.db_url, &app.nats_url, &format!("http://{}", failing.address())).await;
    let fx2 = failing_client.fixture(5, "200.00", "100.00", Some("30.00")).await;
    let reply = failing_client.post("/api/orders", &fx2.order(2, "200.00", "40.00")).await;
    assert_eq!(reply.code(), "SHOP_ORDER_CONFIRM_FAIL", "{:?}", reply.body);
    let order_id = app.scalar("SELECT order_id FROM trade_order WHERE order_status = 2").await;
    app.wait_events("shop.order.cancel", 1).await;
    wait_consumers_idle(&app.nats_url, &["stock", "coupon", "balance", "log"]).await;
    assert_eq!(app.count("shop_order_step", &format!("order_id = {order_id} AND action = 'giveback'")).await, 3);

    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let shots = root.join("target/test-reports/console");
    let _ = std::fs::remove_dir_all(&shots);
    let points_v2 = plugins_dir().join("../plugins-testing/points_v2.wasm");
    assert!(points_v2.is_file(), "{} not built: run scripts/build-plugins", points_v2.display());
    let out = tokio::process::Command::new(root.join(".venv/bin/python"))
        .arg(root.join("tests/console/console_test.py"))
        .env("CONSOLE_URL", &app.address)
        .env("CONSOLE_TOKEN", ADMIN_TOKEN)
        .env("CONSOLE_ORDER_ID", order_id.to_string())
        .env("CONSOLE_PAID_ORDER_ID", &paid_order)
        .env("CONSOLE_DEAD_LETTER_ID", &dead_letter)
        .env("CONSOLE_PAY_EVENTS", (PAID + 1).to_string())
        .env("CONSOLE_POINTS_V2", &points_v2)
        .env("CONSOLE_SCREENSHOTS", &shots)
        .env("CHROMIUM", std::env::var("SHOPMESH_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into()))
        .output()
        .await
        .expect("python with playwright: run scripts/setup --browser");
    let said = format!("{}\n{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the browser test failed:\n{said}");
    assert!(said.contains("console: every step passed"), "{said}");

    // What the clicks did, seen from the API and the database rather than the pages.
    let letter = app.admin(Method::GET, &format!("/api/admin/dead-letters/{dead_letter}"), None).await.body;
    assert_eq!(letter["redrive_result"], "applied", "{letter}");
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150 * (PAID as i64 + 1), "every payment's points, each once");
    let plugins = app.admin(Method::GET, "/api/admin/plugins", None).await.body;
    let points = plugins.as_array().unwrap().iter().find(|p| p["name"] == "points").unwrap().clone();
    assert_eq!(points["active_version"], "1.0.0", "rolled back");
    assert_eq!(points["enabled"], true, "the forged disable did nothing");
    let v2 = points["versions"].as_array().unwrap().iter().find(|v| v["version"] == "2.0.0").unwrap().clone();
    assert_eq!(v2["state"], "kept", "activated once, then rolled back from: {v2}");
    assert!(v2["activated_at"].is_string(), "{v2}");
    let replays = app.admin(Method::GET, "/api/admin/replays", None).await.body;
    let replays = replays.as_array().unwrap(); // newest first
    assert_eq!(replays.len(), 3, "the bad form started nothing: {replays:?}");
    let states: Vec<_> = replays.iter().map(|r| (r["version"].as_str(), r["mode"].as_str(), r["state"].as_str(), r["max_rate"].as_i64())).collect();
    let cancelled = (Some("2.0.0"), Some("dry-run"), Some("cancelled"), Some(1));
    assert_eq!(states, [cancelled, cancelled, (Some("2.0.0"), Some("dry-run"), Some("done"), None)]);
    assert_eq!(replays[2]["summary"]["changed"], PAID as i64 + 1);
    assert!(replays[1]["processed"].as_i64().unwrap() < PAID as i64 + 1, "cancelled before the end: {}", replays[1]);
    // "Go on" started the rest of the cancelled one's range.
    let next = match replays[1]["last_seq"].as_i64() {
        Some(last) => last + 1,
        None => {
            assert_eq!(replays[1]["processed"], 0, "a replay that ran some events says which was last: {}", replays[1]);
            replays[1]["from_seq"].as_i64().unwrap()
        }
    };
    assert_eq!(replays[1]["resume_from"].as_i64(), Some(next), "{replays:?}");
    assert_eq!((replays[0]["from_seq"].as_i64(), &replays[0]["to_seq"]), (Some(next), &replays[1]["to_seq"]), "{replays:?}");
    let mut pages: Vec<String> = std::fs::read_dir(&shots).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    pages.sort();
    assert_eq!(pages.len(), 9, "a screenshot of every page: {pages:?}");
    assert!(pages.iter().all(|p| std::fs::metadata(shots.join(p)).unwrap().len() > 10_000), "{pages:?}");
    drop(failing);
}

crate::on_both_databases!(an_orders_timeline_and_the_overview);

/// What the order and overview pages read: a cancelled order's story, step by step and
/// plugin by plugin, and every plugin's load.
async fn an_orders_timeline_and_the_overview(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        with_plugins(s);
        s.fault = Some("fail:confirm".parse().unwrap());
    })
    .await;
    let fx = app.fixture(5, "200.00", "100.00", Some("30.00")).await;
    assert_eq!(app.post("/api/orders", &fx.order(2, "200.00", "40.00")).await.code(), "SHOP_ORDER_CONFIRM_FAIL");
    let order_id = app.scalar("SELECT order_id FROM trade_order WHERE order_status = 2").await;
    app.wait_events("shop.order.cancel", 1).await;
    wait_consumers_idle(&app.nats_url, &["stock", "coupon", "balance", "log"]).await;

    let t = app.admin(Method::GET, &format!("/api/admin/orders/{order_id}/timeline"), None).await;
    assert_eq!(t.status, 200, "{:?}", t.body);
    let t = t.body;
    assert_eq!(t["order"]["order_id"], order_id.to_string());
    let states: Vec<&str> = t["states"].as_array().unwrap().iter().map(|s| s["state"].as_str().unwrap()).collect();
    assert_eq!(states, ["placed", "cancelled"]);
    assert!(t["states"][1]["note"].as_str().unwrap().contains("confirm"), "{}", t["states"]);
    let steps = t["steps"].as_array().unwrap();
    let step = |name: &str, action: &str| steps.iter().find(|s| s["step"] == name && s["action"] == action).unwrap_or_else(|| panic!("{name} {action}: {steps:?}")).clone();
    for (name, amount, plugin) in [("stock", "2", "stock"), ("balance", "40.00", "balance"), ("coupon", fx.coupon_id.as_deref().unwrap(), "coupon")] {
        assert_eq!(step(name, "taken")["amount"], amount);
        assert!(step(name, "taken").get("by").is_none());
        assert_eq!(step(name, "given-back")["amount"], amount);
        assert_eq!(step(name, "given-back")["by"], format!("{plugin}@1.0.0"));
    }
    let events = t["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{events:?}");
    let cancel = &events[0];
    assert_eq!(cancel["subject"], "shop.order.cancel");
    assert!(cancel["stream_seq"].as_i64().unwrap() >= 1 && cancel["published_at"].is_string(), "{cancel}");
    let mut plugins: Vec<&str> = cancel["handled"].as_array().unwrap().iter().map(|h| h["plugin"].as_str().unwrap()).collect();
    plugins.sort();
    assert_eq!(plugins, ["balance", "coupon", "log", "stock"]);
    for h in cancel["handled"].as_array().unwrap() {
        assert_eq!((h["state"].as_str(), h["version"].as_str()), (Some("applied"), Some("1.0.0")), "{h}");
        assert_eq!(h["effects"].as_array().map(Vec::len), Some(1), "{h}");
    }
    assert_eq!(t["dead_letters"], serde_json::json!([]));
    let missing = app.admin(Method::GET, "/api/admin/orders/1/timeline", None).await;
    assert_eq!((missing.status, missing.code()), (404, "SHOP_ORDER_INVALID"));

    let o = app.admin(Method::GET, "/api/admin/overview", None).await.body;
    assert_eq!((o["outbox_unsent"].as_i64(), o["dead_letters_open"].as_i64(), o["sample_seconds"].as_i64()), (Some(0), Some(0), Some(5)), "{o}");
    let stock = o["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "stock").unwrap().clone();
    assert_eq!((stock["active_version"].as_str(), stock["enabled"].as_bool()), (Some("1.0.0"), Some(true)), "{stock}");
    assert_eq!((stock["invocations"].as_i64(), stock["failures"].as_i64(), stock["pending"].as_i64(), stock["ack_pending"].as_i64()), (Some(1), Some(0), Some(0), Some(0)), "{stock}");
    assert!(stock["recent_rates"].is_array() && stock["events_per_second"].is_number() && stock["fleet_events_per_second"].is_number(), "{stock}");
    // The fleet's roll call: this host, answering every few seconds with what it runs.
    let hosts = wait_for("the roll call", Duration::from_secs(20), || async {
        let o = app.admin(Method::GET, "/api/admin/overview", None).await.body;
        let hosts = o["hosts"].as_array().cloned().unwrap_or_default();
        (!hosts.is_empty()).then_some(hosts)
    })
    .await;
    assert_eq!(hosts.len(), 1, "{hosts:?}");
    assert_eq!(hosts[0]["host"], "worker-1");
    assert_eq!(hosts[0]["address"], app.address.as_str());
    assert!(hosts[0]["plugins"].as_array().unwrap().iter().all(|p| p["events_per_second"].as_f64().is_some_and(|r| r >= 0.0)), "{hosts:?}");
    let plugins = hosts[0]["plugins"].as_array().unwrap();
    // vip-bonus, not granted here, is refused as the host started: listed, running nothing.
    let vip = plugins.iter().find(|p| p["name"] == "vip-bonus").unwrap_or_else(|| panic!("{plugins:?}"));
    assert!(vip["refused"] == true && vip.get("active_version").is_none_or(Value::is_null), "{vip}");
    let runs: Vec<String> = plugins.iter().filter_map(|p| Some(format!("{} {}", p["name"].as_str()?, p["active_version"].as_str()?))).collect();
    for name in FIVE {
        assert!(runs.contains(&format!("{name} 1.0.0")), "{runs:?}");
    }
}
