//! What an operator looks at (the console's overview and order pages read these): every
//! plugin's load in one answer, and one order's story.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{param::Path, payload::Json, Object, OpenApi};

use super::{
    admin::{AdminAuth, AdminError},
    errors::api_error,
    metrics::{consumer_lag, READ_TIMEOUT},
    ApiTags, Probes,
};
use crate::{
    ids::{now_ms, Id},
    outbox,
    plugins::{
        dead_letters, durable_name,
        status::{HostPlugin, HostStatus},
        PluginHost,
    },
    shop::Shop,
    timeline::{self, OrderTimeline},
};

/// The mesh at a glance. A figure the database could not give in time is absent, not 0:
/// an overloaded database must not read as an empty backlog.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct Overview {
    pub plugins: Vec<PluginLoad>,
    /// Outbox rows not yet acknowledged by JetStream.
    pub outbox_unsent: Option<i64>,
    /// Age of the oldest of them (0 when none).
    pub outbox_oldest_unsent_age_seconds: Option<f64>,
    /// Dead letters not yet redriven, all plugins.
    pub dead_letters_open: Option<i64>,
    /// Seconds between two points of `recent_rates`.
    pub sample_seconds: i64,
    /// Every live host of the fleet and the versions it runs (from the fleet's roll call,
    /// refreshed every `sample_seconds`; a host that stops leaves it within 30 s). Empty
    /// while this host is not connected to NATS.
    pub hosts: Vec<HostStatus>,
    /// Whether this host is connected to NATS now. Without it no event reaches its
    /// plugins, the outbox waits, and the fleet (`hosts`, `pending`) cannot be seen.
    pub nats_connected: bool,
}

/// One plugin's load.
#[derive(Debug, Clone, Object)]
#[oai(skip_serializing_if_is_none)]
pub struct PluginLoad {
    pub name: String,
    pub active_version: Option<String>,
    pub enabled: bool,
    /// Attempts to handle an event on this host since it started (a retried event counts
    /// each time), and how many of those failed.
    pub invocations: i64,
    pub failures: i64,
    /// Events handled per second on this host over the last sample: applied, or applied
    /// before (a failed attempt is not an event handled).
    pub events_per_second: f64,
    /// The same summed over every host of the fleet, as each last answered the roll call
    /// (this host's own figure when there is no roll call).
    pub fleet_events_per_second: f64,
    /// Failed attempts per second on this host over the last sample (to be retried, or
    /// dead-lettered): above 0, the plugin is failing now.
    pub failures_per_second: f64,
    /// The same summed over every host of the fleet, as each last answered the roll call.
    pub fleet_failures_per_second: f64,
    /// Events in the stream its consumer has not received yet (fleet-wide); absent when
    /// JetStream could not be asked.
    pub pending: Option<i64>,
    /// Delivered and not yet acknowledged.
    pub ack_pending: Option<i64>,
    pub dead_letters_open: Option<i64>,
    /// Events handled per second over the last minutes, oldest first, one point per
    /// `sample_seconds`.
    pub recent_rates: Vec<f64>,
    /// Failed attempts per second over the same minutes, point for point.
    pub recent_failure_rates: Vec<f64>,
    /// Why this host refused a version it should run: the fleet's, or its folder's as it
    /// started (see the plugin status).
    pub refused: Option<String>,
}

api_error!(lookups {
    /// Errors of reading an order's timeline.
    TimelineError: admin 404 "SHOP_ORDER_INVALID": "No such order.";
});

pub struct ObserveApi;

