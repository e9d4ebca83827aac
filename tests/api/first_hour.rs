//! The first hour of a new user: the CLI answers --help and --version without starting
//! anything and refuses a bad flag in one line; a port in use stops the start in one line
//! before anything is started or written; a request body with an unknown field or
//! without a required one is refused naming it, and changes nothing; the admin API says
//! whether the token is missing or wrong; every example in the spec works on a fresh host
//! with the demo data; kept plugin versions survive a restart and a paused plugin resumes
//! at once; the logs are plain text in a file, JSON on request; schemathesis finds no
//! schema-violating request accepted.

use std::{process::Command, time::Duration};

use reqwest::Method;
use serde_json::{json, Value};

use crate::helpers::{
    component, plugins_dir, spawn_app, spawn_app_with, wait_for, with_plugins, Backend, HostProcess, TestApp, TestDb,
    TestNats, ADMIN_TOKEN, CALLBACK_SECRET,
};

fn shopmesh(args: &[&str], data: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .args(args)
        .env("SHOPMESH_DATA_DIR", data)
        .output()
        .expect("run shopmesh")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn help_and_version_start_nothing_and_a_bad_flag_is_one_line() {
    let data = tempfile::tempdir().unwrap();
    for args in [&["--help"][..], &["serve", "--help"], &["--version"], &["replay", "--help"]] {
        let out = shopmesh(args, data.path());
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", String::from_utf8_lossy(&out.stderr));
        assert!(!out.stdout.is_empty(), "{args:?} printed something");
    }
    assert!(String::from_utf8_lossy(&shopmesh(&["--version"], data.path()).stdout).starts_with("shopmesh 0."));
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0, "no database, no nats store: nothing was started");

    let bad = shopmesh(&["serve", "--nope"], data.path());
    assert_eq!(bad.status.code(), Some(2));
    let err = String::from_utf8_lossy(&bad.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("--nope") && !err.contains("panicked"), "{err}");
    let missing = shopmesh(&["replay"], data.path());
    assert_eq!(missing.status.code(), Some(2));
    let err = String::from_utf8_lossy(&missing.stderr);
    assert_eq!(err.trim_end().lines().count(), 1, "one line: {err}");
    assert!(err.contains("not provided: --plugin <PLUGIN>") && err.contains("(see shopmesh replay --help)"), "names what is missing, and whose help: {err}");
    let bare = shopmesh(&[], data.path());
    assert_eq!(bare.status.code(), Some(2), "a bare shopmesh starts nothing either");
    assert_eq!(std::fs::read_dir(data.path()).unwrap().count(), 0);
}

/// A port in use is said in one line before anything starts: no database file, no JetStream
/// store (a nats-server child would have made one), so nothing is left to clean up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_port_in_use_stops_the_start_before_anything_starts() {
    let data = tempfile::tempdir().unwrap();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let out = Command::new(env!("CARGO_BIN_EXE_shopmesh"))
        .args(["serve", "--http-addr", &addr, "--plugins-dir", plugins_dir().to_str().unwrap()])
        .env("SHOPMESH_DATA_DIR", data.path())
        .env_remove("SHOPMESH_NATS_URL")
        .env_remove("SHOPMESH_DATABASE_URL")
        .output()
        .expect("run shopmesh");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("an error line: {err}"));
    assert!(line.contains(&format!("binding {addr}")) && line.contains("--http-addr"), "{line}");
    let left: Vec<_> = std::fs::read_dir(data.path()).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert!(left.is_empty(), "nothing was started, nothing written: {left:?}");
}

