//! Black-box figures against the real `shopmesh` binary (release) with SQLite and a real
//! nats-server: a backlog drained after the plugins are uploaded, watched through the HTTP
//! API only; then the payment callback and order placement at a fixed request rate, with
//! latency measured from when each request was due (so a slow answer cannot hide the
//! requests queued behind it).

use std::{
    path::Path,
    process::Stdio,
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use futures::{stream, StreamExt};
use serde_json::{json, Value};
use shopmesh::{
    ids::Id,
    money::Money,
    shop::{
        payments::{CreatePayment, Payment},
        stock::NewGoods,
        users::NewUser,
        Shop,
    },
    store::{Db, SqliteSync},
};
use tokio::sync::Notify;

use crate::flows::{order_of, prepare_cancels, prepare_pays};

const TOKEN: &str = "bench-admin-token";
const SECRET: &str = "bench-callback-secret";

pub struct Drain {
    pub events: usize,
    pub cancel_secs: f64,
    pub pay_secs: f64,
}

pub struct Rated {
    pub what: &'static str,
    pub rate: f64,
    pub sent: usize,
    pub errors: usize,
    pub achieved: f64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    /// The share of these requests the server itself answered within 5 ms (its own
    /// histogram, `http_server_request_duration_seconds`): what the latency above owes to
    /// the server rather than to the machine it shares with the load generator.
    pub server_within_5ms: f64,
}

struct Server {
    _child: tokio::process::Child,
    base: String,
}

async fn serve(bin: &Path, dir: &Path, nats_url: &str, plugins: &Path) -> anyhow::Result<Server> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = tokio::process::Command::new(bin)
        .arg("serve")
        .env("SHOPMESH_HTTP_ADDR", format!("127.0.0.1:{port}"))
        .env("SHOPMESH_DATA_DIR", dir)
        .env("SHOPMESH_NATS_URL", nats_url)
        .env("SHOPMESH_PLUGINS_DIR", plugins)
        .env("SHOPMESH_ADMIN_TOKEN", TOKEN)
        .env("SHOPMESH_CALLBACK_SECRET", SECRET)
        .env("SHOPMESH_DEMO_DATA", "false")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("{}: build it with cargo build --release", bin.display()))?;
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    for _ in 0..300 {
        if http.get(format!("{base}/openapi.json")).send().await.is_ok() {
            return Ok(Server { _child: child, base });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not start")
}

/// Runs the whole black-box part; `events` per flow in the backlog.
pub async fn run(workspace: &Path, nats_url: &str, events: usize, rate: f64, secs: u64) -> anyhow::Result<(Drain, Vec<Rated>)> {
    let dir = tempfile::tempdir()?;
    // Prepared without waiting for the disk; the server runs with the durable default.
    let db = Db::connect_with(&format!("sqlite://{}/shopmesh.db", dir.path().display()), 8, SqliteSync::Off).await?;
    db.migrate().await?;
    let shop = |worker, fault: Option<&str>| Arc::new(Shop::new(db.clone(), worker, fault.map(|f| f.parse().unwrap()), Arc::new(Notify::new())));
    let (failing, healthy) = (shop(11, Some("fail:confirm")), shop(12, None));
    eprintln!("black box: preparing {events} cancelled and {events} paid orders for the backlog, and payments for the callbacks…");
    let cancels = prepare_cancels(&failing, events).await?;
    let pays = prepare_pays(&healthy, events).await?;
    let cancel_order = serde_json::from_str::<Value>(&cancels[0].1)?["data"].clone();
    let pay_order = serde_json::from_str::<Value>(&pays[0].1)?["data"].clone();
    let unpaid = unpaid_payments(&healthy, (rate * secs as f64) as usize + 100).await?;
    let order_fixture = order_fixture(&healthy).await?;
    drop(db);
    // The prepared database was written without fsyncs: flushed now, its write-back cannot
    // land in the middle of the measurements.
    crate::flows::flush_disk()?;

    let empty = dir.path().join("no-plugins");
    std::fs::create_dir_all(&empty)?;
    let server = serve(&workspace.join("target/release/shopmesh"), dir.path(), nats_url, &empty).await?;
    let http = reqwest::Client::new();
    let get = |path: String| {
        let (http, base) = (http.clone(), server.base.clone());
        async move { http.get(format!("{base}{path}")).send().await?.json::<Value>().await.map_err(anyhow::Error::from) }
    };

    // Everything is in the stream before a single plugin exists: the relay has published
    // every outbox row (the admin overview counts what is left).
    let goods_id = cancel_order["goods_id"].as_str().unwrap().to_owned();
    let payer = pay_order["user_id"].as_str().unwrap().to_owned();
    quiet(&http, &server.base).await?;
    // What is measured is the plugins draining the backlog: their consumers are made from the
    // stream's start before the upload (a plugin new to a running shop begins with the next
    // event, and would leave the backlog to a replay).
    let stream = async_nats::jetstream::new(async_nats::connect(nats_url).await?).get_stream("SHOP").await?;
    for name in ["stock", "coupon", "balance", "points", "log"] {
        use async_nats::jetstream::consumer::{pull, AckPolicy, DeliverPolicy};
        let config = pull::Config { durable_name: Some(format!("plugin-{name}")), ack_policy: AckPolicy::Explicit, deliver_policy: DeliverPolicy::All, max_deliver: -1, ..Default::default() };
        stream.create_consumer(config).await.map_err(|e| anyhow::anyhow!("consumer of {name}: {e}"))?;
    }
    let start = Instant::now();
    for name in ["stock", "coupon", "balance", "points", "log"] {
        let bytes = std::fs::read(workspace.join(format!("target/plugins/{name}.wasm")))?;
        let resp = http
            .put(format!("{}/api/admin/plugins/{name}", server.base))
            .bearer_auth(TOKEN)
            .header("content-type", "application/octet-stream")
            .body(bytes)
            .send()
            .await?;
        anyhow::ensure!(resp.status().is_success(), "upload of {name}: {}", resp.text().await?);
    }
    let (mut cancel_secs, mut pay_secs) = (None, None);
    let expected_points = events as i64 * 150;
    while cancel_secs.is_none() || pay_secs.is_none() {
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "the backlog did not drain");
        if cancel_secs.is_none() && get(format!("/api/goods/{goods_id}")).await?["goods_number"].as_i64() == Some(events as i64) {
            cancel_secs = Some(start.elapsed().as_secs_f64());
        }
        if pay_secs.is_none() && get(format!("/api/users/{payer}")).await?["user_score"].as_i64() == Some(expected_points) {
            pay_secs = Some(start.elapsed().as_secs_f64());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let drain = Drain { events, cancel_secs: cancel_secs.unwrap(), pay_secs: pay_secs.unwrap() };
    // The requests are timed in steady state, not beside the rest of the drain (the log
    // plugin's share of it, say).
    quiet(&http, &server.base).await?;

    let mut callbacks = fixed_rate("payment callback", rate, secs, &unpaid, |p: &Payment| {
        let body = json!({"pay_id": p.pay_id, "pay_amount": p.pay_amount, "is_paid": 2}).to_string();
        let sig = shopmesh::signature::sign(SECRET.as_bytes(), shopmesh::ids::now_ms() / 1000, body.as_bytes());
        http.post(format!("{}/api/payments/callback", server.base)).header("content-type", "application/json").header("X-Shop-Signature", sig).body(body)
    })
    .await;
    callbacks.server_within_5ms = server_within(&http, &server.base, "paymentCallback", "0.005").await?;
    let orders: Vec<Value> = (0..(rate * secs as f64) as usize).map(|_| order_fixture.clone()).collect();
    let mut placed = fixed_rate("order placement", rate, secs, &orders, |o: &Value| {
        http.post(format!("{}/api/orders", server.base)).header("content-type", "application/json").body(o.to_string())
    })
    .await;
    placed.server_within_5ms = server_within(&http, &server.base, "placeOrder", "0.005").await?;
    drop(server);
    Ok((drain, vec![callbacks, placed]))
}

/// The share of `route`'s requests so far that the server answered within `le` seconds (one
/// of its histogram's bounds), read from its `/metrics`.
async fn server_within(http: &reqwest::Client, base: &str, route: &str, le: &str) -> anyhow::Result<f64> {
    let text = http.get(format!("{base}/metrics")).bearer_auth(TOKEN).send().await?.text().await?;
    let route = format!("route=\"{route}\"");
    let value = |prefix: &str, extra: &str| {
        text.lines()
            .find(|l| l.starts_with(prefix) && l.contains(&route) && l.contains(extra))
            .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .with_context(|| format!("{prefix} {route} {extra} in /metrics"))
    };
    let within = value("http_server_request_duration_seconds_bucket{", &format!("le=\"{le}\""))?;
    let all = value("http_server_request_duration_seconds_count{", "")?;
    Ok(within / all.max(1.0))
}

/// Waits until the relay has published every outbox row and no plugin has events pending
/// (the admin overview counts both).
async fn quiet(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let overview = http.get(format!("{base}/api/admin/overview")).bearer_auth(TOKEN).send().await?.json::<Value>().await?;
        let pending = overview["plugins"].as_array().into_iter().flatten().map(|p| p["pending"].as_i64().unwrap_or(0)).sum::<i64>();
        if overview["outbox_unsent"].as_i64() == Some(0) && pending == 0 {
            return Ok(());
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "the host did not settle: {overview}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Sends one request per item at `rate` per second for `secs`, open loop: a thread of its own
/// paces the sends (a thread's sleep wakes within microseconds of its deadline; tokio's timer
/// rounds each sleep up to its next millisecond tick, which alone read as up to a millisecond
/// of latency), and each request's latency counts from when it was due, so a late send or a
/// slow answer cannot hide behind the schedule.
async fn fixed_rate<T>(what: &'static str, rate: f64, secs: u64, items: &[T], request: impl Fn(&T) -> reqwest::RequestBuilder) -> Rated {
    let count = ((rate * secs as f64) as usize).min(items.len());
    let requests: Vec<reqwest::RequestBuilder> = items[..count].iter().map(request).collect();
    let runtime = tokio::runtime::Handle::current();
    let start = Instant::now();
    let pacer = std::thread::spawn(move || {
        requests
            .into_iter()
            .enumerate()
            .map(|(i, req)| {
                let due = start + Duration::from_secs_f64(i as f64 / rate);
                if let Some(wait) = due.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                runtime.spawn(async move {
                    let ok = matches!(req.send().await, Ok(r) if r.status().is_success());
                    (ok, due.elapsed())
                })
            })
            .collect::<Vec<_>>()
    });
    let sends = tokio::task::spawn_blocking(move || pacer.join().expect("the pacer does not panic")).await.expect("joined");
    let mut results = Vec::with_capacity(sends.len());
    for send in sends {
        results.push(send.await.expect("a request task does not panic"));
    }
    let elapsed = start.elapsed().as_secs_f64();
    let mut latencies: Vec<f64> = results.iter().map(|(_, d)| d.as_secs_f64() * 1e3).collect();
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| latencies.get(((latencies.len() as f64 * q) as usize).min(latencies.len().saturating_sub(1))).copied().unwrap_or(0.0);
    Rated { what, rate, sent: count, errors: results.iter().filter(|(ok, _)| !ok).count(), achieved: count as f64 / elapsed, p50_ms: pick(0.50), p99_ms: pick(0.99), server_within_5ms: 0.0 }
}

/// Confirmed orders with an unpaid payment each, for callbacks.
async fn unpaid_payments(shop: &Arc<Shop>, count: usize) -> anyhow::Result<Vec<Payment>> {
    let goods = shop.add(NewGoods { goods_name: "callback".into(), goods_number: count as i64, goods_price: "150.00".parse()?, goods_desc: String::new() }).await?;
    let user = shop.add(NewUser { user_name: "payer".into(), user_money: Money::ZERO, user_score: 0, user_mobile: String::new() }).await?;
    let made = stream::iter(0..count)
        .map(|_| async {
            let order = shop.place_order(order_of(user.user_id, goods.goods_id, None, "0")?).await?;
            Ok::<_, anyhow::Error>(shop.create_payment(CreatePayment { order_id: order.order_id, pay_amount: order.pay_amount }).await?.into_inner())
        })
        .buffer_unordered(1)
        .collect::<Vec<_>>()
        .await;
    made.into_iter().collect()
}

/// A valid order body for goods with plenty of stock.
async fn order_fixture(shop: &Arc<Shop>) -> anyhow::Result<Value> {
    let goods = shop.add(NewGoods { goods_name: "load".into(), goods_number: 1_000_000, goods_price: "150.00".parse()?, goods_desc: String::new() }).await?;
    let user = shop.add(NewUser { user_name: "buyer".into(), user_money: Money::ZERO, user_score: 0, user_mobile: String::new() }).await?;
    let id = |i: Id| i.to_string();
    Ok(json!({
        "user_id": id(user.user_id), "goods_id": id(goods.goods_id), "goods_number": 1,
        "goods_price": "150.00", "shipping_fee": "0.00", "order_amount": "150.00", "money_paid": "0",
        "address": "bench", "consignee": "bench",
    }))
}
