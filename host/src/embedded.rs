//! The nats-server a host starts for itself when no NATS URL is configured (`scripts/run`,
//! the demo): [`NatsServer`], a child process with JetStream on loopback (also what the tests
//! and the benchmarks start), and [`keep`]. Nothing else would notice it die: the client only
//! says it is reconnecting, orders wait in the outbox and `/readyz` says 503 until someone
//! restarts the host. So it is kept: when it is not running, it is started again on the same
//! port and store (the client reconnects by itself), waiting longer each time it dies soon
//! after a start. One a host left behind when it was killed is stopped at the next start.

use std::{
    net::{SocketAddr, TcpListener},
    path::{Path, PathBuf},
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::{
    process::{Child, Command},
    sync::{watch, Mutex},
};

use crate::bus::BusError;

/// How often it is looked at; the client's own reconnect attempts come about as often.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// The longest wait between two starts of a server that keeps dying.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Running this long after a start, a server that dies is started again at once.
const STEADY: Duration = Duration::from_secs(60);

/// Keeps `server` running until shutdown.
pub async fn keep(server: Arc<Mutex<NatsServer>>, mut shutdown: watch::Receiver<bool>) {
    let (mut backoff, mut started) = (LOOK_EVERY, None::<Instant>);
    while !*shutdown.borrow() {
        let mut pause = LOOK_EVERY;
        {
            let mut server = server.lock().await;
            if let Some(why) = server.not_running() {
                backoff = if started.is_some_and(|t| t.elapsed() < STEADY) { (backoff * 2).min(MAX_PAUSE) } else { LOOK_EVERY };
                tracing::error!(%why, url = %server.url(), "the embedded nats-server is not running; starting it again on the same port and store");
                started = Some(Instant::now());
                match server.restart().await {
                    Ok(()) => tracing::info!(url = %server.url(), "embedded nats-server running again"),
                    // One that did not answer in time may still be recovering its store: it
                    // is left running, and the next look says whether it died.
                    Err(e) => tracing::error!(error = %e, "the embedded nats-server did not come back yet"),
                }
                pause = backoff;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            // A dropped sender is a stop too (the host is going away without one).
            stopped = shutdown.changed() => if stopped.is_err() { return },
        }
    }
}

/// Where to find `nats-server`: an explicit path (a bare name on `PATH`), else the project's `.venv` (where the
/// README's commands install the PyPI build), else `PATH`.
pub fn find_nats_server(explicit: Option<&Path>) -> Option<PathBuf> {
    let on_path = |name: &Path| std::env::var_os("PATH").and_then(|paths| std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file()));
    match explicit {
        // A bare name, as starting it would look it up.
        Some(name) if name.components().count() == 1 => on_path(name),
        Some(path) => Some(path.to_path_buf()),
        None => Some(PathBuf::from(".venv/bin/nats-server")).filter(|venv| venv.is_file()).or_else(|| on_path(Path::new("nats-server"))),
    }
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
    /// Held while it lives: no other host starts a server on this store meanwhile.
    _lock: std::fs::File,
}

impl NatsServer {
    /// Starts a server storing JetStream data under `store`; port 0 picks a free port.
    pub async fn start(bin: &Path, store: &Path, port: u16, fsync: Fsync) -> Result<NatsServer, BusError> {
        NatsServer::start_claimed(bin, Claim::take(store)?, port, fsync).await
    }

    /// [`start`](Self::start) on a store claimed before (a host claims it before it touches
    /// its database, and starts the server after).
    pub async fn start_claimed(bin: &Path, claim: Claim, port: u16, fsync: Fsync) -> Result<NatsServer, BusError> {
        let Claim { store, lock } = claim;
        let mut server = NatsServer { bin: bin.to_path_buf(), store, port, monitor_port: 0, fsync, cluster: None, child: None, _lock: lock };
        server.spawn_on_free_ports(port == 0).await?;
        Ok(server)
    }

    /// Spawns on free ports (the client port too when `any_port`). A free port can be taken
    /// by someone else before the server binds it: then the server exits, and it tries others,
    /// a few times. A server that runs but does not answer yet is recovering a large store: it
    /// is waited for (a minute), never started a second time over itself.
    async fn spawn_on_free_ports(&mut self, any_port: bool) -> Result<(), BusError> {
        let spawn_err = |e: std::io::Error| BusError::Spawn(e.to_string());
        let mut last = None;
        for _ in 0..5 {
            if any_port {
                self.port = free_port().map_err(spawn_err)?;
            }
            self.monitor_port = free_port().map_err(spawn_err)?;
            match self.spawn(Duration::from_secs(60)).await {
                Ok(()) => return Ok(()),
                Err(e) if self.not_running().is_some() => last = Some(e),
                Err(e) => return Err(e),
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
            let Claim { store, lock } = Claim::take(&dir.join(&name))?;
            let mut server = NatsServer { bin: bin.to_path_buf(), store, port: 0, monitor_port: 0, fsync, cluster: Some((name, *route, peers)), child: None, _lock: lock };
            server.spawn_on_free_ports(true).await?;
            servers.push(server);
        }
        Ok(servers)
    }

    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Where it keeps JetStream's data (under `jetstream/`), its configuration and pid file.
    pub fn store(&self) -> &Path {
        &self.store
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
            "listen: \"127.0.0.1:{}\"\nhttp: \"127.0.0.1:{}\"\npid_file: {}\njetstream {{\n  store_dir: {}{sync}\n}}\n{cluster}",
            self.port,
            self.monitor_port,
            quoted(&self.store.join(PID_FILE)),
            quoted(&self.store)
        )
    }

    /// Starts the server and waits up to `patience` for it to answer.
    async fn spawn(&mut self, patience: Duration) -> Result<(), BusError> {
        std::fs::create_dir_all(&self.store).map_err(|e| BusError::Spawn(e.to_string()))?;
        let conf = self.store.join("nats-server.conf");
        stop_orphans(&self.store, &conf).await?;
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
        let since = std::time::Instant::now();
        while since.elapsed() < patience {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                return Ok(());
            }
            if let Some(status) = self.not_running() {
                return Err(BusError::Spawn(format!("{} exited: {status}", self.bin.display())));
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        Err(BusError::Spawn(format!("no answer on {addr} after {}", humantime::format_duration(patience))))
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
        self.spawn(Duration::from_secs(5)).await
    }
}

/// The configuration file process `pid` was started with (`-c FILE`, resolved against its
/// working directory: a host of before took a relative data directory), if it was.
fn configured_by(pid: i32) -> Option<PathBuf> {
    let argv = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    let mut args = argv.split(|b| *b == 0);
    args.position(|arg| arg == b"-c")?;
    let file = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(args.next()?));
    Some(if file.is_absolute() { file } else { std::fs::read_link(format!("/proc/{pid}/cwd")).ok()?.join(file) })
}

/// Where a server writes its pid, in its store.
const PID_FILE: &str = "nats-server.pid";

/// A store held by this process: `store`, made canonical (the server's command line names its
/// configuration by it), and a lock on it (`host.lock`, `flock`) that lasts as long as the
/// server (or the claim) does.
pub struct Claim {
    store: PathBuf,
    lock: std::fs::File,
}

impl Claim {
    /// Takes the lock, or says the store is another running process's (one host per data
    /// directory).
    pub fn take(store: &Path) -> Result<Claim, BusError> {
        use std::os::fd::AsRawFd;
        let spawn_err = |e: std::io::Error| BusError::Spawn(format!("{}: {e}", store.display()));
        std::fs::create_dir_all(store).map_err(spawn_err)?;
        // Canonical: a symlink on the way re-pointed later must not make another store's
        // server look like one of this store's.
        let store = std::fs::canonicalize(store).map_err(spawn_err)?;
        let lock = std::fs::OpenOptions::new().create(true).truncate(false).write(true).open(store.join("host.lock")).map_err(spawn_err)?;
        // SAFETY: flock(2) on a descriptor the File owns, for as long as it does.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() != std::io::ErrorKind::WouldBlock {
                return Err(BusError::Spawn(format!("{}: cannot lock host.lock: {e}", store.display())));
            }
            return Err(BusError::StoreInUse(store));
        }
        Ok(Claim { store, lock })
    }
}