async fn bad_bodies_name_the_field_and_change_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    let fx = app.fixture(5, "20.00", "0.00", None).await;
    let before = app.snapshot().await;
    let cases: Vec<(&str, Box<dyn Fn(&mut Value)>, &str)> = vec![
        ("a typo", Box::new(|o| { o["coupn_id"] = json!("1"); }), "coupn_id: unknown field"),
        ("no address", Box::new(|o| { o.as_object_mut().unwrap().remove("address"); }), "address: required"),
        ("no quantity", Box::new(|o| { o.as_object_mut().unwrap().remove("goods_number"); }), "goods_number: required, an integer"),
        ("a quantity as text", Box::new(|o| { o["goods_number"] = json!("1"); }), "goods_number: must be an integer"),
        ("a quantity past 63 bits", Box::new(|o| { o["goods_number"] = json!(u64::MAX); }), "goods_number: must be an integer; the one given is out of range"),
        ("a price as a number", Box::new(|o| { o["goods_price"] = json!(20.0); }), "goods_price: must be an amount as a decimal string"),
        ("a bad id", Box::new(|o| { o["user_id"] = json!("12x"); }), "user_id: must be an id as a string of 1 to 19 digits"),
        ("an optional field as null", Box::new(|o| { o["coupon_id"] = json!(null); }), "or left out (not null)"),
    ];
    for (name, change, says) in cases {
        let mut order = fx.order(1, "20.00", "0");
        change(&mut order);
        let reply = app.post("/api/orders", &order).await;
        assert_eq!((reply.status, reply.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"), "{name}: {:?}", reply.body);
        let message = reply.body["message"].as_str().unwrap();
        assert!(message.contains(says), "{name}: {message:?} should say {says:?}");
    }
    let not_json = app.request(Method::POST, "/api/orders", None, &[("content-type", "application/json".into())]).await;
    assert_eq!(not_json.status, 400);
    assert_eq!(app.snapshot().await, before, "nothing was created");
    // Unknown fields are refused on every body, the admin's too.
    let admin = app.admin_post("/api/admin/users", &json!({"user_name": "x", "user_money": "1.00", "usr_score": 5})).await;
    assert_eq!(admin.status, 400);
    assert!(admin.body["message"].as_str().unwrap().contains("usr_score: unknown field"), "{:?}", admin.body);
}

async fn auth_says_missing_or_wrong(backend: Backend) {
    let app = spawn_app(backend).await;
    let missing = app.http.get(format!("{}/api/admin/plugins", app.address)).send().await.unwrap();
    assert_eq!(missing.status(), 401);
    assert_eq!(missing.headers()["www-authenticate"], "Bearer");
    let body: Value = missing.json().await.unwrap();
    assert_eq!(body["code"], "SHOP_UNAUTHORIZED");
    assert!(body["message"].as_str().unwrap().contains("missing"), "{body}");
    // Another scheme is no bearer token: the answer says which header it reads.
    let basic = app.http.get(format!("{}/api/admin/plugins", app.address)).basic_auth("admin", Some(ADMIN_TOKEN)).send().await.unwrap();
    let body: Value = basic.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("another scheme, such as Basic, is not read"), "{body}");
    let wrong = app.http.get(format!("{}/api/admin/plugins", app.address)).bearer_auth("nope").send().await.unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    let body: Value = wrong.json().await.unwrap();
    assert!(body["message"].as_str().unwrap().contains("wrong"), "{body}");
    let root = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let redirect = root.get(format!("{}/", app.address)).send().await.unwrap();
    assert_eq!((redirect.status().as_u16(), redirect.headers()["location"].to_str().unwrap()), (303, "/docs"));
}

/// The example of `schema`, following a `$ref` into the components.
fn example_of<'a>(spec: &'a Value, schema: &'a Value) -> Option<&'a Value> {
    let resolved = match schema["$ref"].as_str() {
        Some(r) => &spec["components"]["schemas"][r.rsplit('/').next().unwrap()],
        None => schema,
    };
    resolved.get("example")
}

