//! `shopmesh-bench [events] [backlog]`: one run, tables of numbers measured side by side.
//!
//! - end to end (publish → effects committed) for order-cancel (stock, coupon, balance) and
//!   pay-success (points, log), with the plugins as wasm components and with the same rule
//!   crates compiled natively (same consumers, batches, snapshot, validation and
//!   transactions: only the call differs), on SQLite and on Postgres, beside raw JetStream
//!   publish + consume + ack of the same messages;
//! - the time to drain a backlog (`backlog` events per flow in the stream before the plugins
//!   start), and a dry-run replay of it;
//! - per-invocation costs and hot-swap times;
//! - black box, against the release binary: a backlog drained after the plugins are
//!   uploaded, seen through the HTTP API; the payment callback and order placement at a
//!   fixed 1,000 requests/s, p50/p99.
//!
//! Real parts only: a nats-server child with JetStream, a SQLite file and a Postgres
//! database (`SHOPMESH_PG_URL`, which `scripts/bench` starts), all temporary.

mod costs;
mod flows;
mod load;
mod native;

use std::{path::PathBuf, sync::Arc, time::{Duration, Instant}};

use anyhow::Context;
use flows::{end_to_end, prepare_cancels, prepare_pays, raw_jetstream, Arrival};
use shopmesh::{
    bus::{self, StreamSettings},
    embedded::{self, Fsync, NatsServer},
    plugins::{runtime::LoadedPlugin, Registry},
    replay::{runner::Replays, Mode, ReplayRequest, State},
    shop::Shop,
    store::{Db, SqliteSync},
};
use tokio::sync::Notify;

const CANCEL: &[&str] = &["stock", "coupon", "balance"];
const PAY: &[&str] = &["points", "log"];

