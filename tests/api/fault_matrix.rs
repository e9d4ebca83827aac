//! The fault matrix: the same workload (orders with balance use, some paid through signed
//! callbacks) under each fault, against real processes, then the shop's invariants checked
//! from the database and the stream, and the table printed (fault × invariant → held).
//! Faults covered here: a NATS restart mid-flow, the plugin host SIGKILLed mid-batch, a host
//! SIGKILLed mid-order, two hosts with one SIGKILLed, a burst of duplicate, forged and stale
//! callbacks, 50 concurrent orders on a stock of 10. (Other faults have their own modules:
//! sandbox, poison events, SIGTERM under load, a cluster node lost.)

use std::time::Duration;

use futures::future::join_all;
use serde_json::json;

use crate::{
    crash::ALL,
    helpers::{plugins_dir, spawn_app_with, wait_consumers_idle, wait_for, Backend, Fixture, HostProcess, TestApp, OwnPostgres, TestDb, TestNats, CALLBACK_SECRET},
};

const PRICE: &str = "150.00";
const MONEY_PAID: &str = "10.00";
const BALANCE: &str = "1000.00";

/// What the workload did: the fixture and the stock it started with.
struct Run {
    fx: Fixture,
    stock: i64,
}

/// Places `n` orders at once (1 unit, 10.00 of balance each) of fresh goods with `stock`,
/// and pays the first `pay` of those confirmed: payment, signed callback.
async fn workload(app: &TestApp, stock: i64, n: usize, pay: usize) -> Run {
    let fx = app.fixture(stock, PRICE, BALANCE, None).await;
    orders(app, &fx, n, pay).await;
    Run { fx, stock }
}

/// [`workload`] on an existing fixture.
async fn orders(app: &TestApp, fx: &Fixture, n: usize, pay: usize) {
    let body = fx.order(1, PRICE, MONEY_PAID);
    let replies = join_all((0..n).map(|_| app.post("/api/orders", &body))).await;
    for order in replies.iter().filter(|r| r.status == 201).take(pay) {
        let created = app.post("/api/payments", &json!({"order_id": order.body["order_id"], "pay_amount": order.body["pay_amount"]})).await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let paid = app.signed_callback(created.body["pay_id"].as_str().unwrap(), order.body["pay_amount"].as_str().unwrap()).await;
        assert_eq!(paid.status, 200, "{:?}", paid.body);
    }
}

/// The shop's invariants after the dust settles: (name, held).
async fn invariants(app: &TestApp, run: &Run) -> Vec<(&'static str, bool)> {
    let goods = &run.fx.goods_id;
    let user = &run.fx.user_id;
    let of_goods = format!("goods_id = {goods}");
    let confirmed = app.count("trade_order", &format!("{of_goods} AND order_status = 1")).await;
    let cancelled = app.count("trade_order", &format!("{of_goods} AND order_status = 2")).await;
    let paid = app.count("trade_order", &format!("{of_goods} AND pay_status = 2")).await;
    let stock = app.get(&format!("/api/goods/{goods}")).await.body["goods_number"].as_i64().unwrap();
    let account = app.get(&format!("/api/users/{user}")).await.body;
    let cents = |v: &serde_json::Value| (v.as_str().unwrap().parse::<f64>().unwrap() * 100.0).round() as i64;
    let money = cents(&account["user_money"]);
    let score = account["user_score"].as_i64().unwrap();
    let pay_cents = cents(&json!(PRICE)) - cents(&json!(MONEY_PAID));
    let events = |subject: &str| {
        let subject = subject.to_owned();
        async move { app.stream_events(&subject).await.len() as i64 }
    };
    let (cancels, pays) = (events("shop.order.cancel").await, events("shop.pay.success").await);
    let mut once = true;
    for (plugin, expected) in [("stock", cancels), ("coupon", cancels), ("balance", cancels), ("points", pays), ("log", cancels + pays)] {
        let applied = app.count("trade_mq_consumer_log", &format!("group_name = '{plugin}' AND consumer_status = 1")).await;
        let dead = app.count("shop_dead_letter", &format!("plugin = '{plugin}'")).await;
        once &= applied + dead == expected;
    }
    vec![
        ("stock + taken = initial", stock + confirmed == run.stock),
        ("balance + used = initial", money + confirmed * cents(&json!(MONEY_PAID)) == cents(&json!(BALANCE))),
        ("points = Σ paid × rate", score == paid * (pay_cents / 100)),
        ("one log row per paid/cancelled order", app.count("shop_audit_log", "kind = 'paid'").await == paid && app.count("shop_audit_log", "kind = 'cancelled'").await == cancelled),
        ("every order final", app.count("trade_order", &format!("{of_goods} AND order_status NOT IN (1, 2)")).await == 0),
        ("events once per order and kind", cancels == cancelled && pays == paid),
        ("each event applied once or dead-lettered", once),
    ]
}