#[OpenApi(prefix_path = "/api/admin")]
impl ObserveApi {
    /// The mesh at a glance
    ///
    /// Per plugin: active version, enabled, events handled and failed attempts per second on
    /// this host and over the fleet (with the last minutes' rates), pending events in its
    /// consumer, failures, open dead letters; the outbox backlog; whether this host is
    /// connected to NATS; and every host of the fleet with the versions it runs. What
    /// JetStream or the database cannot answer within two seconds is left out.
    #[oai(path = "/overview", method = "get", operation_id = "getOverview", tag = "ApiTags::Admin")]
    async fn overview(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, probes: Data<&Probes>) -> Result<Json<Overview>, AdminError> {
        let db = &host.shop().db;
        let status = host.registry.status();
        let lag = consumer_lag(&probes.nats, status.iter().map(|s| s.name.as_str())).await;
        let open = tokio::time::timeout(READ_TIMEOUT, dead_letters::open_counts(db)).await.ok().and_then(Result::ok);
        let backlog = tokio::time::timeout(READ_TIMEOUT, outbox::backlog(db)).await.ok().and_then(Result::ok);
        let hosts = tokio::time::timeout(READ_TIMEOUT, host.registry.roll_call()).await.ok().and_then(Result::ok).unwrap_or_default();
        let (mut rates, mut failure_rates) = (host.metrics.rates.rates(), host.metrics.failure_rates.rates());
        let plugins = status
            .into_iter()
            .map(|s| {
                let lag = lag.iter().find(|(n, _)| *n == durable_name(&s.name)).map(|(_, l)| *l);
                let recent_rates = rates.remove(&s.name).unwrap_or_default();
                let recent_failure_rates = failure_rates.remove(&s.name).unwrap_or_default();
                let here = recent_rates.last().copied().unwrap_or(0.0);
                let failing = recent_failure_rates.last().copied().unwrap_or(0.0);
                let on_hosts = || hosts.iter().flat_map(|h| &h.plugins).filter(|p| p.name == s.name);
                let fleet = |here: f64, of: fn(&HostPlugin) -> f64| if hosts.is_empty() { here } else { on_hosts().map(of).sum::<f64>() };
                PluginLoad {
                    events_per_second: here,
                    fleet_events_per_second: fleet(here, |p| p.events_per_second),
                    failures_per_second: failing,
                    fleet_failures_per_second: fleet(failing, |p| p.failures_per_second),
                    pending: lag.map(|l| l.pending as i64),
                    ack_pending: lag.map(|l| l.ack_pending as i64),
                    dead_letters_open: open.as_ref().map(|open| open.iter().find(|(p, _)| *p == s.name).map_or(0, |(_, n)| *n)),
                    recent_rates,
                    recent_failure_rates,
                    refused: s.refused,
                    name: s.name,
                    active_version: s.active_version,
                    enabled: s.enabled,
                    invocations: s.invocations,
                    failures: s.failures,
                }
            })
            .collect();
        Ok(Json(Overview {
            plugins,
            outbox_unsent: backlog.map(|(unsent, _)| unsent),
            outbox_oldest_unsent_age_seconds: backlog.map(|(_, oldest)| oldest.map_or(0.0, |t| (now_ms() - t).max(0) as f64 / 1e3)),
            dead_letters_open: open.map(|open| open.iter().map(|(_, n)| n).sum()),
            sample_seconds: crate::plugins::status::RATE_SAMPLE.as_secs() as i64,
            hosts,
            nats_connected: probes.nats.connection_state() == async_nats::connection::State::Connected,
        }))
    }

    /// An order's timeline
    ///
    /// Its states, step records (taken by the order flow, given back by plugins), every
    /// event written for it with its stream sequence, what each plugin did with each event
    /// (version, time, effects), and its dead letters.
    #[oai(path = "/orders/:order_id/timeline", method = "get", operation_id = "getOrderTimeline", tag = "ApiTags::Admin")]
    async fn timeline(
        &self,
        _auth: AdminAuth,
        shop: Data<&Arc<Shop>>,
        #[oai(example = "super::examples::order_id")] order_id: Path<Id>,
    ) -> Result<Json<OrderTimeline>, TimelineError> {
        Ok(Json(timeline::of_order(&shop, order_id.0).await?))
    }
}
