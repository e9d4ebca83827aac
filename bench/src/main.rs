//! `shopmesh-bench [events]`: one run, one table of numbers measured side by side.
//!
//! - end to end (publish → effects committed) for order-cancel (stock, coupon, balance)
//!   and pay-success (points, log), with the plugins as wasm components and with the same
//!   rule crates compiled natively into the host (same consumers, snapshot, validation and
//!   transactions: only the call differs);
//! - raw JetStream publish + consume + ack of the same messages;
//! - per-invocation cost: instantiate + call, against a native call.
//!
//! Real parts only: a nats-server child with JetStream and a SQLite file, both temporary.

mod native;

use std::{
    path::PathBuf,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull, message::PublishMessage};
use futures::StreamExt;
use shopmesh::{
    bus::{self, NatsServer, StreamSettings},
    ids::{Id, Snowflake},
    money::Money,
    plugins::{consumer, delivery, reads, runtime::{Limits, LoadedPlugin, Runtime}, DeliverySettings, PluginHost},
    shop::{
        coupons::NewCoupon,
        orders::PlaceOrder,
        payments::{CreatePayment, PaymentNotice},
        stock::NewGoods,
        users::NewUser,
        Shop,
    },
    store::Db,
};
use sqlx::Row;
use tokio::sync::{watch, Notify};

type Events = Vec<(String, String)>; // (subject, CloudEvent JSON)

#[tokio::main(flavor = "multi_thread")]
async fn main() -> anyhow::Result<()> {
    let n: usize = std::env::args().nth(1).map(|a| a.parse()).transpose()?.unwrap_or(1000);
    let workspace = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let plugins_dir = workspace.join("target/plugins");
    let tmp = tempfile::tempdir()?;
    let bin = bus::find_nats_server(Some(&workspace.join(".venv/bin/nats-server")))
        .filter(|p| p.is_file())
        .or_else(|| bus::find_nats_server(None))
        .context("nats-server not found: run scripts/setup")?;
    let nats = NatsServer::start(&bin, &tmp.path().join("js"), 0).await?;
    let client = bus::connect(&nats.url()).await?;
    let db = Db::connect(&format!("sqlite://{}/bench.db", tmp.path().display()), 8).await?;
    db.migrate().await?;

    eprintln!("preparing {n} order-cancel and {n} pay-success events per flavour…");
    let shop = |worker, fault: Option<&str>| {
        Arc::new(Shop {
            db: db.clone(),
            ids: Snowflake::new(worker),
            fault: fault.map(|f| f.parse().unwrap()),
            outbox_wake: Arc::new(Notify::new()),
        })
    };
    let (failing, healthy) = (shop(1, Some("fail:confirm")), shop(2, None));
    let cancels = prepare_cancels(&failing, 2 * n).await?;
    let pays = prepare_pays(&healthy, 2 * n).await?;
    let (cancel_wasm, cancel_native) = cancels.split_at(n);
    let (pay_wasm, pay_native) = pays.split_at(n);

    let stream = StreamSettings { duplicate_window: Duration::from_secs(120), max_age: Duration::ZERO };
    let wasm = |names: &'static [&'static str]| {
        let dir = plugins_dir.clone();
        move |host: &PluginHost| -> anyhow::Result<()> {
            for name in names {
                let bytes = std::fs::read(dir.join(format!("{name}.wasm")))
                    .with_context(|| format!("{name}.wasm: run scripts/build-plugins"))?;
                host.registry.install(name, &bytes)?;
            }
            Ok(())
        }
    };
    let native = |plugins: fn() -> Vec<LoadedPlugin>| {
        move |host: &PluginHost| -> anyhow::Result<()> {
            for p in plugins() {
                host.registry.install_loaded(p)?;
            }
            Ok(())
        }
    };
    const CANCEL: &[&str] = &["stock", "coupon", "balance"];
    const PAY: &[&str] = &["points", "log"];

    let raw_cancel = raw_jetstream(&client, &stream, cancel_wasm).await?;
    let cw = end_to_end(&failing, &client, &stream, CANCEL, wasm(CANCEL), cancel_wasm).await?;
    let cn = end_to_end(&failing, &client, &stream, CANCEL, native(native::cancel_plugins), cancel_native).await?;
    let raw_pay = raw_jetstream(&client, &stream, pay_wasm).await?;
    let pw = end_to_end(&healthy, &client, &stream, PAY, wasm(PAY), pay_wasm).await?;
    let pn = end_to_end(&healthy, &client, &stream, PAY, native(native::pay_plugins), pay_native).await?;
    let per_call = invocation_costs(&healthy, &plugins_dir, &cancels[0]).await?;
    let swaps = hot_swap_times(&healthy, &client, &stream, &plugins_dir).await?;

    println!();
    println!("| flow ({n} events each) | events/s | vs raw JetStream | wasm vs native |");
    println!("|---|---:|---:|---:|");
    println!("| raw JetStream publish+consume+ack (order-cancel messages) | {raw_cancel:.0} | 1.00 | |");
    println!("| order-cancel → stock, coupon, balance (wasm) | {cw:.0} | {:.3} | {:.2} |", cw / raw_cancel, cw / cn);
    println!("| order-cancel → stock, coupon, balance (native) | {cn:.0} | {:.3} | |", cn / raw_cancel);
    println!("| raw JetStream publish+consume+ack (pay-success messages) | {raw_pay:.0} | 1.00 | |");
    println!("| pay-success → points, log (wasm) | {pw:.0} | {:.3} | {:.2} |", pw / raw_pay, pw / pn);
    println!("| pay-success → points, log (native) | {pn:.0} | {:.3} | |", pn / raw_pay);
    println!();
    println!("| per invocation (stock plugin, one cancel event) | µs | vs native call |");
    println!("|---|---:|---:|");
    println!("| native call | {:.2} | 1.0 |", per_call.native);
    println!("| wasm instantiate + call | {:.2} | {:.1} |", per_call.invoke, per_call.invoke / per_call.native);
    println!("| snapshot reads (SQLite, per event) | {:.2} | {:.1} |", per_call.snapshot, per_call.snapshot / per_call.native);
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