/// One database's figures.
struct Figures {
    backend: &'static str,
    raw_cancel: f64,
    cancel: (f64, f64),
    raw_pay: f64,
    pay: (f64, f64),
    /// Backlog drains, events/s: (wasm, native).
    drain_cancel: (f64, f64),
    drain_pay: (f64, f64),
    replay: f64,
}

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(5000);
    let backlog: usize = std::env::args().nth(2).map(|a| a.parse()).transpose()?.unwrap_or(10_000);
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugins_dir = workspace.join("target/plugins");
    let tmp = tempfile::tempdir()?;
    let bin = embedded::find_nats_server(Some(&workspace.join(".venv/bin/nats-server")))
        .filter(|p| p.is_file())
        .or_else(|| embedded::find_nats_server(None))
        .context("nats-server not found: run scripts/setup")?;
    // As the host's embedded server runs: every acknowledged publish fsynced.
    let nats = NatsServer::start(&bin, &tmp.path().join("js"), 0, Fsync::Always).await?;
    let client = bus::connect(&nats.url()).await?;
    let stream = StreamSettings { duplicate_window: Duration::from_secs(120), max_age: Duration::ZERO, replicas: 1, database: None };

    // SHOPMESH_BENCH_PROFILE=cancel|pay: only that flow's backlog drain on SQLite, for a
    // profiler (options in `profile`); =invoke: only the per-invocation costs, repeated;
    // =raw: raw JetStream with 0 to 3 consumers (the broker's own ceiling: publishing
    // alone, every message fsynced); =load: only the black-box drain and the requests at
    // SHOPMESH_BENCH_RATE (default 1000) per second.
    match std::env::var("SHOPMESH_BENCH_PROFILE").as_deref() {
        Ok("load") => {
            let rate = std::env::var("SHOPMESH_BENCH_RATE").map_or(Ok(1000.0), |r| r.parse())?;
            let (drain, rated) = load::run(&workspace, &nats.url(), backlog, rate, 5).await?;
            print_black_box(&drain, &rated);
            return Ok(());
        }
        Ok(flow) => return profile(flow, backlog, &client, &stream, &plugins_dir, tmp.path()).await,
        Err(_) => {}
    }
    let mut databases = vec![("SQLite", format!("sqlite://{}/bench.db", tmp.path().display()))];
    match std::env::var("SHOPMESH_PG_URL") {
        Ok(admin) => databases.push(("Postgres", fresh_pg_database(&admin).await?)),
        Err(_) => eprintln!("SHOPMESH_PG_URL is not set: no Postgres figures (scripts/bench starts one)"),
    }
    let mut figures = Vec::new();
    let mut sqlite_shop = None;
    let mut settled = Vec::new();
    // What the safe default costs: the same raw flow on a server with nats-server's default.
    let lazy = NatsServer::start(&bin, &tmp.path().join("js-lazy"), 0, Fsync::Interval).await?;
    let lazy_client = bus::connect(&lazy.url()).await?;
    let mut raw_lazy = 0.0;
    for (backend, url) in databases {
        let db = Db::connect(&url, 8).await?;
        db.migrate().await?;
        // The events are prepared without waiting for the disk (it is throwaway data); the
        // measurements run with the durable defaults.
        let prep = Db::connect_with(&unsynced(&url), 8, SqliteSync::Off).await?;
        let shop = |db: &Db, worker, fault: Option<&str>| {
            Arc::new(Shop::new(db.clone(), worker, fault.map(|f| f.parse().unwrap()), Arc::new(Notify::new())))
        };
        let (failing, healthy) = (shop(&db, 1, Some("fail:confirm")), shop(&db, 2, None));
        eprintln!("{backend}: preparing {n} order-cancel and {n} pay-success events per flavour, and {backlog} of each per flavour for the backlog…");
        let cancels = prepare_cancels(&shop(&prep, 3, Some("fail:confirm")), 2 * (n + backlog)).await?;
        let pays = prepare_pays(&shop(&prep, 4, None), 2 * (n + backlog)).await?;
        prep.pool().close().await;
        let (cancel_wasm, rest) = cancels.split_at(n);
        let (cancel_native, rest) = rest.split_at(n);
        let (cancel_backlog, cancel_backlog_native) = rest.split_at(backlog);
        let (pay_wasm, rest) = pays.split_at(n);
        let (pay_native, rest) = rest.split_at(n);
        let (pay_backlog, pay_backlog_native) = rest.split_at(backlog);

        let raw_cancel = raw_jetstream(&client, &stream, cancel_wasm, CANCEL.len()).await?;
        if backend == "SQLite" {
            raw_lazy = raw_jetstream(&lazy_client, &stream, cancel_wasm, CANCEL.len()).await?;
        }
        let (cw, _) = end_to_end(&failing, &client, &stream, CANCEL, wasm(&plugins_dir, CANCEL), cancel_wasm, Arrival::Live).await?;
        let (cn, _) = end_to_end(&failing, &client, &stream, CANCEL, native(native::cancel_plugins), cancel_native, Arrival::Live).await?;
        let raw_pay = raw_jetstream(&client, &stream, pay_wasm, PAY.len()).await?;
        let (pw, _) = end_to_end(&healthy, &client, &stream, PAY, wasm(&plugins_dir, PAY), pay_wasm, Arrival::Live).await?;
        let (pn, _) = end_to_end(&healthy, &client, &stream, PAY, native(native::pay_plugins), pay_native, Arrival::Live).await?;
        // A backlog is where the plugins alone set the pace (live, the broker does): the
        // cleanest wasm-vs-native figure. Native first, so the stream ends with wasm's.
        let (dcn, _) = end_to_end(&failing, &client, &stream, CANCEL, native(native::cancel_plugins), cancel_backlog_native, Arrival::Backlog).await?;
        let (dpn, _) = end_to_end(&healthy, &client, &stream, PAY, native(native::pay_plugins), pay_backlog_native, Arrival::Backlog).await?;
        let (dc, _) = end_to_end(&failing, &client, &stream, CANCEL, wasm(&plugins_dir, CANCEL), cancel_backlog, Arrival::Backlog).await?;
        let (dp, host) = end_to_end(&healthy, &client, &stream, PAY, wasm(&plugins_dir, PAY), pay_backlog, Arrival::Backlog).await?;
        // The pay backlog is still in the stream, applied by points with its inputs recorded.
        let replays = Arc::new(Replays::new(host, client.clone(), stream.clone(), "bench".into()));
        let replay = dry_run_rate(&replays).await?;
        figures.push(Figures {
            backend,
            raw_cancel,
            cancel: (cw, cn),
            raw_pay,
            pay: (pw, pn),
            drain_cancel: (dc, dcn),
            drain_pay: (dp, dpn),
            replay,
        });
        if backend == "SQLite" {
            sqlite_shop = Some(healthy.clone());
        }
        settled.push(db);
    }
    let shop = sqlite_shop.expect("SQLite always runs");
    let per_call = costs::invocation_costs(&shop, &plugins_dir, &prepare_cancels(&shop_with_fault(&shop), 1).await?[0]).await?;
    let swaps = costs::hot_swap_times(&shop, &client, &stream, &plugins_dir).await?;
    // The black box gets a broker of its own: on this one the fleet registry already holds
    // the hot-swap measurement's points, which the release binary would start running at
    // once instead of after its uploads.
    let black_box = NatsServer::start(&bin, &tmp.path().join("js-black-box"), 0, Fsync::Always).await?;
    // Nor should its requests share the disk with what the earlier measurements left to
    // flush (Postgres's next checkpoint would land in the middle of the fixed-rate part).
    for db in &settled {
        flows::settle(db).await?;
    }
    let (drain, rated) = load::run(&workspace, &black_box.url(), backlog, 1000.0, 5).await?;

    println!();
    println!("| flow ({n} events each) | database | events/s | vs raw JetStream | wasm vs native |");
    println!("|---|---|---:|---:|---:|");
    for f in &figures {
        let b = f.backend;
        println!("| raw JetStream publish+consume+ack, 3 consumers (order-cancel messages) | - | {:.0} | 1.00 | |", f.raw_cancel);
        println!("| order-cancel → stock, coupon, balance (wasm) | {b} | {:.0} | {:.3} | {:.2} |", f.cancel.0, f.cancel.0 / f.raw_cancel, f.cancel.0 / f.cancel.1);
        println!("| order-cancel → stock, coupon, balance (native) | {b} | {:.0} | {:.3} | |", f.cancel.1, f.cancel.1 / f.raw_cancel);
        println!("| raw JetStream publish+consume+ack, 2 consumers (pay-success messages) | - | {:.0} | 1.00 | |", f.raw_pay);
        println!("| pay-success → points, log (wasm) | {b} | {:.0} | {:.3} | {:.2} |", f.pay.0, f.pay.0 / f.raw_pay, f.pay.0 / f.pay.1);
        println!("| pay-success → points, log (native) | {b} | {:.0} | {:.3} | |", f.pay.1, f.pay.1 / f.raw_pay);
    }
    println!();
    println!("| backlog of {backlog} events per flow, in the stream before the plugins start | database | seconds | events/s | wasm vs native |");
    println!("|---|---|---:|---:|---:|");
    let secs = |rate: f64| backlog as f64 / rate;
    for f in &figures {
        let b = f.backend;
        println!("| drain order-cancel (wasm) | {b} | {:.2} | {:.0} | {:.2} |", secs(f.drain_cancel.0), f.drain_cancel.0, f.drain_cancel.0 / f.drain_cancel.1);
        println!("| drain order-cancel (native) | {b} | {:.2} | {:.0} | |", secs(f.drain_cancel.1), f.drain_cancel.1);
        println!("| drain pay-success (wasm) | {b} | {:.2} | {:.0} | {:.2} |", secs(f.drain_pay.0), f.drain_pay.0, f.drain_pay.0 / f.drain_pay.1);
        println!("| drain pay-success (native) | {b} | {:.2} | {:.0} | |", secs(f.drain_pay.1), f.drain_pay.1);
        println!("| dry-run replay of points over it | {b} | {:.2} | {:.0} | |", secs(f.replay), f.replay);
    }
    print_black_box(&drain, &rated);
    println!();
    println!("| JetStream fsync ({n} order-cancel messages, raw publish+consume+ack) | events/s | vs always |");
    println!("|---|---:|---:|");
    let always = figures[0].raw_cancel;
    println!("| sync_interval: always (the embedded server; every figure above) | {always:.0} | 1.00 |");
    println!("| nats-server default (fsync every 2 min) | {raw_lazy:.0} | {:.2} |", raw_lazy / always);
    println!();
    println!("| per invocation (stock plugin, one cancel event) | µs | vs native call |");
    println!("|---|---:|---:|");
    println!("| native call | {:.2} | 1.0 |", per_call.native);
    println!("| wasm instantiate + call | {:.2} | {:.1} |", per_call.invoke, per_call.invoke / per_call.native);
    println!("| snapshot reads (SQLite, per event, one at a time) | {:.2} | {:.1} |", per_call.snapshot, per_call.snapshot / per_call.native);
    println!();
    println!("| hot swap of points ({} swaps, v1 ↔ v2, through the fleet registry) | mean ms | max ms |", swaps.len());
    println!("|---|---:|---:|");
    for (label, pick) in [
        ("upload → active on the uploading host", 0usize),
        ("upload → active on a second host", 1),
        ("upload → first event handled by the new version", 2),
    ] {
        let ms: Vec<f64> = swaps.iter().map(|s| s[pick].as_secs_f64() * 1e3).collect();
        let mean = ms.iter().sum::<f64>() / ms.len() as f64;
        let max = ms.iter().cloned().fold(0.0, f64::max);
        println!("| {label} | {mean:.1} | {max:.1} |");
    }
    Ok(())
}

