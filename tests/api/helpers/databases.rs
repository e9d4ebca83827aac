//! A fresh, empty database per test.

use shopmesh::store::Db;
use tempfile::TempDir;

use super::Backend;

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

pub(crate) fn uuid_like() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    format!("{}_{}_{}", std::process::id(), nanos % 1_000_000_000, N.fetch_add(1, Ordering::Relaxed))
}