/// Swaps points between v1 and v2 several times through the fleet registry, with two
/// hosts (two `PluginHost`s, each following the registry) sharing the consumer.
async fn hot_swap_times(shop: &Arc<Shop>, client: &async_nats::Client, settings: &StreamSettings, plugins_dir: &std::path::Path) -> anyhow::Result<Vec<[Duration; 3]>> {
    const SWAPS: usize = 6;
    let events = prepare_pays(shop, SWAPS + 1).await?;
    let events = &events[events.len() - (SWAPS + 1)..];
    let js = fresh_stream(client, settings).await?;
    let v1 = std::fs::read(plugins_dir.join("points.wasm"))?;
    let v2 = std::fs::read(plugins_dir.join("../plugins-testing/points_v2.wasm")).context("points_v2.wasm: run scripts/build-plugins")?;
    let (stop, signal) = watch::channel(false);
    let mut hosts = Vec::new();
    for _ in 0..2 {
        let host = Arc::new(PluginHost::new(
            Runtime::new(Limits::default())?,
            shop.clone(),
            Default::default(),
            DeliverySettings { max_attempts: 5, batch: 256, base_delay: Duration::from_millis(50), max_delay: Duration::from_secs(1), ack_wait: Duration::from_secs(30) },
        ));
        let (c, st, sig, weak) = (client.clone(), settings.clone(), signal.clone(), Arc::downgrade(&host));
        host.registry.on_new_plugin(move |name| {
            if let Some(h) = weak.upgrade() {
                tokio::spawn(consumer::run(h, c.clone(), st.clone(), name, sig.clone()));
            }
        });
        host.registry.join_fleet(client.clone(), settings.clone());
        host.registry.install("points", &v1)?;
        let follower = host.clone();
        let offer = move |name: &str, bytes: &[u8], run: bool| follower.registry.receive("the fleet registry", name, bytes, run);
        tokio::spawn(shopmesh::plugins::fleet::follow(offer, client.clone(), settings.clone(), signal.clone()));
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
    publish_all(&js, &events[..1]).await?;
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
        publish_all(&js, std::slice::from_ref(event)).await?;
        handled(id_of(&event.1)?, version).await?;
        times.push([here, there, start.elapsed()]);
    }
    let _ = stop.send(true);
    Ok(times)
}

