//! 1,000 order-cancel events; the host running the plugins is killed (SIGKILL) mid-way and
//! restarted. Every give-back must be applied exactly once: the inbox row commits with the
//! effects, so whatever the kill interrupted is either wholly done or wholly redone.

use std::time::Duration;

use crate::helpers::{plugins_dir, spawn_app_with, wait_consumers_idle, wait_for, Backend, HostProcess};

pub const ORDERS: i64 = 1000;
pub const ALL: [&str; 5] = ["stock", "coupon", "balance", "points", "log"];

async fn thousand_cancels_with_a_killed_host(backend: Backend) {
    // This host takes the orders (every confirm fails, so each ends in a cancel event) and
    // runs no plugins; the plugins run in a separate process that we kill.
    let app = spawn_app_with(backend, |s| s.fault = Some("fail:confirm".into())).await;
    let fx = app.cancelled_orders(ORDERS).await;

    let plugins = plugins_dir().display().to_string();
    // Batches of 16, not 256: the kill must land part-way, and at full batches the host can
    // apply the last 3,400 between two looks at the count (it once did, on SQLite).
    let env = [("SHOPMESH_PLUGINS_DIR", plugins.as_str()), ("SHOPMESH_DEMO_DATA", "false"), ("SHOPMESH_PLUGIN_BATCH", "16")];
    let mut host = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    wait_for("the plugins to be part-way", Duration::from_secs(60), || async {
        let applied = app.count("trade_mq_consumer_log", "consumer_status = 1").await;
        (applied >= 600).then_some(())
    })
    .await;
    host.child.start_kill().expect("SIGKILL");
    host.child.wait().await.unwrap();
    let at_kill = app.count("trade_mq_consumer_log", "consumer_status = 1").await;
    assert!(at_kill < 4 * ORDERS, "killed before the end ({at_kill} applied)");

    let _host = HostProcess::start(&app.db_url, &app.nats_url, &env).await;
    wait_consumers_idle(&app.nats_url, &ALL).await;
    app.assert_given_back_once(&fx, ORDERS).await;
}

crate::on_both_databases!(thousand_cancels_with_a_killed_host);
