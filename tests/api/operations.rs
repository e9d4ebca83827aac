//! Operating the mesh: `GET /metrics` read with a Prometheus text-format parser after the
//! README's walk-through (order, payment, signed callback); the durability guard against
//! real nats-servers of both kinds; the fleet-wide pause across two hosts; one trace from
//! the payment callback to the points plugin, in the logs and at an OTLP collector.

use std::{collections::HashMap, time::Duration};

use prometheus_parse::{Sample, Scrape, Value as Metric};

use shopmesh::{embedded::Fsync, startup::Application};

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
    // A poison event: the guard dead-letters it, and the open dead letters show it.
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    async_nats::jetstream::new(client).publish("shop.typo", "not an event".into()).await.unwrap().await.unwrap();
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;
    wait_for("the guard's dead letter", Duration::from_secs(10), || async { (app.count("shop_dead_letter", "").await == 1).then_some(()) }).await;

    let after = scrape(&app).await;
    assert_eq!(one(&after, "shopmesh_dead_letters_open", &[("plugin", "shopmesh-guard")]), 1.0);
    assert_eq!(one(&after, "shopmesh_dead_letters_open", &[("plugin", "points")]), 0.0, "a series for every plugin it runs");
    dashboard_reads_only_served_metrics(&after);
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

/// Every metric the Grafana dashboard in deploy/ queries is one the host serves: seen in
/// `scrape`, or one whose series exist only while a replay runs.
fn dashboard_reads_only_served_metrics(scrape: &Scrape) {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/dashboards/shopmesh.json");
    let dashboard: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let mut exprs = Vec::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().into_iter().flatten() {
            exprs.push(target["expr"].as_str().unwrap().to_owned());
        }
    }
    assert!(exprs.len() >= 10, "{exprs:?}");
    let names = regex::Regex::new(r"\b(?:shopmesh|jetstream|http_server)_[a-z_]+\b").unwrap();
    let served = |family: &str| scrape.samples.iter().any(|s| s.metric == family);
    let only_while_replaying = ["shopmesh_replay_processed_events", "shopmesh_replay_planned_events"];
    for expr in &exprs {
        for name in names.find_iter(expr) {
            // A histogram's series are named <family>_bucket / _sum / _count.
            let family = ["_bucket", "_sum", "_count"].iter().find_map(|s| name.as_str().strip_suffix(s)).unwrap_or(name.as_str());
            let served = served(family) || served(&format!("{family}_count")) || only_while_replaying.contains(&family);
            assert!(served, "the dashboard queries {family}, which /metrics does not serve ({expr})");
        }
    }
}

crate::on_both_databases!(metrics_after_the_walkthrough);

/// A plugin version that fails reads as failing where an operator looks, not as busier:
/// the overview counts its failed attempts apart from the events it handled, and a redrive
/// (failed again, then applied after the rollback) is counted in the metrics as the live
/// path counts; the overview says when the host has lost NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_plugin_reads_as_failing_and_its_recovery_is_counted() {
    let mut app = spawn_app_with(Backend::Sqlite, |s| {
        with_plugins(s);
        s.plugin_max_attempts = 3;
        s.plugin_retry_base = Duration::from_millis(100);
        s.plugin_retry_max = Duration::from_millis(200);
        // Read only by the rogue guest: it traps on every event.
        s.plugin_config.0.insert("points".into(), [("mode".to_string(), "trap".to_string())].into());
    })
    .await;
    app.registry().install("points", &crate::helpers::component("rogue")).unwrap();
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;

    let points = |o: &serde_json::Value| o["plugins"].as_array().unwrap().iter().find(|p| p["name"] == "points").unwrap().clone();
    let failing = wait_for("points failing in the overview", Duration::from_secs(30), || async {
        let p = points(&app.admin(reqwest::Method::GET, "/api/admin/overview", None).await.body);
        (p["failures_per_second"].as_f64() > Some(0.0) && p["fleet_failures_per_second"].as_f64() > Some(0.0)).then_some(p)
    })
    .await;
    assert_eq!(failing["events_per_second"].as_f64(), Some(0.0), "a failed attempt is not an event handled: {failing}");
    assert!(failing["recent_failure_rates"].as_array().unwrap().iter().any(|r| r.as_f64() > Some(0.0)), "{failing}");
    let letter = wait_for("the dead letter", Duration::from_secs(30), || async {
        let letters = app.admin(reqwest::Method::GET, "/api/admin/dead-letters?plugin=points", None).await.body;
        letters.as_array().and_then(|l| l.first()).map(|l| l["id"].as_str().unwrap().to_owned())
    })
    .await;
    let counted = |scrape: &Scrape, version: &str, outcome: &str| {
        samples(scrape, "shopmesh_plugin_invocations_total", &[("plugin", "points"), ("version", version), ("outcome", outcome)]).first().map(|s| value(s))
    };
    let redrive = format!("/api/admin/dead-letters/{letter}/redrive");
    let again = app.admin_post(&redrive, &serde_json::json!({})).await.body;
    assert_eq!(again["closed"], false, "{again}");
    assert_eq!(counted(&scrape(&app).await, "0.0.1-rogue", "redrive_failed"), Some(1.0));
    app.registry().activate("points", "1.0.0").unwrap();
    let applied = app.admin_post(&redrive, &serde_json::json!({})).await.body;
    assert_eq!((&applied["closed"], &applied["result"]), (&serde_json::json!(true), &serde_json::json!("applied")), "{applied}");
    assert_eq!(counted(&scrape(&app).await, "1.0.0", "applied"), Some(1.0), "the redrive is the only event points 1.0.0 ran");
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150, "its points, once");

    let connected = app.admin(reqwest::Method::GET, "/api/admin/overview", None).await.body;
    assert_eq!(connected["nats_connected"], true, "{connected}");
    app.nats_mut().stop().await;
    let lost = wait_for("the overview to say NATS is lost", Duration::from_secs(15), || async {
        let o = app.admin(reqwest::Method::GET, "/api/admin/overview", None).await.body;
        (o["nats_connected"] == false).then_some(o)
    })
    .await;
    assert_eq!(lost["hosts"], serde_json::json!([]), "{lost}");
}

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

