//! The payment callback is authenticated, idempotent and emits one event.

use futures::future::join_all;
use shopmesh::signature::sign;

use crate::helpers::{spawn_app, Backend, TestApp, CALLBACK_SECRET};

/// A confirmed order with a payment; returns (order_id, pay_id).
async fn payable(app: &TestApp) -> (String, String) {
    let fx = app.fixture(5, "80.00", "0.00", None).await;
    let order = app.post("/api/orders", &fx.order(2, "80.00", "0")).await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    let order_id = order.body["order_id"].as_str().unwrap().to_owned();
    let pay = app
        .post("/api/payments", &serde_json::json!({"order_id": order_id, "pay_amount": "160.00"}))
        .await;
    assert_eq!(pay.status, 201, "{:?}", pay.body);
    (order_id, pay.body["pay_id"].as_str().unwrap().to_owned())
}

async fn bad_signatures_are_refused(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_id, pay_id) = payable(&app).await;
    let body = format!(r#"{{"pay_id":"{pay_id}","pay_amount":"160.00","is_paid":2}}"#);
    let now = shopmesh::ids::now_ms() / 1000;
    let key = CALLBACK_SECRET.as_bytes();
    let before = app.snapshot().await;

    let cases = [
        ("unsigned", None),
        ("wrong secret", Some(sign(b"not-the-secret", now, body.as_bytes()))),
        // Well outside the ±300 s tolerance, however long the cases before take.
        ("stale", Some(sign(key, now - 330, body.as_bytes()))),
        ("from the future", Some(sign(key, now + 330, body.as_bytes()))),
        ("other body", Some(sign(key, now, body.replace("160.00", "1.00").as_bytes()))),
        ("malformed", Some("t=abc,v1=zz".to_string())),
        ("no mac", Some(format!("t={now}"))),
    ];
    for (name, sig) in cases {
        let reply = app.callback_raw(&body, sig).await;
        assert_eq!((reply.status, reply.code()), (401, "SHOP_CALLBACK_SIGNATURE_INVALID"), "{name}: {:?}", reply.body);
        assert_eq!(app.snapshot().await, before, "{name}: changed something");
    }
    // Even an unparseable body is refused for its signature first.
    assert_eq!(app.callback_raw("{oops", None).await.status, 401);
    // Its challenge names the signature it needs, not the admin API's bearer token.
    let raw = app.http.post(format!("{}/api/payments/callback", app.address)).header("content-type", "application/json").body(body.clone()).send().await.unwrap();
    assert_eq!(raw.headers()["www-authenticate"], r#"Shop-Signature header="X-Shop-Signature""#);

    assert_eq!(app.get(&format!("/api/orders/{order_id}")).await.body["pay_status"], 0);
    assert_eq!(app.get(&format!("/api/payments/{pay_id}")).await.body["is_paid"], 1);
    assert_eq!(app.count("trade_mq_producer_temp", "msg_topic = 'shop.pay.success'").await, 0);

    // A signed but malformed body is a 400, and a signed unknown payment a 404.
    let junk = "{oops";
    let reply = app.callback_raw(junk, Some(sign(key, now, junk.as_bytes()))).await;
    assert_eq!((reply.status, reply.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"));
    let unknown = app.signed_callback("42", "160.00").await;
    assert_eq!((unknown.status, unknown.code()), (404, "SHOP_PAYMENT_NOT_FOUND"));
    // A paid notice of another amount is refused; a not-paid notice is acknowledged. Neither
    // changes anything.
    let wrong = app.signed_callback(&pay_id, "159.99").await;
    assert_eq!((wrong.status, wrong.code()), (400, "SHOP_PAYMENT_AMOUNT_INVALID"), "{:?}", wrong.body);
    let unpaid = format!(r#"{{"pay_id":"{pay_id}","pay_amount":"160.00","is_paid":1}}"#);
    let reply = app.callback_raw(&unpaid, Some(sign(key, now, unpaid.as_bytes()))).await;
    assert_eq!((reply.status, reply.body["outcome"].as_str()), (200, Some("not_paid")), "{:?}", reply.body);
    assert_eq!(app.snapshot().await, before);

    // Within the tolerance it is accepted.
    let edge = app.callback_raw(&body, Some(sign(key, now - 290, body.as_bytes()))).await;
    assert_eq!(edge.status, 200, "{:?}", edge.body);
}

async fn duplicate_callbacks_emit_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let (order_id, pay_id) = payable(&app).await;

    let first = app.signed_callback(&pay_id, "160.00").await;
    assert_eq!(first.body["outcome"], "paid");
    let again = app.signed_callback(&pay_id, "160.00").await;
    assert_eq!((again.status, again.body["outcome"].as_str()), (200, Some("already_paid")));
    // A burst of concurrent repeats changes nothing either.
    let burst = join_all((0..10).map(|_| app.signed_callback(&pay_id, "160.00"))).await;
    assert!(burst.iter().all(|r| r.status == 200 && r.body["outcome"] == "already_paid"));

    let events = app.wait_events("shop.pay.success", 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(app.stream_events("shop.pay.success").await.len(), 1, "{events:?}");
    assert_eq!(app.count("trade_mq_producer_temp", "msg_topic = 'shop.pay.success'").await, 1);
    assert_eq!(app.get(&format!("/api/orders/{order_id}")).await.body["pay_status"], 2);
}

async fn concurrent_first_callbacks_emit_one_event(backend: Backend) {
    let app = spawn_app(backend).await;
    let (_, pay_id) = payable(&app).await;
    let replies = join_all((0..8).map(|_| app.signed_callback(&pay_id, "160.00"))).await;
    let paid = replies.iter().filter(|r| r.body["outcome"] == "paid").count();
    assert_eq!(paid, 1, "{replies:?}");
    assert!(replies.iter().all(|r| r.status == 200));
    assert_eq!(app.count("trade_mq_producer_temp", "msg_topic = 'shop.pay.success'").await, 1);
}

crate::on_both_databases!(
    bad_signatures_are_refused,
    duplicate_callbacks_emit_one_event,
    concurrent_first_callbacks_emit_one_event
);
