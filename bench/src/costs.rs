//! What one invocation costs (native call, wasm, snapshot reads) and how long a hot swap
//! takes through the fleet registry.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use shopmesh::{
    bus::StreamSettings,
    plugins::{consumer, delivery, reads, runtime::{Limits, Runtime}},
    shop::Shop,
};
use tokio::sync::watch;

use crate::{flows::{fresh_stream, plugin_host, prepare_pays, publish_all}, native};

pub struct PerCall {
    pub native: f64,
    pub invoke: f64,
    pub snapshot: f64,
}

/// Mean microseconds per operation for one realistic cancel event.
pub async fn invocation_costs(shop: &Shop, plugins_dir: &std::path::Path, event: &(String, String)) -> anyhow::Result<PerCall> {
    const ROUNDS: u32 = 5000;
    let runtime = Runtime::new(Limits::default())?;
    let wasm = runtime.load("stock", &std::fs::read(plugins_dir.join("stock.wasm"))?, &shopmesh::plugins::grants::Grants::new(Default::default()).granted("stock"))?;
    let native = native::cancel_plugins().into_iter().find(|p| p.name == "stock").expect("stock");
    let d = delivery::parse(&event.0, event.1.as_bytes()).map_err(anyhow::Error::msg)?;
    let ev = d.to_wit();

    let start = Instant::now();
    for _ in 0..200 {
        reads::snapshot(shop, &d).await?;
    }
    let snapshot = start.elapsed().as_secs_f64() * 1e6 / 200.0;
    let snap = reads::snapshot(shop, &d).await?;
    let time = |f: &mut dyn FnMut()| {
        f(); // warm up
        let start = Instant::now();
        for _ in 0..ROUNDS {
            f();
        }
        start.elapsed().as_secs_f64() * 1e6 / f64::from(ROUNDS)
    };
    let config = Arc::default();
    let native_us = time(&mut || {
        std::hint::black_box(runtime.invoke(&native, &ev, snap.clone(), Arc::clone(&config), &mut Default::default()).unwrap().unwrap());
    });
    let invoke = time(&mut || {
        std::hint::black_box(runtime.invoke(&wasm, &ev, snap.clone(), Arc::clone(&config), &mut Default::default()).unwrap().unwrap());
    });
    Ok(PerCall { native: native_us, invoke, snapshot })
}

/// Swaps points between v1 and v2 several times through the fleet registry, with two
/// hosts (two `PluginHost`s, each following the registry) sharing the consumer.
pub async fn hot_swap_times(shop: &Arc<Shop>, client: &async_nats::Client, settings: &StreamSettings, plugins_dir: &std::path::Path) -> anyhow::Result<Vec<[Duration; 3]>> {
    const SWAPS: usize = 6;
    let events = prepare_pays(shop, SWAPS + 1).await?;
    let events = &events[events.len() - (SWAPS + 1)..];
    let (js, atomic) = fresh_stream(client, settings).await?;
    let v1 = std::fs::read(plugins_dir.join("points.wasm"))?;
    let v2 = std::fs::read(plugins_dir.join("../plugins-testing/points_v2.wasm")).context("points_v2.wasm: run scripts/build-plugins")?;
    let (stop, signal) = watch::channel(false);
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let host = plugin_host(shop)?;
        let (c, st, sig, weak) = (client.clone(), settings.clone(), signal.clone(), Arc::downgrade(&host));
        host.registry.on_new_plugin(move |name| {
            if let Some(h) = weak.upgrade() {
                tokio::spawn(consumer::run(h, c.clone(), st.clone(), name, sig.clone()));
            }
        });
        host.registry.join_fleet(client.clone(), settings.clone());
        host.registry.install("points", &v1)?;
        let follower = host.clone();
        let offer = move |name: String, bytes: Vec<u8>, run: bool, stamps| {
            let follower = follower.clone();
            async move { follower.registry.receive(shopmesh::plugins::Source::Fleet, &name, &bytes, run, stamps) }
        };
        let caught_up = shopmesh::plugins::fleet::CaughtUp::default();
        tokio::spawn(shopmesh::plugins::fleet::follow(offer, client.clone(), settings.clone(), caught_up, signal.clone()));
        hosts.push(host);
    }
    let handled = |event_id: String, version: &'static str| async move {
        loop {
            let n: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM trade_mq_consumer_log WHERE group_name = 'points' AND msg_key = $1 AND plugin_version = $2 AND consumer_status = 1",
            )
            .bind(&event_id)
            .bind(version)
            .fetch_one(shop.db.pool())
            .await?;
            if n == 1 {
                return anyhow::Ok(());
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    };
    let id_of = |body: &str| -> anyhow::Result<String> {
        Ok(serde_json::from_str::<serde_json::Value>(body)?["id"].as_str().unwrap_or_default().to_owned())
    };
    publish_all(&js, atomic, &events[..1]).await?;
    handled(id_of(&events[0].1)?, "1.0.0").await?;

    let mut times = Vec::new();
    for (round, event) in events[1..].iter().enumerate() {
        let (version, sha) = if round % 2 == 0 { ("2.0.0", shopmesh::plugins::runtime::sha256_hex(&v2)) } else { ("1.0.0", shopmesh::plugins::runtime::sha256_hex(&v1)) };
        let start = Instant::now();
        if round == 0 {
            hosts[0].registry.stage("points", &v2)?; // the upload; later rounds activate kept versions
        }
        hosts[0].registry.distribute("points", version, true).await?;
        let here = start.elapsed();
        anyhow::ensure!(hosts[1].registry.await_active("points", &sha, Duration::from_secs(10)).await, "second host never switched");
        let there = start.elapsed();
        publish_all(&js, atomic, std::slice::from_ref(event)).await?;
        handled(id_of(&event.1)?, version).await?;
        times.push([here, there, start.elapsed()]);
    }
    let _ = stop.send(true);
    Ok(times)
}

