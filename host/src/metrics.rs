//! The host's Prometheus metrics that are counted as things happen: plugin invocations by
//! outcome, handler time and fuel, hot swaps, rows pruned, HTTP requests. One [`Metrics`] per
//! application (not the crate's global registry), so two hosts in one test process count
//! apart. What is better read at scrape time (consumer lag, outbox backlog, dead letters,
//! replays) is gathered by `GET /metrics` itself ([`crate::api`]) and encoded with these.
//!
//! Names follow Prometheus conventions (`_total`, `_seconds`, base units); the HTTP pair
//! follows the OpenTelemetry HTTP server names, the consumer gauges the NATS exporter's.

use std::{
    collections::{HashMap, VecDeque},
    sync::Mutex,
    time::{Duration, Instant},
};

use prometheus::{
    core::Collector, proto::MetricFamily, Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// The outcome of one event for one plugin, as counted in `shopmesh_plugin_invocations_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Its effects committed now.
    Applied,
    /// Applied before (a redelivery, or another host): nothing done again.
    Skipped,
    /// Failed; will be delivered again.
    Retried,
    /// Failed for the last time (or malformed): in the dead-letter store.
    DeadLettered,
    /// The plugin refused the event (`invalid-event`): dead-lettered at once.
    Refused,
    /// An operator's redrive of a dead letter failed again: the letter stays open. (A
    /// redrive that applies its event counts as `Applied`.)
    RedriveFailed,
    /// An `apply` replay failed on the event: it stays unapplied, nothing retries it. (One
    /// that applies it counts as `Applied`.)
    ReplayFailed,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Applied => "applied",
            Outcome::Skipped => "skipped",
            Outcome::Retried => "retried",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Refused => "refused",
            Outcome::RedriveFailed => "redrive_failed",
            Outcome::ReplayFailed => "replay_failed",
        }
    }
}

pub struct Metrics {
    registry: Registry,
    invocations: IntCounterVec,
    handler: HistogramVec,
    fuel: IntCounterVec,
    swaps: IntCounterVec,
    pruned: IntCounterVec,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    /// Recent per-plugin rates of events handled (applied, or applied before) and of
    /// failed attempts, for the console: a failing plugin must not look busier.
    pub rates: RateHistory,
    pub failure_rates: RateHistory,
}

/// Plugin handlers take tens of microseconds; the deadline is half a second.
const HANDLER_BUCKETS: &[f64] = &[0.00002, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.05, 0.25, 1.0];
/// HTTP requests: a millisecond when idle, a few hundred under a flash sale.
const HTTP_BUCKETS: &[f64] = &[0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0];

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let invocations = IntCounterVec::new(
            Opts::new("shopmesh_plugin_invocations_total", "Events handled by a plugin version, by outcome."),
            &["plugin", "version", "outcome"],
        )
        .expect("valid metric");
        let handler = HistogramVec::new(
            HistogramOpts::new("shopmesh_plugin_handler_duration_seconds", "Time in the plugin's handler (one wasm invocation).")
                .buckets(HANDLER_BUCKETS.to_vec()),
            &["plugin", "version"],
        )
        .expect("valid metric");
        let fuel = IntCounterVec::new(
            Opts::new("shopmesh_plugin_fuel_consumed_total", "Wasm fuel used by a plugin version's invocations."),
            &["plugin", "version"],
        )
        .expect("valid metric");
        let swaps = IntCounterVec::new(
            Opts::new("shopmesh_plugin_swaps_total", "Hot swaps: versions offered to this host, by result (activated, staged, rejected)."),
            &["plugin", "result"],
        )
        .expect("valid metric");
        let pruned = IntCounterVec::new(
            Opts::new("shopmesh_retention_deleted_rows_total", "Rows deleted past the retention, by table."),
            &["table"],
        )
        .expect("valid metric");
        let http_requests = IntCounterVec::new(
            Opts::new("http_server_requests_total", "HTTP requests answered, by operation and status."),
            &["method", "route", "status"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new("http_server_request_duration_seconds", "HTTP request duration.").buckets(HTTP_BUCKETS.to_vec()),
            &["method", "route"],
        )
        .expect("valid metric");
        let collectors: [Box<dyn Collector>; 7] = [
            Box::new(invocations.clone()),
            Box::new(handler.clone()),
            Box::new(fuel.clone()),
            Box::new(swaps.clone()),
            Box::new(pruned.clone()),
            Box::new(http_requests.clone()),
            Box::new(http_duration.clone()),
        ];
        for c in collectors {
            registry.register(c).expect("metric names are unique");
        }
        Metrics {
            registry,
            invocations,
            handler,
            fuel,
            swaps,
            pruned,
            http_requests,
            http_duration,
            rates: RateHistory::default(),
            failure_rates: RateHistory::default(),
        }
    }

    pub fn invocation(&self, plugin: &str, version: &str, outcome: Outcome) {
        self.invocations.with_label_values(&[plugin, version, outcome.label()]).inc();
    }

    /// One run of a plugin's handler: how long it took and the fuel it used.
    pub fn handler_ran(&self, plugin: &str, version: &str, took: Duration, fuel: u64) {
        self.handler.with_label_values(&[plugin, version]).observe(took.as_secs_f64());
        self.fuel.with_label_values(&[plugin, version]).inc_by(fuel);
    }

    pub fn swap(&self, plugin: &str, result: &str) {
        self.swaps.with_label_values(&[plugin, result]).inc();
    }

    pub fn pruned(&self, table: &str, rows: u64) {
        self.pruned.with_label_values(&[table]).inc_by(rows);
    }

    pub fn http_request(&self, method: &str, route: &str, status: u16, took: Duration) {
        // The client names the method, and any token is one: an unknown one is one label,
        // not a series per name (as unmatched paths are one route).
        let method = match method {
            "GET" | "HEAD" | "POST" | "PUT" | "DELETE" | "PATCH" | "OPTIONS" => method,
            _ => "OTHER",
        };
        self.http_requests.with_label_values(&[method, route, &status.to_string()]).inc();
        self.http_duration.with_label_values(&[method, route]).observe(took.as_secs_f64());
    }

    /// The text exposition of these metrics followed by `extra` (gathered at scrape time).
    pub fn render(&self, extra: Vec<MetricFamily>) -> String {
        let mut families = self.registry.gather();
        // The encoder refuses a family without series (a gauge with nothing to report).
        families.extend(extra.into_iter().filter(|f| !f.get_metric().is_empty()));
        let mut out = Vec::new();
        TextEncoder::new().encode(&families, &mut out).expect("text encoding into a Vec cannot fail");
        String::from_utf8(out).expect("the text format is UTF-8")
    }
}

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

