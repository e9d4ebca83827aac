//! The NATS side: connecting, refusing servers older than 2.10, the `SHOP` stream, and how
//! durable a server says it is. The `nats-server` a host starts for itself is [`crate::embedded`].

use std::{sync::Arc, time::Duration};

use async_nats::jetstream::{self, stream};

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
    /// This host's database: the stream is made with it, or claimed for it when it has
    /// none; a stream of another database is refused.
    pub database: Option<Owner>,
}

/// The database whose events this host expects stream `SHOP` to hold
/// ([`crate::store::Db::identity`]), and where to say that it holds another's: found at start,
/// the host refuses to start; found later (the stream removed and made again by a host of
/// another shop), the host stops, rather than publish into it or consume from it.
#[derive(Debug, Clone)]
pub struct Owner {
    pub database: String,
    other: Arc<tokio::sync::watch::Sender<Option<String>>>,
}

impl StreamSettings {
    /// Why this host must not use stream `SHOP` any more, once it turned out to hold another
    /// database's events: the relay publishes nothing more and the consumers take nothing
    /// more, while the host stops.
    pub fn refused(&self) -> Option<String> {
        self.database.as_ref().and_then(|owner| owner.other.borrow().clone())
    }
}

impl Owner {
    /// The owner, and what says the reason once the stream turns out to be another's.
    pub fn new(database: String) -> (Owner, tokio::sync::watch::Receiver<Option<String>>) {
        let (other, told) = tokio::sync::watch::channel(None);
        (Owner { database, other: Arc::new(other) }, told)
    }
}

/// The key of stream `SHOP`'s metadata naming the database its events belong to.
pub const DATABASE_KEY: &str = "shopmesh.database";

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
    /// Another process holds the store's lock: a running shopmesh host on the same data
    /// directory (or a test's server on the same folder).
    #[error("{} is in use by another running shopmesh host (it holds host.lock there): one host per data directory", .0.display())]
    StoreInUse(std::path::PathBuf),
    #[error("refusing to start (SHOPMESH_REQUIRE_SYNC_ALWAYS): {0}")]
    NotDurable(String),
    /// Every host of a fleet must write into one database: this one would apply events whose
    /// orders are in another, and their effects would land where nobody looks.
    #[error(
        "stream {STREAM} holds the events of another database ({theirs}; this host's is {ours}): the hosts \
         sharing a NATS share one database. Point this host at that database (SHOPMESH_DATABASE_URL, or the \
         data directory it was in), or give it a NATS of its own (see the README, \"One database per fleet\", \
         for a new shop on this NATS and for a database restored from a backup)"
    )]
    OtherDatabase { theirs: String, ours: String },
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
        metadata: settings.database.iter().map(|owner| (DATABASE_KEY.to_owned(), owner.database.clone())).collect(),
        ..Default::default()
    })
    .await
    .map_err(|e| BusError::Stream(e.to_string()))?;
    // A stream made before atomic batches (or on an older server, since upgraded) gets them
    // turned on; without them the relay publishes one event at a time, which works, slower.
    // A stream made with a shorter de-duplication window than configured gets the configured
    // one: the relay's exactly-once rests on it outlasting two leases (see `config`), and an
    // existing stream is otherwise taken as it is. Nothing else of its configuration changes.
    // A stream made before streams said their database (or by a host that did not know its
    // own) is claimed for this host's.
    let current = &stream.cached_info().config;
    let claim = match (&settings.database, current.metadata.get(DATABASE_KEY)) {
        (Some(owner), Some(theirs)) if owner.database != *theirs => {
            let refused = BusError::OtherDatabase { theirs: theirs.clone(), ours: owner.database.clone() };
            owner.other.send_replace(Some(refused.to_string()));
            return Err(refused);
        }
        (Some(owner), None) => Some(&owner.database),
        _ => None,
    };
    let mut allowed = current.allow_atomic_publish;
    let (widen, allow) = (current.duplicate_window < settings.duplicate_window, atomic && !allowed);
    if widen || allow || claim.is_some() {
        let mut config = current.clone();
        config.allow_atomic_publish |= atomic;
        config.duplicate_window = config.duplicate_window.max(settings.duplicate_window);
        config.metadata.extend(claim.map(|id| (DATABASE_KEY.to_owned(), id.clone())));
        match js.update_stream(&config).await {
            Ok(info) => allowed = info.config.allow_atomic_publish,
            Err(e) => tracing::warn!(
                error = %e, widen, allow, claim = claim.is_some(),
                "stream {STREAM}: cannot widen its de-duplication window, allow atomic batches (one by one, then) or say its database"
            ),
        }
    }
    Ok((js, atomic && allowed))
}

/// [`ensure_ready`], waiting up to `patience` for the first connection.
pub async fn wait_ready(client: &async_nats::Client, stream: &StreamSettings, patience: Duration) -> Result<(), BusError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match ensure_ready(client, stream).await {
            Err(BusError::NotConnected) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Whether the relay may publish to a server of `version` in atomic batches: 2.14 and newer.
/// Atomic batches came in 2.12.0 without `Nats-Msg-Id` de-duplication (added in a later 2.12
/// release), and the relay's exactly-once rests on it; 2.14 is the first minor line where every
/// release has it (2.15 is what the tests run).
pub fn takes_atomic_batches(version: &str) -> bool {
    major_minor(version).is_some_and(|v| v >= (2, 14))
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
