//! The plugin flows measured end to end: events prepared through the shop's own order and
//! payment code, published to a fresh stream `SHOP`, and handled by the plugin consumers
//! until every plugin's inbox row of every event is committed; raw JetStream beside them.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use anyhow::Context;
use async_nats::jetstream::{self, consumer::pull};
use futures::StreamExt;
use shopmesh::{
    bus::{self, StreamSettings},
    ids::Id,
    money::Money,
    publish::{self, Outgoing},
    plugins::{consumer, durable_name, runtime::{Limits, Runtime}, DeliverySettings, PluginHost},
    shop::{
        coupons::NewCoupon,
        orders::PlaceOrder,
        payments::{CreatePayment, PaymentNotice},
        stock::NewGoods,
        users::NewUser,
        Shop,
    },
};
use sqlx::Row;
use tokio::sync::watch;

pub type Events = Vec<(String, String)>; // (subject, CloudEvent JSON)

/// Orders prepared at once: Postgres commits them in parallel, SQLite's one writer makes
/// concurrent writers wait on its busy handler (slower than one at a time).
fn preparers(shop: &Shop) -> usize {
    if shop.db.backend() == shopmesh::store::Backend::Sqlite { 1 } else { 8 }
}

/// How the events meet the consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Arrival {
    /// Published while the consumers run (steady traffic).
    Live,
    /// All in the stream before the consumers start (a backlog to drain).
    Backlog,
}

pub fn plugin_host(shop: &Arc<Shop>) -> anyhow::Result<Arc<PluginHost>> {
    Ok(Arc::new(PluginHost::new(
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
        Default::default(),
        shopmesh::plugins::grants::Grants::new(Default::default()),
    )))
}

/// Orders whose confirm step fails: each leaves stock, coupon and balance to give back.
pub async fn prepare_cancels(shop: &Shop, count: usize) -> anyhow::Result<Events> {
    let (goods, user) = customer(shop, count, Money::from_cents(count as i64 * 100)).await?;
    prepare(shop, count, "shop.order.cancel", || async {
        let coupon = shop.add(NewCoupon { coupon_price: "5.00".parse()?, user_id: user }).await?;
        let _ = shop.place_order(order_of(user, goods, Some(coupon.coupon_id), "1.00")?).await; // fails at confirm by design
        Ok(())
    })
    .await
}

/// Confirmed, paid orders: each one a pay-success event.
pub async fn prepare_pays(shop: &Shop, count: usize) -> anyhow::Result<Events> {
    let (goods, user) = customer(shop, count, Money::ZERO).await?;
    prepare(shop, count, "shop.pay.success", || async {
        let order = shop.place_order(order_of(user, goods, None, "0")?).await?;
        let pay = shop.create_payment(CreatePayment { order_id: order.order_id, pay_amount: order.pay_amount }).await?.into_inner();
        shop.payment_callback(PaymentNotice { pay_id: pay.pay_id, pay_amount: pay.pay_amount, is_paid: 2 }).await?;
        Ok(())
    })
    .await
}

/// Goods enough for `count` orders at 150.00 and a user with `balance`: their ids.
async fn customer(shop: &Shop, count: usize, balance: Money) -> anyhow::Result<(Id, Id)> {
    let goods = NewGoods { goods_name: "bench".into(), goods_number: count as i64, goods_price: "150.00".parse()?, goods_desc: String::new() };
    let user = NewUser { user_name: "bench".into(), user_money: balance, user_score: 0, user_mobile: String::new() };
    Ok((shop.add(goods).await?.goods_id, shop.add(user).await?.user_id))
}

/// Runs `order` `count` times through the shop, then reads the outbox's events on `subject`.
async fn prepare<F, Fut>(shop: &Shop, count: usize, subject: &str, order: F) -> anyhow::Result<Events>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<()>>,
{
    let done = futures::stream::iter(0..count).map(|_| order()).buffer_unordered(preparers(shop)).collect::<Vec<_>>().await;
    done.into_iter().collect::<anyhow::Result<()>>()?;
    outbox_events(shop, subject).await
}