/// Samples of named counters (a plugin's invocations on this host), the last
/// [`RateHistory::KEEP`] of them, turned into rates on request. Prometheus keeps history
/// for whoever runs one; this is the console's last few minutes without one.
#[derive(Default)]
pub struct RateHistory {
    samples: Mutex<VecDeque<(Instant, HashMap<String, u64>)>>,
}

impl RateHistory {
    /// Samples kept: five minutes at one every five seconds.
    pub const KEEP: usize = 61;

    pub fn record(&self, counters: impl IntoIterator<Item = (String, u64)>) {
        let mut samples = self.samples.lock().expect("rates lock");
        samples.push_back((Instant::now(), counters.into_iter().collect()));
        while samples.len() > Self::KEEP {
            samples.pop_front();
        }
    }

    /// Per name, events per second between consecutive samples, oldest first (a name that
    /// appeared later has fewer points; a counter that went down counts as 0).
    pub fn rates(&self) -> HashMap<String, Vec<f64>> {
        let samples = self.samples.lock().expect("rates lock");
        let mut out: HashMap<String, Vec<f64>> = HashMap::new();
        for pair in samples.iter().collect::<Vec<_>>().windows(2) {
            let ((t0, before), (t1, after)) = (pair[0], pair[1]);
            let seconds = t1.duration_since(*t0).as_secs_f64().max(1e-3);
            for (name, n) in after {
                if let Some(b) = before.get(name) {
                    out.entry(name.clone()).or_default().push(n.saturating_sub(*b) as f64 / seconds);
                }
            }
        }
        out
    }
}

/// A gauge family for a scrape: `(labels, value)` per series.
pub fn gauges(name: &str, help: &str, labels: &[&str], series: Vec<(Vec<String>, f64)>) -> Vec<MetricFamily> {
    let vec = prometheus::GaugeVec::new(Opts::new(name, help), labels).expect("valid metric");
    for (values, v) in &series {
        let values: Vec<&str> = values.iter().map(String::as_str).collect();
        vec.with_label_values(&values).set(*v);
    }
    vec.collect()
}

#[cfg(test)]
mod tests {
    use super::RateHistory;

    #[test]
    fn rates_are_differences_over_time() {
        let h = RateHistory::default();
        assert!(h.rates().is_empty(), "one sample or none: no rate yet");
        h.record([("points".to_string(), 10)]);
        std::thread::sleep(std::time::Duration::from_millis(50));
        h.record([("points".to_string(), 20), ("log".to_string(), 5)]);
        let rates = h.rates();
        let points = rates["points"][0];
        assert!(points > 0.0 && points <= 10.0 / 0.05, "{points}");
        assert!(!rates.contains_key("log"), "a name needs two samples");
        for _ in 0..RateHistory::KEEP + 5 {
            h.record([("points".to_string(), 20)]);
        }
        assert_eq!(h.rates()["points"].len(), RateHistory::KEEP - 1);
        assert_eq!(*h.rates()["points"].last().unwrap(), 0.0);
    }
}

/// The content type of the text exposition format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";
