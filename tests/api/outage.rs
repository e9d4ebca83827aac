//! NATS down: the API keeps working, events wait in the outbox, and every one reaches the
//! stream exactly once when NATS is back; meanwhile /readyz says 503 and why, /healthz 200.

use std::collections::HashSet;

use futures::future::join_all;

use std::time::Duration;

use crate::helpers::{spawn_app, wait_for, Backend, TestApp};

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

crate::on_both_databases!(orders_survive_a_nats_outage);
