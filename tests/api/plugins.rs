//! The five real plugin components, end to end: give-backs after a failed order, points and
//! the payment log after a payment, exactly once even when an event comes again under a
//! new message id, and poison events dead-lettered without blocking the stream.

use bytes::Bytes;
use serde_json::{json, Value};

use crate::helpers::{spawn_app_with, wait_consumers_idle, wait_for, with_plugins, Backend, TestApp};

const ALL: [&str; 5] = ["stock", "coupon", "balance", "points", "log"];

async fn state(app: &TestApp, fx: &crate::helpers::Fixture) -> (Value, Value, Value) {
    (
        app.get(&format!("/api/goods/{}", fx.goods_id)).await.body["goods_number"].clone(),
        app.get(&format!("/api/users/{}", fx.user_id)).await.body.clone(),
        app.get(&format!("/api/coupons/{}", fx.coupon_id.clone().unwrap())).await.body["is_used"].clone(),
    )
}

/// Publishes `body` on `subject` with a fresh message id (JetStream's de-duplication
/// cannot recognise it).
async fn republish(app: &TestApp, subject: &str, body: &Value) {
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    let msg_id = format!("again-{}", shopmesh::ids::now_ms());
    let publish = async_nats::jetstream::message::PublishMessage::build()
        .payload(Bytes::from(body.to_string()))
        .message_id(msg_id);
    js.send_publish(subject.to_owned(), publish).await.unwrap().await.unwrap();
}

