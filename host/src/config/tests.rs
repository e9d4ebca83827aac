//! The configuration's layers and checks.

use super::*;

/// The layers with `vars` as the whole environment, and `file` (if any) as shopmesh.toml.
fn with_env(file: Option<&str>, vars: &[(&str, &str)]) -> Result<Settings, figment::Error> {
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("shopmesh.toml");
    if let Some(text) = file {
        std::fs::write(&path, text).unwrap();
    }
    let env = EnvVars::new(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::read(Settings::figment(file.map(|_| path.to_str().unwrap()), env))
}

#[test]
fn env_overrides_and_reports_bad_values() {
    let s = with_env(
        None,
        &[
            ("SHOPMESH_HTTP_ADDR", "0.0.0.0:9000"),
            ("SHOPMESH_NATS_URL", "nats://x:4222"),
            ("SHOPMESH_PREORDER_TIMEOUT", "1500ms"),
            ("SHOPMESH_SWEEP_INTERVAL_SECS", "0.25"),
            ("SHOPMESH_TEST_PG_URL", "postgres://not-a-setting"),
        ],
    )
    .unwrap();
    assert_eq!(s.http_addr.port(), 9000);
    assert_eq!(s.nats_url.as_deref(), Some("nats://x:4222"));
    assert_eq!(s.preorder_timeout, Duration::from_millis(1500));
    assert_eq!(s.sweep_interval, Duration::from_millis(250), "the older _SECS name, in seconds");
    // Both names of one setting: the newer one counts, and is the one named.
    let both = with_env(None, &[("SHOPMESH_SWEEP_INTERVAL", "0"), ("SHOPMESH_SWEEP_INTERVAL_SECS", "2")]).unwrap();
    assert_eq!(both.sweep_interval, Duration::ZERO);
    assert_eq!(both.validate().unwrap_err().to_string(), "sweep_interval must be more than 0 (set by SHOPMESH_SWEEP_INTERVAL)");

    let err = with_env(None, &[("SHOPMESH_WORKER_ID", "many")]).unwrap_err();
    assert!(err.to_string().contains("WORKER_ID"), "{err}");
    let err = with_env(None, &[("SHOPMESH_RELAY_POLL", "soon")]).unwrap_err();
    assert!(err.to_string().contains("not a duration"), "{err}");
}

#[test]
fn plugin_config_from_env_or_file() {
    let s = with_env(None, &[("SHOPMESH_PLUGIN_CONFIG", "points.points_per_unit=2, log.x=y")]).unwrap();
    assert_eq!(s.plugin_config.0["points"]["points_per_unit"], "2");
    assert_eq!(s.plugin_config.0["log"]["x"], "y");
    assert!(with_env(None, &[("SHOPMESH_PLUGIN_CONFIG", "nope")]).is_err());
    let s = with_env(Some("[plugin_config.points]\npoints_per_unit = \"3\""), &[]).unwrap();
    assert_eq!(s.plugin_config.0["points"]["points_per_unit"], "3");
    // As TOML writes a number or a switch, too.
    let s = with_env(Some("[plugin_config.points]\npoints_per_unit = 2\nrate = 1.5\nloud = true"), &[]).unwrap();
    let points = &s.plugin_config.0["points"];
    assert_eq!((points["points_per_unit"].as_str(), points["rate"].as_str(), points["loud"].as_str()), ("2", "1.5", "true"));
    // A refusal of a value says where the values come from, or how to give them.
    let hint = s.plugin_config_hint();
    assert!(hint.starts_with("the values come from plugin_config in ") && hint.ends_with("shopmesh.toml"), "{hint}");
    let from_env = with_env(None, &[("SHOPMESH_PLUGIN_CONFIG", "points.points_per_unit=2")]).unwrap();
    assert_eq!(from_env.plugin_config_hint(), "the values come from SHOPMESH_PLUGIN_CONFIG");
    assert!(Settings::default().plugin_config_hint().starts_with("set them with SHOPMESH_PLUGIN_CONFIG"));
}

#[test]
fn zero_where_it_would_spin_or_starve_is_refused() {
    assert!(Settings::default().validate().is_ok());
    for (var, name) in [("SHOPMESH_RELAY_POLL", "relay_poll"), ("SHOPMESH_SWEEP_INTERVAL", "sweep_interval"), ("SHOPMESH_PLUGIN_DEADLINE", "plugin_deadline"), ("SHOPMESH_PLUGIN_FUEL", "plugin_fuel"), ("SHOPMESH_DB_MAX_CONNECTIONS", "db_max_connections"),
        ("SHOPMESH_PREORDER_TIMEOUT", "preorder_timeout"), ("SHOPMESH_HTTP_BODY_LIMIT", "http_body_limit"), ("SHOPMESH_HTTP_MAX_IN_FLIGHT", "http_max_in_flight"), ("SHOPMESH_PLUGIN_RETRY_MAX", "plugin_retry_max"),
        ("SHOPMESH_PLUGIN_UPLOAD_LIMIT", "plugin_upload_limit"), ("SHOPMESH_HTTP_BODY_TIMEOUT", "http_body_timeout")] {
        let err = with_env(None, &[(var, "0")]).unwrap().validate().unwrap_err();
        assert_eq!(err.to_string(), format!("{name} must be more than 0 (set by {var})"));
    }
    // One empty secret is named alone.
    let err = with_env(None, &[("SHOPMESH_ADMIN_TOKEN", "")]).unwrap().validate().unwrap_err();
    assert_eq!(err.to_string(), "admin_token must not be empty (set by SHOPMESH_ADMIN_TOKEN)");
    // The older `…_SECS` name, when that is the one set.
    let err = with_env(None, &[("SHOPMESH_SWEEP_INTERVAL_SECS", "0")]).unwrap().validate().unwrap_err();
    assert_eq!(err.to_string(), "sweep_interval must be more than 0 (set by SHOPMESH_SWEEP_INTERVAL_SECS)");
    // A value from the file is named with the file; one left at its default is not named.
    let err = with_env(Some("relay_lease = '90s'"), &[]).unwrap().validate().unwrap_err().to_string();
    assert!(err.starts_with("relay_lease (1m 30s) must be at most half of duplicate_window (2m) (set by relay_lease in "), "{err}");
    assert!(err.ends_with("shopmesh.toml)"), "{err}");
    let err = with_env(Some("relay_lease = '90s'"), &[("SHOPMESH_DUPLICATE_WINDOW", "150s")]).unwrap().validate().unwrap_err().to_string();
    assert!(err.ends_with("shopmesh.toml; SHOPMESH_DUPLICATE_WINDOW)"), "{err}");
}

#[test]
fn secrets_do_not_print() {
    let s = Settings { admin_token: "hunter2".into(), ..Settings::default() };
    assert!(!format!("{s:?}").contains("hunter2"));
}

#[test]
fn file_rejects_unknown_keys_and_takes_durations() {
    let unknown = with_env(Some("htp_addr = '1.2.3.4:5'"), &[]).unwrap_err();
    let said = ConfigError::Load(Box::new(unknown)).to_string();
    assert!(said.starts_with("configuration: unknown setting `htp_addr` (did you mean `http_addr`?) in "), "{said}");
    assert!(!said.contains('\n') && !said.contains("relay_poll"), "one line, not every setting: {said}");
    let far = with_env(Some("colour = 'blue'"), &[]).unwrap_err();
    assert!(ConfigError::Load(Box::new(far)).to_string().contains("unknown setting `colour` (the settings are listed in the README)"));
    let bad = with_env(None, &[("SHOPMESH_RELAY_POLL", "soon")]).unwrap_err();
    let said = ConfigError::Load(Box::new(bad)).to_string();
    assert!(said.ends_with("for relay_poll (set by SHOPMESH_RELAY_POLL)"), "names the setting and the variable: {said}");
    let older = with_env(None, &[("SHOPMESH_RELAY_POLL_SECS", "soon")]).unwrap_err();
    assert!(ConfigError::Load(Box::new(older)).to_string().ends_with("(set by SHOPMESH_RELAY_POLL_SECS)"));
    let s = with_env(Some("admin_token = 't'\nrelay_batch = 5\nplugin_deadline = '200ms'\nrelay_lease_secs = 2"), &[]).unwrap();
    assert_eq!(s.relay_batch, 5);
    assert_eq!(s.plugin_deadline, Duration::from_millis(200));
    assert_eq!(s.relay_lease, Duration::from_secs(2));
}

#[test]
fn retention_outlives_the_streams_events() {
    let check = |vars: &[(&str, &str)]| with_env(None, vars).unwrap().validate();
    assert!(check(&[("SHOPMESH_RETENTION", "7days")]).is_ok(), "as long as the stream (default 7 days)");
    assert!(check(&[("SHOPMESH_RETENTION", "0")]).is_ok(), "forever");
    assert!(check(&[("SHOPMESH_STREAM_MAX_AGE", "0"), ("SHOPMESH_RETENTION", "0")]).is_ok());
    for (vars, values) in [(&[("SHOPMESH_RETENTION", "6days")][..], "retention (6days) must be at least stream_max_age (7days)"), (&[("SHOPMESH_STREAM_MAX_AGE", "0")][..], "stream_max_age 0 keeps the stream's events for ever, so retention must be 0 (for ever) too; it is 30days")] {
        let err = check(vars).unwrap_err();
        assert!(err.to_string().starts_with(values), "{vars:?}: {err}");
    }
    let err = check(&[("SHOPMESH_RETENTION_INTERVAL", "0")]).unwrap_err();
    assert!(err.to_string().contains("retention_interval must be more than 0"), "{err}");
}

#[test]
fn what_the_nats_server_would_refuse_is_refused_before_the_start() {
    let check = |vars: &[(&str, &str)]| with_env(None, vars).unwrap().validate().map_err(|e| e.to_string());
    let err = check(&[("SHOPMESH_STREAM_MAX_AGE", "30s"), ("SHOPMESH_RETENTION", "1m")]).unwrap_err();
    assert!(err.starts_with("duplicate_window (2m) must be at most stream_max_age (30s)"), "{err}");
    assert!(check(&[("SHOPMESH_STREAM_MAX_AGE", "30s"), ("SHOPMESH_RETENTION", "1m"), ("SHOPMESH_DUPLICATE_WINDOW", "20s"), ("SHOPMESH_RELAY_LEASE", "10s")]).is_ok());
    let err = check(&[("SHOPMESH_STREAM_REPLICAS", "3")]).unwrap_err();
    assert!(err.starts_with("stream_replicas 3 needs a NATS cluster (nats_url)"), "{err}");
    assert!(check(&[("SHOPMESH_STREAM_REPLICAS", "3"), ("SHOPMESH_NATS_URL", "nats://a:4222,nats://b:4222")]).is_ok());
    let err = check(&[("SHOPMESH_PLUGIN_RETRY_BASE", "10s"), ("SHOPMESH_PLUGIN_RETRY_MAX", "1s")]).unwrap_err();
    assert!(err.starts_with("plugin_retry_base (10s) must be at most plugin_retry_max (1s)"), "{err}");
}

#[test]
fn what_would_fail_after_the_start_is_refused_before_it() {
    let check = |vars: &[(&str, &str)]| with_env(None, vars).unwrap().validate().map_err(|e| e.to_string());
    let err = check(&[("SHOPMESH_OTLP_ENDPOINT", "nonsense")]).unwrap_err();
    assert!(err.starts_with("otlp_endpoint \"nonsense\" must be an http:// or https:// URL"), "{err}");
    assert!(check(&[("SHOPMESH_OTLP_ENDPOINT", "http://collector:4318")]).is_ok());
    let err = check(&[("SHOPMESH_NATS_SERVER_BIN", "/nonexistent/nats-server")]).unwrap_err();
    assert_eq!(err, "nats_server_bin /nonexistent/nats-server is not a program (a path to one, or a name on PATH) (set by SHOPMESH_NATS_SERVER_BIN)");
    assert!(check(&[("SHOPMESH_NATS_SERVER_BIN", "/etc/passwd")]).is_err(), "a file, but not a program");
    assert!(check(&[("SHOPMESH_NATS_SERVER_BIN", "/nonexistent/nats-server"), ("SHOPMESH_NATS_URL", "nats://n:4222")]).is_ok(), "not started with an external NATS");
    assert!(check(&[("SHOPMESH_NATS_SERVER_BIN", "sh")]).is_ok(), "a bare name, found on PATH");
    assert!(check(&[("SHOPMESH_NATS_SERVER_BIN", "no-such-server-anywhere")]).is_err());
}