/// Waits until the plugins have nothing left and the outbox is empty.
async fn settle(app: &TestApp) {
    wait_for("the outbox to drain", Duration::from_secs(60), || async {
        (app.count("trade_mq_producer_temp", "msg_status = 0").await == 0).then_some(())
    })
    .await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
}

async fn nats_restart_mid_flow(backend: Backend) -> Vec<(&'static str, bool)> {
    let mut app = spawn_app_with(backend, crate::helpers::with_plugins).await;
    let fx = app.fixture(100, PRICE, BALANCE, None).await;
    // Some orders before, some while NATS is down (their events wait in the outbox).
    let body = fx.order(1, PRICE, MONEY_PAID);
    for _ in 0..10 {
        assert_eq!(app.post("/api/orders", &body).await.status, 201);
    }
    app.nats_mut().stop().await;
    for _ in 0..10 {
        assert_eq!(app.post("/api/orders", &body).await.status, 201, "orders go on while NATS is away");
    }
    app.nats_mut().restart().await.unwrap();
    let run = Run { fx, stock: 100 };
    settle(&app).await;
    invariants(&app, &run).await
}

async fn plugin_host_killed_mid_batch(backend: Backend) -> Vec<(&'static str, bool)> {
    // This host takes orders and runs no plugins; a host process runs them and is killed.
    let app = spawn_app_with(backend, |_| {}).await;
    let run = workload(&app, 200, 200, 100).await;
    let dir = plugins_dir().display().to_string();
    let env = [("SHOPMESH_PLUGINS_DIR", dir.as_str())];
    let mut host = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    wait_for("the plugins to be part-way", Duration::from_secs(60), || async {
        (app.count("trade_mq_consumer_log", "consumer_status = 1").await >= 50).then_some(())
    })
    .await;
    host.child.start_kill().unwrap();
    host.child.wait().await.unwrap();
    let _again = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    settle(&app).await;
    invariants(&app, &run).await
}

async fn hostile_callbacks(backend: Backend) -> Vec<(&'static str, bool)> {
    let app = spawn_app_with(backend, crate::helpers::with_plugins).await;
    let run = workload(&app, 20, 10, 5).await;
    // One more order: its callback forged, stale, then sent five times at once.
    let order = app.post("/api/orders", &run.fx.order(1, PRICE, MONEY_PAID)).await;
    let pay = app.post("/api/payments", &json!({"order_id": order.body["order_id"], "pay_amount": order.body["pay_amount"]})).await;
    let pay_id = pay.body["pay_id"].as_str().unwrap().to_owned();
    let amount = order.body["pay_amount"].as_str().unwrap().to_owned();
    let body = json!({ "pay_id": pay_id, "pay_amount": amount, "is_paid": 2 }).to_string();
    let forged = shopmesh::signature::sign(b"not-the-secret", shopmesh::ids::now_ms() / 1000, body.as_bytes());
    let stale = shopmesh::signature::sign(CALLBACK_SECRET.as_bytes(), shopmesh::ids::now_ms() / 1000 - 3600, body.as_bytes());
    assert_eq!(app.callback_raw(&body, Some(forged)).await.status, 401);
    assert_eq!(app.callback_raw(&body, Some(stale)).await.status, 401);
    let replies = join_all((0..5).map(|_| app.signed_callback(&pay_id, &amount))).await;
    assert!(replies.iter().all(|r| r.status == 200));
    settle(&app).await;
    invariants(&app, &run).await
}

