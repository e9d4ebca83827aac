//! Failures after the pre-order: an injected failure at each forward step, and a process
//! that dies between two steps. Either way the order ends cancelled with exactly one
//! order-cancel event carrying what the give-backs need. A confirm that committed but whose
//! answer was lost is no failure: the order stands.

use crate::helpers::{spawn_app_with, wait_for, Backend, HostProcess, TestApp, TestDb, TestNats};

/// What each injected step leaves committed: (step, stock taken, coupon used, balance taken).
const STEPS: [(&str, bool, bool, bool); 4] = [
    ("stock", false, false, false),
    ("coupon", true, false, false),
    ("balance", true, true, false),
    ("confirm", true, true, true),
];

async fn injected_failure_at_each_step(backend: Backend) {
    for (step, stock_taken, coupon_used, balance_taken) in STEPS {
        let app = spawn_app_with(backend, |s| s.fault = Some(format!("fail:{step}"))).await;
        let fx = app.fixture(5, "200.00", "100.00", Some("30.00")).await;
        let reply = app.post("/api/orders", &fx.order(2, "200.00", "40.00")).await;

        let code = match step {
            "stock" => "SHOP_REDUCE_GOODS_NUM_FAIL",
            "coupon" => "SHOP_COUPON_USE_FAIL",
            "balance" => "SHOP_USER_MONEY_REDUCE_FAIL",
            _ => "SHOP_ORDER_CONFIRM_FAIL",
        };
        assert_eq!((reply.status, reply.code()), (503, code), "{step}: {:?}", reply.body);

        let orders = app.count("trade_order", "order_status = 2").await;
        assert_eq!(orders, 1, "{step}: the order is cancelled");
        assert_eq!(app.count("trade_order", "order_status <> 2").await, 0, "{step}");

        // The steps before the failure stay committed (giving back is the plugins' job).
        let goods = app.get(&format!("/api/goods/{}", fx.goods_id)).await.body;
        assert_eq!(goods["goods_number"], if stock_taken { 3 } else { 5 }, "{step}");
        let coupon = app.get(&format!("/api/coupons/{}", fx.coupon_id.clone().unwrap())).await.body;
        assert_eq!(coupon["is_used"], if coupon_used { 1 } else { 0 }, "{step}");
        let user = app.get(&format!("/api/users/{}", fx.user_id)).await.body;
        assert_eq!(user["user_money"], if balance_taken { "60.00" } else { "100.00" }, "{step}");
        let forward_steps = app.count("shop_order_step", "action = 'forward'").await;
        assert_eq!(forward_steps, [stock_taken, coupon_used, balance_taken].iter().filter(|b| **b).count() as i64, "{step}");

        let events = app.wait_events("shop.order.cancel", 1).await;
        assert_eq!(events.len(), 1, "{step}: exactly one cancel event");
        let data = &events[0].1["data"];
        let order_id = app.scalar("SELECT order_id FROM trade_order").await.to_string();
        assert_eq!(data["order_id"], order_id.as_str(), "{step}");
        assert!(reply.body["message"].as_str().unwrap().contains(&order_id), "the error names the cancelled order");
        assert_eq!(data["user_id"], fx.user_id.as_str());
        assert_eq!(data["goods_id"], fx.goods_id.as_str());
        assert_eq!(data["goods_number"], 2);
        assert_eq!(data["coupon_id"], fx.coupon_id.clone().unwrap().as_str());
        assert_eq!(data["money_paid"], "40.00");
        assert!(data["reason"].as_str().unwrap().contains(step));
        assert!(app.stream_events("shop.order.confirmed").await.is_empty(), "{step}");
        drop(app);
    }
}

/// The confirm commits but its answer is lost (a connection dropped after COMMIT): the
/// order stands, so it is answered as placed (201, confirmed), not as cancelled, and no
/// cancel event asks for its stock, coupon and balance back.
async fn a_confirm_whose_answer_is_lost_is_answered_as_placed(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.fault = Some("lost:confirm".into())).await;
    let fx = app.fixture(5, "200.00", "100.00", Some("30.00")).await;
    let reply = app.post("/api/orders", &fx.order(2, "200.00", "40.00")).await;
    assert_eq!(reply.status, 201, "{:?}", reply.body);
    assert_eq!(reply.body["order_status"], 1, "{:?}", reply.body);
    assert_eq!(app.count("trade_order", "order_status = 1").await, 1);
    assert_eq!(app.count("trade_order", "order_status <> 1").await, 0);
    assert_eq!(app.wait_events("shop.order.confirmed", 1).await.len(), 1);
    assert!(app.stream_events("shop.order.cancel").await.is_empty());
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_money"], "60.00");
}

/// The host is killed right after the stock step commits; restarted, its sweeper cancels
/// the abandoned pre-order and the cancel event reaches the stream.
async fn exit_after_stock_is_swept_after_restart(backend: Backend) {
    let db = TestDb::new(backend).await;
    let nats = TestNats::start().await;
    let mut crashing = HostProcess::start(&db.url, &nats.url(), &[("SHOPMESH_FAULT", "exit:stock")]).await;

    // Set up through the crashing host's API (admin calls do not touch the fault).
    let probe = TestApp::attach(&db.url, &nats.url(), &crashing.address).await;
    let fx = probe.fixture(5, "200.00", "100.00", Some("30.00")).await;
    let sent = probe
        .http
        .post(format!("{}/api/orders", crashing.address))
        .json(&fx.order(1, "200.00", "10.00"))
        .send()
        .await;
    assert!(sent.is_err() || !sent.unwrap().status().is_success(), "the host died mid-order");
    let status = crashing.child.wait().await.unwrap();
    assert_eq!(status.code(), Some(86), "exited by the injected fault");

    assert_eq!(probe.count("trade_order", "order_status = 0").await, 1, "a pre-order is left behind");
    assert_eq!(probe.count("shop_order_step", "step = 'stock'").await, 1, "stock was taken");
    assert!(probe.stream_events("shop.order.cancel").await.is_empty());

    // Restart without the fault; anything older than 1 s counts as abandoned.
    let _host = HostProcess::start(&db.url, &nats.url(), &[("SHOPMESH_PREORDER_TIMEOUT", "1s")]).await;
    let events = probe.wait_events("shop.order.cancel", 1).await;
    assert_eq!(events.len(), 1);
    let data = &events[0].1["data"];
    assert_eq!(data["goods_number"], 1);
    assert_eq!(data["money_paid"], "10.00");
    assert!(data["reason"].as_str().unwrap().contains("sweeper"));
    wait_for("the order to be cancelled", std::time::Duration::from_secs(10), || async {
        (probe.count("trade_order", "order_status = 2").await == 1).then_some(())
    })
    .await;
    // Nothing else cancels it twice.
    tokio::time::sleep(std::time::Duration::from_millis(600)).await;
    assert_eq!(probe.stream_events("shop.order.cancel").await.len(), 1);
}

crate::on_both_databases!(injected_failure_at_each_step, exit_after_stock_is_swept_after_restart, a_confirm_whose_answer_is_lost_is_answered_as_placed);
