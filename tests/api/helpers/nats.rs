//! A real nats-server per test, and reading what is in stream SHOP and its consumers.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;
use shopmesh::embedded::{find_nats_server, Fsync, NatsServer};
use tempfile::TempDir;

use super::wait_for;

/// A nats-server with JetStream for one test; `stop`/`restart` for failure tests.
pub struct TestNats {
    pub server: NatsServer,
    _dir: TempDir,
}

impl TestNats {
    /// A server with nats-server's default fsync (fast; tests do not survive power cuts).
    pub async fn start() -> TestNats {
        TestNats::start_with(Fsync::Interval).await
    }

    pub async fn start_with(fsync: Fsync) -> TestNats {
        let bin = nats_server_bin();
        let dir = tempfile::tempdir().expect("temp dir");
        let server = NatsServer::start(&bin, &dir.path().join("js"), 0, fsync).await.expect("start nats-server");
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

/// Waits until the plugin consumers `names` have nothing pending or unacknowledged. Wait
/// for the event to be in the stream first: before that, an idle consumer proves nothing.
pub async fn wait_consumers_idle(nats_url: &str, names: &[&str]) {
    let client = async_nats::connect(nats_url).await.expect("connect to nats");
    let js = async_nats::jetstream::new(client);
    for name in names {
        let durable = shopmesh::plugins::durable_name(name);
        // Generous: under a full parallel suite a SQLite host shares its file with another process.
        wait_for(&format!("consumer {durable} to drain"), Duration::from_secs(60), || {
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
