//! The `shopmesh` command line: `serve` runs the host; `openapi`, `sign-callback`, the
//! plugin author's tools (`plugin new|build|check`) and the clients of a running host's admin
//! API (`replay`, `plugin upload|try|status|activate|disable|enable`, `dead-letters`) are
//! small tools around it. `--help` and `--version`
//! never start anything; a usage error is one line on stderr and exit code 2.

pub mod client;
pub mod dead_letters;
pub mod fleet;
mod follow;
pub mod plugin;
pub mod replay;

use std::{io::Write, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand};

use crate::config::Settings;

#[derive(Debug, Parser)]
#[command(name = "shopmesh", version, about = "An event mesh for commerce side effects: shop API, outbox to NATS JetStream, WebAssembly plugins")]
#[command(arg_required_else_help = true)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the host: the API, the outbox relay, the sweeper and the plugins (and a
    /// nats-server child, unless a NATS URL is configured)
    Serve(ServeArgs),
    /// Print the OpenAPI spec the server serves
    Openapi,
    /// Print the X-Shop-Signature header value for a callback body, signed now with the
    /// configured callback secret
    SignCallback {
        #[command(flatten)]
        config: ConfigArg,
        /// The exact body that will be sent
        body: String,
    },
    /// Run stream history through a plugin on a running host: a dry-run diff, or --apply
    ///
    /// Exits 1 if the replay failed or was cancelled (Ctrl-C or SIGTERM cancel it on the
    /// host; a second one leaves at once), 3 with --fail-on-change if any event changed or
    /// regressed.
    Replay(replay::ReplayArgs),
    /// Write, build, check and ship a plugin (new, build, check, upload, try), and run the
    /// fleet's plugins (status, activate, disable, enable)
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// The events a plugin gave up on: list, show, redrive, dismiss
    DeadLetters {
        #[command(subcommand)]
        command: dead_letters::DeadLetterCommand,
    },
}

/// Where the configuration file is (the environment applies on top either way).
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// TOML configuration file
    #[arg(long, env = "SHOPMESH_CONFIG", value_name = "FILE")]
    pub config: Option<PathBuf>,
}

impl ConfigArg {
    pub fn load(&self) -> anyhow::Result<Settings> {
        Ok(Settings::load(self.config.as_deref().and_then(|p| p.to_str()))?)
    }
}

#[derive(Debug, Clone, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the API listens (overrides SHOPMESH_HTTP_ADDR)
    #[arg(long, value_name = "ADDR")]
    pub http_addr: Option<std::net::SocketAddr>,
    /// sqlite://… or postgres://… (overrides SHOPMESH_DATABASE_URL)
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
    /// An external NATS server (overrides SHOPMESH_NATS_URL; unset: start one)
    #[arg(long, value_name = "URL")]
    pub nats_url: Option<String>,
    /// Where the embedded SQLite file and JetStream store live (overrides SHOPMESH_DATA_DIR)
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Plugin components loaded at start (overrides SHOPMESH_PLUGINS_DIR)
    #[arg(long, value_name = "DIR")]
    pub plugins_dir: Option<PathBuf>,
    /// `text` (colour only on a terminal) or `json` (one object per line, for log shippers)
    #[arg(long, env = "SHOPMESH_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

/// Logs to stdout at `RUST_LOG` (default `info`) in `format`.
pub fn init_logs(format: LogFormat) {
    use std::io::IsTerminal;
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match format {
        // The current span's fields (a request's trace_id) go with every line inside it.
        LogFormat::Json => logs.json().flatten_event(true).with_current_span(true).with_span_list(false).init(),
        LogFormat::Text => logs.with_ansi(std::io::stdout().is_terminal()).init(),
    }
}

impl ServeArgs {
    /// The settings: file and environment, then these flags.
    pub fn settings(&self) -> anyhow::Result<Settings> {
        let mut s = self.config.load()?;
        if let Some(v) = self.http_addr {
            s.http_addr = v;
        }
        if let Some(v) = &self.database_url {
            s.database_url = Some(v.clone());
        }
        if let Some(v) = &self.nats_url {
            s.nats_url = Some(v.clone());
        }
        if let Some(v) = &self.data_dir {
            s.data_dir = v.clone();
        }
        if let Some(v) = &self.plugins_dir {
            s.plugins_dir = v.clone();
        }
        Ok(s)
    }
}

/// Parses the command line: help and version print and exit 0; a usage error prints one
/// line and exits 2.
pub fn parse() -> Result<Cli, ExitCode> {
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if e.kind() == clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            // A bare `shopmesh`: the help, as a usage error (it asked for nothing).
            eprint!("{}", e.render());
            Err(ExitCode::from(2))
        }
        Err(e) if !e.use_stderr() => {
            // --help or --version: what was asked for, on stdout.
            let _ = e.print();
            Err(ExitCode::SUCCESS)
        }
        Err(e) => {
            // The first paragraph, on one line: clap lists missing arguments on the lines
            // after "error: the following required arguments were not provided:".
            let text = e.to_string();
            let first: Vec<&str> = text.lines().map(str::trim).take_while(|l| !l.is_empty()).collect();
            let first = if first.is_empty() { "error: invalid usage".to_owned() } else { first.join(" ") };
            // The help of the (sub)command that was refused: its usage line names it.
            let command = text.lines().find_map(|l| l.trim().strip_prefix("Usage: ")).map(|usage| {
                usage.split_whitespace().take_while(|w| !w.starts_with(['[', '<', '-'])).collect::<Vec<_>>().join(" ")
            });
            eprintln!("{first} (see {} --help)", command.filter(|c| !c.is_empty()).as_deref().unwrap_or("shopmesh"));
            Err(ExitCode::from(2))
        }
    }
}

/// A field of an API answer as one line of text: a string as it is (line breaks as spaces),
/// `-` for none, anything else as JSON.
pub fn text(v: &serde_json::Value) -> String {
    match v {
        serde_json::Value::String(s) => s.replace(['\n', '\r'], " "),
        serde_json::Value::Null => "-".to_owned(),
        other => other.to_string(),
    }
}

/// A table for a terminal: each column as wide as its widest cell (a long version or id
/// does not push the rest out of line), two spaces apart, the columns at `right` aligned
/// right, the last one not padded; a line per row after the header.
pub fn columns(header: &[&str], rows: &[Vec<String>], right: &[usize]) -> String {
    debug_assert!(!header.is_empty() && rows.iter().all(|r| r.len() == header.len()), "a cell per column");
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let line = |cells: &mut dyn Iterator<Item = &str>| {
        let last = widths.len() - 1;
        let padded: Vec<String> = cells
            .zip(&widths)
            .enumerate()
            .map(|(i, (cell, width))| match (i == last, right.contains(&i)) {
                (_, true) => format!("{cell:>width$}"),
                (true, false) => cell.to_owned(),
                (false, false) => format!("{cell:<width$}"),
            })
            .collect();
        padded.join("  ") + "\n"
    };
    let mut out = line(&mut header.iter().copied());
    for row in rows {
        out.push_str(&line(&mut row.iter().map(String::as_str)));
    }
    out
}

/// Writes `text` to stdout; a closed pipe (`shopmesh openapi | head`) is not an error.
pub fn print(text: &str) -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other,
    }
}
