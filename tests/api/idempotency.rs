//! An order request sent again with the same `Idempotency-Key` (a client that timed out and
//! retries) places one order: the repeat answers 200 with the order the first placed, and
//! stock and balance are taken once, also when the repeats race each other. The key with
//! another order is refused, and changes nothing.

use futures::future::join_all;
use reqwest::Method;

use crate::helpers::{spawn_app, Backend};

async fn a_retried_order_is_placed_once(backend: Backend) {
    let app = spawn_app(backend).await;
    let fx = app.fixture(5, "150.00", "100.00", None).await;
    let body = fx.order(1, "150.00", "30.00");
    let key = |k: &str| [("idempotency-key", k.to_string())];

    let first = app.request(Method::POST, "/api/orders", Some(&body), &key("order-1")).await;
    assert_eq!(first.status, 201, "{:?}", first.body);
    let again = app.request(Method::POST, "/api/orders", Some(&body), &key("order-1")).await;
    assert_eq!(again.status, 200, "{:?}", again.body);
    assert_eq!(again.body["order_id"], first.body["order_id"]);
    assert_eq!(again.body["order_status"], 1);
    let goods = format!("/api/goods/{}", fx.goods_id);
    let user = format!("/api/users/{}", fx.user_id);
    assert_eq!(app.get(&goods).await.body["goods_number"], 4, "stock taken once");
    assert_eq!(app.get(&user).await.body["user_money"], "70.00", "balance taken once");
    assert_eq!(app.count("trade_order", "").await, 1);
    assert_eq!(app.wait_events("shop.order.confirmed", 1).await.len(), 1);

    // The same key with another order: refused, nothing done.
    let other = app.request(Method::POST, "/api/orders", Some(&fx.order(2, "150.00", "0")), &key("order-1")).await;
    assert_eq!((other.status, other.code()), (422, "SHOP_IDEMPOTENCY_KEY_REUSED"), "{:?}", other.body);
    // A key that is not one: refused before anything is looked at.
    let bad = app.request(Method::POST, "/api/orders", Some(&body), &key(&"k".repeat(65))).await;
    assert_eq!((bad.status, bad.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"), "{:?}", bad.body);
    // Nor is a key the framework would take as absent (not ASCII), or two keys.
    let url = format!("{}/api/orders", app.address);
    let unreadable = reqwest::header::HeaderValue::from_bytes("ключ".as_bytes()).unwrap();
    for _ in 0..2 {
        let sent = app.http.post(&url).header("idempotency-key", unreadable.clone()).json(&body).send().await.unwrap();
        assert_eq!(sent.status(), 400);
        assert!(sent.text().await.unwrap().contains("header idempotency-key: must be visible ASCII"));
    }
    let twice = app.http.post(&url).header("idempotency-key", "order-1").header("idempotency-key", "order-9").json(&body).send().await.unwrap();
    assert_eq!(twice.status(), 400);
    assert!(twice.text().await.unwrap().contains("header idempotency-key is given twice"));
    assert_eq!(app.count("trade_order", "").await, 1);
    assert_eq!(app.get(&goods).await.body["goods_number"], 4);

    // Eight copies of one request at once, with a fresh key: one order, named by every answer.
    let racing = key("order-2");
    let replies = join_all((0..8).map(|_| app.request(Method::POST, "/api/orders", Some(&body), &racing))).await;
    assert_eq!(replies.iter().filter(|r| r.status == 201).count(), 1, "{replies:?}");
    assert!(replies.iter().all(|r| (r.status == 201 || r.status == 200) && r.body["order_id"] == replies[0].body["order_id"]), "{replies:?}");
    // Each as the first left it, confirmed: a repeat that raced in waits for the steps
    // rather than answer a pre-order.
    assert!(replies.iter().all(|r| r.body["order_status"] == 1), "{replies:?}");
    assert_eq!(app.count("trade_order", "").await, 2);
    assert_eq!(app.get(&goods).await.body["goods_number"], 3);
    assert_eq!(app.get(&user).await.body["user_money"], "40.00");

    // The default spelt out is what leaving it out asks: the same order, not another.
    let mut plain = fx.order(1, "150.00", "0.00");
    plain.as_object_mut().unwrap().remove("money_paid");
    let placed = app.request(Method::POST, "/api/orders", Some(&plain), &key("order-3")).await;
    assert_eq!(placed.status, 201, "{:?}", placed.body);
    for spelt in ["0.00", "0"] {
        let again = app.request(Method::POST, "/api/orders", Some(&fx.order(1, "150.00", spelt)), &key("order-3")).await;
        assert_eq!((again.status, &again.body["order_id"]), (200, &placed.body["order_id"]), "money_paid {spelt}: {:?}", again.body);
    }
    assert_eq!(app.count("trade_order", "").await, 3);

    // Without a key, each request is an order of its own.
    assert_eq!(app.post("/api/orders", &fx.order(1, "150.00", "0")).await.status, 201);
    assert_eq!(app.post("/api/orders", &fx.order(1, "150.00", "0")).await.status, 201);
    assert_eq!(app.count("trade_order", "").await, 5);
}

crate::on_both_databases!(a_retried_order_is_placed_once);
