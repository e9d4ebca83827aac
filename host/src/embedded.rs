//! The nats-server a host starts for itself when no NATS URL is configured (`scripts/run`,
//! the demo). Nothing else would notice it die: the client only says it is reconnecting,
//! orders wait in the outbox and `/readyz` says 503 until someone restarts the host. So it is
//! kept: when it is not running, it is started again on the same port and store (the client
//! reconnects by itself), waiting longer each time it dies soon after a start.

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use tokio::sync::{watch, Mutex};

use crate::bus::NatsServer;

/// How often it is looked at; the client's own reconnect attempts come about as often.
const LOOK_EVERY: Duration = Duration::from_millis(500);
/// The longest wait between two starts of a server that keeps dying.
const MAX_PAUSE: Duration = Duration::from_secs(30);
/// Running this long after a start, a server that dies is started again at once.
const STEADY: Duration = Duration::from_secs(60);

/// Keeps `server` running until shutdown.
pub async fn keep(server: Arc<Mutex<NatsServer>>, mut shutdown: watch::Receiver<bool>) {
    let (mut backoff, mut started) = (LOOK_EVERY, None::<Instant>);
    while !*shutdown.borrow() {
        let mut pause = LOOK_EVERY;
        {
            let mut server = server.lock().await;
            if let Some(why) = server.not_running() {
                backoff = if started.is_some_and(|t| t.elapsed() < STEADY) { (backoff * 2).min(MAX_PAUSE) } else { LOOK_EVERY };
                tracing::error!(%why, url = %server.url(), "the embedded nats-server is not running; starting it again on the same port and store");
                started = Some(Instant::now());
                match server.restart().await {
                    Ok(()) => tracing::info!(url = %server.url(), "embedded nats-server running again"),
                    // One that did not answer in time may still be recovering its store: it
                    // is left running, and the next look says whether it died.
                    Err(e) => tracing::error!(error = %e, "the embedded nats-server did not come back yet"),
                }
                pause = backoff;
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            // A dropped sender is a stop too (the host is going away without one).
            stopped = shutdown.changed() => if stopped.is_err() { return },
        }
    }
}
