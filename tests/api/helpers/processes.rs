//! The real `shopmesh` binary as a child process: a host (for crash and restart tests), or
//! the CLI run against a test's host.

use std::{process::Stdio, time::Duration};

use super::{databases::uuid_like, plugins_dir, wait_for, TestApp, TestDb, TestNats, ADMIN_TOKEN, CALLBACK_SECRET};

/// The real `shopmesh` binary as a child process (for crash and restart tests).
pub struct HostProcess {
    pub child: tokio::process::Child,
    pub address: String,
}

impl HostProcess {
    pub async fn start(db_url: &str, nats_url: &str, envs: &[(&str, &str)]) -> HostProcess {
        HostProcess::start_with(db_url, nats_url, envs, &[], None).await
    }

    /// A host whose plugins folder holds the built plugins, on `db` and `nats`, and a
    /// [`TestApp`] on it: what the restart tests start, and start again.
    pub async fn start_with_plugins(db: &TestDb, nats: &TestNats) -> (HostProcess, TestApp) {
        let dir = plugins_dir().display().to_string();
        let host = HostProcess::start(&db.url, &nats.url(), &[("SHOPMESH_PLUGINS_DIR", dir.as_str())]).await;
        let app = TestApp::attach(&db.url, &nats.url(), &host.address).await;
        (host, app)
    }

    /// [`start`](Self::start) with extra `serve` flags and, when given, its stdout (the logs)
    /// written to `log`.
    pub async fn start_with(db_url: &str, nats_url: &str, envs: &[(&str, &str)], args: &[&str], log: Option<&std::path::Path>) -> HostProcess {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let data = std::env::temp_dir().join(format!("shopmesh-proc-{}", uuid_like()));
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"));
        cmd.arg("serve")
            .args(args)
            .env("SHOPMESH_HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("SHOPMESH_DATABASE_URL", db_url)
            .env("SHOPMESH_NATS_URL", nats_url)
            .env("SHOPMESH_DATA_DIR", &data)
            .env("SHOPMESH_ADMIN_TOKEN", ADMIN_TOKEN)
            .env("SHOPMESH_CALLBACK_SECRET", CALLBACK_SECRET)
            .env("SHOPMESH_DEMO_DATA", "false")
            .env("SHOPMESH_SWEEP_INTERVAL", "200ms")
            .env("SHOPMESH_RELAY_POLL", "100ms")
            .env("SHOPMESH_PLUGINS_DIR", data.join("no-plugins"))
            .env("SHOPMESH_PLUGIN_RETRY_BASE", "50ms")
            .env("SHOPMESH_PLUGIN_RETRY_MAX", "200ms")
            .env("SHOPMESH_PLUGIN_ACK_WAIT", "3s")
            .env_remove("SHOPMESH_FAULT")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        if std::env::var_os("TEST_LOG").is_none() {
            cmd.stdout(Stdio::null()).stderr(Stdio::null());
        }
        if let Some(path) = log {
            cmd.stdout(std::fs::File::create(path).expect("a log file"));
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


/// What one run of the `shopmesh` CLI printed, and its exit code.
#[derive(Debug)]
pub struct CliRun {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl TestApp {
    /// `shopmesh ARGS --host <this app> --token <the admin token>`: the CLI as an operator
    /// runs it against this host.
    pub async fn cli(&self, args: &[&str]) -> CliRun {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"))
            .args(args)
            .args(["--host", &self.address, "--token", ADMIN_TOKEN])
            .stdin(Stdio::null())
            .output()
            .await
            .expect("run the shopmesh CLI");
        let text = |bytes: Vec<u8>| String::from_utf8_lossy(&bytes).into_owned();
        CliRun { code: out.status.code(), stdout: text(out.stdout), stderr: text(out.stderr) }
    }
}
