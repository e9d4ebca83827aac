//! `shopmesh plugin`: what a business team needs to ship a plugin without a host release.
//! `new` writes a standalone crate (the rule, a native unit test) on the guest SDK; `build`
//! compiles it into a component (the same toolchains as `scripts/build-plugins`: rustup's
//! `wasm32-wasip2` target, else Debian's `rustc-web` with `-Zbuild-std`); `check` runs the
//! host's load-time checks offline; `upload` and `try` talk to a running host (`try` stages
//! the component and dry-runs it over history, printing what would change); `status`,
//! `activate`, `disable` and `enable` are the operator's (see [`super::fleet`]).

use std::{
    path::{Path, PathBuf},
    process::{Command as Process, ExitCode},
    time::Duration,
};

use anyhow::{bail, Context};
use clap::{Args, Subcommand};
use serde_json::Value;

use super::{client::HostArgs, fleet, replay};
use crate::plugins::{
    config::Configs,
    grants::Grants,
    runtime::{capability_named, capability_names, sha256_hex, Capability, Limits, LoadError, LoadedPlugin, Runtime, CAPABILITIES},
};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Create a plugin crate: its rule in src/lib.rs, a native unit test, built outside any workspace
    New(NewArgs),
    /// Build a plugin crate into a component (<name>.wasm in the crate's folder) and check it
    Build {
        /// The plugin crate (default: the current folder)
        dir: Option<PathBuf>,
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Run the host's load-time checks on a component, offline
    Check {
        /// The component (.wasm), e.g. what `plugin build` wrote: <name>.wasm
        file: PathBuf,
        #[command(flatten)]
        grants: GrantArgs,
    },
    /// Upload a component to a running host (kept fleet-wide; --activate to run it)
    Upload {
        /// The component (.wasm), e.g. what `plugin build` wrote: <name>.wasm
        file: PathBuf,
        /// Make it the active version at once (default: only keep it, staged; the API's PUT activates unless ?activate=false)
        #[arg(long)]
        activate: bool,
        /// The API's answer (the plugin's status) as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Stage a component on a running host and dry-run it over history: what would change
    Try {
        /// The component (.wasm), e.g. what `plugin build` wrote: <name>.wasm
        file: PathBuf,
        /// Events of the last while (default: the whole stream)
        #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration)]
        since: Option<Duration>,
        /// Exit 3 when any event's effects changed, or it fails on one applied live (to gate a release in CI)
        #[arg(long)]
        fail_on_change: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// A running host's plugins, or one in detail: active version, switch, grants, versions
    Status {
        /// One plugin (default: every plugin, a line each)
        name: Option<String>,
        /// The API's answer as JSON
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Make a kept (or staged) version the active one on every host: a rollback, a release
    Activate {
        /// The plugin, e.g. points
        name: String,
        /// A version it keeps, e.g. 1.0.0 (`plugin status NAME` lists them)
        version: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Pause a plugin on every host: its events wait in JetStream
    Disable {
        /// The plugin, e.g. points
        name: String,
        #[command(flatten)]
        host: HostArgs,
    },
    /// Resume a paused plugin on every host
    Enable {
        /// The plugin, e.g. points
        name: String,
        #[command(flatten)]
        host: HostArgs,
    },
}

#[derive(Debug, Clone, Args)]
pub struct NewArgs {
    /// The plugin's name (letters, digits, dashes), e.g. vip-bonus
    pub name: String,
    /// A subject it handles (repeat for more), e.g. shop.pay.success
    #[arg(long = "on", required = true, value_name = "SUBJECT")]
    pub subjects: Vec<String>,
    /// A capability it needs (repeat for more), e.g. add-points
    #[arg(long = "cap", value_name = "CAPABILITY")]
    pub capabilities: Vec<String>,
    /// Where to create its folder (default: the current folder)
    #[arg(long, value_name = "DIR", default_value = ".")]
    pub dir: PathBuf,
    /// The guest SDK crate (default: plugins/guest of the shopmesh source this binary was built from)
    #[arg(long, env = "SHOPMESH_GUEST_SDK", value_name = "DIR")]
    pub sdk: Option<PathBuf>,
}

/// Which capabilities the offline check grants (default: what the host's configuration grants).
#[derive(Debug, Clone, Args)]
pub struct GrantArgs {
    /// Grant these capabilities to the plugin's name for the check (comma-separated)
    #[arg(long, value_delimiter = ',', value_name = "CAPABILITIES")]
    pub grant: Option<Vec<String>>,
    #[command(flatten)]
    pub config: super::ConfigArg,
}

pub async fn run(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New(args) => new(&args),
        PluginCommand::Build { dir, grants } => {
            let file = build(&dir.unwrap_or_else(|| PathBuf::from(".")))?;
            check(&file, &grants)
        }
        PluginCommand::Check { file, grants } => check(&file, &grants),
        PluginCommand::Upload { file, activate, json, host } => {
            let (name, version) = manifest_of(&file)?;
            let status = upload(&file, &name, activate, &host).await?;
            if json {
                super::print(&format!("{}\n", serde_json::to_string_pretty(&status)?))?;
            } else {
                match status["active_version"].as_str() {
                    Some(active) if active == version => eprintln!("{name} {version} is the active version here, and every host of the fleet follows"),
                    _ => eprintln!("{name} {version} is kept fleet-wide, not active (shopmesh plugin try, then shopmesh plugin activate {name} {version})"),
                }
                super::print(&fleet::detail(&status))?;
            }
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Try { file, since, fail_on_change, host } => {
            let (name, version) = manifest_of(&file)?;
            match upload(&file, &name, false, &host).await {
                // Re-sending the active build is a no-op that answers as an upload does.
                Ok(status) if status["active_version"] == version.as_str() => eprintln!("{name} {version} is the active version; dry-running it over history…"),
                Ok(_) => eprintln!("staged {name} {version}; dry-running it over history…"),
                // The host answers this for a version kept with these bytes (tried before, or
                // running: dry-run the kept one) and for one kept with other bytes, which
                // must not be dry-run in this build's place.
                Err(e) if format!("{e:#}").contains("SHOP_PLUGIN_VERSION_EXISTS") => {
                    let status: Value = host.client()?.get(&format!("/api/admin/plugins/{name}")).await?;
                    let ours = sha256_hex(&std::fs::read(&file)?);
                    let kept = status["versions"].as_array().into_iter().flatten().find(|v| v["version"] == version.as_str());
                    if kept.and_then(|v| v["sha256"].as_str()) != Some(ours.as_str()) {
                        bail!("{name} {version} is kept with other bytes than {}: give this build a new version to try it", file.display());
                    }
                    eprintln!("{name} {version} is kept already; dry-running it over history…")
                }
                Err(e) => return Err(e),
            }
            replay::run(replay::ReplayArgs::dry_run(host, name, version, since, fail_on_change)).await
        }
        PluginCommand::Status { name, json, host } => fleet::status(name.as_deref(), json, &host).await,
        PluginCommand::Activate { name, version, host } => fleet::activate(&name, &version, &host).await,
        PluginCommand::Disable { name, host } => fleet::switch(&name, false, &host).await,
        PluginCommand::Enable { name, host } => fleet::switch(&name, true, &host).await,
    }
}

/// The WIT's capability name as the `plugin!` macro spells it: add-points → AddPoints.
fn pascal(kebab: &str) -> String {
    kebab.split('-').map(|w| w[..1].to_uppercase() + &w[1..]).collect()
}

fn new(args: &NewArgs) -> anyhow::Result<ExitCode> {
    let name = &args.name;
    // It names the crate, the Rust type of its rule (`vip-bonus` → `VipBonus`) and the
    // admin API's path: a letter first, and no empty word between dashes.
    let words_ok = name.split('-').all(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit()));
    if !words_ok || !name.starts_with(|c: char| c.is_ascii_lowercase()) || name.len() > 64 {
        bail!("a plugin name is words of lowercase letters and digits joined by single dashes, starting with a letter, at most 64 characters: {name:?}");
    }
    if let Some(why) = crate::plugins::name_refusal(name) {
        bail!("{why}");
    }
    // The host would refuse the component these make (see plugins::subjects): say so now,
    // not after a build.
    if let Some(why) = crate::plugins::subjects::refusal(&args.subjects) {
        bail!("--on: {why}");
    }
    for c in &args.capabilities {
        capability(c)?;
    }
    let sdk = match &args.sdk {
        Some(p) => p.clone(),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../plugins/guest")),
    };
    let sdk = sdk.canonicalize().with_context(|| format!("the guest SDK is not at {} (set --sdk)", sdk.display()))?;
    let root = args.dir.join(name);
    if root.exists() {
        bail!("{} exists already", root.display());
    }
    std::fs::create_dir_all(root.join("src"))?;
    let subjects = args.subjects.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ");
    let caps = args.capabilities.iter().map(|c| pascal(c)).collect::<Vec<_>>().join(", ");
    let manifest = TEMPLATE_CARGO.replace("{name}", name).replace("{sdk}", &sdk.display().to_string());
    let pays = crate::plugins::subjects::reads(&args.subjects, "shop.pay.success");
    let event = if pays { "paid(100_000)" } else { "cancelled(1, None, 0)" }; // for its test
    let rule = TEMPLATE_LIB
        .replace("{name}", name)
        .replace("{Rule}", &pascal(name))
        .replace("{subjects}", &subjects)
        .replace("{caps}", &caps)
        .replace("{event}", event)
        .replace("{helper}", event.split('(').next().unwrap_or_default());
    std::fs::write(root.join("Cargo.toml"), manifest)?;
    std::fs::write(root.join("src/lib.rs"), rule)?;
    std::fs::write(root.join(".gitignore"), "/target\n*.wasm\n")?;
    // The build checks the grants as the host would: name the ones it declares.
    let grant = if args.capabilities.is_empty() { String::new() } else { format!(" --grant {}", args.capabilities.join(",")) };
    let (dir, next) = (root.display(), "write the rule in src/lib.rs, test it with `cargo test`, then");
    super::print(&format!("created {dir}: {next} `shopmesh plugin build {dir}{grant}`\n"))?;
    Ok(ExitCode::SUCCESS)
}

const TEMPLATE_CARGO: &str = r#"[package]
name = "{name}"
version = "1.0.0"
edition = "2021"

[lib]
crate-type = ["cdylib", "rlib"]

[dependencies]
shopmesh-guest = { path = "{sdk}" }

# A crate of its own, not part of any workspace around it.
[workspace]

# Small components; the host's sandbox, not unwinding, handles a panic.
[profile.release]
opt-level = "s"
lto = true
codegen-units = 1
panic = "abort"
strip = true

[profile.dev]
panic = "abort"
"#;

const TEMPLATE_LIB: &str = r#"//! {name}: what it does, in a sentence.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::{vec, vec::Vec};
use shopmesh_guest::*;

// The version is Cargo.toml's: give a new build a new version there.
plugin! {
    pub struct {Rule} = "{name}" @ env!("CARGO_PKG_VERSION"), on [{subjects}], may [{caps}];
    fn handle(event, reads) {
        rule(event, reads)
    }
}

/// The rule: the effects this event should have. `reads` answers questions about the shop
/// (the order, the user, the goods, this plugin's config). `Err(InvalidEvent)`: dead-lettered
/// at once; `Err(Unavailable)` or a panic: tried again, then dead-lettered.
fn rule(event: &Event, _reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {
    let _ = event;
    Ok(vec![])
}

#[cfg(test)]
mod tests {
    use super::*;
    use shopmesh_guest::testing::{helper};

    // Say here what the rule should return for this event (and add a test per case).
    #[test]
    fn handles_its_event() {
        assert!({Rule}::handle(&{event}, &FakeReads::default()).is_ok());
    }
}
"#;

/// Builds the crate in `dir` for wasm32-wasip2; answers the component's path
/// (`<dir>/<name>.wasm`).
fn build(dir: &Path) -> anyhow::Result<PathBuf> {
    let manifest = std::fs::read_to_string(dir.join("Cargo.toml")).with_context(|| format!("no Cargo.toml in {}", dir.display()))?;
    let name = manifest
        .lines()
        .find_map(|l| l.trim().strip_prefix("name = ").map(|v| v.trim_matches('"').to_owned()))
        .context("Cargo.toml has no package name")?;
    let rustup = Process::new("rustup").args(["target", "list", "--installed"]).output().ok().filter(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == "wasm32-wasip2"));
    let mut cargo = Process::new("cargo");
    cargo.args(["build", "--release", "--target", "wasm32-wasip2"]).current_dir(dir);
    if rustup.is_none() {
        // Debian's rustc-web, as scripts/build-plugins uses it: core and alloc built from
        // source, its own wasm-component-ld.
        cargo
            .args(["-Zbuild-std=core,alloc"])
            .env("RUSTC_BOOTSTRAP", "1")
            .env("PATH", "/usr/lib/llvm-22/bin:/usr/bin:/bin");
    }
    let status = cargo.status().context("running cargo")?;
    if !status.success() {
        bail!("cargo build failed ({status})");
    }
    // Cargo ran in `dir`: a relative target directory (its default, or CARGO_TARGET_DIR) is in it.
    let target = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(|| "target".into());
    let target = if target.is_absolute() { target } else { dir.join(target) };
    let built = target.join("wasm32-wasip2/release").join(format!("{}.wasm", name.replace('-', "_")));
    let out = dir.join(format!("{name}.wasm"));
    std::fs::copy(&built, &out).with_context(|| format!("copying {}", built.display()))?;
    Ok(out)
}

/// The capability a flag names, or which ones there are.
fn capability(name: &str) -> anyhow::Result<Capability> {
    let all: Vec<&str> = CAPABILITIES.iter().map(|(_, n)| *n).collect();
    capability_named(name).with_context(|| format!("unknown capability {name:?} (the capabilities are {})", all.join(", ")))
}

/// The plugin name and version a component declares.
fn manifest_of(file: &Path) -> anyhow::Result<(String, String)> {
    let plugin = load(file, |_| CAPABILITIES.iter().map(|(c, _)| *c).collect())?.map_err(|e| anyhow::anyhow!(refused(file, &e)))?;
    Ok((plugin.name.clone(), plugin.version().to_owned()))
}

/// The host's refusal of `file`, as every command says it.
fn refused(file: &Path, e: &LoadError) -> String {
    format!("{}: refused: {e}", file.display())
}

/// Loads `file` as the host would, under the name it declares (the folder convention
/// `<name>.wasm` is the host's, not ours), granted what `grants_of` gives that name. The
/// outer error is ours (the file cannot be read), the inner one the host's refusal.
fn load(file: &Path, grants_of: impl FnOnce(&str) -> Vec<Capability>) -> anyhow::Result<Result<LoadedPlugin, LoadError>> {
    let bytes = std::fs::read(file).with_context(|| format!("reading {}", file.display()))?;
    Ok(Runtime::new(Limits::default())?.load_declared(&bytes, grants_of))
}

fn check(file: &Path, args: &GrantArgs) -> anyhow::Result<ExitCode> {
    let explicit = match &args.grant {
        Some(list) => Some(list.iter().map(|c| capability(c)).collect::<anyhow::Result<Vec<_>>>()?),
        None => None,
    };
    let settings = args.config.load()?;
    let configured = Grants::new(settings.plugin_grants()?);
    let loaded = load(file, |name| explicit.clone().unwrap_or_else(|| configured.granted(name)))?;
    // The configured values for its name must fit its config schema, as on the host.
    let loaded = loaded.and_then(|p| Configs::new(settings.plugin_config.0).check(&p.name, &p.manifest.config_schema).map(|()| p).map_err(LoadError::from));
    let plugin = match loaded {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{}", refused(file, &e));
            // A capability refused is most often a grant not given yet (the refusal says
            // what the name holds): say how to give one here.
            if let LoadError::CapabilityNotAllowed { .. } = e {
                eprintln!("(grant with --grant, or SHOPMESH_PLUGIN_GRANTS as on the host; this check is offline and does not see a grant made through the admin API)");
            }
            return Ok(ExitCode::FAILURE);
        }
    };
    super::print(&format!(
        "ok: {} {}\n  subjects     {}\n  capabilities {}\n  size         {} bytes\n  sha256       {}\n",
        plugin.name,
        plugin.version(),
        plugin.subjects().join(", "),
        capability_names(&plugin.manifest.capabilities),
        std::fs::metadata(file)?.len(),
        plugin.sha256
    ))?;
    Ok(ExitCode::SUCCESS)
}

async fn upload(file: &Path, name: &str, activate: bool, host: &HostArgs) -> anyhow::Result<Value> {
    let bytes = std::fs::read(file)?;
    let client = host.client()?;
    client
        .call(reqwest::Method::PUT, &format!("/api/admin/plugins/{name}?activate={activate}"), Some(bytes.into()), false)
        .await
        .with_context(|| format!("uploading {name}"))
}