/// Two hosts of a fleet with one SHOPMESH_WORKER_ID make colliding ids: each calls the
/// other out in its log; a host with its own id does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_with_the_same_worker_id_is_called_out() {
    let a = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let logs = tempfile::tempdir().unwrap();
    let (same, own) = (logs.path().join("same.log"), logs.path().join("own.log"));
    let _same = HostProcess::start_with(&a.db_url, &a.nats_url, &[("SHOPMESH_WORKER_ID", "1")], &[], Some(&same)).await;
    let _own = HostProcess::start_with(&a.db_url, &a.nats_url, &[("SHOPMESH_WORKER_ID", "9")], &[], Some(&own)).await;
    let said = "another host runs with this host's SHOPMESH_WORKER_ID";
    wait_for("the host with worker id 1 to call the other out", Duration::from_secs(30), || async {
        std::fs::read_to_string(&same).ok().filter(|log| log.contains(said)).map(|_| ())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(11)).await; // two more rounds of the roll call
    let log = std::fs::read_to_string(&same).unwrap();
    assert_eq!(log.matches(said).count(), 1, "once, not every few seconds: {log}");
    assert!(log.contains(&a.address), "names the other host: {log}");
    let log = std::fs::read_to_string(&own).unwrap();
    assert!(!log.contains(said) && log.contains("shopmesh ready"), "{log}");
}