pub fn order_of(user_id: Id, goods_id: Id, coupon_id: Option<Id>, money_paid: &str) -> anyhow::Result<PlaceOrder> {
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

pub async fn outbox_events(shop: &Shop, subject: &str) -> anyhow::Result<Events> {
    let rows = sqlx::query("SELECT msg_body FROM trade_mq_producer_temp WHERE msg_topic = $1 ORDER BY id")
        .bind(subject)
        .fetch_all(shop.db.pool())
        .await?;
    rows.iter().map(|r| Ok((subject.to_owned(), r.try_get(0)?))).collect()
}

/// A clean stream SHOP for each measurement, so no run sees another's messages; and whether
/// it takes atomic batches, as the relay asks.
pub async fn fresh_stream(client: &async_nats::Client, settings: &StreamSettings) -> anyhow::Result<(jetstream::Context, bool)> {
    let js = jetstream::new(client.clone());
    let _ = js.delete_stream(bus::STREAM).await;
    Ok(bus::ensure_ready_to_publish(client, settings).await?)
}

/// Publishes as the outbox relay does: in batches of the relay's default size, through the
/// same [`publish`] (one atomic batch each where the server takes them).
pub async fn publish_all(js: &jetstream::Context, atomic: bool, events: &[(String, String)]) -> anyhow::Result<()> {
    let batch = shopmesh::config::Settings::default().relay_batch as usize;
    for window in events.chunks(batch) {
        let outgoing = window
            .iter()
            .map(|(subject, body)| {
                let id = serde_json::from_str::<serde_json::Value>(body)?["id"].as_str().unwrap_or_default().to_owned();
                Ok(Outgoing { subject: subject.clone(), id, body: body.clone().into(), traceparent: None })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        for published in publish::publish(js, atomic, &outgoing).await {
            published.map_err(anyhow::Error::msg)?;
        }
    }
    Ok(())
}

/// Publish, consume and ack the same messages with `consumers` durable consumers (one per
/// plugin of the flow, as the flows have), doing nothing else: the ceiling.
pub async fn raw_jetstream(client: &async_nats::Client, settings: &StreamSettings, events: &[(String, String)], consumers: usize) -> anyhow::Result<f64> {
    let (js, atomic) = fresh_stream(client, settings).await?;
    let stream = js.get_stream(bus::STREAM).await?;
    let mut bound = Vec::with_capacity(consumers);
    for i in 0..consumers {
        bound.push(stream.create_consumer(pull::Config { durable_name: Some(format!("raw-{i}")), ..Default::default() }).await?);
    }
    let start = Instant::now();
    let consume = bound.into_iter().map(|consumer| async move {
        let mut messages = consumer.messages().await?;
        for _ in 0..events.len() {
            let msg = messages.next().await.context("stream ended")?.map_err(|e| anyhow::anyhow!(e))?;
            msg.ack().await.map_err(|e| anyhow::anyhow!(e))?;
        }
        anyhow::Ok(())
    });
    let (published, consumed) = tokio::join!(publish_all(&js, atomic, events), futures::future::try_join_all(consume));
    published?;
    consumed?;
    Ok(events.len() as f64 / start.elapsed().as_secs_f64())
}

/// Lets the database catch up with the previous measurement's writes before the next one
/// (Postgres: checkpoint and fresh statistics; SQLite: the WAL folded back; then every dirty
/// page on its way to the disk), so no figure pays for the one before it.
pub async fn settle(db: &shopmesh::store::Db) -> anyhow::Result<()> {
    let statements: &[&str] = match db.backend() {
        shopmesh::store::Backend::Postgres => &["CHECKPOINT", "VACUUM ANALYZE"],
        shopmesh::store::Backend::Sqlite => &["PRAGMA wal_checkpoint(TRUNCATE)"],
    };
    for sql in statements {
        sqlx::query(sql).execute(db.pool()).await.with_context(|| sql.to_string())?;
    }
    flush_disk()
}

/// Writes every dirty page to the disk (`sync`): data prepared without fsyncs, or left by
/// an earlier measurement, is not written back in the middle of the next one.
pub fn flush_disk() -> anyhow::Result<()> {
    let status = std::process::Command::new("sync").status().context("sync")?;
    anyhow::ensure!(status.success(), "sync failed: {status}");
    Ok(())
}

/// Publish the events and run the plugins' consumers until every plugin's inbox row for
/// every event is committed.
#[allow(clippy::too_many_arguments)]
pub async fn end_to_end(
    shop: &Arc<Shop>,
    client: &async_nats::Client,
    settings: &StreamSettings,
    names: &[&str],
    install: impl Fn(&shopmesh::plugins::Registry) -> anyhow::Result<()>,
    events: &[(String, String)],
    arrival: Arrival,
) -> anyhow::Result<(f64, Arc<PluginHost>)> {
    let (js, atomic) = fresh_stream(client, settings).await?;
    settle(&shop.db).await?;
    let host = plugin_host(shop)?;
    install(&host.registry)?;
    let inbox = || async {
        sqlx::query_scalar::<_, i64>("SELECT COUNT(*) FROM trade_mq_consumer_log WHERE consumer_status = 1")
            .fetch_one(shop.db.pool())
            .await
    };
    let target = inbox().await? + (names.len() * events.len()) as i64;
    let (stop, signal) = watch::channel(false);
    if arrival == Arrival::Backlog {
        publish_all(&js, atomic, events).await?;
    }
    let mut start = Instant::now();
    let tasks: Vec<_> = names
        .iter()
        .map(|name| tokio::spawn(consumer::run(host.clone(), client.clone(), settings.clone(), name.to_string(), signal.clone())))
        .collect();
    if arrival == Arrival::Live {
        // Live, the clock starts when the consumers are bound, as raw JetStream's does: what
        // is measured is the flow, not the one-time binding (a few round trips, each a few
        // ms with every write fsynced, in a run of a third of a second).
        let stream = js.get_stream(bus::STREAM).await?;
        for name in names {
            while stream.consumer_info(durable_name(name)).await.is_err() {
                anyhow::ensure!(start.elapsed() < Duration::from_secs(30), "{name}'s consumer was not bound");
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }
        start = Instant::now();
        publish_all(&js, atomic, events).await?;
    }
    // Done when every plugin's consumer has acked everything: a delivery is acked after its
    // effects committed. Asking JetStream costs the database nothing (counting the inbox
    // scanned it), so it can be asked every few ms, which a run of a fraction of a second needs.
    let stream = js.get_stream(bus::STREAM).await?;
    loop {
        let mut done = true;
        for name in names {
            done &= stream.consumer_info(durable_name(name)).await.is_ok_and(|c| c.num_pending == 0 && c.num_ack_pending == 0);
        }
        if done {
            break;
        }
        anyhow::ensure!(start.elapsed() < Duration::from_secs(600), "plugins did not finish");
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let rate = events.len() as f64 / start.elapsed().as_secs_f64();
    let applied = inbox().await?;
    anyhow::ensure!(applied == target, "{applied} of {target} inbox rows applied: the measurement is not of the happy path");
    let _ = stop.send(true);
    for t in tasks {
        let _ = t.await;
    }
    let dead: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM shop_dead_letter").fetch_one(shop.db.pool()).await?;
    anyhow::ensure!(dead == 0, "{dead} dead letters: the measurement is not of the happy path");
    Ok((rate, host))
}