async fn cancelled_order_gets_everything_back_once(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        with_plugins(s);
        s.fault = Some("fail:confirm".into());
    })
    .await;
    let fx = app.fixture(5, "200.00", "100.00", Some("30.00")).await;
    let before = state(&app, &fx).await;
    let reply = app.post("/api/orders", &fx.order(2, "200.00", "40.00")).await;
    assert_eq!(reply.code(), "SHOP_ORDER_CONFIRM_FAIL", "{:?}", reply.body);

    let events = app.wait_events("shop.order.cancel", 1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    assert_eq!(state(&app, &fx).await, before, "stock, balance and coupon are back");
    assert_eq!(app.count("shop_order_step", "action = 'giveback'").await, 3);
    assert_eq!(app.count("trade_goods_number_log", "log_type = 2 AND goods_number = 2").await, 1);
    assert_eq!(app.count("trade_user_money_log", "money_log_type = 2 AND use_money = 4000").await, 1);
    assert_eq!(app.count("shop_audit_log", "kind = 'cancelled'").await, 1);
    // Each subscribed plugin applied the event once, and says which build did it.
    assert_eq!(app.count("trade_mq_consumer_log", "consumer_status = 1 AND plugin_version = '1.0.0'").await, 4);

    // The same event again under a new message id: the inboxes absorb it.
    republish(&app, "shop.order.cancel", &events[0].1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    assert_eq!(state(&app, &fx).await, before);
    assert_eq!(app.count("shop_order_step", "action = 'giveback'").await, 3);
    assert_eq!(app.count("shop_audit_log", "").await, 1);
    assert_eq!(app.count("shop_dead_letter", "").await, 0);
}

async fn give_backs_only_what_was_taken(backend: Backend) {
    // The coupon step fails: stock was taken, coupon and balance never were.
    let app = spawn_app_with(backend, |s| {
        with_plugins(s);
        s.fault = Some("fail:coupon".into());
    })
    .await;
    let fx = app.fixture(5, "200.00", "100.00", Some("30.00")).await;
    let before = state(&app, &fx).await;
    app.post("/api/orders", &fx.order(1, "200.00", "40.00")).await;
    app.wait_events("shop.order.cancel", 1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    assert_eq!(state(&app, &fx).await, before);
    // Only the stock give-back happened; the empty rollbacks wrote nothing.
    assert_eq!(app.count("shop_order_step", "action = 'giveback'").await, 1);
    assert_eq!(app.count("trade_user_money_log", "").await, 0);
}

async fn paid_order_adds_points_and_one_log_row(backend: Backend) {
    let app = spawn_app_with(backend, |s| {
        with_plugins(s);
        s.plugin_config.0.insert("points".into(), [("points_per_unit".to_string(), "2".to_string())].into());
    })
    .await;
    let fx = app.fixture(5, "120.50", "0.00", None).await;
    let order = app.post("/api/orders", &fx.order(2, "120.50", "0")).await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    let order_id = order.body["order_id"].as_str().unwrap();
    let pay = app.post("/api/payments", &json!({"order_id": order_id, "pay_amount": "241.00"})).await;
    let pay_id = pay.body["pay_id"].as_str().unwrap();
    assert_eq!(app.signed_callback(pay_id, "241.00").await.status, 200);

    let paid = app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    let user = format!("/api/users/{}", fx.user_id);
    assert_eq!(app.get(&user).await.body["user_score"], 482, "2 points per whole 1.00 of 241.00");
    assert_eq!(app.count("shop_audit_log", "kind = 'paid' AND amount = 24100").await, 1);

    republish(&app, "shop.pay.success", &paid[0].1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    assert_eq!(app.get(&user).await.body["user_score"], 482, "not twice");
    assert_eq!(app.count("shop_audit_log", "").await, 1);
}

/// Whoever can publish to NATS can put an event on the stream. One the shop did not write (a
/// cancel of a paid order, which would give its stock and coupon back; a payment never made,
/// which would mint points) changes nothing: each plugin that would have acted on it
/// dead-letters it, saying why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_the_shop_did_not_write_changes_nothing() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let fx = app.fixture(5, "200.00", "100.00", Some("30.00")).await;
    let order_id = app.pay_order(&fx, "200.00").await;
    let paid = app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    let before = state(&app, &fx).await;
    let logged = app.count("shop_audit_log", "").await;

    let envelope = &paid[0].1;
    let mut cancel = envelope.clone();
    cancel["id"] = json!("777000000000000011");
    cancel["type"] = json!("shop.order.cancel");
    cancel["data"] = json!({"order_id": order_id, "user_id": fx.user_id, "goods_id": fx.goods_id, "goods_number": 1,
        "coupon_id": fx.coupon_id, "money_paid": "0.00", "reason": "forged"});
    let mut pay = envelope.clone();
    pay["id"] = json!("777000000000000012");
    pay["data"]["pay_amount"] = json!("100000.00");
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    for (subject, body) in [("shop.order.cancel", &cancel), ("shop.pay.success", &pay)] {
        js.publish(subject, body.to_string().into()).await.unwrap().await.unwrap();
    }

    let auth = [("authorization", format!("Bearer {}", crate::helpers::ADMIN_TOKEN))];
    let letters = wait_for("the forged events' dead letters", std::time::Duration::from_secs(40), || async {
        let r = app.request(reqwest::Method::GET, "/api/admin/dead-letters", None, &auth).await;
        let list = r.body.as_array().cloned().unwrap_or_default();
        let mut plugins: Vec<String> = list.iter().map(|l| l["plugin"].as_str().unwrap().to_owned()).collect();
        plugins.sort();
        // Every plugin reading them, whether or not it would have acted.
        (plugins == ["balance", "coupon", "log", "log", "points", "stock"]).then_some(list)
    })
    .await;
    for l in &letters {
        let reason = l["reason"].as_str().unwrap();
        assert!(reason.contains(&format!("event {} is not one this shop wrote", l["event_id"].as_str().unwrap())), "{l}");
    }
    assert_eq!(state(&app, &fx).await, before, "no stock, coupon, balance or points from them");
    assert_eq!(app.count("shop_audit_log", "").await, logged);
    assert_eq!(app.count("shop_order_step", "action = 'giveback'").await, 0);

    // An altered copy under a real event's id, worth no points (no effect to refuse), run and
    // applied as by a plugin that has not seen the real one yet (points' inbox row for it
    // taken away, and the points it gave): refused, its mark undone, so the real event still
    // applies after it.
    let id = envelope["id"].as_str().unwrap();
    let earned = app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"].clone();
    assert!(earned.as_i64().unwrap() > 0, "{earned}");
    sqlx::query(&format!("DELETE FROM trade_mq_consumer_log WHERE group_name = 'points' AND msg_key = '{id}'")).execute(app.db.pool()).await.unwrap();
    sqlx::query(&format!("UPDATE trade_user SET user_score = 0 WHERE user_id = {}", fx.user_id)).execute(app.db.pool()).await.unwrap();
    let mut altered = envelope.clone();
    altered["data"]["pay_amount"] = json!("0.50");
    let copy = shopmesh::plugins::delivery::parse("shop.pay.success", altered.to_string().as_bytes()).unwrap();
    let points = app.registry().current("points").unwrap();
    let ready = shopmesh::plugins::host::Ready { delivery: &copy, attempt: 1 };
    let results = app.plugin_host().run_and_apply(&points, &[&ready]).await;
    let said: Vec<String> = results.iter().map(|r| r.as_ref().map(|a| format!("{a:?}")).unwrap_or_else(|f| f.to_string())).collect();
    assert!(said.len() == 1 && said[0].contains("is not one this shop wrote"), "{said:?}");
    let body: String = sqlx::query_scalar(&format!("SELECT msg_body FROM trade_mq_producer_temp WHERE id = {id}")).fetch_one(app.db.pool()).await.unwrap();
    let real = shopmesh::plugins::delivery::parse("shop.pay.success", body.as_bytes()).unwrap();
    let ready = shopmesh::plugins::host::Ready { delivery: &real, attempt: 1 };
    let results = app.plugin_host().run_and_apply(&points, &[&ready]).await;
    assert_eq!(format!("{results:?}"), "[Ok(Now)]", "the real event applies now");
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], earned, "its points, once");
}

