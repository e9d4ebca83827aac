//! Assembling the application: database, NATS (external or a child nats-server), the
//! outbox relay, the sweeper and the HTTP server. Tests build it in-process with port 0.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use anyhow::Context;
use secrecy::ExposeSecret;
use poem::{listener::{Acceptor, Listener, TcpListener}, Server};
use tokio::{sync::{watch, Notify}, task::JoinHandle};

use crate::{
    api::{self, AdminToken, CallbackSecret, Probes},
    bus::{self, BusError, NatsServer, StreamSettings},
    config::{Settings, DEV_ADMIN_TOKEN, DEV_CALLBACK_SECRET},
    demo,
    outbox::{Relay, RelaySettings},
    plugins::{consumer, fleet, folder, runtime::{Limits, Runtime}, DeliverySettings, PluginHost},
    replay::runner::Replays,
    shop::{sweeper::{self, SweeperSettings}, Shop},
    store::{Backend, Db},
};

pub struct Application {
    address: SocketAddr,
    shop: Arc<Shop>,
    plugins: Arc<PluginHost>,
    nats_url: String,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    server: JoinHandle<std::io::Result<()>>,
    // Dropped last: the child nats-server outlives the tasks that use it.
    _nats: Option<NatsServer>,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Application> {
        settings.validate()?;
        if settings.callback_secret.expose_secret() == DEV_CALLBACK_SECRET || settings.admin_token.expose_secret() == DEV_ADMIN_TOKEN {
            tracing::warn!("using the development callback secret or admin token: set SHOPMESH_CALLBACK_SECRET and SHOPMESH_ADMIN_TOKEN for anything but a demo");
        }

        let db_url = settings.database_url();
        let db = Db::connect_with(&db_url, settings.db_max_connections, settings.sqlite_synchronous)
            .await
            .with_context(|| format!("connecting to the database ({})", redact_url(&db_url)))?;
        db.migrate().await.context("migrating the database")?;
        tracing::info!(backend = ?db.backend(), "database ready");
        if db.backend() == Backend::Sqlite && settings.worker_id != 1 {
            tracing::warn!("several hosts cannot share a SQLite file; use Postgres for a fleet");
        }

        let (nats_url, nats_child) = match &settings.nats_url {
            Some(url) => (url.clone(), None),
            None => {
                let bin = bus::find_nats_server(settings.nats_server_bin.as_deref()).context(
                    "no NATS URL configured and no nats-server found (set SHOPMESH_NATS_URL, or \
                     SHOPMESH_NATS_SERVER_BIN, or run scripts/setup to install one into .venv)",
                )?;
                let child = NatsServer::start(&bin, &settings.data_dir.join("nats"), 0).await?;
                tracing::info!(url = %child.url(), "started embedded nats-server");
                (child.url(), Some(child))
            }
        };
        let stream = StreamSettings {
            duplicate_window: settings.duplicate_window,
            max_age: settings.stream_max_age,
        };
        let client = bus::connect(&nats_url).await?;
        // Give the first connection a moment, so a too-old server is refused at start with a
        // clear message; an unreachable one is not fatal (orders still work, rows wait).
        match wait_ready(&client, &stream, Duration::from_secs(5)).await {
            Ok(()) => tracing::info!(server = %client.server_info().version, "JetStream stream {} ready", bus::STREAM),
            Err(e @ BusError::ServerTooOld { .. }) => return Err(e.into()),
            Err(e) => tracing::warn!(error = %e, "NATS not ready yet; events will wait in the outbox"),
        }

        let fault = settings.fault()?;
        if let Some(f) = fault {
            tracing::warn!(fault = ?f, "fault injection is ON");
        }
        let outbox_wake = Arc::new(Notify::new());
        let shop = Arc::new(Shop::new(db.clone(), settings.worker_id, fault, outbox_wake.clone()));
        if settings.demo_data {
            // Through a shop without injected faults: the demo order must go through.
            demo::load(&shop.with_fault(None)).await.context("loading demo data")?;
            tracing::info!(
                user = demo::USER_ID, goods = demo::GOODS_ID, coupon = demo::COUPON_ID, order = demo::ORDER_ID, payment = demo::PAY_ID,
                "demo data loaded (刘备, 华为P30 and 荣耀20, her coupon, her confirmed 荣耀20 order with an unpaid payment)"
            );
        }

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
        ));
        let (shutdown, signal) = watch::channel(false);
        // Every plugin name, at start or arriving later, gets its consumer the same way.
        // (A weak handle: the host must not keep itself alive through its own hook.)
        let (weak, hook_client, hook_stream, hook_signal) =
            (Arc::downgrade(&plugins), client.clone(), stream.clone(), signal.clone());
        plugins.registry.on_new_plugin(move |name| {
            if let Some(host) = weak.upgrade() {
                tokio::spawn(consumer::run(host, hook_client.clone(), hook_stream.clone(), name, hook_signal.clone()));
            }
        });
        plugins.registry.join_fleet(client.clone(), stream.clone());
        plugins.registry.install_dir(&settings.plugins_dir);
        let (from_folder, from_fleet) = (plugins.clone(), plugins.clone());
        let mut tasks = vec![
            tokio::spawn(consumer::run_guard(plugins.clone(), client.clone(), stream.clone(), signal.clone())),
            tokio::spawn(folder::watch(
                move |name: &str, bytes: &[u8]| from_folder.registry.receive("the plugins folder", name, bytes, true),
                settings.plugins_dir.clone(),
                settings.plugin_watch,
                signal.clone(),
            )),
            tokio::spawn(fleet::follow(
                move |name: &str, bytes: &[u8], run: bool| from_fleet.registry.receive("the fleet registry", name, bytes, run),
                client.clone(),
                stream.clone(),
                signal.clone(),
            )),
        ];
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
        tasks.push(tokio::spawn(relay.run(signal.clone())));
        tasks.push(tokio::spawn(sweeper::run(shop.clone(), sweeper_settings, signal.clone())));

        let acceptor = TcpListener::bind(settings.http_addr.to_string())
            .into_acceptor()
            .await
            .with_context(|| format!("binding {}", settings.http_addr))?;
        let address = *acceptor
            .local_addr()
            .first()
            .and_then(|a| a.as_socket_addr())
            .context("listener has no socket address")?;
        let replays = Arc::new(Replays::new(plugins.clone(), client.clone(), stream.clone(), format!("worker-{}", settings.worker_id)));
        replays.recover().await.context("recovering replays")?;
        let routes = api::routes(
            shop.clone(),
            plugins.clone(),
            replays,
            Probes { db: shop.db.clone(), nats: client.clone() },
            AdminToken(settings.admin_token.clone()),
            CallbackSecret(settings.callback_secret.clone()),
        );
        let mut stop = signal.clone();
        let server = tokio::spawn(Server::new_with_acceptor(acceptor).run_with_graceful_shutdown(
            routes,
            async move {
                let _ = stop.wait_for(|s| *s).await;
            },
            Some(Duration::from_secs(10)),
        ));
        tracing::info!(
            api = %format_args!("http://{address}/api"),
            docs = %format_args!("http://{address}/docs"),
            database = %redact_url(&db_url),
            data = %settings.data_dir.display(),
            nats = %nats_url,
            "shopmesh ready: Swagger UI at http://{address}/docs"
        );
        Ok(Application { address, shop, plugins, nats_url, shutdown, tasks, server, _nats: nats_child })
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

    /// Serves until Ctrl-C or SIGTERM, then stops gracefully.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutting down");
        self.stop().await;
        Ok(())
    }

    /// Stops the server, the relay and the sweeper, then the embedded nats-server.
    pub async fn stop(self) {
        let _ = self.shutdown.send(true);
        let _ = self.server.await;
        for task in self.tasks {
            let _ = task.await;
        }
    }
}

async fn wait_ready(client: &async_nats::Client, stream: &StreamSettings, patience: Duration) -> Result<(), BusError> {
    let deadline = tokio::time::Instant::now() + patience;
    loop {
        match bus::ensure_ready(client, stream).await {
            Err(BusError::NotConnected) if tokio::time::Instant::now() < deadline => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            other => return other.map(|_| ()),
        }
    }
}

/// Drops the password from a database URL before it is shown.
fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split(':').next().unwrap_or_default();
            format!("{}{}:***{}", &url[..scheme + 3], user, &url[at..])
        }
        _ => url.to_owned(),
    }
}
