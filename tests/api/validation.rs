//! Every validation rule of the order flow rejects with its code and leaves no trace.

use serde_json::{json, Value};

use crate::helpers::{spawn_app, Backend};

async fn every_rule_rejects_and_changes_nothing(backend: Backend) {
    let app = spawn_app(backend).await;
    // 3 in stock at 60.00; the user has 80.00 and a 20.00 coupon.
    let fx = app.fixture(3, "60.00", "80.00", Some("20.00")).await;
    let other = app.fixture(1, "1.00", "0.00", Some("5.00")).await;
    let used = app.fixture(2, "1.00", "0.00", Some("5.00")).await;
    // Use `used`'s coupon so it counts as used.
    let mut spend = used.order(1, "1.00", "0.00");
    spend["coupon_id"] = json!(used.coupon_id.clone().unwrap());
    assert_eq!(app.post("/api/orders", &spend).await.status, 201);
    let valid = fx.order(2, "60.00", "10.00"); // 120.00, free shipping, pays 90.00

    type Edit = Box<dyn Fn(&mut Value)>;
    let cases: Vec<(&str, u16, &str, Edit)> = vec![
        ("goods missing", 404, "SHOP_GOODS_NO_EXIST", Box::new(|o| o["goods_id"] = json!("42"))),
        ("user missing", 404, "SHOP_USER_NO_EXIST", Box::new(|o| o["user_id"] = json!("42"))),
        ("price changed", 400, "SHOP_GOODS_PRICE_INVALID", Box::new(|o| o["goods_price"] = json!("59.99"))),
        ("zero quantity", 400, "SHOP_GOODS_NUM_INVALID", Box::new(|o| o["goods_number"] = json!(0))),
        ("negative quantity", 400, "SHOP_GOODS_NUM_INVALID", Box::new(|o| o["goods_number"] = json!(-1))),
        ("more than stock", 409, "SHOP_GOODS_NUM_NOT_ENOUGH", Box::new(|o| o["goods_number"] = json!(4))),
        ("shipping fee wrong", 400, "SHOP_ORDER_SHIPPINGFEE_INVALID", Box::new(|o| o["shipping_fee"] = json!("10.00"))),
        ("order amount wrong", 400, "SHOP_ORDERAMOUNT_INVALID", Box::new(|o| o["order_amount"] = json!("120.01"))),
        ("amount without shipping", 400, "SHOP_ORDERAMOUNT_INVALID", Box::new(|o| {
            // 1 × 60.00 ships for 10.00: an amount of 60.00 forgot it (the original's bug).
            o["goods_number"] = json!(1); o["shipping_fee"] = json!("10.00"); o["order_amount"] = json!("60.00");
        })),
        ("coupon missing", 404, "SHOP_COUPON_NO_EXIST", Box::new(|o| o["coupon_id"] = json!("42"))),
        ("coupon of another user", 400, "SHOP_COUPON_NOT_OWNED", {
            let c = other.coupon_id.clone().unwrap();
            Box::new(move |o| o["coupon_id"] = json!(c))
        }),
        ("coupon used", 409, "SHOP_COUPON_ISUSED", {
            let (c, u) = (used.coupon_id.clone().unwrap(), used.user_id.clone());
            let g = used.goods_id.clone();
            Box::new(move |o| {
                o["coupon_id"] = json!(c); o["user_id"] = json!(u); o["goods_id"] = json!(g);
                o["goods_price"] = json!("1.00"); o["goods_number"] = json!(1);
                o["shipping_fee"] = json!("10.00"); o["order_amount"] = json!("11.00"); o["money_paid"] = json!("0");
            })
        }),
        ("negative balance use", 400, "SHOP_MONEY_PAID_LESS_ZERO", Box::new(|o| o["money_paid"] = json!("-0.01"))),
        ("more than balance", 400, "SHOP_MONEY_PAID_INVALID", Box::new(|o| o["money_paid"] = json!("100.00"))),
        ("a cent over balance", 400, "SHOP_MONEY_PAID_INVALID", Box::new(|o| o["money_paid"] = json!("80.01"))),
        ("discount above amount", 400, "SHOP_DISCOUNT_EXCEEDS_ORDER_AMOUNT", Box::new(|o| {
            // 1 × 60.00 + 10.00 shipping = 70.00, less than 20.00 coupon + 60.00 balance.
            o["goods_number"] = json!(1); o["shipping_fee"] = json!("10.00"); o["order_amount"] = json!("70.00");
            o["money_paid"] = json!("60.00");
        })),
        ("money as a float", 400, "SHOP_REQUEST_PARAMETER_INVALID", Box::new(|o| o["goods_price"] = json!(60.0))),
        ("money too precise", 400, "SHOP_REQUEST_PARAMETER_INVALID", Box::new(|o| o["money_paid"] = json!("1.001"))),
        ("id as a number", 400, "SHOP_REQUEST_PARAMETER_INVALID", Box::new(|o| o["user_id"] = json!(1))),
        ("missing field", 400, "SHOP_REQUEST_PARAMETER_INVALID", Box::new(|o| { o.as_object_mut().unwrap().remove("goods_id"); })),
    ];

    let before = app.snapshot().await;
    for (name, status, code, edit) in &cases {
        let mut body = valid.clone();
        edit(&mut body);
        let reply = app.post("/api/orders", &body).await;
        assert_eq!((reply.status, reply.code()), (*status, *code), "{name}: {:?}", reply.body);
        assert!(reply.body["message"].as_str().is_some_and(|m| !m.is_empty()), "{name}: has a message");
        assert_eq!(app.snapshot().await, before, "{name}: left a trace");
    }

    // Not JSON at all.
    let raw = app
        .http
        .post(format!("{}/api/orders", app.address))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["code"], "SHOP_REQUEST_PARAMETER_INVALID");
    assert_eq!(app.snapshot().await, before);

    // A field given twice: JSON parsers keep the last one, so the body is refused rather
    // than read as one of the two.
    let twice = valid.to_string().replacen('{', r#"{"goods_number":1,"#, 1);
    let raw = app.http.post(format!("{}/api/orders", app.address)).header("content-type", "application/json").body(twice).send().await.unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["code"], "SHOP_REQUEST_PARAMETER_INVALID");
    assert!(body["message"].as_str().unwrap().contains(r#""goods_number" is given twice"#), "{body}");
    assert_eq!(app.snapshot().await, before);

    // A NUL character, which Postgres cannot store: refused alike on both databases.
    let mut with_nul = valid.clone();
    with_nul["address"] = json!("a\u{0}b");
    let raw = app.http.post(format!("{}/api/orders", app.address)).header("content-type", "application/json").body(with_nul.to_string()).send().await.unwrap();
    assert_eq!(raw.status().as_u16(), 400);
    let body: Value = raw.json().await.unwrap();
    assert_eq!(body["code"], "SHOP_REQUEST_PARAMETER_INVALID");
    assert!(body["message"].as_str().unwrap().contains("NUL character"), "{body}");
    assert_eq!(app.snapshot().await, before);

    // The untouched order is valid: the rules above rejected only what they should.
    let ok = app.post("/api/orders", &valid).await;
    assert_eq!(ok.status, 201, "{:?}", ok.body);
    assert_eq!(ok.body["pay_amount"], "90.00");
    // Buying the last items is allowed (the original's `>=` refused it).
    let mut last = fx.order(1, "60.00", "0");
    last.as_object_mut().unwrap().remove("coupon_id"); // spent by the order above
    let last = app.post("/api/orders", &last).await;
    assert_eq!(last.status, 201, "{:?}", last.body);
    assert_eq!(app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], 0);
}

