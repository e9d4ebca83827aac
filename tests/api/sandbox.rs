//! A plugin cannot hurt the host: every limit is tested as a pair with a real guest
//! component (Spin's obeyed/violated style). A violation is a recorded failure, retried,
//! then dead-lettered with its reason; the host and the other plugins keep working; after
//! the plugin is replaced, redrive applies the event exactly once.

use std::time::Duration;

use serde_json::json;
use shopmesh::{config::Settings, plugins::{runtime::LoadError, InstallError}};

use crate::helpers::{component, spawn_app_with, wait_consumers_idle, with_plugins, Backend, TestApp, ADMIN_TOKEN};

const MAX_ATTEMPTS: i64 = 3;

/// An app whose `points` plugin is the rogue guest in `mode`; pays one 150.00 order.
async fn rogue_pays_once(mode: &str, tweak: impl FnOnce(&mut Settings)) -> (TestApp, String) {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_plugins(s);
        s.plugin_max_attempts = MAX_ATTEMPTS;
        s.plugin_config.0.insert("points".into(), [("mode".to_string(), mode.to_string())].into());
        tweak(s);
    })
    .await;
    let rogue = app.registry().install("points", &component("rogue")).expect("the rogue guest is a valid plugin");
    assert_eq!(rogue.version(), "0.0.1-rogue");

    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    // In the stream first: only then does an idle consumer mean a handled event.
    app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &["points", "log"]).await;
    (app, fx.user_id)
}

async fn score(app: &TestApp, user_id: &str) -> i64 {
    app.get(&format!("/api/users/{user_id}")).await.body["user_score"].as_i64().unwrap()
}

async fn obeyed(mode: &str, tweak: impl FnOnce(&mut Settings)) {
    let (app, user) = rogue_pays_once(mode, tweak).await;
    assert_eq!(score(&app, &user).await, 150, "{mode}: points added");
    assert_eq!(app.count("shop_dead_letter", "").await, 0, "{mode}");
}

async fn violated(mode: &str, reason: &str, tweak: impl FnOnce(&mut Settings)) {
    let (app, user) = rogue_pays_once(mode, tweak).await;
    let auth = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];

    // Recorded, retried, dead-lettered with a readable reason.
    let letters = app.request(reqwest::Method::GET, "/api/admin/dead-letters?plugin=points", None, &auth).await.body;
    let letters = letters.as_array().unwrap();
    assert_eq!(letters.len(), 1, "{mode}: {letters:?}");
    assert_eq!(letters[0]["attempts"], MAX_ATTEMPTS, "{mode}");
    let why = letters[0]["reason"].as_str().unwrap();
    assert!(why.contains(reason), "{mode}: reason {why:?} should mention {reason:?}");
    assert!(!why.contains("backtrace") && !why.contains('\n'), "{mode}: one line, without wasmtime's backtrace: {why:?}");
    // The order's timeline says its retries are over, not that it is still failing.
    let letter = app.request(reqwest::Method::GET, &format!("/api/admin/dead-letters/{}", letters[0]["id"].as_str().unwrap()), None, &auth).await.body;
    let event: serde_json::Value = serde_json::from_str(letter["event"].as_str().unwrap()).unwrap();
    let order_id = event["data"]["order_id"].as_str().unwrap();
    let timeline = app.request(reqwest::Method::GET, &format!("/api/admin/orders/{order_id}/timeline"), None, &auth).await.body;
    let points = timeline["events"].as_array().unwrap().iter().flat_map(|e| e["handled"].as_array().unwrap()).find(|h| h["plugin"] == "points").cloned();
    assert_eq!(points.as_ref().map(|p| &p["state"]), Some(&json!("dead-lettered")), "{mode}: {timeline}");
    assert_eq!(app.count("trade_mq_consumer_log", &format!("group_name = 'points' AND consumer_status = 2 AND consumer_times = {MAX_ATTEMPTS}")).await, 1);
    assert_eq!(score(&app, &user).await, 0, "{mode}: nothing applied");

    // The other plugin and the host carry on.
    assert_eq!(app.count("shop_audit_log", "kind = 'paid'").await, 1, "{mode}: log plugin unaffected");
    let fx = app.fixture(1, "10.00", "0.00", None).await;
    assert_eq!(app.post("/api/orders", &fx.order(1, "10.00", "0")).await.status, 201, "{mode}: host still serves");

    // Fix the plugin, redrive: applied once; a second redrive finds nothing to do.
    app.registry().install("points", &component("points")).unwrap();
    let redriven = app.request(reqwest::Method::POST, "/api/admin/plugins/points/redrive", None, &auth).await;
    assert_eq!(redriven.body[0]["result"], "applied", "{mode}: {:?}", redriven.body);
    assert_eq!(score(&app, &user).await, 150, "{mode}: applied after the fix");
    let again = app.request(reqwest::Method::POST, "/api/admin/plugins/points/redrive", None, &auth).await;
    assert_eq!(again.body, json!([]), "{mode}");
    let nobody = app.request(reqwest::Method::POST, "/api/admin/plugins/nosuch/redrive", None, &auth).await;
    assert_eq!((nobody.status, nobody.code()), (404, "SHOP_PLUGIN_NOT_FOUND"), "{mode}");
    let id = letters[0]["id"].as_str().unwrap();
    let one = app.request(reqwest::Method::POST, &format!("/api/admin/dead-letters/{id}/redrive"), None, &auth).await;
    assert_eq!((one.status, one.code()), (404, "SHOP_DEAD_LETTER_NOT_FOUND"));
    assert_eq!(score(&app, &user).await, 150, "{mode}: once");
}