async fn host_killed_mid_order(backend: Backend) -> Vec<(&'static str, bool)> {
    let db = TestDb::new(backend).await;
    let nats = TestNats::start().await;
    let dir = plugins_dir().display().to_string();
    let env = [("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_PREORDER_TIMEOUT", "1s")];
    // This host dies right after an order's balance step commits (stock and balance taken).
    let mut crashing = HostProcess::start(&db.url, &nats.url(), &[&env[..], &[("SHOPMESH_FAULT", "exit:balance")]].concat()).await;
    let probe = TestApp::attach(&db.url, &nats.url(), &crashing.address).await;
    let fx = probe.fixture(30, PRICE, BALANCE, None).await;
    let _ = probe.http.post(format!("{}/api/orders", crashing.address)).json(&fx.order(1, PRICE, MONEY_PAID)).send().await;
    crashing.child.wait().await.unwrap();
    // Restarted: the sweeper cancels the pre-order it left, the plugins give back; trade goes on.
    let host = HostProcess::start(&db.url, &nats.url(), &env).await;
    let app = TestApp::attach(&db.url, &nats.url(), &host.address).await;
    orders(&app, &fx, 10, 5).await;
    wait_for("the abandoned pre-order to be swept", Duration::from_secs(30), || async {
        (app.count("trade_order", "order_status = 0").await == 0).then_some(())
    })
    .await;
    settle(&app).await;
    invariants(&app, &Run { fx, stock: 30 }).await
}

async fn two_hosts_one_killed(backend: Backend) -> Vec<(&'static str, bool)> {
    // The in-process host takes the orders; two host processes share the plugins' work.
    let app = spawn_app_with(backend, |_| {}).await;
    let run = workload(&app, 200, 200, 100).await;
    let dir = plugins_dir().display().to_string();
    let a = HostProcess::start(&app.db_url, &app.nats_url, &[("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_WORKER_ID", "21")]).await;
    let mut b = HostProcess::start(&app.db_url, &app.nats_url, &[("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_WORKER_ID", "22")]).await;
    wait_for("the plugins to be part-way", Duration::from_secs(60), || async {
        (app.count("trade_mq_consumer_log", "consumer_status = 1").await >= 50).then_some(())
    })
    .await;
    b.child.start_kill().unwrap();
    b.child.wait().await.unwrap();
    settle(&app).await; // host A finishes, B's unacknowledged deliveries included
    drop(a);
    invariants(&app, &run).await
}

