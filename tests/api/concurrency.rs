//! No oversell under concurrent orders, and several relays sharing one outbox publish
//! every row exactly once.

use std::collections::HashSet;

use futures::future::join_all;
use shopmesh::startup::Application;

use crate::helpers::{spawn_app, test_settings, Backend};

async fn fifty_orders_for_ten_in_stock(backend: Backend) {
    let app = spawn_app(backend).await;
    let fx = app.fixture(10, "120.00", "0.00", None).await;
    let body = fx.order(1, "120.00", "0");

    let replies = join_all((0..50).map(|_| app.post("/api/orders", &body))).await;
    let confirmed = replies.iter().filter(|r| r.status == 201).count();
    assert_eq!(confirmed, 10, "exactly the stock is sold");
    for r in replies.iter().filter(|r| r.status != 201) {
        assert_eq!(r.status, 409, "{:?}", r.body);
        assert!(
            ["SHOP_GOODS_NUM_NOT_ENOUGH", "SHOP_REDUCE_GOODS_NUM_FAIL"].contains(&r.code()),
            "{:?}",
            r.body
        );
    }
    assert_eq!(app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], 0);
    assert_eq!(app.count("trade_order", "order_status = 1").await, 10);
    assert_eq!(app.scalar("SELECT CAST(SUM(goods_number) AS BIGINT) FROM trade_goods_number_log").await, -10);

    // Orders that lost the race after their pre-order was saved were cancelled, each with
    // one cancel event (their give-back finds no stock step record: nothing to return).
    let cancelled = app.count("trade_order", "order_status = 2").await as usize;
    assert_eq!(app.count("shop_order_step", "step = 'stock'").await, 10);
    assert_eq!(app.wait_events("shop.order.confirmed", 10).await.len(), 10);
    if cancelled > 0 {
        assert_eq!(app.wait_events("shop.order.cancel", cancelled).await.len(), cancelled);
    }
}

async fn two_relays_publish_each_row_once(backend: Backend) {
    let app = spawn_app(backend).await;
    // A second host on the same database and NATS: its relay competes for the same rows.
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&app.db_url, &app.nats_url, data.path());
    settings.worker_id = 2;
    settings.relay_batch = 7; // small batches: many leases, much interleaving
    let second = Application::build(settings).await.expect("second host builds");
    let second_addr = format!("http://{}", second.address());

    let fx = app.fixture(1000, "150.00", "0.00", None).await;
    let body = fx.order(1, "150.00", "0");
    let orders = (0..60).map(|i| {
        let (http, url, body) = (app.http.clone(), if i % 2 == 0 { app.address.clone() } else { second_addr.clone() }, body.clone());
        async move { http.post(format!("{url}/api/orders")).json(&body).send().await.unwrap().status().as_u16() }
    });
    let statuses = join_all(orders).await;
    assert!(statuses.iter().all(|s| *s == 201), "{statuses:?}");

    app.wait_events("shop.order.confirmed", 60).await;
    // Give both relays time to (wrongly) publish anything twice before counting.
    tokio::time::sleep(std::time::Duration::from_millis(800)).await;
    let events = app.stream_events("shop.order.confirmed").await;
    assert_eq!(events.len(), 60, "each row once in the stream");
    let ids: HashSet<_> = events.iter().map(|(id, _)| id.clone()).collect();
    assert_eq!(ids.len(), 60);
    assert_eq!(app.count("trade_mq_producer_temp", "msg_status = 1").await, 60);
    second.stop().await;
}

crate::on_both_databases!(fifty_orders_for_ten_in_stock, two_relays_publish_each_row_once);