async fn every_shop_example_in_the_spec_works_on_the_demo_data(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.demo_data = true;
        with_plugins(s);
    })
    .await;
    let spec = app.get("/openapi.json").await.body;
    let tags: Vec<&str> = spec["tags"].as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap()).collect();
    assert_eq!(tags, ["Catalog", "Orders", "Payments", "Admin", "Health"], "tags in the order a user meets them");
    let mut tried = 0;
    for (path, operations) in spec["paths"].as_object().unwrap() {
        for (method, op) in operations.as_object().unwrap() {
            assert!(op["operationId"].is_string(), "{method} {path} has an operationId");
            // Every documented error example carries a real code (a probe's 503 is its report).
            for (status, response) in op["responses"].as_object().unwrap() {
                if status.starts_with('2') || op["tags"][0] == "Health" {
                    continue;
                }
                let schema = &response["content"]["application/json; charset=utf-8"]["schema"];
                let example = example_of(&spec, schema).unwrap_or_else(|| panic!("{method} {path} {status}: no example"));
                let code = example["code"].as_str().unwrap();
                assert!(code.starts_with("SHOP_") && code.len() > 6, "{method} {path} {status}: {code}");
            }
            // Of the admin operations, those that look or change nothing the demo needs: a
            // plugin, a rollback to the version it runs, a dry-run replay.
            let tag = op["tags"][0].as_str().unwrap();
            let harmless = ["getPlugin", "getPluginGrants", "activatePlugin", "startReplay"];
            if tag == "Admin" && !harmless.contains(&op["operationId"].as_str().unwrap()) {
                continue;
            }
            // The request as Swagger's "Try it out" builds it from the examples.
            let mut url = path.clone();
            for p in op["parameters"].as_array().into_iter().flatten().filter(|p| p["in"] == "path") {
                let value = p["example"].as_str().or(p["schema"]["example"].as_str()).unwrap_or_else(|| panic!("{method} {path}: no example for {}", p["name"]));
                url = url.replace(&format!("{{{}}}", p["name"].as_str().unwrap()), value);
            }
            let body = op["requestBody"]["content"].as_object().and_then(|c| c.values().next()).and_then(|m| example_of(&spec, &m["schema"]));
            let mut headers = Vec::new();
            if tag == "Admin" {
                headers.push(("authorization", format!("Bearer {ADMIN_TOKEN}")));
            }
            if op["operationId"] == "paymentCallback" {
                // The one example that needs what Swagger cannot do: an HMAC of the body.
                let now = shopmesh::ids::now_ms() / 1000;
                let text = body.unwrap().to_string();
                headers.push(("X-Shop-Signature", shopmesh::signature::sign(CALLBACK_SECRET.as_bytes(), now, text.as_bytes())));
            }
            let method_ = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let reply = app.request(method_, &url, body, &headers).await;
            assert!((200..300).contains(&reply.status), "{method} {url} with its example: {} {:?}", reply.status, reply.body);
            tried += 1;
        }
    }
    assert_eq!(tried, 14, "orders (2), catalog (3), payments (2), the callback, the two probes and four admin operations");
}