/// Postgres stopped (as abruptly as a crash) and started again mid-flow, under a host on a
/// cluster of this test's own: orders meanwhile fail cleanly, events wait, nothing is lost.
async fn postgres_restart_mid_flow() -> Vec<(&'static str, bool)> {
    let pg = OwnPostgres::start();
    let nats = TestNats::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = crate::helpers::test_settings(&pg.url, &nats.url(), data.path());
    crate::helpers::with_plugins(&mut settings);
    let host = shopmesh::startup::Application::build(settings).await.expect("a host on its own Postgres");
    let app = TestApp::attach(&pg.url, &nats.url(), &format!("http://{}", host.address())).await;
    let run = workload(&app, 100, 20, 10).await;
    // A payment whose callback comes while the database is down.
    let order = app.post("/api/orders", &run.fx.order(1, PRICE, MONEY_PAID)).await;
    let payment = app.post("/api/payments", &json!({"order_id": order.body["order_id"], "pay_amount": order.body["pay_amount"]})).await;
    assert_eq!(payment.status, 201, "{:?}", payment.body);
    pg.ctl("stop");
    // Refused as a client may try again: 503 with the database's code and when to retry.
    let refused = app.http.post(format!("{}/api/orders", app.address)).json(&run.fx.order(1, PRICE, MONEY_PAID)).send().await.unwrap();
    let retry = refused.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
    let (status, body) = (refused.status().as_u16(), refused.json::<serde_json::Value>().await.unwrap());
    assert_eq!((status, body["code"].as_str(), retry.as_deref()), (503, Some("SHOP_DATABASE_UNAVAILABLE"), Some("1")), "an order while the database is down: {body}");
    let read = app.get(&format!("/api/users/{}", run.fx.user_id)).await;
    assert_eq!((read.status, read.body["code"].as_str()), (503, Some("SHOP_DATABASE_UNAVAILABLE")), "{:?}", read.body);
    let callback = app.signed_callback(payment.body["pay_id"].as_str().unwrap(), order.body["pay_amount"].as_str().unwrap()).await;
    assert_eq!((callback.status, callback.body["code"].as_str()), (503, Some("SHOP_DATABASE_UNAVAILABLE")), "the provider retries it: {:?}", callback.body);
    tokio::time::sleep(Duration::from_secs(1)).await;
    pg.ctl("start");
    wait_for("the host to reach the database again", Duration::from_secs(30), || async {
        (app.http.get(format!("{}/readyz", app.address)).send().await.ok()?.status() == 200).then_some(())
    })
    .await;
    orders(&app, &run.fx, 10, 5).await;
    wait_for("no pre-order left", Duration::from_secs(30), || async {
        (app.count("trade_order", "order_status = 0").await == 0).then_some(())
    })
    .await;
    settle(&app).await;
    let held = invariants(&app, &run).await;
    host.stop().await;
    held
}

async fn fifty_orders_on_ten(backend: Backend) -> Vec<(&'static str, bool)> {
    let app = spawn_app_with(backend, crate::helpers::with_plugins).await;
    let run = workload(&app, 10, 50, 4).await;
    settle(&app).await;
    invariants(&app, &run).await
}

/// Runs every fault on `backend` and prints the matrix; fails on any invariant broken.
async fn matrix(backend: Backend) {
    let mut rows = Vec::new();
    rows.push(("NATS restart mid-flow", nats_restart_mid_flow(backend).await));
    rows.push(("plugin host SIGKILL mid-batch", plugin_host_killed_mid_batch(backend).await));
    rows.push(("host SIGKILL mid-order", host_killed_mid_order(backend).await));
    rows.push(("two hosts, one SIGKILLed", two_hosts_one_killed(backend).await));
    rows.push(("duplicate + forged + stale callbacks", hostile_callbacks(backend).await));
    rows.push(("50 concurrent orders on stock 10", fifty_orders_on_ten(backend).await));
    if backend == Backend::Postgres {
        rows.push(("Postgres restart mid-flow", postgres_restart_mid_flow().await));
    }
    let names: Vec<&str> = rows[0].1.iter().map(|(n, _)| *n).collect();
    let mut table = format!("\nfault matrix ({backend:?})\n| fault | {} |\n|---|{}\n", names.join(" | "), "---|".repeat(names.len()));
    for (fault, held) in &rows {
        let cells: Vec<&str> = held.iter().map(|(_, ok)| if *ok { "held" } else { "BROKEN" }).collect();
        table.push_str(&format!("| {fault} | {} |\n", cells.join(" | ")));
    }
    crate::helpers::report(&format!("fault-matrix-{backend:?}.md").to_lowercase(), &table);
    assert!(rows.iter().all(|(_, held)| held.iter().all(|(_, ok)| *ok)), "{table}");
}

crate::on_both_databases!(matrix);
