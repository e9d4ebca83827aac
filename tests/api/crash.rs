//! 1,000 order-cancel events; the host running the plugins is killed (SIGKILL) mid-way and
//! restarted. Every give-back must be applied exactly once: the inbox row commits with the
//! effects, so whatever the kill interrupted is either wholly done or wholly redone.

use std::time::Duration;

use futures::{stream, StreamExt};

use crate::helpers::{plugins_dir, spawn_app_with, wait_consumers_idle, wait_for, Backend, HostProcess};

const ORDERS: i64 = 1000;
const ALL: [&str; 5] = ["stock", "coupon", "balance", "points", "log"];

async fn thousand_cancels_with_a_killed_host(backend: Backend) {
    // This host takes the orders (every confirm fails, so each ends in a cancel event) and
    // runs no plugins; the plugins run in a separate process that we kill.
    let app = spawn_app_with(backend, |s| s.fault = Some("fail:confirm".into())).await;
    let fx = app.fixture(ORDERS, "1.00", "1000.00", None).await;
    let body = fx.order(1, "1.00", "1.00");
    let codes: Vec<String> = stream::iter(0..ORDERS)
        .map(|_| async { app.post("/api/orders", &body).await.code().to_owned() })
        .buffer_unordered(8)
        .collect()
        .await;
    assert!(codes.iter().all(|c| c == "SHOP_ORDER_CONFIRM_FAIL"), "{:?}", codes.iter().find(|c| *c != "SHOP_ORDER_CONFIRM_FAIL"));
    assert_eq!(app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], 0);
    app.wait_events("shop.order.cancel", ORDERS as usize).await;

    let plugins = plugins_dir().display().to_string();
    let env = [("SHOPMESH_PLUGINS_DIR", plugins.as_str()), ("SHOPMESH_DEMO_DATA", "false")];
    let mut host = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    wait_for("the plugins to be part-way", Duration::from_secs(60), || async {
        let applied = app.count("trade_mq_consumer_log", "consumer_status = 1").await;
        (applied >= 600).then_some(())
    })
    .await;
    host.child.start_kill().expect("SIGKILL");
    host.child.wait().await.unwrap();
    let at_kill = app.count("trade_mq_consumer_log", "consumer_status = 1").await;
    assert!(at_kill < 4 * ORDERS, "killed before the end ({at_kill} applied)");

    let _host = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;

    let user = app.get(&format!("/api/users/{}", fx.user_id)).await.body;
    assert_eq!(user["user_money"], "1000.00", "every balance refunded once");
    assert_eq!(app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], ORDERS, "all stock back once");
    assert_eq!(app.count("shop_order_step", "action = 'giveback' AND step = 'stock'").await, ORDERS);
    assert_eq!(app.count("shop_order_step", "action = 'giveback' AND step = 'balance'").await, ORDERS);
    assert_eq!(app.count("trade_goods_number_log", "log_type = 2").await, ORDERS);
    assert_eq!(app.count("trade_user_money_log", "money_log_type = 2").await, ORDERS);
    assert_eq!(app.count("shop_audit_log", "kind = 'cancelled'").await, ORDERS, "one log row per event");
    // stock, coupon (nothing to release), balance and log each handled every event once.
    assert_eq!(app.count("trade_mq_consumer_log", "consumer_status = 1").await, 4 * ORDERS);
    assert_eq!(app.count("shop_dead_letter", "").await, 0);
}

crate::on_both_databases!(thousand_cancels_with_a_killed_host);
