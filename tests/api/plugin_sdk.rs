//! A business team's first plugin, as a new user would write it: `shopmesh plugin new` in an
//! empty folder, a rule of a few lines, `plugin build`, `plugin check`, a grant through the
//! admin API, `plugin upload` to a running host: it handles the next paid order, with no host
//! rebuild or restart. Then version 1.0.1 is tried (`plugin try`) against that history and
//! the dry-run shows what would change.

use std::{path::Path, process::Output};

use serde_json::json;

use crate::helpers::{spawn_app_with, wait_consumers_idle, with_plugins, Backend, ADMIN_TOKEN};

/// The folder every build here shares: the first build compiles the guest SDK once.
fn sdk_target() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugin-sdk")
}

fn shopmesh(args: &[&str], dir: &Path) -> Output {
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"));
    command.args(args).current_dir(dir).env("CARGO_TARGET_DIR", sdk_target()).env_remove("SHOPMESH_PLUGIN_GRANTS");
    command.output().expect("run shopmesh")
}

fn ok(out: &Output) -> String {
    let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{:?}\n{stdout}\n{stderr}", out.status);
    stdout.into_owned()
}

/// The rule a team writes: `points` extra points on every payment.
fn rule(version: &str, points: i64) -> String {
    format!(
        r#"//! gold-points: {points} extra points on every payment.
#![cfg_attr(target_arch = "wasm32", no_std)]
extern crate alloc;

use alloc::{{vec, vec::Vec}};
use shopmesh_guest::*;

plugin! {{
    pub struct GoldPoints = "gold-points" @ "{version}", on ["shop.pay.success"], may [AddPoints];
    fn handle(event, reads) {{
        rule(event, reads)
    }}
}}

fn rule(event: &Event, _reads: &impl Reads) -> Result<Vec<Effect>, PluginError> {{
    let Payload::PaySuccess(paid) = &event.payload else {{
        return Ok(vec![]);
    }};
    Ok(vec![Effect::AddPoints(AddPoints {{ order_id: paid.order_id, user_id: paid.user_id, points: {points} }})])
}}
"#
    )
}

