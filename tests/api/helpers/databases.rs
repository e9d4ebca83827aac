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


/// A Postgres cluster of one test's own (initdb on a temp folder, loopback, a free port), for
/// the tests that stop and restart the database; the shared one serves every other test.
pub struct OwnPostgres {
    pub url: String,
    bin: std::path::PathBuf,
    dir: TempDir,
    port: u16,
}

impl OwnPostgres {
    pub fn start() -> OwnPostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL from Debian (scripts/setup --postgres)")
            .filter_map(|e| e.ok().map(|e| e.path().join("bin")))
            .max()
            .expect("a PostgreSQL version");
        let dir = tempfile::tempdir().expect("temp dir");
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = OwnPostgres { url: format!("postgres://postgres@127.0.0.1:{port}/postgres"), bin, dir, port };
        if pg.as_postgres("chown").is_some() {
            std::process::Command::new("chown").args(["-R", "postgres"]).arg(pg.dir.path()).status().unwrap();
        }
        let data = pg.dir.path().join("data");
        assert!(pg.run("initdb", &["-D", data.to_str().unwrap(), "-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-sync"]), "initdb");
        pg.ctl("start");
        pg
    }

    /// Root cannot run Postgres: then it runs as the `postgres` user the package created.
    fn as_postgres(&self, _what: &str) -> Option<()> {
        (unsafe { libc::geteuid() } == 0).then_some(())
    }

    fn run(&self, tool: &str, args: &[&str]) -> bool {
        let program = self.bin.join(tool);
        let mut cmd = if self.as_postgres(tool).is_some() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(&program);
            c
        } else {
            std::process::Command::new(&program)
        };
        cmd.args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status().map(|s| s.success()).unwrap_or(false)
    }

    /// `pg_ctl start` or `stop` (immediate: as abrupt as a crash).
    pub fn ctl(&self, action: &str) {
        let data = self.dir.path().join("data");
        let log = self.dir.path().join("log");
        let options = format!("-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200", self.port, self.dir.path().display());
        let ok = match action {
            "start" => self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-w", "-l", log.to_str().unwrap(), "-o", &options, "start"]),
            _ => self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]),
        };
        assert!(ok, "pg_ctl {action}");
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let data = self.dir.path().join("data");
        self.run("pg_ctl", &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"]);
    }
}