/// One trace from the payment callback to the points plugin's applied effects: the
/// answer's `traceparent`, the request's log line, the event's CloudEvent attribute and
/// NATS header, and the plugin host's "applied" line for points all share one trace id; a
/// caller's own `traceparent` is continued, not replaced.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_trace_from_callback_to_points() {
    let app = spawn_app_with(Backend::Postgres, |_| {}).await;
    let dir = crate::helpers::plugins_dir().display().to_string();
    let log = tempfile::NamedTempFile::new().unwrap();
    let host = HostProcess::start_with(&app.db_url, &app.nats_url, &[("SHOPMESH_PLUGINS_DIR", dir.as_str())], &["--log-format", "json"], Some(log.path())).await;
    let fx = app.fixture(5, "150.00", "0.00", None).await;

    // Two paid orders: one callback without a trace, one inside the caller's trace.
    let caller = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut traces = Vec::new();
    for given in [None, Some(caller)] {
        let order = app.post("/api/orders", &fx.order(1, "150.00", "0")).await;
        let pay = app.post("/api/payments", &serde_json::json!({"order_id": order.body["order_id"], "pay_amount": "150.00"})).await;
        let body = serde_json::json!({ "pay_id": pay.body["pay_id"], "pay_amount": "150.00", "is_paid": 2 }).to_string();
        let sig = shopmesh::signature::sign(crate::helpers::CALLBACK_SECRET.as_bytes(), shopmesh::ids::now_ms() / 1000, body.as_bytes());
        let mut req = app.http.post(format!("{}/api/payments/callback", host.address)).header("content-type", "application/json").header("X-Shop-Signature", sig);
        if let Some(t) = given {
            req = req.header("traceparent", t);
        }
        let resp = req.body(body).send().await.unwrap();
        assert_eq!(resp.status(), 200, "{order:?} {pay:?}");
        let answered = resp.headers()["traceparent"].to_str().unwrap().to_owned();
        let trace_id = answered.split('-').nth(1).unwrap().to_owned();
        if let Some(t) = given {
            assert_eq!(trace_id, t.split('-').nth(1).unwrap(), "the caller's trace continues");
            assert_ne!(answered, t, "in a span of its own");
        }
        traces.push((order.body["order_id"].as_str().unwrap().to_owned(), trace_id));
    }
    assert_ne!(traces[0].1, traces[1].1);
    app.wait_events("shop.pay.success", 2).await;
    wait_consumers_idle(&app.nats_url, &["points"]).await;

    // The stream: each event carries its request's trace in the CloudEvent and the header.
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let stream = js.get_stream("SHOP").await.unwrap();
    let info = stream.get_info().await.unwrap();
    let mut seen = 0;
    for seq in info.state.first_sequence..=info.state.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else { continue };
        if msg.subject.as_str() != "shop.pay.success" {
            continue;
        }
        let event: serde_json::Value = serde_json::from_slice(&msg.payload).unwrap();
        let (_, trace_id) = traces.iter().find(|(o, _)| event["data"]["order_id"] == *o).expect("one of ours");
        let header = msg.headers.get("traceparent").expect("a traceparent header").as_str().to_owned();
        // The CloudEvent: the request's context; the header: the relay's publish, its child.
        let attribute = event["traceparent"].as_str().expect("the CloudEvent's traceparent");
        assert_eq!(header.split('-').nth(1), Some(trace_id.as_str()));
        assert_eq!(attribute.split('-').nth(1), Some(trace_id.as_str()));
        assert_ne!(attribute, header);
        seen += 1;
    }
    assert_eq!(seen, 2);

    // The host's JSON log: the callback's request line and points' applied line, one trace.
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(log.path()).unwrap().lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    for (_, trace_id) in &traces {
        let ours = |l: &&serde_json::Value| l["trace_id"] == trace_id.as_str();
        assert!(lines.iter().filter(ours).any(|l| l["message"] == "request" && l["path"] == "/api/payments/callback"), "the request line of {trace_id}");
        let applied: Vec<_> = lines.iter().filter(ours).filter(|l| l["message"] == "event handled" && l["outcome"] == "applied").collect();
        assert!(applied.iter().any(|l| l["plugin"] == "points" && l["version"] == "1.0.0" && l["event"].is_string()), "points applied in trace {trace_id}: {applied:?}");
    }
}

/// A span as an OTLP collector receives it.
#[derive(Debug, Clone)]
struct Exported {
    trace_id: String,
    span_id: String,
    parent: String,
    name: String,
    attributes: HashMap<String, String>,
}

/// A minimal OTLP/HTTP collector on loopback: decodes every export request it is sent.
async fn collector() -> (String, std::sync::Arc<std::sync::Mutex<Vec<Exported>>>) {
    use opentelemetry_proto::tonic::{collector::trace::v1::ExportTraceServiceRequest, common::v1::any_value::Value as Any};
    use prost::Message;
    let spans = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = spans.clone();
    let endpoint = poem::endpoint::make(move |req: poem::Request| {
        let store = store.clone();
        async move {
            let body = req.into_body().into_bytes().await.unwrap();
            let export = ExportTraceServiceRequest::decode(body).expect("an OTLP protobuf export request");
            for span in export.resource_spans.iter().flat_map(|r| &r.scope_spans).flat_map(|s| &s.spans) {
                let attributes = span
                    .attributes
                    .iter()
                    .map(|kv| {
                        let value = match kv.value.as_ref().and_then(|v| v.value.as_ref()) {
                            Some(Any::StringValue(s)) => s.clone(),
                            Some(Any::IntValue(i)) => i.to_string(),
                            other => format!("{other:?}"),
                        };
                        (kv.key.clone(), value)
                    })
                    .collect();
                store.lock().unwrap().push(Exported {
                    trace_id: hex::encode(&span.trace_id),
                    span_id: hex::encode(&span.span_id),
                    parent: hex::encode(&span.parent_span_id),
                    name: span.name.clone(),
                    attributes,
                });
            }
            poem::Response::builder().content_type("application/x-protobuf").body(Vec::<u8>::new())
        }
    });
    let listener = poem::listener::TcpListener::bind("127.0.0.1:0");
    let acceptor = poem::listener::Listener::into_acceptor(listener).await.unwrap();
    let port = poem::listener::Acceptor::local_addr(&acceptor)[0].as_socket_addr().unwrap().port();
    tokio::spawn(poem::Server::new_with_acceptor(acceptor).run(poem::Route::new().at("/v1/traces", poem::post(endpoint))));
    (format!("http://127.0.0.1:{port}"), spans)
}