fn unlimited_fuel_short_deadline(s: &mut Settings) {
    s.plugin_fuel = u64::MAX / 4;
    s.plugin_deadline = Duration::from_millis(200);
}

fn little_fuel_long_deadline(s: &mut Settings) {
    s.plugin_fuel = 5_000_000;
    s.plugin_deadline = Duration::from_secs(10);
    s.plugin_ack_wait = Duration::from_secs(60);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_obeyed() {
    obeyed("spin-briefly", unlimited_fuel_short_deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deadline_violated() {
    violated("spin", "deadline exceeded", unlimited_fuel_short_deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_obeyed() {
    obeyed("spin-briefly", little_fuel_long_deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fuel_violated() {
    violated("spin", "fuel exhausted", little_fuel_long_deadline).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_obeyed() {
    obeyed("grow-a-little", |s| s.plugin_memory_mib = 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memory_violated() {
    violated("grow", "memory", |s| s.plugin_memory_mib = 8).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_obeyed() {
    obeyed("ok", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trap_violated() {
    // The guest's own panic message, as the SDK's panic handler hands it over.
    violated("trap", "rogue trap", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_obeyed() {
    obeyed("ok", |_| {}).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn capability_violated() {
    violated("overreach", "points did not declare capability refund-balance", |_| {}).await;
}

/// The points cap holds for an event's effects together: two awards of the whole cap are
/// refused as one, though each alone would pass.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn points_cap_violated() {
    violated("points-twice", "add-points of the event together (at most 1000 a whole 1.00 paid): 300000 is outside 1..=150000", |_| {}).await;
}

/// A guest whose every read needs the one before (order, then its user, goods, steps) on a
/// version that has learned nothing yet: its snapshot gains a part a round until it holds
/// all the guest reads, and the event applies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_reads_obeyed() {
    obeyed("read-chain", |_| {}).await;
}

/// Components that do not fit are refused at load, and the running version stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_components_of_the_world_with_only_host_imports_load() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let host = app.registry();
    let running = host.current("points").unwrap().sha256.clone();

    let wrong = host.install("points", &component("wrong_world")).err().expect("wrong world refused");
    assert!(matches!(wrong, InstallError::Load(LoadError::World(_))), "{wrong}");
    let extra = host.install("points", &component("extra_import")).err().expect("extra import refused");
    assert!(matches!(&extra, InstallError::Load(LoadError::ForbiddenImport(i)) if i.contains("test:extra/clock")), "{extra}");
    let junk = host.install("points", b"\0asm not really").err().expect("junk refused");
    assert!(matches!(junk, InstallError::Load(LoadError::Compile(_))), "{junk}");
    // Right world, wrong name: the stock component cannot pose as points.
    let posing = host.install("points", &component("stock")).err().expect("name mismatch refused");
    assert!(matches!(posing, InstallError::Load(LoadError::NameMismatch { .. })), "{posing}");
    // A name that may not hold the capability its manifest declares.
    let greedy = host.install("stock", &component("rogue")).err().expect("refused");
    assert!(matches!(greedy, InstallError::Load(LoadError::NameMismatch { .. } | LoadError::CapabilityNotAllowed { .. })), "{greedy}");
    assert_eq!(host.current("points").unwrap().sha256, running, "the running version is untouched");

    // The obeyed side: the real component of the world loads.
    assert!(host.install("points", &component("points")).is_ok());
}

/// A batch that outlasts ack_wait (its events run one after another, each up to the
/// deadline) is kept in progress with JetStream: every event is delivered once, not handed
/// out again while it still runs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_longer_than_ack_wait_is_delivered_once() {
    const EVENTS: i64 = 24;
    let app = spawn_app_with(Backend::Sqlite, |s| {
        s.plugin_max_attempts = 1;
        s.plugin_fuel = u64::MAX / 4;
        s.plugin_deadline = Duration::from_millis(100); // a spin lasts this long
        s.plugin_ack_wait = Duration::from_millis(1600); // the batch takes 24 deadlines
        s.plugin_config.0.insert("points".into(), [("mode".to_string(), "spin".to_string())].into());
    })
    .await;
    for _ in 0..EVENTS {
        let fx = app.fixture(5, "150.00", "0.00", None).await;
        app.pay_order(&fx, "150.00").await;
    }
    app.wait_events("shop.pay.success", EVENTS as usize).await;
    // Only now a points plugin: its new consumer finds the whole backlog at once.
    app.registry().install("points", &component("rogue")).unwrap();
    crate::helpers::wait_for("every event dead-lettered", Duration::from_secs(60), || async {
        (app.count("shop_dead_letter", "plugin = 'points'").await >= EVENTS).then_some(())
    })
    .await;
    wait_consumers_idle(&app.nats_url, &["points"]).await;
    let js = async_nats::jetstream::new(async_nats::connect(&app.nats_url).await.unwrap());
    let mut consumer: async_nats::jetstream::consumer::PullConsumer = js.get_stream("SHOP").await.unwrap().get_consumer("plugin-points").await.unwrap();
    let delivered = consumer.info().await.unwrap().delivered.consumer_sequence;
    assert_eq!(delivered, EVENTS as u64, "each event delivered once");
    assert_eq!(app.count("shop_dead_letter", "plugin = 'points' AND attempts = 1").await, EVENTS);
}

/// Redeliveries while a plugin is disabled are not failed attempts: once enabled, a failing
/// plugin still gets all its attempts before the event is dead-lettered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attempts_are_the_plugins_failures_not_redeliveries() {
    let app = spawn_app_with(Backend::Sqlite, |s| {
        with_plugins(s);
        s.plugin_max_attempts = MAX_ATTEMPTS;
        s.plugin_config.0.insert("points".into(), [("mode".to_string(), "trap".to_string())].into());
    })
    .await;
    app.registry().install("points", &component("rogue")).unwrap();
    app.registry().set_enabled("points", false);
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    // Disabled: delivered and handed back again and again (every 0.2 s here).
    let client = async_nats::connect(&app.nats_url).await.unwrap();
    let stream = async_nats::jetstream::new(client).get_stream("SHOP").await.unwrap();
    crate::helpers::wait_for("several redeliveries while disabled", std::time::Duration::from_secs(20), || {
        let stream = stream.clone();
        async move {
            let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer("plugin-points").await.ok()?;
            let info = consumer.info().await.ok()?;
            (info.num_redelivered >= 1 && info.delivered.consumer_sequence > MAX_ATTEMPTS as u64).then_some(())
        }
    })
    .await;
    assert_eq!(app.count("trade_mq_consumer_log", "group_name = 'points'").await, 0, "no attempt while disabled");

    app.registry().set_enabled("points", true);
    wait_consumers_idle(&app.nats_url, &["points"]).await;
    let letters = app.count("shop_dead_letter", &format!("plugin = 'points' AND attempts = {MAX_ATTEMPTS}")).await;
    assert_eq!(letters, 1, "dead-lettered after exactly {MAX_ATTEMPTS} real attempts");
    assert_eq!(
        app.count("trade_mq_consumer_log", &format!("group_name = 'points' AND consumer_status = 2 AND consumer_times = {MAX_ATTEMPTS}")).await,
        1
    );
}
