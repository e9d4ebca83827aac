//! Test data through the API: goods, users, coupons, valid orders and paid orders.

use futures::StreamExt;
use serde_json::{json, Value};

use super::{Reply, TestApp, CALLBACK_SECRET};

impl TestApp {
    /// Posts a raw callback body with the given signature header (None: no header).
    pub async fn callback_raw(&self, body: &str, signature: Option<String>) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/api/payments/callback", self.address))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("X-Shop-Signature", sig);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Reply { status, body }
    }

    /// A correctly signed callback reporting `pay_id` paid with `amount`.
    pub async fn signed_callback(&self, pay_id: &str, amount: &str) -> Reply {
        let body = json!({ "pay_id": pay_id, "pay_amount": amount, "is_paid": 2 }).to_string();
        let now = shopmesh::ids::now_ms() / 1000;
        let sig = shopmesh::signature::sign(CALLBACK_SECRET.as_bytes(), now, body.as_bytes());
        self.callback_raw(&body, Some(sig)).await
    }

    /// Places one item of `fx`'s goods at `price` (a 150.00-style amount above the free
    /// shipping line), pays it and sends the signed callback. Returns the order id.
    pub async fn pay_order(&self, fx: &Fixture, price: &str) -> String {
        let order = self.post("/api/orders", &fx.order(1, price, "0")).await;
        assert_eq!(order.status, 201, "{:?}", order.body);
        let order_id = order.body["order_id"].as_str().unwrap().to_owned();
        let pay = self.post("/api/payments", &json!({"order_id": order_id, "pay_amount": order.body["pay_amount"]})).await;
        assert_eq!(pay.status, 201, "{:?}", pay.body);
        let paid = self.signed_callback(pay.body["pay_id"].as_str().unwrap(), order.body["pay_amount"].as_str().unwrap()).await;
        assert_eq!(paid.status, 200, "{:?}", paid.body);
        order_id
    }

    /// Creates goods, a user and (optionally) a coupon through the admin API.
    pub async fn fixture(&self, stock: i64, price: &str, balance: &str, coupon: Option<&str>) -> Fixture {
        let goods = self
            .admin_post("/api/admin/goods", &json!({"goods_name": "phone", "goods_number": stock, "goods_price": price}))
            .await;
        assert_eq!(goods.status, 201, "{:?}", goods.body);
        let user = self
            .admin_post("/api/admin/users", &json!({"user_name": "u", "user_money": balance, "user_score": 0}))
            .await;
        assert_eq!(user.status, 201, "{:?}", user.body);
        let user_id = user.body["user_id"].as_str().unwrap().to_owned();
        let coupon_id = match coupon {
            Some(price) => {
                let c = self
                    .admin_post("/api/admin/coupons", &json!({"coupon_price": price, "user_id": user_id}))
                    .await;
                assert_eq!(c.status, 201, "{:?}", c.body);
                Some(c.body["coupon_id"].as_str().unwrap().to_owned())
            }
            None => None,
        };
        Fixture {
            goods_id: goods.body["goods_id"].as_str().unwrap().to_owned(),
            user_id,
            coupon_id,
        }
    }
}

pub struct Fixture {
    pub goods_id: String,
    pub user_id: String,
    pub coupon_id: Option<String>,
}

impl Fixture {
    /// A valid order of `n` items at `price` each, using the coupon and `money_paid`.
    pub fn order(&self, n: i64, price: &str, money_paid: &str) -> Value {
        let p: f64 = price.parse().unwrap(); // only to build test inputs, never to check money
        let cents = (p * 100.0).round() as i64 * n;
        let ship = if cents > 100_00 { 0 } else { 10_00 };
        let fmt = |c: i64| format!("{}.{:02}", c / 100, c % 100);
        let mut body = json!({
            "user_id": self.user_id,
            "goods_id": self.goods_id,
            "goods_number": n,
            "goods_price": price,
            "shipping_fee": fmt(ship),
            "order_amount": fmt(cents + ship),
            "money_paid": money_paid,
            "address": "成都",
            "consignee": "刘备",
        });
        if let Some(c) = &self.coupon_id {
            body["coupon_id"] = json!(c);
        }
        body
    }
}


impl TestApp {
    /// Places `n` one-unit orders of a fresh fixture (stock `n`, price 1.00, balance
    /// 1000.00, 1.00 of it used per order) on an app whose confirm step fails
    /// (`fail:confirm`): each ends in an order-cancel event in the stream, and all the stock
    /// is taken until the plugins give it back.
    pub async fn cancelled_orders(&self, n: i64) -> Fixture {
        let fx = self.fixture(n, "1.00", "1000.00", None).await;
        let body = fx.order(1, "1.00", "1.00");
        let codes: Vec<String> = futures::stream::iter(0..n)
            .map(|_| async { self.post("/api/orders", &body).await.code().to_owned() })
            .buffer_unordered(8)
            .collect()
            .await;
        assert!(codes.iter().all(|c| c == "SHOP_ORDER_CONFIRM_FAIL"), "{:?}", codes.iter().find(|c| *c != "SHOP_ORDER_CONFIRM_FAIL"));
        assert_eq!(self.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], 0);
        self.wait_events("shop.order.cancel", n as usize).await;
        fx
    }

    /// After [`cancelled_orders`](Self::cancelled_orders) and the plugins: every give-back
    /// of the `n` cancels applied exactly once, and nothing dead-lettered.
    pub async fn assert_given_back_once(&self, fx: &Fixture, n: i64) {
        let user = self.get(&format!("/api/users/{}", fx.user_id)).await.body;
        assert_eq!(user["user_money"], "1000.00", "every balance refunded once");
        assert_eq!(self.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"], n, "all stock back once");
        assert_eq!(self.count("shop_order_step", "action = 'giveback' AND step = 'stock'").await, n);
        assert_eq!(self.count("shop_order_step", "action = 'giveback' AND step = 'balance'").await, n);
        assert_eq!(self.count("trade_goods_number_log", "log_type = 2").await, n);
        assert_eq!(self.count("trade_user_money_log", "money_log_type = 2").await, n);
        assert_eq!(self.count("shop_audit_log", "kind = 'cancelled'").await, n, "one log row per event");
        // stock, coupon (nothing to release), balance and log each handled every event once.
        assert_eq!(self.count("trade_mq_consumer_log", "consumer_status = 1 AND msg_tag = 'shop.order.cancel'").await, 4 * n);
        assert_eq!(self.count("shop_dead_letter", "").await, 0);
    }
}
