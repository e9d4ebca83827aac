//! The seeds' scenario end to end: order → confirmed, payment, signed callback → paid, and
//! the events in stream SHOP.

use serde_json::json;

use crate::helpers::{spawn_app, spawn_app_with, Backend};

const USER: &str = "345963634385633280";
const GOODS: &str = "345959443973935104";
const COUPON: &str = "345988230098857984";

async fn seeds_scenario(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.demo_data = true).await;

    let order = app
        .post(
            "/api/orders",
            &json!({
                "user_id": USER, "goods_id": GOODS, "goods_number": 1,
                "goods_price": "5000.00", "shipping_fee": "0.00", "order_amount": "5000.00",
                "coupon_id": COUPON, "money_paid": "100.00",
                "address": "成都", "consignee": "刘备"
            }),
        )
        .await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    let o = &order.body;
    assert_eq!(o["order_status"], 1);
    assert_eq!(o["pay_status"], 0);
    assert_eq!(o["pay_amount"], "4800.00");
    assert_eq!(o["coupon_paid"], "100.00");
    assert_eq!(o["money_paid"], "100.00");
    let order_id = o["order_id"].as_str().expect("ids are strings").to_owned();

    assert_eq!(app.get(&format!("/api/users/{USER}")).await.body["user_money"], "800.00");
    assert_eq!(app.get(&format!("/api/goods/{GOODS}")).await.body["goods_number"], 998);
    let coupon = app.get(&format!("/api/coupons/{COUPON}")).await.body;
    assert_eq!(coupon["is_used"], 1);
    assert_eq!(coupon["order_id"], order_id.as_str());

    let pay = app.post("/api/payments", &json!({"order_id": order_id, "pay_amount": "4800.00"})).await;
    assert_eq!(pay.status, 201, "{:?}", pay.body);
    let pay_id = pay.body["pay_id"].as_str().unwrap().to_owned();
    assert_eq!(pay.body["is_paid"], 1);

    let ack = app.signed_callback(&pay_id, "4800.00").await;
    assert_eq!(ack.status, 200, "{:?}", ack.body);
    assert_eq!(ack.body["outcome"], "paid");
    let paid = app.get(&format!("/api/orders/{order_id}")).await.body;
    assert_eq!(paid["pay_status"], 2);
    assert!(paid["pay_time"].is_string());
    assert_eq!(app.get(&format!("/api/payments/{pay_id}")).await.body["is_paid"], 2);

    // The demo data's own order was confirmed before this one.
    let confirmed: Vec<_> = app.wait_events("shop.order.confirmed", 2).await.into_iter().filter(|(_, ev)| ev["data"]["order_id"] == order_id.as_str()).collect();
    assert_eq!(confirmed.len(), 1);
    let (msg_id, ev) = &confirmed[0];
    assert_eq!(&ev["id"], msg_id.as_str(), "CloudEvent id is the Nats-Msg-Id");
    assert_eq!(ev["specversion"], "1.0");
    assert_eq!(ev["type"], "shop.order.confirmed");
    assert_eq!(
        ev["data"],
        json!({
            "order_id": order_id, "user_id": USER, "goods_id": GOODS, "goods_number": 1,
            "goods_price": "5000.00", "order_amount": "5000.00", "coupon_id": COUPON,
            "coupon_paid": "100.00", "money_paid": "100.00", "pay_amount": "4800.00"
        })
    );

    let paid_events = app.wait_events("shop.pay.success", 1).await;
    assert_eq!(paid_events.len(), 1);
    assert_eq!(
        paid_events[0].1["data"],
        json!({ "pay_id": pay_id, "order_id": order_id, "user_id": USER, "pay_amount": "4800.00" })
    );
    assert!(app.stream_events("shop.order.cancel").await.is_empty());
    // The relay marks both rows sent (just after the stream acknowledged them: the events
    // can be seen in the stream a moment before the marks are committed).
    let sent = format!("msg_status = 1 AND msg_key = '{order_id}'");
    crate::helpers::wait_for("the relay's marks", std::time::Duration::from_secs(10), || async {
        (app.count("trade_mq_producer_temp", &sent).await == 2).then_some(())
    })
    .await;
}

async fn payment_rules(backend: Backend) {
    let app = spawn_app(backend).await;
    let fx = app.fixture(5, "30.00", "0.00", None).await;
    let order = app.post("/api/orders", &fx.order(1, "30.00", "0.00")).await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    assert_eq!(order.body["shipping_fee"], "10.00", "30.00 is not above 100.00: shipping is charged");
    assert_eq!(order.body["pay_amount"], "40.00");
    let order_id = order.body["order_id"].as_str().unwrap();

    let wrong = app.post("/api/payments", &json!({"order_id": order_id, "pay_amount": "30.00"})).await;
    assert_eq!((wrong.status, wrong.code()), (400, "SHOP_PAYMENT_AMOUNT_INVALID"));
    let missing = app.post("/api/payments", &json!({"order_id": "1", "pay_amount": "40.00"})).await;
    assert_eq!((missing.status, missing.code()), (404, "SHOP_ORDER_INVALID"));
    assert_eq!(app.count("trade_pay", "").await, 0);

    let first = app.post("/api/payments", &json!({"order_id": order_id, "pay_amount": "40.00"})).await;
    let again = app.post("/api/payments", &json!({"order_id": order_id, "pay_amount": "40.00"})).await;
    assert_eq!((first.status, again.status), (201, 200), "created once, then the same one: {:?}", again.body);
    assert_eq!(first.body["pay_id"], again.body["pay_id"], "one payment per order");
    let pay_id = first.body["pay_id"].as_str().unwrap();

    let short = app.signed_callback(pay_id, "39.99").await;
    assert_eq!((short.status, short.code()), (400, "SHOP_PAYMENT_AMOUNT_INVALID"));
    assert_eq!(app.get(&format!("/api/orders/{order_id}")).await.body["pay_status"], 0);

    assert_eq!(app.signed_callback(pay_id, "40.00").await.status, 200);
    let after = app.post("/api/payments", &json!({"order_id": order_id, "pay_amount": "40.00"})).await;
    assert_eq!((after.status, after.code()), (409, "SHOP_ORDER_PAY_STATUS_IS_PAY"));
}

crate::on_both_databases!(seeds_scenario, payment_rules);
