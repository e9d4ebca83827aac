//! Probes for an orchestrator: `/healthz` says the process answers, `/readyz` whether it
//! can do its work now — the database answers, NATS is connected and stream `SHOP` is
//! there, and every plugin with an active version is loaded. Unauthenticated (they reveal
//! nothing but up or down, and a kubelet carries no token).

use std::{sync::Arc, time::Duration};

use poem::web::Data;
use poem_openapi::{payload::Json, ApiResponse, Object, OpenApi};

use super::ApiTags;
use crate::{bus::STREAM, plugins::PluginHost, store::Db};

/// What `/readyz` looks at, besides the plugin host.
#[derive(Clone)]
pub struct Probes {
    pub db: Db,
    pub nats: async_nats::Client,
}

/// How long one check may take before it counts as failed.
const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

#[derive(Debug, Clone, Object)]
pub struct Health {
    /// `ok`.
    pub status: String,
}

#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Readiness {
    /// `ready`, or `not ready`.
    pub status: String,
    /// Why not, when not ready: the first failed check.
    pub reason: Option<String>,
    pub database: bool,
    pub nats: bool,
    pub stream: bool,
    /// Plugins running (an active, loaded version).
    pub plugins_loaded: u32,
    /// Plugins whose version the fleet runs this host refused (a configuration value or a
    /// grant of its own), or whose component in its plugins folder it refused as it started
    /// (the plugin status says why): it runs another version of each, or none, and their
    /// events wait for the other hosts. The host is ready all the same.
    pub plugins_refused: Vec<String>,
}

#[derive(ApiResponse)]
pub enum ReadyResponse {
    /// Ready for traffic.
    #[oai(status = 200)]
    Ready(Json<Readiness>),
    /// Not ready; `reason` says what is missing.
    #[oai(status = 503)]
    NotReady(Json<Readiness>),
}

pub struct HealthApi;

#[OpenApi]
impl HealthApi {
    /// Liveness
    ///
    /// 200 while the process answers HTTP.
    #[oai(path = "/healthz", method = "get", operation_id = "healthz", tag = "ApiTags::Health")]
    async fn healthz(&self) -> Json<Health> {
        Json(Health { status: "ok".into() })
    }

    /// Readiness
    ///
    /// 200 when the database answers, NATS is connected and stream SHOP exists; 503 with the
    /// reason otherwise. `plugins_loaded` counts the plugins running here; `plugins_refused`
    /// names those whose version the fleet runs this host refused.
    #[oai(path = "/readyz", method = "get", operation_id = "readyz", tag = "ApiTags::Health")]
    async fn readyz(&self, probes: Data<&Probes>, host: Data<&Arc<PluginHost>>) -> ReadyResponse {
        let database = tokio::time::timeout(CHECK_TIMEOUT, sqlx::query("SELECT 1").execute(probes.db.pool()))
            .await
            .is_ok_and(|r| r.is_ok());
        let nats = probes.nats.connection_state() == async_nats::connection::State::Connected;
        let stream = nats
            && tokio::time::timeout(CHECK_TIMEOUT, async_nats::jetstream::new(probes.nats.clone()).get_stream(STREAM))
                .await
                .is_ok_and(|r| r.is_ok());
        let status = host.registry.status();
        let plugins_loaded = status.iter().filter(|s| s.active_version.is_some()).count() as u32;
        let reason = if !database {
            Some("the database does not answer".to_owned())
        } else if !nats {
            Some("not connected to NATS".to_owned())
        } else if !stream {
            Some(format!("stream {STREAM} cannot be read"))
        } else {
            None
        };
        // Said, not gating: one upload could otherwise take every host with other values
        // out of its load balancer at once, the shop API with them. Names only: the reason
        // may quote a configuration value, and this probe takes no token.
        let plugins_refused = host.registry.refusals().into_iter().map(|(name, _)| name).collect();
        let ready = reason.is_none();
        let body = Json(Readiness {
            status: if ready { "ready" } else { "not ready" }.into(),
            reason,
            database,
            nats,
            stream,
            plugins_loaded,
            plugins_refused,
        });
        if ready { ReadyResponse::Ready(body) } else { ReadyResponse::NotReady(body) }
    }
}
