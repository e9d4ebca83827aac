//! `shopmesh serve [--config FILE]`: the whole product in one process.
//! `shopmesh openapi`: print the served OpenAPI spec.
//! `shopmesh sign-callback BODY`: print the X-Shop-Signature header for BODY (for curl).

use anyhow::{bail, Context};
use shopmesh::{config::Settings, startup::Application};
use tracing_subscriber::EnvFilter;

const USAGE: &str = "usage: shopmesh serve [--config FILE] | shopmesh openapi | shopmesh sign-callback [--config FILE] BODY";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args: Vec<String> = std::env::args().skip(1).collect();
    let command = if args.is_empty() { "serve".to_string() } else { args.remove(0) };
    let config = take_flag(&mut args, "--config")?.or_else(|| std::env::var("SHOPMESH_CONFIG").ok());
    match command.as_str() {
        "serve" => {
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")))
                .init();
            let settings = Settings::load(config.as_deref())?;
            let app = Application::build(settings).await?;
            app.run_until_stopped().await
        }
        "openapi" => {
            println!("{}", shopmesh::api::spec_json());
            Ok(())
        }
        "sign-callback" => {
            let body = args.pop().context(USAGE)?;
            let settings = Settings::load(config.as_deref())?;
            let now = shopmesh::ids::now_ms() / 1000;
            println!("{}", shopmesh::signature::sign(secrecy::ExposeSecret::expose_secret(&settings.callback_secret).as_bytes(), now, body.as_bytes()));
            Ok(())
        }
        "-h" | "--help" | "help" => {
            println!("{USAGE}");
            Ok(())
        }
        other => bail!("unknown command {other:?}\n{USAGE}"),
    }
}

fn take_flag(args: &mut Vec<String>, flag: &str) -> anyhow::Result<Option<String>> {
    match args.iter().position(|a| a == flag) {
        Some(i) if i + 1 < args.len() => {
            let value = args.remove(i + 1);
            args.remove(i);
            Ok(Some(value))
        }
        Some(_) => bail!("{flag} needs a value\n{USAGE}"),
        None => Ok(None),
    }
}