/// The black-box rows (ending the backlog table) and the fixed-rate table.
fn print_black_box(drain: &load::Drain, rated: &[load::Rated]) {
    println!("| black box: drain order-cancel, plugins uploaded after, seen over HTTP | SQLite | {:.2} | {:.0} | |", drain.cancel_secs, drain.events as f64 / drain.cancel_secs);
    println!("| black box: drain pay-success, plugins uploaded after, seen over HTTP | SQLite | {:.2} | {:.0} | |", drain.pay_secs, drain.events as f64 / drain.pay_secs);
    println!();
    println!("| at a fixed rate, release binary, SQLite | requests/s asked | sent | achieved/s | errors | p50 ms | p99 ms | answered by the server within 5 ms |");
    println!("|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rated {
        println!(
            "| {} | {:.0} | {} | {:.0} | {} | {:.2} | {:.2} | {:.1}% |",
            r.what, r.rate, r.sent, r.achieved, r.errors, r.p50_ms, r.p99_ms, r.server_within_5ms * 100.0
        );
    }
}

/// One flow's backlog drain alone (on SQLite), printed.
async fn profile(flow: &str, backlog: usize, client: &async_nats::Client, stream: &StreamSettings, plugins_dir: &std::path::Path, dir: &std::path::Path) -> anyhow::Result<()> {
    let url = format!("sqlite://{}/profile.db", dir.display());
    let db = Db::connect(&url, 8).await?;
    db.migrate().await?;
    let prep = Db::connect_with(&url, 8, SqliteSync::Off).await?;
    let shop = |db: &Db, worker, fault: Option<&str>| {
        Arc::new(Shop::new(db.clone(), worker, fault.map(|f| f.parse().unwrap()), Arc::new(Notify::new())))
    };
    if flow == "raw" {
        let shop = shop(&prep, 3, Some("fail:confirm"));
        let events = prepare_cancels(&shop, 2000).await?;
        for consumers in [0, 1, 2, 3, 0, 1, 2, 3] {
            println!("raw, {consumers} consumers: {:.0}/s", flows::raw_jetstream(client, stream, &events, consumers).await?);
        }
        return Ok(());
    }
    if flow == "invoke" {
        let shop = shop(&db, 1, None);
        for _ in 0..20 {
            let per_call = costs::invocation_costs(&shop, plugins_dir, &prepare_cancels(&shop_with_fault(&shop), 1).await?[0]).await?;
            println!("wasm instantiate + call {:.2} µs, native {:.2} µs", per_call.invoke, per_call.native);
        }
        return Ok(());
    }
    let (names, events, measured) = if flow == "cancel" {
        (CANCEL, prepare_cancels(&shop(&prep, 3, Some("fail:confirm")), backlog).await?, shop(&db, 1, Some("fail:confirm")))
    } else {
        (PAY, prepare_pays(&shop(&prep, 4, None), backlog).await?, shop(&db, 2, None))
    };
    // SHOPMESH_BENCH_NATIVE=1: the same rules compiled natively, for the wasm-vs-native ratio;
    // SHOPMESH_BENCH_LIVE=1: published while the plugins run instead of beforehand.
    let native_rules = std::env::var_os("SHOPMESH_BENCH_NATIVE").is_some();
    let arrival = if std::env::var_os("SHOPMESH_BENCH_LIVE").is_some() { Arrival::Live } else { Arrival::Backlog };
    eprintln!("draining {backlog} {flow} events{}…", if native_rules { " (native)" } else { "" });
    let (rate, _) = if native_rules {
        let rules = if flow == "cancel" { native::cancel_plugins } else { native::pay_plugins };
        end_to_end(&measured, client, stream, names, native(rules), &events, arrival).await?
    } else {
        end_to_end(&measured, client, stream, names, wasm(plugins_dir, names), &events, arrival).await?
    };
    println!("{flow}{}: {rate:.0} events/s", if native_rules { " (native)" } else { "" });
    Ok(())
}