/// A name the crate, its rule's type or the API's path could not carry, or a subject the
/// host would refuse, is refused before anything is written.
#[test]
fn plugin_new_refuses_a_name_a_crate_cannot_carry() {
    let folder = tempfile::tempdir().unwrap();
    for name in ["vip-", "vip--bonus", "1vip", "Vip", "vip_bonus"] {
        let out = shopmesh(&["plugin", "new", name, "--on", "shop.pay.success"], folder.path());
        assert_eq!(out.status.code(), Some(1), "{name}: {out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains("a plugin name is words of lowercase letters"), "{name}: {out:?}");
        assert!(!folder.path().join(name).exists(), "{name}: nothing written");
    }
    // And the guard's name, which the host keeps for itself.
    let guard = shopmesh(&["plugin", "new", "shopmesh-guard", "--on", "shop.pay.success"], folder.path());
    assert_eq!(guard.status.code(), Some(1), "{guard:?}");
    assert!(String::from_utf8_lossy(&guard.stderr).contains("is the host's own guard"), "{guard:?}");
    assert!(!folder.path().join("shopmesh-guard").exists(), "nothing written");
    // So is a subject the host would refuse the component for.
    let outside = shopmesh(&["plugin", "new", "vip3-bonus", "--on", "pay.success"], folder.path());
    assert_eq!(outside.status.code(), Some(1), "{outside:?}");
    assert!(String::from_utf8_lossy(&outside.stderr).contains(r#"--on: "pay.success" is not a subject of stream SHOP"#), "{outside:?}");
    assert!(!folder.path().join("vip3-bonus").exists(), "nothing written");
    // And a subject no event of the shop travels on: a plugin that would never run.
    let typo = shopmesh(&["plugin", "new", "vip3-bonus", "--on", "shop.pay.sucess"], folder.path());
    assert_eq!(typo.status.code(), Some(1), "{typo:?}");
    assert!(String::from_utf8_lossy(&typo.stderr).contains(r#"--on: "shop.pay.sucess" reads none of the shop's events"#), "{typo:?}");
    ok(&shopmesh(&["plugin", "new", "vip2-bonus", "--on", "shop.pay.success"], folder.path()));
    assert!(folder.path().join("vip2-bonus/src/lib.rs").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_plugin_from_the_template_runs_without_a_host_release() {
    let app = spawn_app_with(Backend::Sqlite, with_plugins).await;
    let folder = tempfile::tempdir().unwrap();
    let created = ok(&shopmesh(&["plugin", "new", "gold-points", "--on", "shop.pay.success", "--cap", "add-points"], folder.path()));
    assert!(created.contains("gold-points") && created.trim_end().ends_with("--grant add-points`"), "{created}");
    let crate_dir = folder.path().join("gold-points");
    let template = std::fs::read_to_string(crate_dir.join("src/lib.rs")).unwrap();
    assert!(template.contains("may [AddPoints]") && template.contains(r#"on ["shop.pay.success"]"#), "{template}");
    assert!(std::fs::read_to_string(crate_dir.join("Cargo.toml")).unwrap().contains("[workspace]"), "standalone");

    let source = rule("1.0.0", 7);
    assert!(source.lines().filter(|l| !l.trim().is_empty()).count() < 30, "a rule of fewer than 30 lines");
    std::fs::write(crate_dir.join("src/lib.rs"), source).unwrap();
    let built = ok(&shopmesh(&["plugin", "build", ".", "--grant", "add-points"], &crate_dir));
    assert!(built.contains("ok: gold-points 1.0.0") && built.contains("add-points") && built.contains("bytes"), "{built}");
    let wasm = crate_dir.join("gold-points.wasm");
    // Offline check: without the grant the host would refuse it, naming the capability.
    let refused = shopmesh(&["plugin", "check", wasm.to_str().unwrap()], &crate_dir);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("add-points"));

    let host = ["--host", app.address.as_str(), "--token", ADMIN_TOKEN];
    let grant = app.admin(reqwest::Method::PUT, "/api/admin/plugins/gold-points/grants", Some(&json!({"capabilities": ["add-points"]}))).await;
    assert_eq!(grant.status, 200, "{:?}", grant.body);
    let uploaded = ok(&shopmesh(&[&["plugin", "upload", wasm.to_str().unwrap(), "--activate"][..], &host].concat(), &crate_dir));
    assert!(uploaded.starts_with("gold-points 1.0.0, enabled, active since"), "{uploaded}");

    // The next paid order: points' 1 per unit and gold-points' 7.
    let fx = app.fixture(5, "150.00", "0.00", None).await;
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 1).await;
    wait_consumers_idle(&app.nats_url, &["points", "gold-points"]).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 150 + 7);
    // Trying the running build says so (it is not staged again), and finds nothing changed.
    let running = shopmesh(&[&["plugin", "try", wasm.to_str().unwrap()][..], &host].concat(), &crate_dir);
    let said = String::from_utf8_lossy(&running.stderr);
    assert!(running.status.success() && said.contains("gold-points 1.0.0 is the active version"), "{running:?}");
    assert!(String::from_utf8_lossy(&running.stdout).contains("same 1  changed 0"), "{running:?}");

    // Version 1.0.1 gives 9: tried over that history, the one payment would change.
    std::fs::write(crate_dir.join("src/lib.rs"), rule("1.0.1", 9)).unwrap();
    ok(&shopmesh(&["plugin", "build", ".", "--grant", "add-points"], &crate_dir));
    let tried = ok(&shopmesh(&[&["plugin", "try", wasm.to_str().unwrap()][..], &host].concat(), &crate_dir));
    assert!(tried.contains("same 0  changed 1"), "{tried}");
    let tried_build = folder.path().join("gold-points-1.0.1.wasm");
    std::fs::copy(&wasm, &tried_build).unwrap();
    assert!(tried.contains("points 7 → add-points points 9"), "{tried}");
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 157, "a dry-run changes nothing");

    // The same build tried again dry-runs the kept one; another build under the same
    // version is refused, not passed off as the kept one's diff.
    let again = ok(&shopmesh(&[&["plugin", "try", wasm.to_str().unwrap()][..], &host].concat(), &crate_dir));
    assert!(again.contains("points 7 → add-points points 9"), "{again}");
    std::fs::write(crate_dir.join("src/lib.rs"), rule("1.0.1", 11)).unwrap();
    ok(&shopmesh(&["plugin", "build", ".", "--grant", "add-points"], &crate_dir));
    let other = shopmesh(&[&["plugin", "try", wasm.to_str().unwrap()][..], &host].concat(), &crate_dir);
    assert_eq!(other.status.code(), Some(1), "{other:?}");
    assert!(String::from_utf8_lossy(&other.stderr).contains("gold-points 1.0.1 is kept with other bytes"), "{other:?}");

    // The README's walk: what was tried (and so staged) is then uploaded to run.
    let shipped = ok(&shopmesh(&[&["plugin", "upload", tried_build.to_str().unwrap(), "--activate"][..], &host].concat(), folder.path()));
    assert!(shipped.starts_with("gold-points 1.0.1, enabled, active since"), "{shipped}");
    app.pay_order(&fx, "150.00").await;
    app.wait_events("shop.pay.success", 2).await;
    wait_consumers_idle(&app.nats_url, &["points", "gold-points"]).await;
    assert_eq!(app.get(&format!("/api/users/{}", fx.user_id)).await.body["user_score"], 157 + 150 + 9);

    // `plugin build DIR` from the folder above, as `plugin new` says it, with cargo's own
    // target folder (`DIR/target`: here a link to the shared one, so nothing is compiled
    // again): the component lands in DIR.
    std::fs::remove_file(&wasm).unwrap();
    std::os::unix::fs::symlink(sdk_target(), crate_dir.join("target")).unwrap();
    let mut command = std::process::Command::new(env!("CARGO_BIN_EXE_shopmesh"));
    command.args(["plugin", "build", "./gold-points", "--grant", "add-points"]).current_dir(folder.path()).env_remove("CARGO_TARGET_DIR");
    let built = ok(&command.output().unwrap());
    assert!(built.contains("ok: gold-points 1.0.1") && wasm.is_file(), "{built}");
}