async fn lookups_and_admin(backend: Backend) {
    let app = spawn_app(backend).await;
    for path in ["/api/orders/42", "/api/goods/42", "/api/users/42", "/api/coupons/42", "/api/payments/42"] {
        let r = app.get(path).await;
        assert_eq!(r.status, 404, "{path}");
        assert!(r.code().starts_with("SHOP_"), "{path}: {:?}", r.body);
    }
    let bad = app.get("/api/goods/not-a-number").await;
    assert_eq!((bad.status, bad.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"));
    let said = bad.body["message"].as_str().unwrap();
    assert!(said.contains("in the path: not an id") && !said.contains("param0"), "not the framework's internal name: {said}");
    // What a request held is quoted, not echoed whole.
    let long = app.get(&format!("/api/goods/{}", "9a".repeat(20_000))).await;
    assert_eq!((long.status, long.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"));
    let said = long.body["message"].as_str().unwrap();
    assert!(said.chars().count() <= 2003 && said.contains(" … ") && said.starts_with("request parameter invalid"), "{} characters", said.len());
    // Query and header parameters are named with what they expect, not the framework's words.
    for (path, headers, expected) in [
        ("/api/admin/replays/1/events?outcome=bogus", vec![], "outcome: must be one of same, changed, new, failed, applied, skipped"),
        ("/api/admin/replays/1/events?limit=0", vec![], "limit: must be at least 1"),
        ("/api/admin/replays/1/events?after=abc", vec![], "after: must be an integer"),
        ("/api/admin/replays/1/events?regressed=maybe", vec![], "regressed: must be true or false"),
        ("/api/admin/replays?state=stopped", vec![], "state: must be one of running, done, failed, cancelled"),
        ("/api/admin/replays?limit=101", vec![], "limit: must be at most 100"),
        // A parameter given twice is not read as one of the two.
        ("/api/admin/replays?limit=3&limit=abc", vec![], r#"query parameter "limit" is given twice"#),
        ("/api/orders", vec![("Idempotency-Key", "bad key!".to_string())], "Idempotency-Key: must match ^[A-Za-z0-9_-]{1,64}$"),
    ] {
        let method = if path == "/api/orders" { reqwest::Method::POST } else { reqwest::Method::GET };
        let mut headers = headers;
        headers.push(("authorization", format!("Bearer {}", crate::helpers::ADMIN_TOKEN)));
        let r = app.request(method, path, Some(&json!({})), &headers).await;
        assert_eq!((r.status, r.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"), "{path}: {:?}", r.body);
        assert_eq!(r.body["message"], format!("request parameter invalid: {expected}"), "{path}");
    }
    // A compressed body is not read as it came; a NUL in a query value is refused before
    // it reaches the database (Postgres cannot take it); a name encoded is still that name.
    let url = format!("{}/api/admin/goods", app.address);
    let auth = format!("Bearer {}", crate::helpers::ADMIN_TOKEN);
    let gzipped = app.http.post(&url).header("authorization", &auth).header("content-encoding", "gzip").json(&json!({})).send().await.unwrap();
    assert_eq!(gzipped.status(), 415);
    assert!(gzipped.text().await.unwrap().contains("SHOP_UNSUPPORTED_MEDIA_TYPE"));
    for query in ["plugin=%00", "limit=3&%6Cimit=4"] {
        let r = app.admin(reqwest::Method::GET, &format!("/api/admin/replays?{query}"), None).await;
        assert_eq!((r.status, r.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"), "{query}: {:?}", r.body);
    }
    // A GET is not refused for a Content-Encoding it has no body for.
    let get = app.http.get(format!("{}/api/admin/replays", app.address)).header("authorization", &auth).header("content-encoding", "gzip").send().await.unwrap();
    assert_eq!(get.status(), 200);

    for path in ["/api/admin/goods", "/api/admin/users", "/api/admin/coupons"] {
        let r = app.post(path, &json!({})).await;
        assert_eq!((r.status, r.code()), (401, "SHOP_UNAUTHORIZED"), "{path}");
        let wrong = app
            .request(reqwest::Method::POST, path, Some(&json!({})), &[("authorization", "Bearer nope".into())])
            .await;
        assert_eq!(wrong.status, 401, "{path}");
    }
    let coupon = app.admin_post("/api/admin/coupons", &json!({"coupon_price": "5.00", "user_id": "42"})).await;
    assert_eq!((coupon.status, coupon.code()), (404, "SHOP_USER_NO_EXIST"));
    let goods = app.count("trade_goods", "").await;
    let negative = app
        .admin_post("/api/admin/goods", &json!({"goods_name": "x", "goods_number": 1, "goods_price": "-1.00"}))
        .await;
    assert_eq!((negative.status, negative.code()), (400, "SHOP_REQUEST_PARAMETER_INVALID"));
    assert_eq!(app.count("trade_goods", "").await, goods, "no goods added");
}

crate::on_both_databases!(every_rule_rejects_and_changes_nothing, lookups_and_admin);
