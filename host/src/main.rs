//! The `shopmesh` binary: see [`shopmesh::cli`] (or `shopmesh --help`).

use std::process::ExitCode;

use shopmesh::{
    cli::{self, Command},
    startup::{Application, StopSignals},
};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match cli::parse() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli.command).await {
        Ok(code) => code,
        Err(e) => {
            // The error and its causes on one line; no backtrace.
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Serve(args) => {
            cli::init_logs(args.log_format);
            let signals = StopSignals::install()?;
            let app = Application::build(args.settings()?).await?;
            app.run_until_stopped(signals).await?;
        }
        Command::Openapi => cli::print(&format!("{}\n", shopmesh::api::spec_json()))?,
        Command::SignCallback { config, body } => {
            let settings = config.load()?;
            let now = shopmesh::ids::now_ms() / 1000;
            let secret = secrecy::ExposeSecret::expose_secret(&settings.callback_secret);
            cli::print(&format!("{}\n", shopmesh::signature::sign(secret.as_bytes(), now, body.as_bytes())))?;
        }
        Command::Replay(args) => return cli::replay::run(args).await,
        Command::Plugin { command } => return cli::plugin::run(command).await,
        Command::DeadLetters { command } => return cli::dead_letters::run(command).await,
    }
    Ok(ExitCode::SUCCESS)
}
