//! The NATS side: connecting, refusing servers older than 2.10, the `SHOP` stream, and a
//! `nats-server` child process for the embedded mode (also what the tests start).

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use async_nats::jetstream::{self, stream};
use tokio::process::{Child, Command};

pub const STREAM: &str = "SHOP";
/// 2.10 brought the features the mesh relies on (multiple filter subjects, strict consumer
/// create, stream metadata); 2.9 silently ignores them.
pub const MIN_SERVER: (u64, u64) = (2, 10);

#[derive(Debug, Clone)]
pub struct StreamSettings {
    /// JetStream's de-duplication window for `Nats-Msg-Id`.
    pub duplicate_window: Duration,
    /// How long history is kept for replay (zero = forever).
    pub max_age: Duration,
    /// Copies of stream `SHOP` (and of the fleet's buckets) in a NATS cluster: 3 keeps every
    /// event through the loss of one server.
    pub replicas: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("cannot connect to NATS at {url}: {source}")]
    Connect { url: String, source: async_nats::ConnectError },
    #[error("NATS server {found} is too old: shopmesh needs 2.10 or newer (JetStream features it relies on are silently ignored by older servers)")]
    ServerTooOld { found: String },
    #[error("NATS is not connected")]
    NotConnected,
    #[error("cannot create or read stream {STREAM}: {0}")]
    Stream(String),
    #[error("cannot start nats-server: {0}")]
    Spawn(String),
    #[error("refusing to start (SHOPMESH_REQUIRE_SYNC_ALWAYS): {0}")]
    NotDurable(String),
}

/// Connects without waiting for the server: publishes fail (and outbox rows wait) while it
/// is away, and the client keeps reconnecting forever. `url` may list several servers of a
/// cluster, comma-separated (the others are also learned from the first one reached).
pub async fn connect(url: &str) -> Result<async_nats::Client, BusError> {
    let urls: Vec<&str> = url.split(',').map(str::trim).filter(|u| !u.is_empty()).collect();
    async_nats::ConnectOptions::new()
        .name("shopmesh")
        .retry_on_initial_connect()
        .max_reconnects(None)
        .connection_timeout(Duration::from_secs(2))
        .connect(urls.as_slice())
        .await
        .map_err(|source| BusError::Connect { url: url.to_owned(), source })
}

pub fn check_version(version: &str) -> Result<(), BusError> {
    match major_minor(version) {
        Some(v) if v >= MIN_SERVER => Ok(()),
        _ => Err(BusError::ServerTooOld { found: version.to_owned() }),
    }
}

/// A server version's major and minor number (`v2.15.1` → `(2, 15)`); `None` if unreadable.
fn major_minor(version: &str) -> Option<(u64, u64)> {
    let mut parts = version.trim_start_matches('v').split('.').map(|p| p.parse::<u64>().ok());
    Some((parts.next()??, parts.next()??))
}

/// Checks the connected server and makes sure stream `SHOP` exists.
pub async fn ensure_ready(client: &async_nats::Client, settings: &StreamSettings) -> Result<jetstream::Context, BusError> {
    Ok(ensure_ready_to_publish(client, settings).await?.0)
}

/// [`ensure_ready`], and whether the relay may publish to stream `SHOP` in atomic batches
/// now: the server is new enough ([`takes_atomic_batches`]; a stream another host made with
/// them on does not vouch for this server's de-duplication) and the stream allows them.
pub async fn ensure_ready_to_publish(client: &async_nats::Client, settings: &StreamSettings) -> Result<(jetstream::Context, bool), BusError> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return Err(BusError::NotConnected);
    }
    let version = &client.server_info().version;
    check_version(version)?;
    let atomic = takes_atomic_batches(version);
    let js = jetstream::new(client.clone());
    let stream = js.get_or_create_stream(stream::Config {
        name: STREAM.into(),
        subjects: vec!["shop.>".into()],
        storage: stream::StorageType::File,
        // Limits retention keeps history after consumers ack it, so replay can read it.
        retention: stream::RetentionPolicy::Limits,
        duplicate_window: settings.duplicate_window,
        max_age: settings.max_age,
        num_replicas: settings.replicas.max(1),
        // The relay publishes a batch as one (see `publish`): one fsync, not one per event.
        allow_atomic_publish: atomic,
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::Stream(e.to_string()))?;
    // A stream made before atomic batches (or on an older server, since upgraded) gets them
    // turned on; without them the relay publishes one event at a time, which works, slower.
    // A stream made with a shorter de-duplication window than configured gets the configured
    // one: the relay's exactly-once rests on it outlasting two leases (see `config`), and an
    // existing stream is otherwise taken as it is. Nothing else of its configuration changes.
    let current = &stream.cached_info().config;
    let mut allowed = current.allow_atomic_publish;
    let (widen, allow) = (current.duplicate_window < settings.duplicate_window, atomic && !allowed);
    if widen || allow {
        let mut config = current.clone();
        config.allow_atomic_publish |= atomic;
        config.duplicate_window = config.duplicate_window.max(settings.duplicate_window);
        match js.update_stream(&config).await {
            Ok(info) => allowed = info.config.allow_atomic_publish,
            Err(e) => tracing::warn!(
                error = %e, widen, allow,
                "stream {STREAM}: cannot widen its de-duplication window or allow atomic batches (one by one, then)"
            ),
        }
    }
    Ok((js, atomic && allowed))
}

