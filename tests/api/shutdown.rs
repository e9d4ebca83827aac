//! Graceful shutdown: SIGTERM while the plugins are part-way through 1,000 order-cancel
//! events and orders are being placed on the same host. The process stops within its grace
//! period, by itself ("stopped cleanly"); after a restart every event is applied exactly
//! once, every order the host accepted is confirmed and its event published once, and any
//! order whose request the stop cut off is in a state the sweeper or the relay finishes.

use std::{
    sync::{
        atomic::{AtomicBool, AtomicUsize, Ordering},
        Arc,
    },
    time::Duration,
};

use serde_json::Value;

use crate::{
    crash::{ALL, ORDERS},
    helpers::{plugins_dir, spawn_app_with, wait_consumers_idle, wait_for, Backend, HostProcess},
};

const GRACE: Duration = Duration::from_secs(20);

async fn sigterm_with_events_in_flight(backend: Backend) {
    let app = spawn_app_with(backend, |s| s.fault = Some("fail:confirm".into())).await;
    let fx = app.cancelled_orders(ORDERS).await;
    let shop_fx = app.fixture(100_000, "150.00", "0.00", None).await;

    let plugins = plugins_dir().display().to_string();
    let grace = format!("{}s", GRACE.as_secs());
    // Small batches: after the signal each consumer finishes at most one, so the stop
    // lands well before the end of the 4,000 applications.
    let env = [("SHOPMESH_PLUGINS_DIR", plugins.as_str()), ("SHOPMESH_SHUTDOWN_GRACE", grace.as_str()), ("SHOPMESH_PLUGIN_BATCH", "32")];
    let log = tempfile::NamedTempFile::new().unwrap();
    let mut host = HostProcess::start_with(&app.db_url, &app.nats_url, &env, &["--log-format", "json"], Some(log.path())).await;

    // Customers keep ordering from this host until it stops answering.
    let stopping = Arc::new(AtomicBool::new(false));
    let placed = Arc::new(AtomicUsize::new(0));
    let customers: Vec<_> = (0..4)
        .map(|_| {
            let (http, url, body, stopping, placed) = (app.http.clone(), format!("{}/api/orders", host.address), shop_fx.order(1, "150.00", "0"), stopping.clone(), placed.clone());
            tokio::spawn(async move {
                let mut answers: Vec<(u16, Value)> = Vec::new();
                while !stopping.load(Ordering::Relaxed) {
                    match http.post(&url).json(&body).send().await {
                        Ok(r) => {
                            let status = r.status().as_u16();
                            placed.fetch_add(usize::from(status == 201), Ordering::Relaxed);
                            answers.push((status, r.json().await.unwrap_or(Value::Null)))
                        }
                        Err(_) => tokio::time::sleep(Duration::from_millis(20)).await, // refused: stopped
                    }
                }
                answers
            })
        })
        .collect();

    wait_for("the plugins to be part-way, with orders coming in", Duration::from_secs(60), || async {
        let applied = app.count("trade_mq_consumer_log", "consumer_status = 1").await;
        (applied >= 600 && placed.load(Ordering::Relaxed) >= 5).then_some(())
    })
    .await;
    let pid = host.child.id().expect("running") as libc::pid_t;
    // SAFETY: kill(2) on our own child, not yet reaped.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
    let status = tokio::time::timeout(GRACE + Duration::from_secs(10), host.child.wait())
        .await
        .expect("the host exits after SIGTERM")
        .unwrap();
    stopping.store(true, Ordering::Relaxed);
    assert!(status.success(), "{status:?}");
    let logs = std::fs::read_to_string(log.path()).unwrap();
    assert!(logs.contains("stopped cleanly"), "finished within the grace period:\n{}", &logs[logs.len().saturating_sub(3000)..]);
    let at_stop = app.count("trade_mq_consumer_log", "consumer_status = 1 AND msg_tag = 'shop.order.cancel'").await;
    assert!(at_stop < 4 * ORDERS, "stopped before the end ({at_stop} applied)");
    eprintln!("SIGTERM at ≥600 of {} applied; {at_stop} applied when the host had stopped", 4 * ORDERS);

    let mut accepted = Vec::new();
    for c in customers {
        for (status, body) in c.await.unwrap() {
            assert!(status == 201 || status == 503, "{status} {body}");
            if status == 201 {
                accepted.push(body["order_id"].as_str().unwrap().to_owned());
            }
        }
    }
    assert!(!accepted.is_empty(), "orders were placed while the plugins ran");

    let _host = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    app.assert_given_back_once(&fx, ORDERS).await;
    for id in &accepted {
        assert_eq!(app.get(&format!("/api/orders/{id}")).await.body["order_status"], 1, "accepted order {id} is confirmed");
    }
    // Every order of these goods: confirmed (its event published exactly once), or cut off
    // mid-saga and then cancelled by the sweeper's rules, or still a pre-order it will cancel.
    let goods_filter = format!("goods_id = {}", shop_fx.goods_id);
    let confirmed = app.count("trade_order", &format!("{goods_filter} AND order_status = 1")).await;
    assert!(confirmed >= accepted.len() as i64);
    assert_eq!(app.count("trade_order", &format!("{goods_filter} AND order_status NOT IN (0, 1, 2)")).await, 0);
    wait_for("the outbox to drain", Duration::from_secs(30), || async {
        (app.count("trade_mq_producer_temp", "msg_status = 0").await == 0).then_some(())
    })
    .await;
    let events = app.stream_events("shop.order.confirmed").await;
    assert_eq!(events.len() as i64, confirmed, "each confirmation published once");
}

crate::on_both_databases!(sigterm_with_events_in_flight);
