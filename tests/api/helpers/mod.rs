//! One harness for every integration test, by concern: [`databases`] (a fresh database per
//! test: a SQLite file, or a new database in the Postgres cluster `scripts/test` starts),
//! [`nats`] (a real nats-server per test: free port, temp store, killed on drop; reading the
//! stream and the consumers), [`app`] (the application built in-process on port 0, and its
//! HTTP client), [`processes`] (the real binary, for tests that kill and restart it) and
//! [`fixtures`] (goods, users, coupons, paid orders through the API).
//! Set TEST_LOG=1 to see the application's logs.

mod app;
mod databases;
mod fixtures;
mod nats;
mod processes;

use std::{future::Future, sync::Once, time::Duration};

pub use app::*;
pub use databases::*;
pub use fixtures::*;
pub use nats::*;
pub use processes::*;

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

pub(crate) fn init_logs() {
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

/// Polls `probe` until it yields a value; panics with `what` after `limit`. This bounds
/// an eventual outcome; it measures nothing.
/// Writes a report a test produced to `target/test-reports/<name>`, which `scripts/test`
/// prints after the suite (a passing test's own output is not shown).
pub fn report(name: &str, text: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/test-reports");
    std::fs::create_dir_all(&dir).expect("a reports folder");
    std::fs::write(dir.join(name), text).expect("a report written");
    eprintln!("{text}");
}

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

