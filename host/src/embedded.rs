//! The nats-server a host starts for itself when no NATS URL is configured (`scripts/run`,
//! the demo). Nothing else would notice it die: the client only says it is reconnecting,
//! orders wait in the outbox and `/readyz` says 503 until someone restarts the host. So it is
//! kept: when it exits, it is started again on the same port and store (the client
//! reconnects by itself), with a growing pause while it keeps failing.

use std::{sync::Arc, time::Duration};

use tokio::sync::{watch, Mutex};

use crate::bus::NatsServer;

/// How often it is looked at; the client's own reconnect attempts come about as often.
const LOOK_EVERY: Duration = Duration::from_millis(500);
const MAX_PAUSE: Duration = Duration::from_secs(30);

/// Keeps `server` running until shutdown.
pub async fn keep(server: Arc<Mutex<NatsServer>>, mut shutdown: watch::Receiver<bool>) {
    let (mut down, mut pause) = (false, LOOK_EVERY);
    while !*shutdown.borrow() {
        {
            let mut server = server.lock().await;
            if let Some(status) = server.exited().filter(|_| !down) {
                tracing::error!(%status, url = %server.url(), "the embedded nats-server exited; starting it again on the same port and store");
                down = true;
            }
            if down {
                match server.restart().await {
                    Ok(()) => {
                        tracing::info!(url = %server.url(), "embedded nats-server running again");
                        down = false;
                    }
                    Err(e) => tracing::error!(error = %e, retry_in = ?pause, "the embedded nats-server would not start again"),
                }
            }
        }
        pause = if down { (pause * 2).min(MAX_PAUSE) } else { LOOK_EVERY };
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = shutdown.changed() => {}
        }
    }
}
