//! Batches: a consumer that finds a backlog takes it in batches and commits each in one
//! transaction. One poisoned event fails alone (the rest of its batch commits, it is retried
//! and dead-lettered with its reason); events of one order in one batch apply in order, each
//! on the state the one before left. (The crash test kills a host with batches in flight.)

use serde_json::Value;
use sqlx::Row;

use crate::helpers::{component, spawn_app_with, wait_consumers_idle, Backend, TestApp};

/// `n` orders of one unit each whose confirm step fails: `n` order-cancel events, in the
/// stream before any plugin runs.
async fn cancelled_orders(app: &TestApp, fx: &crate::helpers::Fixture, n: usize) -> Vec<(String, Value)> {
    for _ in 0..n {
        let reply = app.post("/api/orders", &fx.order(1, "20.00", "0")).await;
        assert_eq!(reply.code(), "SHOP_ORDER_CONFIRM_FAIL", "{:?}", reply.body);
    }
    app.wait_events("shop.order.cancel", n).await
}

async fn one_poisoned_event_fails_alone_and_the_rest_of_its_batch_commits(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        s.fault = Some("fail:confirm".into());
        s.plugin_max_attempts = 2;
    })
    .await;
    let fx = app.fixture(10, "20.00", "0.00", None).await;
    let events = cancelled_orders(&app, &fx, 5).await;
    // The third order's give-back log row is already there (left behind by hand): its
    // give-back breaks the log's primary key when the batch commits.
    let poisoned = &events[2].1;
    let order_id: i64 = poisoned["data"]["order_id"].as_str().unwrap().parse().unwrap();
    let goods_id: i64 = fx.goods_id.parse().unwrap();
    sqlx::query("INSERT INTO trade_goods_number_log (goods_id, order_id, log_type, goods_number, log_time) VALUES ($1, $2, 2, 1, 0)")
        .bind(goods_id)
        .bind(order_id)
        .execute(app.db.pool())
        .await
        .unwrap();

    // The backlog reaches the stock plugin as one batch.
    app.registry().install("stock", &component("stock")).unwrap();
    wait_consumers_idle(&app.nats_url, &["stock"]).await;

    assert_eq!(app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], 9, "four units back, not the poisoned one");
    assert_eq!(app.count("trade_mq_consumer_log", "group_name = 'stock' AND consumer_status = 1").await, 4);
    assert_eq!(app.count("shop_order_step", "action = 'giveback'").await, 4);
    let letters = app.count("shop_dead_letter", &format!("plugin = 'stock' AND event_id = '{}' AND attempts = 2 AND reason LIKE 'database:%'", poisoned["id"].as_str().unwrap())).await;
    assert_eq!(letters, 1, "the poisoned event alone is dead-lettered, with why");
    assert_eq!(app.count("shop_dead_letter", "").await, 1);
}

async fn events_of_one_order_in_one_batch_apply_in_order(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.fault = Some("fail:confirm".into())).await;
    let fx = app.fixture(10, "20.00", "0.00", None).await;
    let events = cancelled_orders(&app, &fx, 1).await;
    // The same order's cancel again, under another event id, right behind it: written to the
    // outbox as the shop writes its events (the plugins apply no other), the relay publishes it.
    let mut again = events[0].1.clone();
    again["id"] = Value::from("999");
    let order = again["data"]["order_id"].as_str().unwrap().to_owned();
    sqlx::query(
        "INSERT INTO trade_mq_producer_temp (id, group_name, msg_topic, msg_tag, msg_key, msg_body, msg_status, create_time)
         VALUES (999, 'shopmesh', 'shop.order.cancel', 'cancel', $1, $2, 0, $3)",
    )
    .bind(&order)
    .bind(again.to_string())
    .bind(shopmesh::ids::now_ms())
    .execute(app.db.pool())
    .await
    .unwrap();
    app.wait_events("shop.order.cancel", 2).await;

    app.registry().install("stock", &component("stock")).unwrap();
    wait_consumers_idle(&app.nats_url, &["stock"]).await;

    assert_eq!(app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], 10, "given back once");
    let rows = sqlx::query("SELECT msg_key, remark, reads FROM trade_mq_consumer_log WHERE group_name = 'stock' AND consumer_status = 1 ORDER BY msg_key")
        .fetch_all(app.db.pool())
        .await
        .unwrap();
    let rows: Vec<(String, String, String)> = rows.iter().map(|r| (r.get(0), r.get(1), r.get(2))).collect();
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (first, second) = if rows[0].0 == "999" { (&rows[1], &rows[0]) } else { (&rows[0], &rows[1]) };
    assert_eq!(first.1, "1 effect(s)", "the first event gave the stock back");
    assert_eq!(second.1, "0 effect(s)", "the second ran after it, and found nothing left to give back");
    assert!(second.2.contains("Giveback"), "it saw the first one's give-back record: {}", second.2);
}

crate::on_both_databases!(one_poisoned_event_fails_alone_and_the_rest_of_its_batch_commits, events_of_one_order_in_one_batch_apply_in_order);
