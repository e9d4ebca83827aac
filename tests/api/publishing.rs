//! Events reach stream SHOP once: the relay publishes each round as one atomic batch, and
//! one by one when the server refuses the batch because it holds an event already stored.

use std::{collections::HashSet, time::Duration};

use async_nats::jetstream::{self, stream};
use shopmesh::bus::{self, StreamSettings};
use sqlx::Row;

use crate::helpers::{spawn_app, wait_for, Backend, TestApp, TestNats};

async fn outbox_drained(app: &TestApp) {
    wait_for("the outbox to drain", Duration::from_secs(20), || async {
        (app.count("trade_mq_producer_temp", "msg_status = 0").await == 0).then_some(())
    })
    .await
}

/// A relay that died after publishing but before marking its rows: the next round leases
/// them again, beside new ones. Every event is in the stream once, and every row records the
/// sequence of its own event.
async fn rows_published_before_a_crash_are_not_published_twice(backend: Backend) {
    let app = spawn_app(backend).await;
    let fx = app.fixture(100, "90.00", "0.00", None).await;
    let body = fx.order(1, "90.00", "0");
    for _ in 0..4 {
        assert_eq!(app.post("/api/orders", &body).await.status, 201);
    }
    app.wait_events("shop.order.confirmed", 4).await;
    outbox_drained(&app).await;

    let js = jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let mut stream = js.get_stream(bus::STREAM).await.unwrap();
    assert!(stream.info().await.unwrap().config.allow_atomic_publish, "the stream takes atomic batches");
    // Rows published in the ordinary way went as atomic batches.
    let first = stream.get_raw_message(1).await.unwrap();
    assert!(first.headers.get("Nats-Batch-Id").is_some(), "published as a batch: {:?}", first.headers);

    // As if the relay had died before marking them: three sent rows are leased again.
    sqlx::query(
        "UPDATE trade_mq_producer_temp SET msg_status = 0, lease_until = 0, stream_seq = NULL
          WHERE id IN (SELECT id FROM trade_mq_producer_temp ORDER BY id LIMIT 3)",
    )
    .execute(app.db.pool())
    .await
    .unwrap();
    for _ in 0..3 {
        assert_eq!(app.post("/api/orders", &body).await.status, 201);
    }
    app.wait_events("shop.order.confirmed", 7).await;
    outbox_drained(&app).await;
    // Give the relay time to (wrongly) publish anything twice before counting.
    tokio::time::sleep(Duration::from_millis(500)).await;

    let confirmed = app.stream_events("shop.order.confirmed").await;
    assert_eq!(confirmed.len(), 7, "each confirmation once");
    assert_eq!(confirmed.iter().map(|(id, _)| id).collect::<HashSet<_>>().len(), 7);
    let rows = sqlx::query("SELECT id, stream_seq FROM trade_mq_producer_temp").fetch_all(app.db.pool()).await.unwrap();
    assert_eq!(stream.info().await.unwrap().state.messages, rows.len() as u64, "every row once in the stream");
    for row in rows {
        let (id, seq): (i64, i64) = (row.try_get(0).unwrap(), row.try_get(1).unwrap());
        let msg = stream.get_raw_message(seq as u64).await.unwrap();
        assert_eq!(msg.headers.get("Nats-Msg-Id").map(|v| v.as_str()), Some(id.to_string().as_str()), "row {id}'s sequence {seq} holds its event");
    }
}

crate::on_both_databases!(rows_published_before_a_crash_are_not_published_twice);

/// A stream made before atomic batches (an older host or server) is given them, and keeps
/// the rest of its configuration.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_made_without_atomic_batches_is_given_them() {
    let nats = TestNats::start().await;
    let client = bus::connect(&nats.url()).await.unwrap();
    let js = jetstream::new(client.clone());
    let window = Duration::from_secs(300);
    let made = stream::Config { name: bus::STREAM.into(), subjects: vec!["shop.>".into()], duplicate_window: window, ..Default::default() };
    wait_for("the stream to be made", Duration::from_secs(10), || async { js.create_stream(&made).await.ok() }).await;
    let stored = || async { js.get_stream(bus::STREAM).await.unwrap().info().await.unwrap().config.clone() };
    assert!(!stored().await.allow_atomic_publish);

    let settings = StreamSettings { duplicate_window: Duration::from_secs(120), max_age: Duration::ZERO, replicas: 1, database: None };
    let (_, atomic) = bus::ensure_ready_to_publish(&client, &settings).await.expect("ready");
    assert!(atomic, "the relay is told to publish atomic batches");
    let config = stored().await;
    assert!(config.allow_atomic_publish, "atomic batches turned on in the stream");
    assert_eq!(config.duplicate_window, window, "nothing else changed (a longer window is kept)");

    // A shorter de-duplication window than configured is widened to the configured one.
    js.update_stream(&stream::Config { duplicate_window: Duration::from_secs(30), ..config.clone() }).await.unwrap();
    bus::ensure_ready_to_publish(&client, &settings).await.expect("ready");
    let widened = stored().await;
    assert_eq!(widened.duplicate_window, settings.duplicate_window);
    let kept = |c: &stream::Config| (c.subjects.clone(), c.max_age, c.num_replicas, c.allow_atomic_publish, c.max_messages);
    assert_eq!(kept(&widened), kept(&config), "nothing else changed");
}
