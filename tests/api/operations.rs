//! Operating the mesh: `GET /metrics` read with a Prometheus text-format parser after the
//! README's walk-through (order, payment, signed callback); the durability guard against
//! real nats-servers of both kinds; the fleet-wide pause across two hosts.

use std::{collections::HashMap, time::Duration};

use prometheus_parse::{Sample, Scrape, Value as Metric};

use shopmesh::{bus::Fsync, startup::Application};

use crate::{
    helpers::{spawn_app_with, test_settings, wait_consumers_idle, wait_for, with_plugins, Backend, HostProcess, TestApp, TestDb, TestNats},
    hotswap::plugin_status,
};

async fn scrape(app: &TestApp) -> Scrape {
    let resp = app.http.get(format!("{}/metrics", app.address)).send().await.expect("GET /metrics");
    assert_eq!(resp.status(), 200);
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(content_type.starts_with("text/plain; version=0.0.4"), "{content_type}");
    let text = resp.text().await.unwrap();
    Scrape::parse(text.lines().map(|l| Ok(l.to_owned()))).expect("valid Prometheus text format")
}

/// The samples named `name` whose labels include all of `labels`.
fn samples<'a>(scrape: &'a Scrape, name: &str, labels: &[(&str, &str)]) -> Vec<&'a Sample> {
    scrape
        .samples
        .iter()
        .filter(|s| s.metric == name && labels.iter().all(|(k, v)| s.labels.get(k) == Some(*v)))
        .collect()
}

fn value(sample: &Sample) -> f64 {
    match &sample.value {
        Metric::Counter(v) | Metric::Gauge(v) | Metric::Untyped(v) => *v,
        other => panic!("{} is not a number: {other:?}", sample.metric),
    }
}

fn one(scrape: &Scrape, name: &str, labels: &[(&str, &str)]) -> f64 {
    match samples(scrape, name, labels).as_slice() {
        [s] => value(s),
        found => panic!("expected one {name} {labels:?}, found {}", found.len()),
    }
}

async fn metrics_after_the_walkthrough(backend: Backend) {
    let app = spawn_app_with(backend, with_plugins).await;
    let before = scrape(&app).await;
    assert!(samples(&before, "shopmesh_plugin_invocations_total", &[("plugin", "points")]).is_empty(), "nothing handled yet");

    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 2).await;
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;

    let after = scrape(&app).await;
    for plugin in ["points", "log"] {
        let applied = one(&after, "shopmesh_plugin_invocations_total", &[("plugin", plugin), ("version", "1.0.0"), ("outcome", "applied")]);
        assert!(applied >= 2.0, "{plugin} applied {applied}");
        // The handler histogram: one observation per run, and fuel counted with it.
        let runs = samples(&after, "shopmesh_plugin_handler_duration_seconds", &[("plugin", plugin), ("version", "1.0.0")]);
        let Metric::Histogram(buckets) = &runs.first().expect("a handler histogram").value else { panic!("not a histogram") };
        assert!(buckets.last().unwrap().count >= applied, "{plugin}: {buckets:?}");
        assert!(one(&after, "shopmesh_plugin_fuel_consumed_total", &[("plugin", plugin), ("version", "1.0.0")]) > 0.0);
        // Read from JetStream at scrape time: the consumer is idle.
        let consumer = format!("plugin-{plugin}");
        assert_eq!(one(&after, "jetstream_consumer_num_pending", &[("stream_name", "SHOP"), ("consumer_name", &consumer)]), 0.0);
        assert_eq!(one(&after, "jetstream_consumer_num_ack_pending", &[("consumer_name", &consumer)]), 0.0);
    }
    // Every event is sent, so the backlog is empty and has no age.
    assert_eq!(one(&after, "shopmesh_outbox_unsent_rows", &[]), 0.0);
    assert_eq!(one(&after, "shopmesh_outbox_oldest_unsent_age_seconds", &[]), 0.0);
    assert_eq!(one(&after, "shopmesh_replays_running", &[]), 0.0);
    // HTTP: by operation id and status, never by raw path.
    assert_eq!(one(&after, "http_server_requests_total", &[("route", "placeOrder"), ("status", "201")]), 2.0);
    assert_eq!(one(&after, "http_server_requests_total", &[("route", "paymentCallback"), ("status", "200")]), 2.0);
    let routes: HashMap<&str, ()> = samples(&after, "http_server_requests_total", &[]).iter().map(|s| (s.labels.get("route").unwrap(), ())).collect();
    assert!(routes.keys().all(|r| !r.contains('/') || *r == "/metrics"), "{routes:?}");
    // Five plugins were activated from the folder at start.
    assert_eq!(one(&after, "shopmesh_plugin_swaps_total", &[("plugin", "points"), ("result", "activated")]), 1.0);

    // Waiting rows show up with their age: stop NATS, place an order, scrape.
    let mut app = app;
    app.nats_mut().stop().await;
    let order = app.post("/api/orders", &fx.order(1, "150.00", "0")).await;
    assert_eq!(order.status, 201, "{:?}", order.body);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let waiting = scrape(&app).await;
    assert_eq!(one(&waiting, "shopmesh_outbox_unsent_rows", &[]), 1.0);
    assert!(one(&waiting, "shopmesh_outbox_oldest_unsent_age_seconds", &[]) >= 1.0);
}

