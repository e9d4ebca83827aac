//! NATS down: the API keeps working, events wait in the outbox, and every one reaches the
//! stream exactly once when NATS is back; meanwhile /readyz says 503 and why, /healthz 200.

use std::collections::HashSet;

use futures::future::join_all;

use std::time::Duration;

use crate::helpers::{component, spawn_app, spawn_app_with, wait_for, with_plugins, Backend, TestApp};

/// `/readyz`'s report once it answers `want` and says NATS is `nats` (it follows the
/// connection within seconds; a failed stream read may be noticed first).
async fn readyz_becomes(app: &TestApp, want: u16, nats: bool) -> serde_json::Value {
    wait_for(&format!("/readyz {want}"), Duration::from_secs(20), || async {
        let reply = app.get("/readyz").await;
        (reply.status == want && reply.body["nats"] == nats).then_some(reply.body)
    })
    .await
}

async fn orders_survive_a_nats_outage(backend: Backend) {
    let mut app = spawn_app(backend).await;
    let fx = app.fixture(100, "101.00", "0.00", None).await;
    let body = fx.order(1, "101.00", "0");
    assert_eq!(app.post("/api/orders", &body).await.status, 201);
    app.wait_events("shop.order.confirmed", 1).await;
    let ready = readyz_becomes(&app, 200, true).await;
    assert_eq!((ready["status"].as_str(), ready["database"].as_bool(), ready["stream"].as_bool()), (Some("ready"), Some(true), Some(true)));

    app.nats_mut().stop().await;
    let down = readyz_becomes(&app, 503, false).await;
    assert_eq!(down["status"], "not ready", "{down}");
    assert_eq!(down["reason"], "not connected to NATS");
    assert_eq!(app.get("/healthz").await.status, 200, "alive all the same");
    let replies = join_all((0..8).map(|_| app.post("/api/orders", &body))).await;
    assert!(replies.iter().all(|r| r.status == 201), "orders succeed without NATS: {replies:?}");
    assert!(app.count("trade_mq_producer_temp", "msg_status = 0").await >= 8, "rows wait in the outbox");

    app.nats_mut().restart().await.expect("nats restarts");
    assert_eq!(readyz_becomes(&app, 200, true).await["stream"], true);
    app.wait_events("shop.order.confirmed", 9).await;
    // Give the relay time to (wrongly) publish anything twice before counting.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let events = app.stream_events("shop.order.confirmed").await;
    assert_eq!(events.len(), 9, "every event once");
    let ids: HashSet<_> = events.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), 9);
    assert_eq!(app.count("trade_mq_producer_temp", "msg_status = 0").await, 0);
}

/// The versions of points this host keeps, oldest first.
async fn versions(app: &TestApp) -> Vec<String> {
    let plugins = app.admin(reqwest::Method::GET, "/api/admin/plugins", None).await.body;
    let points = plugins.as_array().unwrap().iter().find(|p| p["name"] == "points").cloned().unwrap();
    points["versions"].as_array().unwrap().iter().map(|v| v["version"].as_str().unwrap().to_owned()).collect()
}

/// An upload the fleet's registry cannot take (NATS is down) is refused and keeps nothing,
/// here either: sent again once NATS is back, it is staged like any first upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_refused_for_want_of_the_registry_keeps_nothing() {
    let mut app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    app.nats_mut().stop().await;
    readyz_becomes(&app, 503, false).await;
    let refused = app.upload("points", component("points_v2"), "?activate=false").await;
    assert_eq!((refused.status, refused.code()), (503, "SHOP_PLUGIN_NOT_DISTRIBUTED"), "{:?}", refused.body);
    assert_eq!(versions(&app).await, ["1.0.0"], "nothing kept");

    app.nats_mut().restart().await.expect("nats restarts");
    readyz_becomes(&app, 200, true).await;
    let staged = app.upload("points", component("points_v2"), "?activate=false").await;
    assert_eq!(staged.status, 200, "{:?}", staged.body);
    assert_eq!(versions(&app).await, ["1.0.0", "2.0.0"]);
}

crate::on_both_databases!(orders_survive_a_nats_outage);