/// Orders whose confirm step fails: each leaves stock, coupon and balance to give back.
async fn prepare_cancels(shop: &Shop, count: usize) -> anyhow::Result<Events> {
    let goods = shop
        .add_goods(NewGoods { goods_name: "bench".into(), goods_number: count as i64, goods_price: "150.00".parse()?, goods_desc: String::new() })
        .await?;
    let user = shop
        .add_user(NewUser { user_name: "bench".into(), user_money: Money::from_cents(count as i64 * 100), user_score: 0, user_mobile: String::new() })
        .await?;
    for _ in 0..count {
        let coupon = shop.add_coupon(NewCoupon { coupon_price: "5.00".parse()?, user_id: user.user_id }).await?;
        let order = order_of(user.user_id, goods.goods_id, Some(coupon.coupon_id), "1.00")?;
        let _ = shop.place_order(order).await; // fails at confirm by design
    }
    outbox_events(shop, "shop.order.cancel").await
}

/// Confirmed, paid orders: each one a pay-success event.
async fn prepare_pays(shop: &Shop, count: usize) -> anyhow::Result<Events> {
    let goods = shop
        .add_goods(NewGoods { goods_name: "bench".into(), goods_number: count as i64, goods_price: "150.00".parse()?, goods_desc: String::new() })
        .await?;
    let user = shop
        .add_user(NewUser { user_name: "bench".into(), user_money: Money::ZERO, user_score: 0, user_mobile: String::new() })
        .await?;
    for _ in 0..count {
        let order = shop.place_order(order_of(user.user_id, goods.goods_id, None, "0")?).await?;
        let pay = shop.create_payment(CreatePayment { order_id: order.order_id, pay_amount: order.pay_amount }).await?;
        shop.payment_callback(PaymentNotice { pay_id: pay.pay_id, pay_amount: pay.pay_amount, is_paid: 2 }).await?;
    }
    outbox_events(shop, "shop.pay.success").await
}

fn order_of(user_id: Id, goods_id: Id, coupon_id: Option<Id>, money_paid: &str) -> anyhow::Result<PlaceOrder> {
    Ok(PlaceOrder {
        user_id,
        goods_id,
        goods_number: 1,
        goods_price: "150.00".parse()?,
        shipping_fee: "0.00".parse()?,
        order_amount: "150.00".parse()?,
        coupon_id,
        money_paid: Some(money_paid.parse()?),
        address: String::new(),
        consignee: String::new(),
    })
}

async fn outbox_events(shop: &Shop, subject: &str) -> anyhow::Result<Events> {
    let rows = sqlx::query("SELECT msg_body FROM trade_mq_producer_temp WHERE msg_topic = $1 ORDER BY id")
        .bind(subject)
        .fetch_all(shop.db.pool())
        .await?;
    rows.iter().map(|r| Ok((subject.to_owned(), r.try_get(0)?))).collect()
}

/// A clean stream SHOP for each measurement, so no run sees another's messages.
async fn fresh_stream(client: &async_nats::Client, settings: &StreamSettings) -> anyhow::Result<jetstream::Context> {
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream(bus::STREAM).await;
    Ok(bus::ensure_ready(client, settings).await?)
}

