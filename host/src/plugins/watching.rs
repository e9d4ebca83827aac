//! How a host watches the fleet's buckets ([`super::fleet`]): for as long as it runs, again
//! a moment after any interruption (NATS away, a bucket not there yet), and again when the
//! bucket's stream is made anew (NATS lost its store; a bucket deleted and put back). A
//! watch's consumer goes on from its position in the old stream, and in one that counts from
//! 1 again it would miss every change until the new stream passed that position: a host
//! would stop following the fleet's activations and switches without a word.

use std::{future::Future, time::Duration};

use async_nats::jetstream;
use tokio::sync::watch;

use crate::timestamp::Timestamp;

/// How often a bucket's stream is asked whether it is still the one the watch started on.
const RECHECK: Duration = Duration::from_secs(1);

/// Runs `watch` until shutdown: again a moment after each interruption, and again when
/// `stream` (the bucket's) is made anew.
pub async fn keep_watching<F, Fut>(what: &str, client: &async_nats::Client, stream: &str, mut shutdown: watch::Receiver<bool>, watch: F)
where
    F: Fn(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = Result<(), String>>,
{
    let js = jetstream::new(client.clone());
    while !*shutdown.borrow() {
        let started_on = created(&js, stream).await;
        let result = tokio::select! {
            result = watch(shutdown.clone()) => result,
            () = made_anew(&js, stream, started_on) => {
                // At once: the new stream's first changes are being missed.
                tracing::warn!("{what} watch: stream {stream} was made anew (NATS lost its store, or the bucket was put back); re-watching");
                continue;
            }
        };
        if let Err(e) = result {
            tracing::warn!(error = %e, "{what} watch interrupted; re-watching");
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// When `stream` was created, if it is there.
async fn created(js: &jetstream::Context, stream: &str) -> Option<Timestamp> {
    js.get_stream(stream).await.ok().map(|s| Timestamp::from(s.cached_info().created))
}

/// Resolves once `stream` is there and is not the one created at `started_on`, or, when it
/// was not there, not the one the watch made as it started (looked for at once).
async fn made_anew(js: &jetstream::Context, stream: &str, started_on: Option<Timestamp>) {
    let mut watched = started_on;
    while watched.is_none() {
        tokio::time::sleep(Duration::from_millis(100)).await;
        watched = created(js, stream).await;
    }
    loop {
        tokio::time::sleep(RECHECK).await;
        // Not there now (NATS away, the bucket gone until someone puts to it): looked at again.
        if created(js, stream).await.is_some_and(|now| Some(now) != watched) {
            return;
        }
    }
}