/// Stops the servers that a host which died without stopping them (SIGKILL, out of memory)
/// left running on `store`: two servers must never share a store, and an orphan would go on
/// holding it. Called with the store's lock held, so whatever serves it is no running host's;
/// known by its command line, whose `-c` file is `conf` (the pid file may be gone, or
/// rewritten by a server started over it).
async fn stop_orphans(store: &Path, conf: &Path) -> Result<(), BusError> {
    let same = |theirs: PathBuf| theirs == conf || theirs.canonicalize().is_ok_and(|t| conf.canonicalize().is_ok_and(|c| t == c));
    let serves_store = |pid: i32| configured_by(pid).is_some_and(same);
    let pids = std::fs::read_dir("/proc").into_iter().flatten().filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok());
    for pid in pids.filter(|pid| serves_store(*pid)).collect::<Vec<_>>() {
        tracing::warn!(pid, store = %store.display(), "stopping a nats-server left running on this store by a host that died");
        // Politely first, so that it closes its store; then for good.
        let mut stopped = false;
        'signals: for (signal, patience) in [(libc::SIGTERM, 80), (libc::SIGKILL, 200)] {
            // SAFETY: kill(2) on a pid whose command line names this store's configuration.
            unsafe { libc::kill(pid, signal) };
            for _ in 0..patience {
                if !serves_store(pid) {
                    stopped = true;
                    break 'signals;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
        }
        if !stopped {
            return Err(BusError::Spawn(format!("the nats-server left on {} (pid {pid}) did not stop", store.display())));
        }
    }
    Ok(())
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
