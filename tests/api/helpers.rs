//! One harness for every integration test: a real nats-server per test (free port, temp
//! store, killed on drop), a fresh database per test (a SQLite file, or a new database in
//! the Postgres cluster `scripts/test` starts), and the application built in-process on
//! port 0, or the real binary when a test must kill and restart the process.
//! Set TEST_LOG=1 to see the application's logs.

use std::{
    collections::BTreeMap,
    future::Future,
    path::PathBuf,
    process::Stdio,
    sync::Once,
    time::Duration,
};

use serde_json::{json, Value};
use shopmesh::{
    bus::{find_nats_server, NatsServer},
    config::Settings,
    startup::Application,
    store::Db,
};
use sqlx::Row;
use tempfile::TempDir;

pub const ADMIN_TOKEN: &str = "test-admin-token";
pub const CALLBACK_SECRET: &str = "test-callback-secret";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Runs the listed behaviour tests once on SQLite and once on Postgres.
#[macro_export]
macro_rules! on_both_databases {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::helpers::Backend::Postgres).await
                }
            )*
        }
    };
}

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            tracing_subscriber_init();
        }
    });
}

fn tracing_subscriber_init() {
    // The host's own subscriber setup lives in main.rs; tests only want plain output.
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::fmt().with_env_filter("info").with_test_writer().finish(),
    );
}

/// A fresh, empty database for one test.
pub struct TestDb {
    pub url: String,
    _dir: Option<TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}/shop.db", dir.path().display());
                TestDb { url, _dir: Some(dir) }
            }
            Backend::Postgres => {
                let admin = std::env::var("SHOPMESH_TEST_PG_URL").expect(
                    "SHOPMESH_TEST_PG_URL is not set: run the suite with scripts/test, which starts Postgres",
                );
                let name = format!("t_{}", uuid_like());
                let db = Db::connect(&admin, 1).await.expect("connect to the test Postgres cluster");
                sqlx::query(&format!("CREATE DATABASE {name}"))
                    .execute(db.pool())
                    .await
                    .expect("create test database");
                db.pool().close().await;
                let base = admin.rsplit_once('/').expect("postgres URL has a database").0;
                TestDb { url: format!("{base}/{name}"), _dir: None }
            }
        }
    }
}

fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{}_{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

/// A nats-server with JetStream for one test; `stop`/`restart` for failure tests.
pub struct TestNats {
    pub server: NatsServer,
    _dir: TempDir,
}

impl TestNats {
    pub async fn start() -> TestNats {
        let bin = nats_server_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let server = NatsServer::start(&bin, &dir.path().join("js"), 0).await.expect("start nats-server");
        TestNats { server, _dir: dir }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }
}

pub fn nats_server_bin() -> PathBuf {
    let explicit = std::env::var_os("SHOPMESH_NATS_SERVER_BIN").map(PathBuf::from);
    let workspace_venv = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../.venv/bin/nats-server");
    explicit
        .or_else(|| workspace_venv.is_file().then_some(workspace_venv))
        .or_else(|| find_nats_server(None))
        .expect("nats-server not found: run scripts/setup (installs it into .venv)")
}

/// The plugin components built by scripts/build-plugins.
pub fn plugins_dir() -> PathBuf {
    std::env::var_os("SHOPMESH_TEST_PLUGINS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/plugins"))
}

/// Settings for an app under test: everything on loopback, short timers, and no plugins
/// (tests of the host alone; [`with_plugins`] adds them).
pub fn test_settings(db_url: &str, nats_url: &str, data_dir: &std::path::Path) -> Settings {
    Settings {
        plugins_dir: data_dir.join("no-plugins"),
        plugin_retry_base_secs: 0.05,
        plugin_retry_max_secs: 0.2,
        plugin_ack_wait_secs: 3.0,
        http_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(db_url.to_owned()),
        nats_url: Some(nats_url.to_owned()),
        callback_secret: shopmesh::config::Secret::new(CALLBACK_SECRET),
        admin_token: shopmesh::config::Secret::new(ADMIN_TOKEN),
        sweep_interval_secs: 0.2,
        relay_poll_secs: 0.1,
        ..Settings::default()
    }
}

pub struct TestApp {
    /// Held so the in-process application lives as long as the test (None when attached).
    _app: Option<Application>,
    pub address: String,
    pub db: Db,
    pub db_url: String,
    pub nats_url: String,
    /// The nats-server this test owns (None when attached to someone else's).
    pub nats: Option<TestNats>,
    pub http: reqwest::Client,
    _test_db: Option<TestDb>,
    _data: Option<TempDir>,
}