/// `url` for a connection whose commits need not reach the disk (Postgres; SQLite is told
/// per connection).
fn unsynced(url: &str) -> String {
    if url.starts_with("postgres") {
        format!("{url}?options=-c%20synchronous_commit%3Doff")
    } else {
        url.to_owned()
    }
}

fn shop_with_fault(shop: &Shop) -> Shop {
    shop.with_fault(Some("fail:confirm".parse().unwrap()))
}

fn wasm(dir: &std::path::Path, names: &'static [&'static str]) -> impl Fn(&Registry) -> anyhow::Result<()> {
    let dir = dir.to_path_buf();
    move |registry: &Registry| {
        for name in names {
            let bytes = std::fs::read(dir.join(format!("{name}.wasm"))).with_context(|| format!("{name}.wasm: run scripts/build-plugins"))?;
            registry.install(name, &bytes)?;
        }
        Ok(())
    }
}

fn native(plugins: fn() -> Vec<LoadedPlugin>) -> impl Fn(&Registry) -> anyhow::Result<()> {
    move |registry: &Registry| {
        for p in plugins() {
            registry.install_loaded(p)?;
        }
        Ok(())
    }
}

/// A dry-run of points over the whole stream: events per second, start to done.
async fn dry_run_rate(replays: &Arc<Replays>) -> anyhow::Result<f64> {
    let request = ReplayRequest::everything("points", Mode::DryRun);
    let start = Instant::now();
    let started = replays.start(request, "bench".into()).await.map_err(anyhow::Error::msg)?;
    loop {
        let r = replays.get(started.replay_id).await.map_err(anyhow::Error::msg)?;
        if r.state != State::Running {
            anyhow::ensure!(r.state == State::Done && r.summary.same == r.total, "replay ended {:?}: {:?}", r.state, r.summary);
            return Ok(r.total as f64 / start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
}

/// A new database in the Postgres cluster at `admin`.
async fn fresh_pg_database(admin: &str) -> anyhow::Result<String> {
    let name = format!("bench_{}", std::process::id());
    let db = Db::connect(admin, 1).await?;
    sqlx::query(&format!("CREATE DATABASE {name}")).execute(db.pool()).await?;
    let base = admin.rsplit_once('/').context("postgres URL has a database")?.0;
    Ok(format!("{base}/{name}"))
}