crate::on_both_databases!(metrics_after_the_walkthrough);

/// The durability guard reads each real server's fsync setting from its monitoring
/// endpoint: a default server (fsync every two minutes) is warned about, and refused with
/// SHOPMESH_REQUIRE_SYNC_ALWAYS; a `sync_interval: always` server is accepted either way.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durability_guard_warns_and_refuses() {
    let db = TestDb::new(Backend::Sqlite).await;
    let lazy = TestNats::start_with(Fsync::Interval).await;
    let safe = TestNats::start_with(Fsync::Always).await;

    // The real binary warns in its log and serves.
    let log = tempfile::NamedTempFile::new().unwrap();
    let monitor = lazy.server.monitor_url();
    let env = [("SHOPMESH_NATS_MONITOR_URL", monitor.as_str())];
    let mut host = HostProcess::start_with(&db.url, &lazy.url(), &env, &["--log-format", "json"], Some(log.path())).await;
    let warned = std::fs::read_to_string(log.path()).unwrap();
    host.child.start_kill().unwrap();
    host.child.wait().await.unwrap();
    let line = warned.lines().find(|l| l.contains("DURABILITY")).unwrap_or_else(|| panic!("no durability warning in:\n{warned}"));
    assert!(line.contains("\"level\":\"WARN\"") && line.contains("sync_interval: always") && line.contains("2m"), "{line}");

    let build = |nats: &TestNats, monitor: Option<String>, require: bool| {
        let data = tempfile::tempdir().unwrap();
        let mut settings = test_settings(&db.url, &nats.url(), data.path());
        settings.nats_monitor_url = monitor;
        settings.require_sync_always = require;
        async move { (Application::build(settings).await, data) }
    };
    // Required: the lazy server is refused, and so is one whose setting cannot be read.
    let (refused, _) = build(&lazy, Some(lazy.server.monitor_url()), true).await;
    let why = refused.err().expect("a lazy server is refused").to_string();
    assert!(why.contains("SHOPMESH_REQUIRE_SYNC_ALWAYS") && why.contains("sync_interval: always"), "{why}");
    let (unknown, _) = build(&lazy, None, true).await;
    assert!(unknown.err().expect("an unverifiable server is refused").to_string().contains("cannot tell"));
    // The safe server is accepted, with the requirement on.
    let (accepted, _) = build(&safe, Some(safe.server.monitor_url()), true).await;
    let app = accepted.expect("a sync-always server is accepted");
    app.stop().await;
}

/// Two hosts share Postgres and NATS. Disabling points through host A's API pauses it on
/// host B too (nothing applies it anywhere while events arrive); enabling it through B
/// resumes it everywhere, and every waiting event is applied once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_on_one_host_pauses_the_fleet() {
    let a = spawn_app_with(Backend::Postgres, with_plugins).await;
    let dir = crate::helpers::plugins_dir().display().to_string();
    let b = HostProcess::start(&a.db_url, &a.nats_url, &[("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_WORKER_ID", "8")]).await;
    let switch = |host: &str, action: &str| {
        let url = format!("{host}/api/admin/plugins/points/{action}");
        let req = a.http.post(url).bearer_auth(crate::helpers::ADMIN_TOKEN);
        async move { req.send().await.unwrap() }
    };

    let disabled = switch(&a.address, "disable").await;
    assert_eq!(disabled.status(), 200);
    wait_for("host B to follow the switch", Duration::from_secs(10), || async {
        (plugin_status(&a, &b.address, "points").await["enabled"] == false).then_some(())
    })
    .await;

    let fx = a.fixture(10, "150.00", "0.00", None).await;
    for _ in 0..3 {
        a.pay_order(&fx, "150.00").await;
    }
    a.wait_events("shop.pay.success", 3).await;
    wait_consumers_idle(&a.nats_url, &["log"]).await;
    let points_rows = || a.count("trade_mq_consumer_log", "group_name = 'points' AND consumer_status = 1");
    assert_eq!(points_rows().await, 0, "points paused on both hosts");
    assert_eq!(a.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 0);
    assert_eq!(a.count("trade_mq_consumer_log", "group_name = 'log' AND consumer_status = 1 AND msg_tag = 'shop.pay.success'").await, 3, "log runs on");

    let enabled = switch(&b.address, "enable").await;
    assert_eq!(enabled.status(), 200);
    assert_eq!(plugin_status(&a, &a.address, "points").await["enabled"], true, "host A follows B's enable");
    wait_consumers_idle(&a.nats_url, &["points"]).await;
    assert_eq!(points_rows().await, 3, "each waiting event applied once");
    assert_eq!(a.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 3 * 150, "points 1.0.0: one point per 1.00 paid");
}
