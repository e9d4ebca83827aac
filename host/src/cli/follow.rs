//! Following a replay the host runs: its progress drawn as a bar, a Ctrl-C or SIGTERM
//! turned into a cancel on the host, a host that stops answering asked again a while.

use std::time::{Duration, Instant};

use anyhow::Context;
use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;
use tokio::{
    signal::unix::{signal, SignalKind},
    sync::watch,
};

use super::client::Client;

/// Ctrl-C (or SIGTERM, as a CI runner cancels a job) from before the replay starts: the
/// first, while the replay is followed, is told to [`follow`] by its name, which asks the
/// host to cancel it (a replay outlives the command that started it, and an `--apply`
/// backfill its user thought stopped would go on); any other, or one once nothing follows,
/// ends the command at once, as the signal does anywhere (exit 130, 143 for SIGTERM).
pub(super) fn on_interrupt() -> anyhow::Result<watch::Receiver<Option<&'static str>>> {
    let mut interrupt = signal(SignalKind::interrupt()).context("listening for Ctrl-C")?;
    let mut terminate = signal(SignalKind::terminate()).context("listening for SIGTERM")?;
    let (told, interrupted) = watch::channel(None);
    tokio::spawn(async move {
        loop {
            let (name, code) = tokio::select! {
                Some(()) = interrupt.recv() => ("Ctrl-C", 130),
                Some(()) = terminate.recv() => ("SIGTERM", 143),
                // Only as the runtime shuts down; `told` must outlive the follower meanwhile.
                else => std::future::pending().await,
            };
            if told.receiver_count() == 0 {
                std::process::exit(code);
            }
            if told.borrow().is_some() {
                eprintln!("\nleft at once: the replay may go on on the host (see GET /api/admin/replays)");
                std::process::exit(code);
            }
            told.send_replace(Some(name));
        }
    });
    Ok(interrupted)
}

/// Polls the replay until it ends, drawing its progress; after a Ctrl-C or SIGTERM, cancels
/// it first.
pub(super) async fn follow(client: &Client, id: &str, total: u64, mut interrupted: watch::Receiver<Option<&'static str>>) -> anyhow::Result<Value> {
    let mut cancelling = false;
    let bar = ProgressBar::new(total);
    // Rate and ETA over the whole run, not indicatif's recent estimate: a replay with a
    // `max_rate` runs in bursts of a second's events, which that reads as several times the
    // rate.
    let started = Instant::now();
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {pos}/{len} events  {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    let path = format!("/api/admin/replays/{id}");
    loop {
        let signal = *interrupted.borrow_and_update();
        if let Some(signal) = signal.filter(|_| !cancelling) {
            cancelling = true;
            // Not `bar.println`: it prints nothing when stderr is not a terminal.
            bar.suspend(|| eprintln!("{signal}: cancelling replay {id} on the host ({signal} again to leave at once)"));
            let _: Value = client.call(reqwest::Method::DELETE, &path, None, false).await.context("cancelling the replay")?;
        }
        // A Ctrl-C is acted on at once, not after a slow host's answer.
        let replay: Value = tokio::select! {
            replay = poll(client, &path, &bar) => replay.with_context(|| format!(
                "following replay {id}: it ends `failed` if its host stopped (when it starts again, or 90 s on, read through any host); GET {path} then says how far it got (last_seq)"
            ))?,
            _ = interrupted.changed(), if !cancelling => continue,
        };
        let done = replay["processed"].as_u64().unwrap_or(0);
        bar.set_position(done);
        bar.set_message(progress(done, total, started.elapsed(), replay["state"].as_str().unwrap_or_default()));
        if replay["state"] != "running" {
            bar.finish();
            // The summary that follows goes on a line of its own (a finished bar leaves the
            // cursor at its end).
            if !bar.is_hidden() {
                eprintln!();
            }
            return Ok(replay);
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
            _ = interrupted.changed(), if !cancelling => {}
        }
    }
}

/// How long following a replay bears with a host that does not answer (a blip, a restart
/// of the network) before it gives up.
const PATIENCE: Duration = Duration::from_secs(10);

/// The replay's record; a host that does not answer is asked again for [`PATIENCE`].
async fn poll(client: &Client, path: &str, bar: &ProgressBar) -> anyhow::Result<Value> {
    let since = std::time::Instant::now();
    loop {
        match client.get(path).await {
            Err(e) if Client::unreachable(&e) && since.elapsed() < PATIENCE => {
                bar.set_message(format!("no answer from the host; asking again for {}s", (PATIENCE - since.elapsed()).as_secs()));
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            answer => return answer,
        }
    }
}

/// What the bar says beside its count: events per second so far, the time left at that
/// rate, and the replay's state.
fn progress(done: u64, total: u64, elapsed: Duration, state: &str) -> String {
    let secs = elapsed.as_secs_f64();
    if done == 0 || secs < 0.5 {
        return state.to_owned();
    }
    let rate = done as f64 / secs;
    let left = total.saturating_sub(done) as f64 / rate;
    format!("{rate:.0}/s  eta {}s  {state}", left.ceil() as u64)
}