async fn poison_events_are_dead_lettered_and_the_stream_moves_on(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    let js = async_nats::jetstream::new(client);
    // Wait for the stream (created by the host at start) before publishing into it.
    wait_for("stream SHOP", std::time::Duration::from_secs(10), || {
        let js = js.clone();
        async move { js.get_stream("SHOP").await.ok().map(|_| ()) }
    })
    .await;
    let mut published = Vec::new();
    for body in [
        "not json at all".to_string(),
        json!({"specversion": "1.0", "id": "p-2", "type": "shop.order.cancel", "data": {"order_id": 1}}).to_string(),
        json!({"specversion": "1.0", "id": "p-3", "type": "shop.pay.success", "data": {}}).to_string(),
        // U+0000, which a Postgres text column refuses: escaped in a valid envelope, and raw.
        json!({"specversion": "1.0", "id": "p-5\u{0}", "type": "shop.order.cancel", "data": {"order_id": "1", "reason": "\u{0}"}}).to_string(),
        "{\"specversion\": \"1.0\", \"id\": \"p-6\0\"}".to_string(),
    ] {
        published.push(js.publish("shop.order.cancel", body.into()).await.unwrap().await.unwrap().sequence as i64);
    }
    // And one on a subject no plugin consumes: only the guard sees it.
    let stray = json!({"specversion": "1.0", "id": "p-4", "type": "shop.typo", "data": {}}).to_string();
    js.publish("shop.typo", stray.into()).await.unwrap().await.unwrap();
    // A good event after the poison still gets through.
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;

    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150);
    // Four plugins subscribe to shop.order.cancel; each dead-letters each poison message
    // (a dead letter is per plugin, so each can be redriven after its own fix).
    let auth = [("authorization", format!("Bearer {}", crate::helpers::ADMIN_TOKEN))];
    // The guard dead-letters every malformed event once, whoever else listens.
    let guard = wait_for("the guard's dead letters", std::time::Duration::from_secs(20), || async {
        let r = app.request(reqwest::Method::GET, "/api/admin/dead-letters?plugin=shopmesh-guard", None, &auth).await;
        let list = r.body.as_array().cloned().unwrap_or_default();
        (list.len() >= 6).then_some(list)
    })
    .await;
    assert_eq!(guard.len(), 6, "{guard:?}");
    assert!(guard.iter().all(|l| l["state"] == "open"), "{guard:?}");
    assert!(guard.iter().any(|l| l["reason"].as_str().unwrap().contains("holds a NUL character")), "{guard:?}");
    assert!(guard.iter().any(|l| l["event_id"] == "p-5\u{FFFD}"), "{guard:?}");
    assert!(guard.iter().any(|l| l["subject"] == "shop.typo" && l["reason"].as_str().unwrap().contains("unknown event type")));
    // The same through the CLI: the guard's open letters, a line each under a header.
    let listed = app.cli(&["dead-letters", "list", "--plugin", "shopmesh-guard"]).await;
    assert_eq!((listed.code, listed.stdout.lines().count()), (Some(0), 1 + 6), "{listed:?}");
    assert!(listed.stdout.lines().skip(1).all(|l| l.contains("shopmesh-guard") && l.contains(" open ")), "{listed:?}");
    let letters = app.request(reqwest::Method::GET, "/api/admin/dead-letters", None, &auth).await;
    let letters: Vec<Value> = letters.body.as_array().unwrap().iter().filter(|l| l["plugin"] != "shopmesh-guard").cloned().collect();
    assert_eq!(letters.len(), 20, "{letters:?}");
    let reasons: Vec<&str> = letters.iter().map(|l| l["reason"].as_str().unwrap()).collect();
    assert!(reasons.iter().all(|r| r.starts_with("malformed event")), "{reasons:?}");
    assert!(reasons.iter().any(|r| r.contains("not a CloudEvents JSON envelope")));
    assert!(reasons.iter().any(|r| r.contains("payload invalid")));
    assert!(reasons.iter().any(|r| r.contains("arrived on subject")));
    // Each letter says where its event stands in the stream, also one whose body names no
    // event (the first and the last: not JSON).
    for l in letters.iter().chain(&guard) {
        let seq = l["stream_seq"].as_i64().unwrap_or_else(|| panic!("no stream_seq: {l}"));
        assert!(published.contains(&seq) || l["subject"] == "shop.typo", "{l}");
    }
    let mut unknown: Vec<i64> = letters.iter().filter(|l| l["event_id"] == "unknown").map(|l| l["stream_seq"].as_i64().unwrap()).collect();
    unknown.sort();
    unknown.dedup();
    assert_eq!(unknown, vec![published[0], published[4]], "{letters:?}");
    let unauthorized = app.get("/api/admin/dead-letters").await;
    assert_eq!(unauthorized.status, 401);

    // A malformed event stays malformed: its redrive fails again and the letter stays open,
    // so it is dismissed instead, once; it then counts as resolved. The guard's letters too.
    let malformed = letters[0]["id"].as_str().unwrap().to_owned();
    let again = app.request(reqwest::Method::POST, &format!("/api/admin/dead-letters/{malformed}/redrive"), None, &auth).await;
    assert!(again.body["result"].as_str().unwrap().starts_with("still malformed"), "{:?}", again.body);
    assert_eq!(again.body["closed"], false, "{:?}", again.body);
    // The CLI says so, and exits 1: the letter stays open.
    let cli_again = app.cli(&["dead-letters", "redrive", &malformed]).await;
    assert_eq!(cli_again.code, Some(1), "{cli_again:?}");
    assert!(cli_again.stdout.starts_with(&format!("{malformed}  open")) && cli_again.stdout.contains("still malformed"), "{cli_again:?}");
    let stray = guard.iter().find(|l| l["event_id"] == "p-4").unwrap()["id"].as_str().unwrap().to_owned();
    // The guard's letter is checked again, as the guard checks it.
    let again = app.request(reqwest::Method::POST, &format!("/api/admin/dead-letters/{stray}/redrive"), None, &auth).await;
    assert_eq!(again.body["result"], "still malformed: unknown event type \"shop.typo\"", "{:?}", again.body);
    let all = app.request(reqwest::Method::POST, "/api/admin/plugins/shopmesh-guard/redrive", None, &auth).await;
    let results = all.body.as_array().unwrap_or_else(|| panic!("{:?}", all.body));
    assert_eq!(results.len(), 6, "{results:?}");
    assert!(results.iter().all(|r| r["result"].as_str().unwrap().starts_with("still malformed")), "{results:?}");
    // One that is well-formed now (left by a host that read it worse) is closed.
    let paid = app.wait_events("shop.pay.success", 1).await;
    sqlx::query(
        "INSERT INTO shop_dead_letter (id, plugin, plugin_version, subject, event_id, body, reason, attempts, created_at)
         VALUES (9, 'shopmesh-guard', '-', 'shop.pay.success', $1, $2, 'malformed event: an older reading', 1, $3)",
    )
    .bind(&paid[0].0)
    .bind(paid[0].1.to_string())
    .bind(shopmesh::ids::now_ms())
    .execute(app.db.pool())
    .await
    .unwrap();
    let closed = app.request(reqwest::Method::POST, "/api/admin/dead-letters/9/redrive", None, &auth).await;
    assert_eq!((&closed.body["result"], &closed.body["closed"]), (&json!("well-formed now"), &json!(true)), "{:?}", closed.body);
    assert_eq!(app.count("shop_dead_letter", "id = 9 AND redriven_at IS NOT NULL").await, 1);
    let nine = app.request(reqwest::Method::GET, "/api/admin/dead-letters/9", None, &auth).await;
    assert_eq!(nine.body["state"], "redriven", "{:?}", nine.body);
    // Through the CLI, a letter that closes: exit 0. (It was closed above: reopened for this.)
    sqlx::query("UPDATE shop_dead_letter SET redriven_at = NULL, redrive_result = NULL WHERE id = 9").execute(app.db.pool()).await.unwrap();
    let cli_closed = app.cli(&["dead-letters", "redrive", "9"]).await;
    assert_eq!(cli_closed.code, Some(0), "{cli_closed:?}");
    assert_eq!(cli_closed.stdout, "9  closed  well-formed now\n", "{cli_closed:?}");
    assert_eq!(app.count("shop_dead_letter", "id = 9 AND redriven_at IS NOT NULL").await, 1);
    let before = app.count("shop_dead_letter", "redriven_at IS NULL").await;
    for id in [&malformed, &stray] {
        let dismissed = app.request(reqwest::Method::POST, &format!("/api/admin/dead-letters/{id}/dismiss"), None, &auth).await;
        assert_eq!(dismissed.status, 200, "{:?}", dismissed.body);
        assert!(dismissed.body["redrive_result"].as_str().unwrap().starts_with("dismissed by admin"), "{:?}", dismissed.body);
        assert!(dismissed.body["redriven_at"].is_string());
        assert_eq!(dismissed.body["state"], "dismissed", "{:?}", dismissed.body);
    }
    assert_eq!(app.count("shop_dead_letter", "redriven_at IS NULL").await, before - 2);
    let twice = app.request(reqwest::Method::POST, &format!("/api/admin/dead-letters/{stray}/dismiss"), None, &auth).await;
    assert_eq!((twice.status, twice.code()), (404, "SHOP_DEAD_LETTER_NOT_FOUND"), "{:?}", twice.body);
    assert!(twice.body["message"].as_str().unwrap().contains(&format!("dead letter {stray} is closed already (dismissed by admin")), "{:?}", twice.body);
    let none = app.request(reqwest::Method::GET, "/api/admin/dead-letters/42", None, &auth).await;
    assert_eq!((none.status, none.body["message"].as_str()), (404, Some("dead letter 42 does not exist")), "{:?}", none.body);
    // Through the CLI: a closed letter reads as closed; dismissing it again fails (exit 1);
    // another guard letter is dismissed; the open list has one line fewer, --all has them all.
    let shown = app.cli(&["dead-letters", "show", &stray]).await;
    assert!(shown.stdout.starts_with(&format!("dead letter {stray} (dismissed by admin")) && shown.stdout.contains("shop.typo"), "{shown:?}");
    let cli_twice = app.cli(&["dead-letters", "dismiss", &stray]).await;
    assert_eq!(cli_twice.code, Some(1), "{cli_twice:?}");
    assert!(cli_twice.stderr.contains(&format!("dead letter {stray} is closed already")), "{cli_twice:?}");
    let other = guard.iter().map(|l| l["id"].as_str().unwrap()).find(|id| *id != stray).unwrap();
    let dismissed = app.cli(&["dead-letters", "dismiss", other]).await;
    assert_eq!(dismissed.code, Some(0), "{dismissed:?}");
    assert!(dismissed.stdout.starts_with(&format!("{other}  dismissed by admin")), "{dismissed:?}");
    let open = app.cli(&["dead-letters", "list", "--plugin", "shopmesh-guard"]).await;
    assert_eq!(open.stdout.lines().count(), 1 + 4, "six, less the stray and the other dismissed: {open:?}");
    let all = app.cli(&["dead-letters", "list", "--plugin", "shopmesh-guard", "--all"]).await;
    assert_eq!(all.stdout.lines().count(), 1 + 7, "the six and letter 9: {all:?}");
    // A plugin name that is no plugin's is not "no dead letters".
    let typo = app.cli(&["dead-letters", "list", "--plugin", "pionts"]).await;
    assert!(typo.code == Some(1) && typo.stderr.contains("SHOP_PLUGIN_NOT_FOUND"), "{typo:?}");
    let anonymous = app.request(reqwest::Method::POST, &format!("/api/admin/dead-letters/{malformed}/dismiss"), None, &[]).await;
    assert_eq!(anonymous.status, 401);
}

