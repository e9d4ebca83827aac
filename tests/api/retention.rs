//! Retention: rows kept only for a while go once they are older than `retention` (30 days by
//! default), each table's own kind of old row, and nothing else. Rows are made by real flows
//! (orders, a payment, replays, poison events), then some are aged by moving their moments 40
//! days back, as time would; the host's retention pass must take exactly those: published
//! outbox rows, inbox rows, a resolved dead letter, a finished replay with its events, an
//! idempotency key. An open dead letter stays however old, and so do the shop's records.

use std::time::Duration;

use reqwest::Method;
use serde_json::json;

use crate::helpers::{spawn_app_with, wait_consumers_idle, wait_for, with_plugins, Backend, TestApp};

const PLUGINS: [&str; 5] = ["stock", "coupon", "balance", "points", "log"];

/// Rows of `table` matching `filter` moved `column` 40 days into the past.
async fn age(app: &TestApp, table: &str, column: &str, filter: &str) {
    let old = shopmesh::ids::now_ms() - 40 * 24 * 3600 * 1000;
    let aged = sqlx::query(&format!("UPDATE {table} SET {column} = $1 WHERE {filter}")).bind(old).execute(app.db.pool()).await.unwrap();
    assert!(aged.rows_affected() > 0, "nothing in {table} matched {filter}");
}

async fn dry_run(app: &TestApp) -> String {
    let started = app.admin(Method::POST, "/api/admin/replays", Some(&json!({"plugin": "points", "mode": "dry-run"}))).await;
    assert_eq!(started.status, 202, "{:?}", started.body);
    let id = started.body["replay_id"].as_str().unwrap().to_owned();
    wait_for("the replay to end", Duration::from_secs(60), || async {
        let r = app.admin(Method::GET, &format!("/api/admin/replays/{id}"), None).await.body;
        (r["state"] == "done").then_some(())
    })
    .await;
    id
}

