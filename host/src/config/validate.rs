//! What a setting may be, alone and beside the others: refused at start, before anything is
//! started or written, rather than found out at run time.

use std::time::Duration;

use super::{human, ConfigError, Settings};

impl Settings {
    /// Checks that settings which depend on each other agree.
    pub fn validate(&self) -> Result<(), ConfigError> {
        use secrecy::ExposeSecret;
        self.fault().map_err(|e| self.invalid(&["fault"], &e.to_string()))?;
        self.plugin_grants().map_err(|e| self.invalid(&["plugin_grants"], &e.to_string()))?;
        let invalid = |keys: &[&str], why: &str| Err(self.invalid(keys, why));
        if self.worker_id > 1023 {
            return invalid(&["worker_id"], "worker_id must be 0..=1023");
        }
        // Zero would be a loop that never waits, a guest that can never finish, a pool that
        // never lends, an order the sweeper cancels while it is placed, a request that can
        // never be read or admitted: refused here rather than found out at run time.
        let zero = [
            ("preorder_timeout", self.preorder_timeout.is_zero()),
            ("http_body_limit", self.http_body_limit == 0),
            ("plugin_upload_limit", self.plugin_upload_limit == 0),
            ("http_max_in_flight", self.http_max_in_flight == 0),
            ("http_body_timeout", self.http_body_timeout.is_zero()),
            ("plugin_retry_max", self.plugin_retry_max.is_zero()),
            ("sweep_interval", self.sweep_interval.is_zero()),
            ("relay_poll", self.relay_poll.is_zero()),
            ("relay_lease", self.relay_lease.is_zero()),
            ("plugin_watch", self.plugin_watch.is_zero()),
            ("plugin_deadline", self.plugin_deadline.is_zero()),
            ("plugin_retry_base", self.plugin_retry_base.is_zero()),
            ("plugin_fuel", self.plugin_fuel == 0),
            ("plugin_memory_mib", self.plugin_memory_mib == 0),
            ("db_max_connections", self.db_max_connections == 0),
            ("stream_replicas", self.stream_replicas == 0),
            ("retention_interval", self.retention_interval.is_zero()),
        ];
        if let Some((name, _)) = zero.iter().find(|(_, is_zero)| *is_zero) {
            return invalid(&[name], &format!("{name} must be more than 0"));
        }
        if self.relay_lease * 2 > self.duplicate_window {
            // A lease that can run out inside the duplicate window is what makes a second
            // relay's re-publish a harmless duplicate (see outbox.rs).
            let why = format!("relay_lease ({}) must be at most half of duplicate_window ({})", human(self.relay_lease), human(self.duplicate_window));
            return invalid(&["relay_lease", "duplicate_window"], &why);
        }
        if self.plugin_retry_base > self.plugin_retry_max {
            let why = format!("plugin_retry_base ({}) must be at most plugin_retry_max ({})", human(self.plugin_retry_base), human(self.plugin_retry_max));
            return invalid(&["plugin_retry_base", "plugin_retry_max"], &why);
        }
        // What nats-server refuses when it creates the stream, refused before anything starts
        // (else the host starts, and is never ready).
        if !self.stream_max_age.is_zero() && self.duplicate_window > self.stream_max_age {
            let why = format!("duplicate_window ({}) must be at most stream_max_age ({})", human(self.duplicate_window), human(self.stream_max_age));
            return invalid(&["duplicate_window", "stream_max_age"], &why);
        }
        if self.stream_replicas > 1 && self.nats_url.is_none() {
            let why = format!("stream_replicas {} needs a NATS cluster (nats_url): the embedded nats-server is one server", self.stream_replicas);
            return invalid(&["stream_replicas", "nats_url"], &why);
        }
        if self.plugin_ack_wait < self.plugin_deadline * 4 {
            let (wait, deadline) = (human(self.plugin_ack_wait), human(self.plugin_deadline));
            let why = format!("plugin_ack_wait ({wait}) must be at least 4 × plugin_deadline ({deadline}), or live deliveries get redelivered");
            return invalid(&["plugin_ack_wait", "plugin_deadline"], &why);
        }
        // The inbox is what keeps an event still in the stream from being applied twice (a
        // consumer reset, a replay applying): its rows must outlive the stream's events.
        let forever = |d: Duration| d.is_zero();
        if !forever(self.retention) && forever(self.stream_max_age) {
            let why = format!("stream_max_age 0 keeps the stream's events for ever, so retention must be 0 (for ever) too; it is {}", human(self.retention));
            return invalid(&["retention", "stream_max_age"], &why);
        }
        if !forever(self.retention) && self.retention < self.stream_max_age {
            let why = format!(
                "retention ({}) must be at least stream_max_age ({}) (or 0, keep for ever)",
                human(self.retention),
                human(self.stream_max_age)
            );
            return invalid(&["retention", "stream_max_age"], &why);
        }
        if self.plugin_max_attempts < 1 {
            return invalid(&["plugin_max_attempts"], "plugin_max_attempts must be at least 1");
        }
        if !(1..=1000).contains(&self.relay_batch) {
            // The NATS client bounds the publishes awaiting an ack; a relay batch is one
            // window of them.
            return invalid(&["relay_batch"], "relay_batch must be 1..=1000");
        }
        if !(1..=10_000).contains(&self.plugin_batch) {
            return invalid(&["plugin_batch"], "plugin_batch must be 1..=10000");
        }
        // What would fail only after the database and the store were made.
        if let Some(endpoint) = &self.otlp_endpoint {
            if reqwest::Url::parse(endpoint).map_or(true, |url| !matches!(url.scheme(), "http" | "https")) {
                return invalid(&["otlp_endpoint"], &format!("otlp_endpoint {endpoint:?} must be an http:// or https:// URL, like http://collector:4318"));
            }
        }
        if let (None, Some(bin)) = (&self.nats_url, &self.nats_server_bin) {
            use std::os::unix::fs::PermissionsExt;
            let program = |path: std::path::PathBuf| path.metadata().is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
            if !crate::embedded::find_nats_server(Some(bin)).is_some_and(program) {
                return invalid(&["nats_server_bin"], &format!("nats_server_bin {} is not a program (a path to one, or a name on PATH)", bin.display()));
            }
        }
        for (key, secret) in [("callback_secret", &self.callback_secret), ("admin_token", &self.admin_token)] {
            if secret.expose_secret().is_empty() {
                return invalid(&[key], &format!("{key} must not be empty"));
            }
        }
        Ok(())
    }
}
