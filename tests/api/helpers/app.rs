//! The application under test, built in-process on port 0, and its HTTP client.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use serde_json::Value;
use shopmesh::{config::Settings, embedded::NatsServer, startup::Application, store::Db};
use sqlx::Row;
use tempfile::TempDir;

use super::{init_logs, stream_events, wait_for, Backend, TestDb, TestNats, ADMIN_TOKEN, CALLBACK_SECRET};

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
        plugin_retry_base: Duration::from_millis(50),
        plugin_retry_max: Duration::from_millis(200),
        plugin_ack_wait: Duration::from_secs(3),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        data_dir: data_dir.to_path_buf(),
        database_url: Some(db_url.to_owned()),
        nats_url: Some(nats_url.to_owned()),
        callback_secret: CALLBACK_SECRET.into(),
        admin_token: ADMIN_TOKEN.into(),
        // Each test makes its own rows; the scenario of the seeds asks for the demo data.
        demo_data: false,
        sweep_interval: Duration::from_millis(200),
        relay_poll: Duration::from_millis(100),
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
    pub async fn attach(db_url: &str, nats_url: &str, address: &str) -> TestApp {
        TestApp {
            _app: None,
            address: address.to_owned(),
            db: Db::connect(db_url, 2).await.expect("connect to the test database"),
            db_url: db_url.to_owned(),
            nats_url: nats_url.to_owned(),
            nats: None,
            http: reqwest::Client::new(),
            _test_db: None,
            _data: None,
        }
    }

    /// The in-process application's plugin host.
    pub fn plugin_host(&self) -> &std::sync::Arc<shopmesh::plugins::PluginHost> {
        self._app.as_ref().expect("an in-process app").plugins()
    }

    /// The in-process application's plugin registry.
    pub fn registry(&self) -> &shopmesh::plugins::Registry {
        &self._app.as_ref().expect("an in-process app").plugins().registry
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

    /// An admin API call with the token.
    pub async fn admin(&self, method: reqwest::Method, path: &str, body: Option<&Value>) -> Reply {
        let auth = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
        self.request(method, path, body, &auth).await
    }

    /// Uploads a plugin component (`query`: e.g. `?activate=false`).
    pub async fn upload(&self, name: &str, bytes: Vec<u8>, query: &str) -> Reply {
        let resp = self
            .http
            .put(format!("{}/api/admin/plugins/{name}{query}", self.address))
            .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await
            .expect("upload sent");
        let status = resp.status().as_u16();
        Reply { status, body: resp.json().await.unwrap_or(Value::Null) }
    }

    pub async fn admin_post(&self, path: &str, body: &Value) -> Reply {
        let auth = [("authorization", format!("Bearer {ADMIN_TOKEN}"))];
        self.request(reqwest::Method::POST, path, Some(body), &auth).await
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