async fn rows_past_retention_go_and_nothing_else(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        with_plugins(s);
        s.retention_interval = Duration::from_millis(200);
    })
    .await;
    // Counted for operators, per table, from the first pass on (0 until a row goes).
    let deleted = |scrape: &str, table: &str| {
        let series = format!("shopmesh_retention_deleted_rows_total{{table=\"{table}\"}} ");
        scrape.lines().find_map(|l| l.strip_prefix(series.as_str())).and_then(|v| v.parse::<i64>().ok())
    };
    let scrape = wait_for("the first pass's counts", Duration::from_secs(10), || async {
        let scrape = app.http.get(format!("{}/metrics", app.address)).send().await.ok()?.text().await.ok()?;
        deleted(&scrape, "shop_order_request").is_some().then_some(scrape)
    })
    .await;
    for table in ["trade_mq_producer_temp", "trade_mq_consumer_log", "shop_dead_letter", "shop_replay", "shop_order_request"] {
        assert_eq!(deleted(&scrape, table), Some(0), "{table}: {scrape}");
    }
    // Two paid orders; the first came with an idempotency key.
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    let key = [("idempotency-key", "first-order".to_string())];
    let first = app.request(Method::POST, "/api/orders", Some(&fx.order(1, "150.00", "0")), &key).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let first = first.body["order_id"].as_str().unwrap().to_owned();
    let pay = app.post("/api/payments", &json!({"order_id": first, "pay_amount": "150.00"})).await;
    assert_eq!(pay.status, 201, "{:?}", pay.body);
    assert_eq!(app.signed_callback(pay.body["pay_id"].as_str().unwrap(), "150.00").await.status, 200);
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 2).await;
    wait_consumers_idle(&app.nats_url, &PLUGINS).await;
    let (old_replay, new_replay) = (dry_run(&app).await, dry_run(&app).await);
    // Two dead letters of the guard.
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    for id in ["poison-1", "poison-2"] {
        let body = json!({"specversion": "1.0", "id": id, "type": "shop.typo", "data": {}}).to_string();
        js.publish("shop.typo", body.into()).await.unwrap().await.unwrap();
    }
    wait_for("two dead letters", Duration::from_secs(20), || async {
        (app.count("shop_dead_letter", "").await == 2).then_some(())
    })
    .await;

    // What each owner keeps, before anything is old.
    let first_events = format!("SELECT CAST(id AS TEXT) FROM trade_mq_producer_temp WHERE msg_key = '{first}'");
    let (outbox, inbox) = (app.count("trade_mq_producer_temp", "").await, app.count("trade_mq_consumer_log", "").await);
    let first_outbox = app.count("trade_mq_producer_temp", &format!("msg_key = '{first}'")).await;
    let first_inbox = app.count("trade_mq_consumer_log", &format!("msg_key IN ({first_events})")).await;
    assert!(first_outbox >= 2 && first_inbox >= 2 && outbox > first_outbox && inbox > first_inbox, "{outbox} {first_outbox} {inbox} {first_inbox}");
    let replay_events = app.count("shop_replay_event", &format!("replay_id = {old_replay}")).await;
    assert!(replay_events > 0);

    // An open dead letter of points for the first payment's event, as a lost ack leaves one
    // (the event dead-lettered, its ack lost, a redelivery then applied it): that event's
    // inbox row must outlive retention, or the redrive would apply it a second time.
    let (paid_event, paid_body): (String, String) = sqlx::query_as(&format!(
        "SELECT CAST(id AS TEXT), msg_body FROM trade_mq_producer_temp WHERE msg_key = '{first}' AND msg_topic = 'shop.pay.success'"
    ))
    .fetch_one(app.db.pool())
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO shop_dead_letter (id, plugin, plugin_version, subject, event_id, body, reason, attempts, created_at)
         VALUES (7, 'points', '1.0.0', 'shop.pay.success', $1, $2, 'ack lost', 5, $3)",
    )
    .bind(&paid_event)
    .bind(&paid_body)
    .bind(shopmesh::ids::now_ms())
    .execute(app.db.pool())
    .await
    .unwrap();

    // Time passes for some of them.
    age(&app, "trade_mq_consumer_log", "consumer_timestamp", &format!("msg_key IN ({first_events})")).await;
    age(&app, "trade_mq_producer_temp", "sent_time", &format!("msg_key = '{first}'")).await;
    age(&app, "shop_order_request", "created_at", "request_key = 'first-order'").await;
    age(&app, "shop_replay", "finished_at", &format!("id = {old_replay}")).await;
    age(&app, "shop_dead_letter", "redriven_at", "event_id = 'poison-1'").await; // resolved long ago
    age(&app, "shop_dead_letter", "created_at", "event_id = 'poison-2'").await; // open, however old

    // Its outbox row stays too: the redrive must find that the shop wrote the event.
    wait_for("the retention pass", Duration::from_secs(20), || async {
        (app.count("trade_mq_producer_temp", "").await == outbox - first_outbox + 1).then_some(())
    })
    .await;
    assert_eq!(app.count("trade_mq_producer_temp", &format!("CAST(id AS TEXT) = '{paid_event}'")).await, 1);
    // A pass may run between two of the ages above: wait until every aged row is gone (the
    // next passes take what an earlier one could not yet), then check that nothing else is.
    let new_replay_events = format!("replay_id = {new_replay}");
    wait_for("the rest of the passes", Duration::from_secs(20), || async {
        let requests = app.count("shop_order_request", "").await == 0;
        let replays = app.count("shop_replay_event", "").await == app.count("shop_replay_event", &new_replay_events).await;
        let inbox = app.count("trade_mq_consumer_log", "").await <= inbox - first_inbox + 1;
        let letters = app.count("shop_dead_letter", "plugin = 'shopmesh-guard'").await == 1;
        (requests && replays && inbox && letters).then_some(())
    })
    .await;
    assert_eq!(app.count("trade_mq_consumer_log", "").await, inbox - first_inbox + 1, "the aged inbox rows but the dead-lettered event's");
    assert_eq!(app.count("trade_mq_consumer_log", &format!("group_name = 'points' AND msg_key = '{paid_event}'")).await, 1);
    assert_eq!(app.count("shop_replay_event", "").await, app.count("shop_replay_event", &format!("replay_id = {new_replay}")).await);
    // Counted (once the pass that deleted them has ended).
    let scrape = wait_for("the pass's counts", Duration::from_secs(10), || async {
        let scrape = app.http.get(format!("{}/metrics", app.address)).send().await.ok()?.text().await.ok()?;
        (deleted(&scrape, "shop_order_request") == Some(1)).then_some(scrape)
    })
    .await;
    assert_eq!(deleted(&scrape, "trade_mq_producer_temp"), Some(first_outbox - 1), "{scrape}");
    assert_eq!(deleted(&scrape, "shop_order_request"), Some(1), "{scrape}");
    assert_eq!(app.admin(Method::GET, &format!("/api/admin/replays/{old_replay}"), None).await.status, 404);
    assert_eq!(app.admin(Method::GET, &format!("/api/admin/replays/{new_replay}"), None).await.status, 200);
    let letters = app.admin(Method::GET, "/api/admin/dead-letters?plugin=shopmesh-guard", None).await.body;
    let letters: Vec<_> = letters.as_array().unwrap().iter().map(|l| l["event_id"].as_str().unwrap().to_owned()).collect();
    assert_eq!(letters, ["poison-2"], "the open one stays");

    // The shop's records stay: the order, its payment and its points; and the redrive of the
    // kept letter finds the event applied, so the points are not added again.
    let order = app.get(&format!("/api/orders/{first}")).await;
    assert_eq!((order.status, order.body["pay_status"].clone()), (200, json!(2)), "{:?}", order.body);
    let redriven = app.admin(Method::POST, "/api/admin/dead-letters/7/redrive", None).await;
    assert_eq!(redriven.status, 200, "{:?}", redriven.body);
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 300, "two payments of 150.00, once each");
}

crate::on_both_databases!(rows_past_retention_go_and_nothing_else);
