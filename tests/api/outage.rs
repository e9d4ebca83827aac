//! NATS down: the API keeps working, events wait in the outbox, and every one reaches the
//! stream exactly once when NATS is back; meanwhile /readyz says 503 and why, /healthz 200.

use std::collections::HashSet;

use futures::future::join_all;

use std::time::Duration;

use crate::helpers::{
    component, nats_server_bin, spawn_app, spawn_app_with, test_settings, wait_for, with_plugins, Backend, TestApp, TestDb,
};

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
    // A pause is refused alike, and says what it was.
    let paused = app.admin(reqwest::Method::POST, "/api/admin/plugins/points/disable", None).await;
    assert_eq!((paused.status, paused.code()), (503, "SHOP_PLUGIN_NOT_DISTRIBUTED"), "{:?}", paused.body);
    let said = paused.body["message"].as_str().unwrap();
    assert!(said.starts_with("the fleet's registry did not take it: ") && !said.contains("activated"), "{said}");
    assert_eq!(app.admin(reqwest::Method::GET, "/api/admin/plugins/points", None).await.body["enabled"], true, "still running");

    app.nats_mut().restart().await.expect("nats restarts");
    readyz_becomes(&app, 200, true).await;
    let staged = app.upload("points", component("points_v2"), "?activate=false").await;
    assert_eq!(staged.status, 200, "{:?}", staged.body);
    assert_eq!(versions(&app).await, ["1.0.0", "2.0.0"]);
}

/// NATS back without its store (a volume lost): the fleet's buckets are made anew, and the
/// host follows the new ones (its watches went on from their places in the old streams, and
/// missed every change until the new ones passed them: an activation was "not active here").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_fleet_is_followed_after_nats_lost_its_store() {
    let mut app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    // History in both buckets, so that the new streams start below where the watches stood.
    for (name, file) in [("points", "points_v2"), ("log", "log_v2")] {
        let staged = app.upload(name, component(file), "?activate=false").await;
        assert_eq!(staged.status, 200, "{:?}", staged.body);
    }
    for action in ["disable", "enable", "disable", "enable", "disable"] {
        assert_eq!(app.admin(reqwest::Method::POST, &format!("/api/admin/plugins/log/{action}"), None).await.status, 200);
    }
    app.nats_mut().stop().await;
    std::fs::remove_dir_all(app.nats_mut().store().join("jetstream")).expect("the store is there");
    app.nats_mut().restart().await.expect("nats restarts");
    readyz_becomes(&app, 200, true).await;

    let activated = app.admin(reqwest::Method::POST, "/api/admin/plugins/points/activate", Some(&serde_json::json!({"version": "2.0.0"}))).await;
    assert_eq!(activated.status, 200, "followed through the new registry: {:?}", activated.body);
    assert_eq!(activated.body["active_version"], "2.0.0");
    let paused = app.admin(reqwest::Method::POST, "/api/admin/plugins/points/disable", None).await;
    assert_eq!((paused.status, &paused.body["enabled"]), (200, &serde_json::json!(false)), "followed through the new switches: {:?}", paused.body);
    // log was paused in the lost bucket; the new one holds no pause for it, as a host started
    // now would read: running again here too.
    wait_for("log to follow the new switches", Duration::from_secs(10), || async {
        (app.admin(reqwest::Method::GET, "/api/admin/plugins/log", None).await.body["enabled"] == true).then_some(())
    })
    .await;
}

/// The nats-server a host started for itself (no NATS URL configured) is started again when
/// it dies, here killed from outside: an order placed meanwhile reaches the stream without a
/// restart of the host, and the server stops with the host.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_nats_server_is_started_again_when_it_dies() {
    let db = TestDb::new(Backend::Sqlite).await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&db.url, "", data.path());
    settings.nats_url = None;
    settings.nats_server_bin = Some(nats_server_bin());
    let host = shopmesh::startup::Application::build(settings).await.expect("the host starts");
    let app = TestApp::attach(&db.url, host.nats_url(), &format!("http://{}", host.address())).await;
    let conf = data.path().join("nats/nats-server.conf");
    let pid = || {
        let out = std::process::Command::new("pgrep").arg("-f").arg(&conf).output().unwrap();
        out.status.success().then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    let first = pid().expect("the host started its nats-server");
    let fx = app.fixture(10, "101.00", "0.00", None).await;
    let body = fx.order(1, "101.00", "0");
    assert_eq!(app.post("/api/orders", &body).await.status, 201);
    app.wait_events("shop.order.confirmed", 1).await;

    let killed = std::process::Command::new("pkill").args(["-KILL", "-f"]).arg(&conf).status().unwrap();
    assert!(killed.success(), "killed it");
    assert_eq!(app.post("/api/orders", &body).await.status, 201);
    wait_for("the host to start its nats-server again", Duration::from_secs(20), || async {
        let again = pid().filter(|p| *p != first)?;
        async_nats::connect(host.nats_url()).await.ok().map(|_| again)
    })
    .await;
    app.wait_events("shop.order.confirmed", 2).await;
    assert_eq!(readyz_becomes(&app, 200, true).await["stream"], true);
    assert!(host.stop().await, "stops cleanly");
    assert_eq!(pid(), None, "its nats-server stopped with it");

    // A host killed outright leaves its server running on the store (here one started by
    // hand on the host's configuration, as a killed host leaves it; by a relative path, as a
    // host with a relative data directory started it): the next start stops it before it
    // starts its own, so two never share the store.
    let mut orphan = std::process::Command::new(nats_server_bin())
        .args(["-c", "nats/nats-server.conf"])
        .current_dir(data.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let orphan_pid = orphan.id().to_string();
    wait_for("the orphan to write its pid", Duration::from_secs(10), || async {
        std::fs::read_to_string(data.path().join("nats/nats-server.pid")).ok().filter(|p| p.trim() == orphan_pid)
    })
    .await;
    // Its pid file may be gone (or rewritten by a server started over it): not needed.
    std::fs::remove_file(data.path().join("nats/nats-server.pid")).unwrap();
    let embedded = || {
        let mut settings = test_settings(&db.url, "", data.path());
        settings.nats_url = None;
        settings.nats_server_bin = Some(nats_server_bin());
        shopmesh::startup::Application::build(settings)
    };
    // A server of another store (a test's) is no orphan of this one's.
    let mut bystander = crate::helpers::TestNats::start().await;
    let host = embedded().await.expect("the host starts over the orphan");
    assert!(bystander.server.not_running().is_none(), "another store's server runs on");
    let mut ended = None;
    for _ in 0..400 {
        ended = orphan.try_wait().unwrap();
        if ended.is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    assert!(ended.is_some(), "the orphan was stopped");
    let own = pid().expect("the host started its own");
    assert!(!own.contains('\n') && own != orphan_pid, "one server on the store, the host's: {own}");

    // A second host on the same data directory is refused, and the first's server left alone.
    let Err(refused) = embedded().await else { panic!("a second host on one data directory started") };
    assert!(format!("{refused:#}").contains("is in use by another running shopmesh host (it holds host.lock there): one host per data directory"), "{refused:#}");
    assert_eq!(pid().as_deref(), Some(own.as_str()), "the running host's server untouched");
    assert!(host.stop().await, "stops cleanly");

}

crate::on_both_databases!(orders_survive_a_nats_outage);
