//! The sweeper: cancels pre-orders left unconfirmed past a timeout (the host died between
//! two steps, or the cancel itself failed), so every pre-order ends confirmed or with an
//! order-cancel event. Safe with several hosts: cancelling is conditional on status 0.

use std::{sync::Arc, time::Duration};

use tokio::sync::watch;

use super::Shop;
use crate::ids::now_ms;

#[derive(Debug, Clone)]
pub struct SweeperSettings {
    /// A pre-order older than this is considered abandoned. Must exceed the time a healthy
    /// order flow takes, or live orders get cancelled under it (they then fail cleanly).
    pub preorder_timeout: Duration,
    pub interval: Duration,
}

/// One pass; returns how many orders it cancelled.
pub async fn sweep_once(shop: &Shop, settings: &SweeperSettings) -> Result<usize, sqlx::Error> {
    let cutoff = now_ms() - settings.preorder_timeout.as_millis() as i64;
    let mut cancelled = 0;
    for order_id in shop.abandoned_preorders(cutoff, 500).await? {
        if shop.cancel_preorder(order_id, "pre-order not confirmed in time (sweeper)").await? {
            cancelled += 1;
        }
    }
    Ok(cancelled)
}

pub async fn run(shop: Arc<Shop>, settings: SweeperSettings, mut shutdown: watch::Receiver<bool>) {
    while !*shutdown.borrow() {
        match sweep_once(&shop, &settings).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(cancelled = n, "sweeper cancelled abandoned pre-orders"),
            Err(e) => tracing::warn!(error = %e, "sweeper pass failed; will retry"),
        }
        tokio::select! {
            _ = tokio::time::sleep(settings.interval) => {}
            _ = shutdown.changed() => {}
        }
    }
}