/// Whether the relay may publish to a server of `version` in atomic batches: 2.14 and newer.
/// Atomic batches came in 2.12.0 without `Nats-Msg-Id` de-duplication (added in a later 2.12
/// release), and the relay's exactly-once rests on it; 2.14 is the first minor line where every
/// release has it (2.15 is what the tests run).
pub fn takes_atomic_batches(version: &str) -> bool {
    major_minor(version).is_some_and(|v| v >= (2, 14))
}

/// Where to find `nats-server`: an explicit path, else the project's `.venv` (where the
/// README's commands install the PyPI build), else `PATH`.
pub fn find_nats_server(explicit: Option<&Path>) -> Option<PathBuf> {
    if let Some(p) = explicit {
        return Some(p.to_path_buf());
    }
    let venv = PathBuf::from(".venv/bin/nats-server");
    if venv.is_file() {
        return Some(venv);
    }
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths).map(|d| d.join("nats-server")).find(|p| p.is_file())
    })
}

/// When the server writes JetStream data to disk. `Always` fsyncs before it acknowledges a
/// publish; `Interval` is nats-server's default (every two minutes), under which a power cut
/// or a kernel crash loses events the server already acknowledged (Jepsen, NATS 2.12.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fsync {
    Always,
    Interval,
}

/// A `nats-server` with JetStream on loopback (and its monitoring port), stopped when dropped.
pub struct NatsServer {
    bin: PathBuf,
    store: PathBuf,
    port: u16,
    monitor_port: u16,
    fsync: Fsync,
    /// In a cluster: this server's name, its route port and its peers' route ports.
    cluster: Option<(String, u16, Vec<u16>)>,
    child: Option<Child>,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `store`; port 0 picks a free port.
    pub async fn start(bin: &Path, store: &Path, port: u16, fsync: Fsync) -> Result<NatsServer, BusError> {
        let mut server = NatsServer { bin: bin.to_path_buf(), store: store.to_path_buf(), port, monitor_port: 0, fsync, cluster: None, child: None };
        server.spawn_on_free_ports(port == 0).await?;
        Ok(server)
    }

    /// Spawns on free ports (the client port too when `any_port`). A free port can be taken
    /// by someone else before the server binds it; then it tries others, a few times.
    async fn spawn_on_free_ports(&mut self, any_port: bool) -> Result<(), BusError> {
        let spawn_err = |e: std::io::Error| BusError::Spawn(e.to_string());
        let mut last = None;
        for _ in 0..5 {
            if any_port {
                self.port = free_port().map_err(spawn_err)?;
            }
            self.monitor_port = free_port().map_err(spawn_err)?;
            match self.spawn().await {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.expect("at least one attempt"))
    }

    /// Starts `size` servers on loopback routed into one JetStream cluster, each storing under
    /// `dir/<name>`. Their client URLs, comma-separated, are what a host connects to.
    pub async fn start_cluster(bin: &Path, dir: &Path, size: usize, fsync: Fsync) -> Result<Vec<NatsServer>, BusError> {
        let spawn_err = |e: std::io::Error| BusError::Spawn(e.to_string());
        let routes: Vec<u16> = (0..size).map(|_| free_port()).collect::<Result<_, _>>().map_err(spawn_err)?;
        let mut servers = Vec::with_capacity(size);
        for (i, route) in routes.iter().enumerate() {
            let name = format!("n{}", i + 1);
            let peers = routes.iter().filter(|r| *r != route).copied().collect();
            let mut server = NatsServer { bin: bin.to_path_buf(), store: dir.join(&name), port: 0, monitor_port: 0, fsync, cluster: Some((name, *route, peers)), child: None };
            server.spawn_on_free_ports(true).await?;
            servers.push(server);
        }
        Ok(servers)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// The HTTP monitoring endpoint (`/varz`, `/jsz`), where the durability guard looks.
    pub fn monitor_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.monitor_port)
    }

    /// The server's configuration file: the command line has no flag for `sync_interval`.
    fn config(&self) -> String {
        let quoted = |p: &Path| serde_json::to_string(&p.display().to_string()).expect("a string serialises");
        let sync = match self.fsync {
            Fsync::Always => "\n  sync_interval: always",
            Fsync::Interval => "",
        };
        let cluster = match &self.cluster {
            None => String::new(),
            Some((name, route, peers)) => {
                let routes: Vec<String> = peers.iter().map(|p| format!("\"nats-route://127.0.0.1:{p}\"")).collect();
                format!("server_name: {name}\ncluster {{\n  name: shopmesh\n  listen: \"127.0.0.1:{route}\"\n  routes: [{}]\n}}\n", routes.join(", "))
            }
        };
        format!(
            "listen: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\njetstream {{\n  store_dir: {}{sync}\n}}\n{cluster}",
            self.port,
            self.monitor_port,
            quoted(&self.store)
        )
    }