/// Builds the app on a fresh database and nats-server; `tweak` adjusts its settings.
pub async fn spawn_app_with(backend: Backend, tweak: impl FnOnce(&mut Settings)) -> TestApp {
    init_logs();
    let test_db = TestDb::new(backend).await;
    let nats = TestNats::start().await;
    let data = tempfile::tempdir().unwrap();
    let mut settings = test_settings(&test_db.url, &nats.url(), data.path());
    tweak(&mut settings);
    let app = Application::build(settings).await.expect("application builds");
    let address = format!("http://{}", app.address());
    let db = app.shop().db.clone();
    TestApp {
        _app: Some(app),
        address,
        db,
        db_url: test_db.url.clone(),
        nats_url: nats.url(),
        nats: Some(nats),
        http: reqwest::Client::new(),
        _test_db: Some(test_db),
        _data: Some(data),
    }
}

/// A component from target/plugins (the product's) or target/plugins-testing (the sandbox
/// tests' misbehaving guests).
pub fn component(name: &str) -> Vec<u8> {
    let product = plugins_dir().join(format!("{name}.wasm"));
    let testing = plugins_dir().join("../plugins-testing").join(format!("{name}.wasm"));
    std::fs::read(&product)
        .or_else(|_| std::fs::read(&testing))
        .unwrap_or_else(|e| panic!("{name}.wasm not built ({e}): run scripts/build-plugins"))
}

/// Loads the five real plugin components into the app under test.
pub fn with_plugins(settings: &mut Settings) {
    let dir = plugins_dir();
    assert!(dir.join("stock.wasm").is_file(), "{} has no plugins: run scripts/build-plugins", dir.display());
    settings.plugins_dir = dir;
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, |_| {}).await
}

/// A response's status and JSON body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: Value,
}

impl Reply {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or_default()
    }
}

impl TestApp {
    /// A client for a host running elsewhere (a child process), with its own handle on
    /// the database and the stream for assertions.
    pub async fn attach(db_url: &str, nats: &TestNats, address: &str) -> TestApp {
        TestApp {
            _app: None,
            address: address.to_owned(),
            db: Db::connect(db_url, 2).await.expect("connect to the test database"),
            db_url: db_url.to_owned(),
            nats_url: nats.url(),
            nats: None,
            http: reqwest::Client::new(),
            _test_db: None,
            _data: None,
        }
    }

    /// The in-process application's plugin host.
    pub fn plugins(&self) -> &std::sync::Arc<shopmesh::plugins::PluginHost> {
        self._app.as_ref().expect("an in-process app").plugins()
    }

    pub fn nats_mut(&mut self) -> &mut NatsServer {
        &mut self.nats.as_mut().expect("this test owns its nats-server").server
    }

    /// The one value `sql` selects.
    pub async fn scalar(&self, sql: &str) -> i64 {
        sqlx::query(sql).fetch_one(self.db.pool()).await.unwrap().try_get(0).unwrap()
    }