/// With an OTLP endpoint configured, the payment callback's trace reaches a collector as
/// spans: the request (server), the relay's publish (producer), points processing the
/// event (consumer, messaging attributes), and in it the invocation and the effects' commit,
/// each the child of the one before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_are_exported_over_otlp() {
    let (endpoint, spans) = collector().await;
    let db = TestDb::new(Backend::Postgres).await;
    let nats = TestNats::start().await;
    let dir = crate::helpers::plugins_dir().display().to_string();
    let env = [("SHOPMESH_PLUGINS_DIR", dir.as_str()), ("SHOPMESH_OTLP_ENDPOINT", endpoint.as_str()), ("OTEL_BSP_SCHEDULE_DELAY", "100")];
    let host = HostProcess::start(&db.url, &nats.url(), &env).await;
    let app = TestApp::attach(&db.url, &nats.url(), &host.address).await;
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    let order = app.post("/api/orders", &fx.order(1, "150.00", "0")).await;
    let pay = app.post("/api/payments", &serde_json::json!({"order_id": order.body["order_id"], "pay_amount": "150.00"})).await;
    let body = serde_json::json!({ "pay_id": pay.body["pay_id"], "pay_amount": "150.00", "is_paid": 2 }).to_string();
    let sig = shopmesh::signature::sign(crate::helpers::CALLBACK_SECRET.as_bytes(), shopmesh::ids::now_ms() / 1000, body.as_bytes());
    let resp = app.http.post(format!("{}/api/payments/callback", host.address)).header("content-type", "application/json").header("X-Shop-Signature", sig).body(body).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let trace_id = resp.headers()["traceparent"].to_str().unwrap().split('-').nth(1).unwrap().to_owned();

    // The span of this trace named `name`, under `parent` when given, for `plugin` when given.
    let find_for = |name: &str, parent: Option<&str>, plugin: Option<&str>| {
        let spans = spans.lock().unwrap();
        spans
            .iter()
            .find(|s| {
                s.trace_id == trace_id
                    && s.name == name
                    && parent.is_none_or(|p| s.parent == p)
                    && plugin.is_none_or(|p| s.attributes.get("shopmesh.plugin").map(String::as_str) == Some(p))
            })
            .cloned()
    };
    let find = |name: &str, parent: Option<&str>| find_for(name, parent, None);
    let dump = || format!("{:#?}", spans.lock().unwrap().iter().filter(|s| s.trace_id == trace_id).collect::<Vec<_>>());
    let chain = || {
        let request = find("POST paymentCallback", None)?;
        let publish = find("publish shop.pay.success", Some(&request.span_id))?;
        let process = find_for("process shop.pay.success", Some(&publish.span_id), Some("points"))?;
        let invoke = find("invoke points", Some(&process.span_id))?;
        let commit = find("commit effects", Some(&process.span_id))?;
        Some((request, process, invoke, commit))
    };
    let arrived = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            if let Some(found) = chain() {
                return found;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    let (request, process, invoke, commit) = arrived.await.unwrap_or_else(|_| panic!("the callback's spans never all arrived; of its trace:\n{}", dump()));
    assert_eq!(request.attributes["http.response.status_code"], "200");
    assert_eq!(request.attributes["http.route"], "paymentCallback");
    assert_eq!(process.attributes["messaging.system"], "nats");
    assert_eq!(process.attributes["messaging.destination.name"], "shop.pay.success");
    assert_eq!(process.attributes["messaging.consumer.group.name"], "plugin-points");
    assert_eq!(process.attributes["shopmesh.plugin.version"], "1.0.0");
    assert!(invoke.attributes["shopmesh.fuel"].parse::<i64>().unwrap() > 0);
    assert_eq!(commit.attributes["shopmesh.effects"], "1", "add-points");
}