    async fn spawn(&mut self) -> Result<(), BusError> {
        std::fs::create_dir_all(&self.store).map_err(|e| BusError::Spawn(e.to_string()))?;
        let conf = self.store.join("nats-server.conf");
        std::fs::write(&conf, self.config()).map_err(|e| BusError::Spawn(format!("{}: {e}", conf.display())))?;
        let child = Command::new(&self.bin)
            .arg("-c")
            .arg(&conf)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| BusError::Spawn(format!("{}: {e}", self.bin.display())))?;
        self.child = Some(child);
        // Ready when it accepts connections; JetStream recovery finishes before that.
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.not_running() {
                return Err(BusError::Spawn(format!("{} exited: {status}", self.bin.display())));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(BusError::Spawn(format!("no answer on {addr} after 5 s")))
    }

    /// Stops the server (SIGKILL: as abrupt as a crash; the store stays on disk).
    pub async fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill().await;
        }
    }

    /// Stops the server the polite way: SIGTERM, so it flushes and closes its store, then
    /// SIGKILL if it has not exited within `patience`.
    pub async fn shutdown(&mut self, patience: Duration) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id() {
            // SAFETY: kill(2) on our own child's pid, which we have not reaped yet.
            unsafe { libc::kill(pid as libc::pid_t, libc::SIGTERM) };
        }
        if tokio::time::timeout(patience, child.wait()).await.is_err() {
            let _ = child.kill().await;
        }
    }

    /// Why it is not running, if it is not: how it ended (a crash, a kill from outside), or
    /// that it could not be started; `None` while it runs.
    pub fn not_running(&mut self) -> Option<String> {
        match self.child.as_mut() {
            None => Some("not started".into()),
            Some(child) => child.try_wait().ok().flatten().map(|status| status.to_string()),
        }
    }

    /// Starts it again on the same ports and store.
    pub async fn restart(&mut self) -> Result<(), BusError> {
        self.stop().await;
        self.spawn().await
    }
}

/// What a nats-server says about its fsync, read from its monitoring endpoint's `/varz`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Durability {
    /// `sync_interval: always`: an acknowledged publish is on disk.
    SyncAlways,
    /// Synced every `interval`: acknowledged events younger than that can be lost.
    Interval(Duration),
    /// Could not be read (no monitoring URL, unreachable, not JetStream).
    Unknown(String),
}

impl Durability {
    /// Why acknowledged events may be lost with this server, if they may.
    pub fn risk(&self) -> Option<String> {
        match self {
            Durability::SyncAlways => None,
            Durability::Interval(every) => Some(format!(
                "nats-server fsyncs JetStream only every {}: a power cut or kernel crash loses events it already acknowledged; configure `jetstream {{ sync_interval: always }}`",
                humantime::format_duration(*every)
            )),
            Durability::Unknown(why) => Some(format!("cannot tell whether nats-server fsyncs acknowledged events ({why})")),
        }
    }
}

/// Reads the JetStream sync setting of the server whose monitoring endpoint is `monitor_url`.
pub async fn durability(monitor_url: Option<&str>) -> Durability {
    let Some(base) = monitor_url else {
        return Durability::Unknown("no monitoring URL configured (SHOPMESH_NATS_MONITOR_URL)".into());
    };
    let url = format!("{}/varz", base.trim_end_matches('/'));
    let read = async {
        let varz: serde_json::Value = reqwest::Client::new()
            .get(&url)
            .timeout(Duration::from_secs(3))
            .send()
            .await
            .and_then(|r| r.error_for_status())
            .map_err(|e| e.to_string())?
            .json()
            .await
            .map_err(|e| e.to_string())?;
        let config = varz.pointer("/jetstream/config").ok_or("the server has no JetStream configuration in /varz")?;
        if config.get("sync_always").and_then(|v| v.as_bool()) == Some(true) {
            return Ok(Durability::SyncAlways);
        }
        // Nanoseconds; nats-server's default is two minutes.
        let nanos = config.get("sync_interval").and_then(|v| v.as_u64()).unwrap_or(120_000_000_000);
        Ok::<_, String>(Durability::Interval(Duration::from_nanos(nanos)))
    };
    read.await.unwrap_or_else(|why| Durability::Unknown(format!("{url}: {why}")))
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn version_gate() {
        assert!(check_version("2.10.0").is_ok());
        assert!(check_version("2.15.1").is_ok());
        assert!(check_version("3.0.0").is_ok());
        assert!(check_version("2.9.10").is_err());
        assert!(check_version("garbage").is_err());
    }

    #[test]
    fn atomic_batches_from_2_14() {
        assert!(takes_atomic_batches("2.14.0"));
        assert!(takes_atomic_batches("v2.15.1"));
        assert!(takes_atomic_batches("3.0.0"));
        assert!(!takes_atomic_batches("2.12.1"));
        assert!(!takes_atomic_batches("2.10.0"));
        assert!(!takes_atomic_batches("garbage"));
    }
}