    pub async fn request(&self, method: reqwest::Method, path: &str, body: Option<&Value>, headers: &[(&str, String)]) -> Reply {
        let mut req = self.http.request(method, format!("{}{}", self.address, path));
        if let Some(body) = body {
            req = req.header("content-type", "application/json").body(body.to_string());
        }
        for (k, v) in headers {
            req = req.header(*k, v);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let text = resp.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        Reply { status, body }
    }

    pub async fn get(&self, path: &str) -> Reply {
        self.request(reqwest::Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        self.request(reqwest::Method::POST, path, Some(body), &[]).await
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        let auth = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
        self.request(reqwest::Method::POST, path, Some(body), &auth).await
    }

    /// Posts a raw callback body with the given signature header (None: no header).
    pub async fn callback_raw(&self, body: &str, signature: Option<String>) -> Reply {
        let mut req = self
            .http
            .post(format!("{}/api/payments/callback", self.address))
            .header("content-type", "application/json")
            .body(body.to_owned());
        if let Some(sig) = signature {
            req = req.header("X-Shop-Signature", sig);
        }
        let resp = req.send().await.expect("request sent");
        let status = resp.status().as_u16();
        let body = resp.json().await.unwrap_or(Value::Null);
        Reply { status, body }
    }

    /// A correctly signed callback reporting `pay_id` paid with `amount`.
    pub async fn signed_callback(&self, pay_id: &str, amount: &str) -> Reply {
        let body = json!({ "pay_id": pay_id, "pay_amount": amount, "is_paid": 2 }).to_string();
        let now = shopmesh::ids::now_ms() / 1000;
        let sig = shopmesh::signature::sign(CALLBACK_SECRET.as_bytes(), now, body.as_bytes());
        self.callback_raw(&body, Some(sig)).await
    }

    /// Places one item of `fx`'s goods at `price` (a 150.00-style amount above the free
    /// shipping line), pays it and sends the signed callback. Returns the order id.
    pub async fn pay_order(&self, fx: &Fixture, price: &str) -> String {
        let order = self.post("/api/orders", &fx.order(1, price, "0")).await;
        assert_eq!(order.status, 201, "{:?}", order.body);
        let order_id = order.body["order_id"].as_str().unwrap().to_owned();
        let pay = self.post("/api/payments", &json!({"order_id": order_id, "pay_amount": order.body["pay_amount"]})).await;
        assert_eq!(pay.status, 201, "{:?}", pay.body);
        let paid = self.signed_callback(pay.body["pay_id"].as_str().unwrap(), order.body["pay_amount"].as_str().unwrap()).await;
        assert_eq!(paid.status, 200, "{:?}", paid.body);
        order_id
    }

    /// Creates goods, a user and (optionally) a coupon through the admin API.
    pub async fn fixture(&self, stock: i64, price: &str, balance: &str, coupon: Option<&str>) -> Fixture {
        let goods = self
            .admin_post("/api/admin/goods", &json!({"goods_name": "phone", "goods_number": stock, "goods_price": price}))
            .await;
        assert_eq!(goods.status, 201, "{:?}", goods.body);
        let user = self
            .admin_post("/api/admin/users", &json!({"user_name": "u", "user_money": balance, "user_score": 0}))
            .await;
        assert_eq!(user.status, 201, "{:?}", user.body);
        let user_id = user.body["user_id"].as_str().unwrap().to_owned();
        let coupon_id = match coupon {
            Some(price) => {
                let c = self
                    .admin_post("/api/admin/coupons", &json!({"coupon_price": price, "user_id": user_id}))
                    .await;
                assert_eq!(c.status, 201, "{:?}", c.body);
                Some(c.body["coupon_id"].as_str().unwrap().to_owned())
            }
            None => None,
        };
        Fixture {
            goods_id: goods.body["goods_id"].as_str().unwrap().to_owned(),
            user_id,
            coupon_id,
        }
    }

    /// Counts rows of `table` (optionally filtered by a WHERE clause).
    pub async fn count(&self, table: &str, filter: &str) -> i64 {
        let sql = if filter.is_empty() {
            format!("SELECT COUNT(*) FROM {table}")
        } else {
            format!("SELECT COUNT(*) FROM {table} WHERE {filter}")
        };
        self.scalar(&sql).await
    }

    /// Everything a rejected request must leave as it was.
    pub async fn snapshot(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (name, sql) in [
            ("orders", "SELECT COUNT(*) FROM trade_order"),
            ("outbox", "SELECT COUNT(*) FROM trade_mq_producer_temp"),
            ("steps", "SELECT COUNT(*) FROM shop_order_step"),
            ("payments", "SELECT COUNT(*) FROM trade_pay"),
            ("stock", "SELECT CAST(COALESCE(SUM(goods_number), 0) AS BIGINT) FROM trade_goods"),
            ("balance", "SELECT CAST(COALESCE(SUM(user_money), 0) AS BIGINT) FROM trade_user"),
            ("used_coupons", "SELECT COUNT(*) FROM trade_coupon WHERE is_used = 1"),
            ("stock_log", "SELECT COUNT(*) FROM trade_goods_number_log"),
            ("money_log", "SELECT COUNT(*) FROM trade_user_money_log"),
        ] {
            out.insert(name.to_owned(), self.scalar(sql).await.to_string());
        }
        out
    }

    /// Every message in stream SHOP on `subject`: (Nats-Msg-Id, CloudEvent JSON).
    pub async fn stream_events(&self, subject: &str) -> Vec<(String, Value)> {
        stream_events(&self.nats_url, subject).await
    }

    /// Waits (bounded) until the stream holds `n` events on `subject`, then returns them.
    pub async fn wait_events(&self, subject: &str, n: usize) -> Vec<(String, Value)> {
        let url = self.nats_url.clone();
        wait_for(&format!("{n} events on {subject}"), Duration::from_secs(30), || {
            let url = url.clone();
            async move {
                let events = stream_events(&url, subject).await;
                (events.len() >= n).then_some(events)
            }
        })
        .await
    }

}

pub struct Fixture {
    pub goods_id: String,
    pub user_id: String,
    pub coupon_id: Option<String>,
}

impl Fixture {
    /// A valid order of `n` items at `price` each, using the coupon and `money_paid`.
    pub fn order(&self, n: i64, price: &str, money_paid: &str) -> Value {
        let p: f64 = price.parse().unwrap(); // only to build test inputs, never to check money
        let cents = (p * 100.0).round() as i64 * n;
        let ship = if cents > 100_00 { 0 } else { 10_00 };
        let fmt = |c: i64| format!("{}.{:02}", c / 100, c % 100);
        let mut body = json!({
            "user_id": self.user_id,
            "goods_id": self.goods_id,
            "goods_number": n,
            "goods_price": price,
            "shipping_fee": fmt(ship),
            "order_amount": fmt(cents + ship),
            "money_paid": money_paid,
        });
        if let Some(c) = &self.coupon_id {
            body["coupon_id"] = json!(c);
        }
        body
    }
}

pub async fn stream_events(url: &str, subject: &str) -> Vec<(String, Value)> {
    let client = async_nats::connect(url).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    let Ok(mut stream) = js.get_stream("SHOP").await else {
        return Vec::new();
    };
    let info = stream.info().await.expect("stream info").state.clone();
    let mut out = Vec::new();
    if info.messages == 0 {
        return out;
    }
    for seq in info.first_sequence..=info.last_sequence {
        let Ok(msg) = stream.get_raw_message(seq).await else { continue };
        if msg.subject.as_str() != subject {
            continue;
        }
        let id = msg
            .headers
            .get("Nats-Msg-Id")
            .map(|v| v.as_str().to_owned())
            .unwrap_or_default();
        out.push((id, serde_json::from_slice(&msg.payload).expect("event is JSON")));
    }
    out
}

/// Polls `probe` until it yields a value; panics with `what` after `limit`. This bounds
/// an eventual outcome; it measures nothing.
pub async fn wait_for<T, F, Fut>(what: &str, limit: Duration, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = probe().await {
            return v;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("gave up waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The real `shopmesh` binary as a child process (for crash and restart tests).
pub struct HostProcess {
    pub child: tokio::process::Child,
    pub address: String,
}

impl HostProcess {
    pub async fn start(db_url: &str, nats_url: &str, envs: &[(&str, &str)]) -> HostProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = std::env::temp_dir().join(format!("shopmesh-proc-{}", uuid_like()));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"));
        cmd.arg("serve")
            .env("SHOPMESH_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("SHOPMESH_DATABASE_URL", db_url)
            .env("SHOPMESH_NATS_URL", nats_url)
            .env("SHOPMESH_DATA_DIR", &data)
            .env("SHOPMESH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SHOPMESH_CALLBACK_SECRET", CALLBACK_SECRET)
            .env("SHOPMESH_SWEEP_INTERVAL_SECS", "0.2")
            .env("SHOPMESH_RELAY_POLL_SECS", "0.1")
            .env("SHOPMESH_PLUGINS_DIR", data.join("no-plugins"))
            .env("SHOPMESH_PLUGIN_RETRY_BASE_SECS", "0.05")
            .env("SHOPMESH_PLUGIN_RETRY_MAX_SECS", "0.2")
            .env("SHOPMESH_PLUGIN_ACK_WAIT_SECS", "3")
            .env_remove("SHOPMESH_FAULT")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let child = cmd.spawn().expect("spawn shopmesh");
        let address = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        let probe = format!("{address}/openapi.json");
        wait_for("the host process to listen", Duration::from_secs(30), || {
            let (http, probe) = (http.clone(), probe.clone());
            async move { http.get(probe).send().await.ok().map(|_| ()) }
        })
        .await;
        HostProcess { child, address }
    }
}

/// Waits until the plugin consumers `names` have nothing pending or unacknowledged. Wait
/// for the event to be in the stream first: before that, an idle consumer proves nothing.
pub async fn wait_consumers_idle(nats_url: &str, names: &[&str]) {
    let client = async_nats::connect(nats_url).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    for name in names {
        let durable = shopmesh::plugins::consumer::durable_name(name);
        wait_for(&format!("consumer {durable} to drain"), Duration::from_secs(30), || {
            let js = js.clone();
            let durable = durable.clone();
            async move {
                let stream = js.get_stream("SHOP").await.ok()?;
                let mut consumer: async_nats::jetstream::consumer::PullConsumer = stream.get_consumer(&durable).await.ok()?;
                let info = consumer.info().await.ok()?;
                (info.num_pending == 0 && info.num_ack_pending == 0).then_some(())
            }
        })
        .await;
    }
}