/// The consumer's filter is shared by the fleet, so a host may be handed an event of a
/// subject that a newer version reads and its own does not: it is not marked done for the
/// version that never saw it; the consumer hands it back, or, when this host's own version
/// stopped reading the subject, acknowledges it unhandled
/// (`hotswap::a_version_with_new_subjects_rebinds_its_consumer`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_outside_the_versions_subjects_is_handed_back() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    let paid = app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    let (id, body) = &paid[0];
    // stock 1.0.0 reads shop.order.cancel only.
    let handed = app.plugin_host().process("stock", "shop.pay.success", body.to_string().as_bytes()).await;
    assert!(matches!(handed, shopmesh::plugins::Disposition::NotRead(_)), "{handed:?}");
    assert_eq!(app.count("trade_mq_consumer_log", &format!("group_name = 'stock' AND msg_id = '{id}'")).await, 0, "not marked done");
    // A version that reads it answers as usual (points applied it already: done).
    let handled = app.plugin_host().process("points", "shop.pay.success", body.to_string().as_bytes()).await;
    assert!(matches!(handled, shopmesh::plugins::Disposition::Ack), "{handled:?}");
    assert_eq!(app.count("trade_mq_consumer_log", &format!("group_name = 'points' AND msg_id = '{id}'")).await, 1);
}