async fn publish_all(js: &jetstream::Context, events: &[(String, String)]) -> anyhow::Result<()> {
    let mut acks = Vec::with_capacity(events.len());
    for (subject, body) in events {
        let id = serde_json::from_str::<serde_json::Value>(body)?["id"].as_str().unwrap_or_default().to_owned();
        acks.push(js.send_publish(subject.clone(), PublishMessage::build().payload(body.clone().into()).message_id(id)).await?);
    }
    for ack in acks {
        ack.await?;
    }
    Ok(())
}

/// Publish, consume and ack the same messages, doing nothing else: the ceiling.
async fn raw_jetstream(client: &async_nats::Client, settings: &StreamSettings, events: &[(String, String)]) -> anyhow::Result<f64> {
    let js = fresh_stream(client, settings).await?;
    let stream = js.get_stream(bus::STREAM).await?;
    let consumer = stream
        .create_consumer(pull::Config { durable_name: Some("raw".into()), ..Default::default() })
        .await?;
    let start = Instant::now();
    let consume = async {
        let mut messages = consumer.messages().await?;
        for _ in 0..events.len() {
            let msg = messages.next().await.context("stream ended")?.map_err(|e| anyhow::anyhow!(e))?;
            msg.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        anyhow::Ok(())
    };
    let (published, consumed) = tokio::join!(publish_all(&js, events), consume);
    published?;
    consumed?;
    Ok(events.len() as f64 / start.elapsed().as_secs_f64())
}

/// Publish the events and run the plugins' consumers until every plugin's inbox row for
/// every event is committed.
async fn end_to_end(
    shop: &Arc<Shop>,
    client: &async_nats::Client,
    settings: &StreamSettings,
    names: &[&str],
    install: impl Fn(&PluginHost) -> anyhow::Result<()>,
    events: &[(String, String)],
) -> anyhow::Result<f64> {
    let js = fresh_stream(client, settings).await?;
    let host = Arc::new(PluginHost::new(
        Runtime::new(Limits::default())?,
        shop.clone(),
        Default::default(),
        DeliverySettings {
            max_attempts: 5,
            batch: 256,
            base_delay: Duration::from_millis(50),
            max_delay: Duration::from_secs(1),
            ack_wait: Duration::from_secs(30),
        },
    ));
    install(&host)?;
    let inbox = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM trade_mq_consumer_log WHERE consumer_status = 1")
            .fetch_one(shop.db.pool())
            .await
    };
    let target = inbox().await? + (names.len() * events.len()) as i64;
    let (stop, signal) = watch::channel(false);
    let tasks: Vec<_> = names
        .iter()
        .map(|name| tokio::spawn(consumer::run(host.clone(), client.clone(), settings.clone(), name.to_string(), signal.clone())))
        .collect();
    let start = Instant::now();
    publish_all(&js, events).await?;
    while inbox().await? < target {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "plugins did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = events.len() as f64 / start.elapsed().as_secs_f64();
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shop_dead_letter").fetch_one(shop.db.pool()).await?;
    anyhow::ensure!(dead == 0, "{dead} dead letters: the measurement is not of the happy path");
    Ok(rate)
}

struct PerCall {
    native: f64,
    invoke: f64,
    snapshot: f64,
}

/// Mean microseconds per operation for one realistic cancel event.
async fn invocation_costs(shop: &Shop, plugins_dir: &std::path::Path, event: &(String, String)) -> anyhow::Result<PerCall> {
    const ROUNDS: u32 = 5000;
    let runtime = Runtime::new(Limits::default())?;
    let wasm = runtime.load("stock", &std::fs::read(plugins_dir.join("stock.wasm"))?, shopmesh::plugins::grants::granted("stock"))?;
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
        std::hint::black_box(runtime.invoke(&native, &ev, snap.clone(), Arc::clone(&config)).unwrap().unwrap());
    });
    let invoke = time(&mut || {
        std::hint::black_box(runtime.invoke(&wasm, &ev, snap.clone(), Arc::clone(&config)).unwrap().unwrap());
    });
    Ok(PerCall { native: native_us, invoke, snapshot })
}