async fn kept_versions_survive_a_restart_and_enable_resumes_at_once(backend: Backend) {
    let db = TestDb::new(backend).await;
    let nats = TestNats::start().await;
    let (mut host, app) = HostProcess::start_with_plugins(&db, &nats).await;
    let v2 = app.upload("points", component("points_v2"), "").await;
    assert_eq!(v2.body["active_version"], "2.0.0", "{:?}", v2.body);
    let back = app.admin(Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "1.0.0"}))).await;
    assert_eq!(back.body["active_version"], "1.0.0", "{:?}", back.body);
    host.child.start_kill().unwrap();
    host.child.wait().await.unwrap();

    let (_host, app) = HostProcess::start_with_plugins(&db, &nats).await;
    let points = |app: &TestApp| {
        let app = app.address.clone();
        async move {
            let list: Value = reqwest::Client::new().get(format!("{app}/api/admin/plugins")).bearer_auth(ADMIN_TOKEN).send().await.unwrap().json().await.unwrap();
            list.as_array().unwrap().iter().find(|p| p["name"] == "points").cloned().unwrap()
        }
    };
    let status = wait_for("the registry to be read back", Duration::from_secs(10), || async {
        let p = points(&app).await;
        (p["kept_versions"].as_array().unwrap().len() == 2).then_some(p)
    })
    .await;
    assert_eq!(status["kept_versions"], json!(["1.0.0", "2.0.0"]), "{status}");
    assert_eq!(status["active_version"], "1.0.0");
    let again = app.admin(Method::POST, "/api/admin/plugins/points/activate", Some(&json!({"version": "2.0.0"}))).await;
    assert_eq!((again.status, again.body["active_version"].as_str()), (200, Some("2.0.0")), "{:?}", again.body);

    // Disabled: an event waits; enabled: it is handled at once (a paused plugin's events
    // come back every half second, not every retry_max).
    app.admin(Method::POST, "/api/admin/plugins/points/disable", None).await;
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    tokio::time::sleep(Duration::from_millis(1200)).await;
    assert_eq!(app.count("trade_mq_consumer_log", "group_name = 'points'").await, 0, "paused");
    app.admin(Method::POST, "/api/admin/plugins/points/enable", None).await;
    wait_for("the paused event to be handled after enable", Duration::from_millis(1500), || async {
        (app.count("trade_mq_consumer_log", "group_name = 'points' AND consumer_status = 1").await == 1).then_some(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logs_are_plain_in_a_file_and_json_on_request() {
    let db = TestDb::new(Backend::Sqlite).await;
    let nats = TestNats::start().await;
    let dir = tempfile::tempdir().unwrap();
    for (format, file) in [("text", dir.path().join("text.log")), ("json", dir.path().join("json.log"))] {
        let host = HostProcess::start_with(&db.url, &nats.url(), &[("RUST_LOG", "info")], &["--log-format", format], Some(&file)).await;
        let app = TestApp::attach(&db.url, &nats.url(), &host.address).await;
        assert_eq!(app.get("/api/goods/42").await.status, 404);
        let logs = wait_for("the request's log line", Duration::from_secs(10), || async {
            let text = std::fs::read_to_string(&file).unwrap();
            text.contains("/api/goods/42").then_some(text)
        })
        .await;
        assert!(!logs.contains('\u{1b}'), "{format}: no escape codes in a file");
        assert!(logs.contains("shopmesh ready"), "{format}: the start-up summary");
        if format == "json" {
            for line in logs.lines() {
                let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["message"].is_string() || v["fields"].is_object(), "{line}");
            }
            // A request's duration is a number, for a log shipper to sum and compare.
            let request = logs.lines().map(|l| serde_json::from_str::<Value>(l).unwrap()).find(|v| v["path"] == "/api/goods/42").expect("the request's line");
            assert!(request["ms"].is_f64(), "{request}");
        }
        drop(host);
    }
}

crate::on_both_databases!(
    bad_bodies_name_the_field_and_change_nothing,
    auth_says_missing_or_wrong,
    every_shop_example_in_the_spec_works_on_the_demo_data,
    kept_versions_survive_a_restart_and_enable_resumes_at_once,
);

/// Schemathesis (installed into .venv by `scripts/setup --schemathesis`) with every check
/// (responses match the spec: statuses, bodies, headers; schema-violating requests are
/// refused; schema-valid ones are accepted, except the domain rules `schemathesis.toml`
/// lists), schema-valid and schema-violating data, with the admin token and without, the
/// callbacks signed and some orders, payments and callbacks real (tests/fuzz): 0 failures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing() {
    let app = spawn_app(Backend::Sqlite).await;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let spec: Value = serde_json::from_str(&std::fs::read_to_string(root.join("openapi/openapi.json")).unwrap()).unwrap();
    let operations = spec["paths"].as_object().unwrap().values().flat_map(|p| p.as_object().unwrap().values()).count();
    let token = format!("Authorization: Bearer {ADMIN_TOKEN}");
    let mut summary_text = String::from("schemathesis (every check; positive and negative; examples, coverage, fuzzing, stateful)\n");
    for auth in [Some(token.as_str()), None] {
        let mut st = tokio::process::Command::new(root.join(".venv/bin/st"));
        st.args(["run", "openapi/openapi.json", "--url", &app.address, "--checks", "all"])
            .args(["--max-examples", "20", "--generation-deterministic"])
            .current_dir(&root)
            .env("NO_COLOR", "1")
            // tests/fuzz/shopmesh_hooks.py: callbacks signed, every other valid order, payment
            // and callback made real (existing goods at their price, open payments).
            .env("PYTHONPATH", root.join("tests/fuzz"))
            .env("SCHEMATHESIS_HOOKS", "shopmesh_hooks")
            .env("SHOPMESH_FUZZ_URL", &app.address)
            .env("SHOPMESH_FUZZ_TOKEN", ADMIN_TOKEN)
            .env("SHOPMESH_FUZZ_SECRET", crate::helpers::CALLBACK_SECRET);
        if let Some(header) = auth {
            st.args(["--header", header]);
        }
        let out = st.output().await.expect("schemathesis: run scripts/setup --schemathesis");
        let report = String::from_utf8_lossy(&out.stdout);
        let with = if auth.is_some() { "with" } else { "without" };
        assert!(out.status.success(), "schemathesis found failures ({with} the token):\n{report}");
        // It really ran: every operation tested, cases generated, every one passed.
        assert!(report.contains(&format!("Selected: {operations}/{operations}")), "{report}");
        assert!(report.contains(&format!("Tested: {operations}\n")), "every operation tested:\n{report}");
        let summary = report.lines().find(|l| l.contains(" generated, ")).unwrap_or_else(|| panic!("no summary:\n{report}"));
        let generated: usize = summary.split_whitespace().next().unwrap().parse().unwrap();
        assert!(generated >= 20 * operations, "{summary}");
        assert!(summary.contains(&format!("{generated} passed")), "{summary}");
        // Stateful runs too: chains of calls along the links it infers from the spec.
        assert!(report.contains("✅ Stateful"), "the stateful phase ran and passed:\n{report}");
        summary_text.push_str(&format!("{with} the admin token: {}\n", summary.trim()));
    }
    // The order, payment and callback paths were fuzzed for real: orders of the hooks' goods
    // were placed, paid for and confirmed paid through signed callbacks.
    let fuzz = "FROM trade_order o JOIN trade_user u ON u.user_id = o.user_id WHERE u.user_name = 'fuzz'";
    let placed = app.scalar(&format!("SELECT COUNT(*) {fuzz} AND o.order_status = 1")).await;
    let paid = app.scalar(&format!("SELECT COUNT(*) {fuzz} AND o.pay_status = 2")).await;
    summary_text.push_str(&format!("made real by the hooks: {placed} orders confirmed, {paid} of them paid by a signed callback\nrequests per operation, by status:\n"));
    // What each operation was sent, by status, from the host's own counters.
    let metrics = app.http.get(format!("{}/metrics", app.address)).send().await.unwrap().text().await.unwrap();
    let mut per_route: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for line in metrics.lines().filter(|l| l.starts_with("http_server_requests_total{")) {
        let label = |k: &str| line.split(&format!("{k}=\"")).nth(1).and_then(|r| r.split('"').next()).unwrap_or_default().to_owned();
        let n = line.rsplit(' ').next().unwrap_or_default();
        per_route.entry(format!("{} {}", label("method"), label("route"))).or_default().push(format!("{}×{n}", label("status")));
    }
    for (route, statuses) in &per_route {
        summary_text.push_str(&format!("  {route}: {}\n", statuses.join(" ")));
    }
    crate::helpers::report("schemathesis.txt", &summary_text);
    assert!(placed > 0 && paid > 0, "{placed} orders, {paid} paid");
}