/// A message dead-lettered twice (its acknowledgement lost as NATS went away, so it came
/// back and failed again) has one open letter; once that is closed, a new failure of it is
/// a letter again. A message without a stream sequence is always stored.
async fn a_message_dead_lettered_twice_has_one_open_letter(backend: Backend) {
    use shopmesh::plugins::dead_letters::{self, Letter};
    let app = crate::helpers::spawn_app(backend).await;
    let ids = shopmesh::ids::Snowflake::new(9);
    let letter = |seq| Letter { plugin: "points", version: "1.0.0", subject: "shop.pay.success", event_id: "1", stream_seq: seq, body: "{}", reason: "trapped", attempts: 5 };
    for _ in 0..2 {
        dead_letters::store(&app.db, &ids, &letter(Some(41))).await.unwrap();
    }
    assert_eq!(app.count("shop_dead_letter", "stream_seq = 41").await, 1);
    // Another message under that sequence (a stream made anew numbers from 1): a letter of its own.
    let other = Letter { body: "not an event", ..letter(Some(41)) };
    dead_letters::store(&app.db, &ids, &other).await.unwrap();
    assert_eq!(app.count("shop_dead_letter", "stream_seq = 41").await, 2);
    sqlx::query("DELETE FROM shop_dead_letter WHERE body = 'not an event'").execute(app.db.pool()).await.unwrap();
    sqlx::query("UPDATE shop_dead_letter SET redriven_at = 1, redrive_result = 'applied' WHERE stream_seq = 41").execute(app.db.pool()).await.unwrap();
    dead_letters::store(&app.db, &ids, &letter(Some(41))).await.unwrap();
    assert_eq!(app.count("shop_dead_letter", "stream_seq = 41 AND redriven_at IS NULL").await, 1);
    for _ in 0..2 {
        dead_letters::store(&app.db, &ids, &letter(None)).await.unwrap();
    }
    assert_eq!(app.count("shop_dead_letter", "stream_seq IS NULL").await, 2);
}

crate::on_both_databases!(
    cancelled_order_gets_everything_back_once,
    give_backs_only_what_was_taken,
    paid_order_adds_points_and_one_log_row,
    poison_events_are_dead_lettered_and_the_stream_moves_on,
    a_message_dead_lettered_twice_has_one_open_letter
);
