//! A three-node NATS cluster on loopback with stream SHOP at three replicas
//! (`SHOPMESH_STREAM_REPLICAS=3`): a node is killed while 500 order-cancel events are being
//! handled, and restarted. Nothing is lost or doubled: every give-back exactly once, no dead
//! letter, the outbox drains.

use std::time::Duration;

use shopmesh::{
    embedded::{Fsync, NatsServer},
    startup::Application,
};

use crate::helpers::{nats_server_bin, test_settings, wait_consumers_idle, wait_for, with_plugins, Backend, TestApp, TestDb};

const ORDERS: i64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_lost_mid_flow_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut nodes = NatsServer::start_cluster(&nats_server_bin(), dir.path(), 3, Fsync::Always).await.expect("a three-node cluster");
    let urls = nodes.iter().map(NatsServer::url).collect::<Vec<_>>().join(",");
    // The cluster has elected its JetStream leader once an R3 stream can be created.
    let probe = async_nats::jetstream::new(shopmesh::bus::connect(&urls).await.unwrap());
    wait_for("the cluster's JetStream", Duration::from_secs(30), || async {
        let config = async_nats::jetstream::stream::Config { name: "PROBE".into(), subjects: vec!["probe".into()], num_replicas: 3, ..Default::default() };
        probe.get_or_create_stream(config).await.ok().map(|_| ())
    })
    .await;

    let db = TestDb::new(Backend::Postgres).await;
    // Host A takes the orders (every confirm fails, so each ends in a cancel event); host B
    // runs the plugins. Both reach the cluster through all three URLs.
    let host = |plugins: bool, worker: u16| {
        let data = tempfile::tempdir().unwrap();
        let mut settings = test_settings(&db.url, &urls, data.path());
        settings.stream_replicas = 3;
        settings.worker_id = worker;
        if plugins {
            with_plugins(&mut settings);
        } else {
            settings.fault = Some("fail:confirm".into());
        }
        async move { (Application::build(settings).await.expect("a host builds on the cluster"), data) }
    };
    // The test's own view of the cluster: a node that stays up.
    let watch_url = nodes[1].url();
    let (orders, _a) = host(false, 11).await;
    let app = TestApp::attach(&db.url, &watch_url, &format!("http://{}", orders.address())).await;
    let replicas = probe.get_stream("SHOP").await.unwrap().info().await.unwrap().config.num_replicas;
    assert_eq!(replicas, 3, "stream SHOP has three replicas");
    let fx = app.cancelled_orders(ORDERS).await;

    let (plugins, _b) = host(true, 12).await;
    wait_for("the plugins to be part-way", Duration::from_secs(60), || async {
        (app.count("trade_mq_consumer_log", "consumer_status = 1").await >= 200).then_some(())
    })
    .await;
    // Kill a node mid-flow (the first of the hosts' list): the stream keeps its quorum and the
    // hosts reconnect to the others; it comes back and catches up.
    nodes[0].stop().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let applied_while_down = app.count("trade_mq_consumer_log", "consumer_status = 1").await;
    nodes[0].restart().await.expect("the node comes back");

    wait_consumers_idle(&watch_url, &crate::crash::ALL).await;
    app.assert_given_back_once(&fx, ORDERS).await;
    eprintln!("node n1 killed at ≥200 of {} applications, {applied_while_down} done while it was down", 4 * ORDERS);
    plugins.stop().await;
    orders.stop().await;
}
