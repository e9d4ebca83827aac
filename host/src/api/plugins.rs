//! The operators' plugin endpoints: versions (upload, activate, disable, enable, status),
//! grants, and dead letters (list, redrive). All need the admin token.

use std::sync::Arc;

use poem::{web::Data, Request};
use poem_openapi::{OpenApi, param::{Path, Query}, payload::{Binary, Json}};

use super::{admin::{AdminAuth, AdminError}, errors::api_error, strict::StrictJson, ApiTags};
use crate::{
    plugins::{
        dead_letters::{self, DeadLetter, DeadLetterError},
        failures::Redriven,
        grants::{CapabilityName, Grant},
        name_refusal,
        runtime::LoadError,
        InstallError, PluginHost, PluginStatus, Registry, GUARD,
    },
    shop::Shop,
};

/// A dead letter with the event it holds.
#[derive(Debug, Clone, poem_openapi::Object)]
pub struct DeadLetterDetail {
    #[oai(flatten)]
    pub letter: DeadLetter,
    /// The event as it arrived (its JSON, or whatever bytes a malformed one had).
    pub event: String,
}

#[derive(Debug, Clone, poem_openapi::Object)]
pub struct RedriveResult {
    pub id: crate::ids::Id,
    /// `applied` (for one of `shopmesh-guard`'s, `well-formed now`), or why it failed again.
    pub result: String,
    /// Whether the letter is closed now; `false`: it failed again and stays open.
    pub closed: bool,
}

impl RedriveResult {
    fn of(id: crate::ids::Id, redriven: Redriven) -> RedriveResult {
        RedriveResult { id, result: redriven.result, closed: redriven.closed }
    }
}

/// What a plugin name may hold.
#[derive(Debug, Clone, poem_openapi::Object)]
#[oai(example)]
pub struct SetGrants {
    /// Capabilities as the WIT spells them (`restore-stock`, `release-coupon`,
    /// `refund-balance`, `add-points`, `append-log`); `[]` grants nothing.
    #[oai(validator(max_items = 5))]
    pub capabilities: Vec<CapabilityName>,
}

impl poem_openapi::types::Example for SetGrants {
    fn example() -> Self {
        SetGrants { capabilities: vec![CapabilityName::AddPoints] }
    }
}

api_error!(
    /// Errors of granting capabilities.
    GrantsError (400 "SHOP_REQUEST_PARAMETER_INVALID") admin body {}
);

/// Which kept version to make active.
#[derive(Debug, Clone, poem_openapi::Object)]
#[oai(example)]
pub struct Activate {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub version: String,
}

impl poem_openapi::types::Example for Activate {
    /// The demo's points has version 1.0.0.
    fn example() -> Self {
        Activate { version: "1.0.0".into() }
    }
}

api_error!(
    /// Errors of uploading a plugin version.
    UploadError (400 "SHOP_PLUGIN_REJECTED") admin body {
        409 => Conflict("SHOP_PLUGIN_VERSION_EXISTS"): "That version is already known (upload a new version, or activate the kept one).",
    } or 503 ("SHOP_PLUGIN_NOT_DISTRIBUTED"): "The fleet registry could not be reached (nothing was activated), or did not come back in time."
);

api_error!(
    /// Errors of activating a kept version.
    ActivateError (400 "SHOP_REQUEST_PARAMETER_INVALID") admin body {
        404 => NotFound("SHOP_PLUGIN_NOT_FOUND"): "No such plugin or kept version.",
        409 => Conflict("SHOP_PLUGIN_VERSION_EXISTS"): "The fleet keeps another build under that version than this host (its plugins folder's); nothing changed.",
    } or 503 ("SHOP_PLUGIN_NOT_DISTRIBUTED"): "The fleet registry could not be reached (nothing was activated), or did not come back in time."
);

api_error!(
    /// Errors of pausing or resuming a plugin.
    SwitchError (400 "SHOP_REQUEST_PARAMETER_INVALID") admin {
        404 => NotFound("SHOP_PLUGIN_NOT_FOUND"): "No such plugin.",
    } or 503 ("SHOP_PLUGIN_NOT_DISTRIBUTED"): "The fleet's switches could not be reached (nothing changed), or this host did not follow in time."
);

api_error!(lookups {
    /// Errors of reading a plugin, or redriving its dead letters.
    PluginError: admin 404 "SHOP_PLUGIN_NOT_FOUND": "No such plugin.";
    /// Errors of redriving one dead letter.
    RedriveError: admin 404 "SHOP_DEAD_LETTER_NOT_FOUND": "No such dead letter, or it was redriven already.";
    /// Errors of reading one dead letter.
    DeadLetterLookupError: admin 404 "SHOP_DEAD_LETTER_NOT_FOUND": "No such dead letter.";
});

/// Who asked, for the log: the admin, and from where.
pub fn who(req: &Request) -> String {
    match req.remote_addr().as_socket_addr() {
        Some(addr) => format!("admin ({addr})"),
        None => "admin".to_string(),
    }
}

fn status_of(registry: &Registry, name: &str) -> Result<PluginStatus, InstallError> {
    registry.status().into_iter().find(|s| s.name == name).ok_or_else(|| InstallError::UnknownPlugin(name.into()))
}

pub struct PluginsAdminApi;

#[OpenApi(prefix_path = "/api/admin")]
impl PluginsAdminApi {
    /// List plugins
    ///
    /// Each plugin's active version, sha256, capabilities, subjects, activation time,
    /// invocation and failure counters, and the versions kept for rollback.
    #[oai(path = "/plugins", method = "get", operation_id = "listPlugins", tag = "ApiTags::Admin")]
    async fn list_plugins(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>) -> Result<Json<Vec<PluginStatus>>, AdminError> {
        Ok(Json(host.registry.status()))
    }

    /// Get a plugin
    ///
    /// One plugin's status, as the list gives it.
    #[oai(path = "/plugins/:name", method = "get", operation_id = "getPlugin", tag = "ApiTags::Admin")]
    async fn get_plugin(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, #[oai(example = "super::examples::plugin_name")] name: Path<String>) -> Result<Json<PluginStatus>, PluginError> {
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// Upload a new plugin version
    ///
    /// The body is the component (`.wasm`). It is compiled and checked (world, imports,
    /// manifest name: the path's, and 1 to 64 letters, digits, `-` and `_`, not
    /// `shopmesh-guard`; capabilities allowed for the name, a version not seen before, of 1 to
    /// 64 letters, digits, `.`, `-`, `+` and `_`), then
    /// put into the fleet's registry, from which every host, this one included, keeps it
    /// and activates it in the same order. Deliveries in flight finish on the old version.
    /// Answers once it is active here. With `activate=false` the version is only kept
    /// (staged) fleet-wide, to be dry-run by a replay and activated later.
    #[oai(path = "/plugins/:name", method = "put", operation_id = "uploadPlugin", tag = "ApiTags::Admin")]
    async fn upload(
        &self,
        _auth: AdminAuth,
        req: &Request,
        host: Data<&Arc<PluginHost>>,
        #[oai(example = "super::examples::plugin_name")] name: Path<String>,
        /// `false`: keep the version fleet-wide without running it (default `true`).
        activate: Query<Option<bool>>,
        body: Binary<Vec<u8>>,
    ) -> Result<Json<PluginStatus>, UploadError> {
        let activate = activate.0.unwrap_or(true);
        // A name no plugin can have is refused before anything (a metric label included) is made of it.
        if let Some(why) = name_refusal(&name.0) {
            return Err(InstallError::Load(LoadError::BadName(why)).into());
        }
        if body.0.is_empty() {
            return Err(InstallError::Load(LoadError::Compile("the body is empty: send the component's bytes (.wasm)".into())).into());
        }
        let before = host.registry.current(&name.0);
        let (staged, newly) = host.registry.stage(&name.0, &body.0)?;
        // The active build again (stage hashed it; no need to hash the body twice).
        let again = before.is_some_and(|active| active.sha256 == staged.sha256);
        if let Err(e) = host.registry.distribute(&name.0, staged.version(), activate).await {
            if matches!(e, InstallError::Registry(_) | InstallError::OtherBuild { .. }) && newly {
                host.registry.unstage(&name.0, &staged);
            }
            return Err(e.into());
        }
        let action = match (again, activate) {
            (true, _) => "uploaded again: the active build, nothing changed",
            (false, true) => "uploaded and activated",
            (false, false) => "uploaded (staged)",
        };
        tracing::info!(plugin = %name.0, version = staged.version(), sha256 = %staged.sha256, by = %who(req), "plugin {action}");
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// Activate a kept version (rollback)
    #[oai(path = "/plugins/:name/activate", method = "post", operation_id = "activatePlugin", tag = "ApiTags::Admin")]
    async fn activate(&self, _auth: AdminAuth, req: &Request, host: Data<&Arc<PluginHost>>, #[oai(example = "super::examples::plugin_name")] name: Path<String>, body: StrictJson<Activate>) -> Result<Json<PluginStatus>, ActivateError> {
        // Through the registry, so every host rolls back, in the same order.
        host.registry.distribute(&name.0, &body.0.version, true).await?;
        tracing::info!(plugin = %name.0, version = %body.0.version, by = %who(req), "plugin version activated");
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// A plugin name's grants
    ///
    /// The capabilities the name may hold (what its next upload may claim) and where that
    /// comes from: built in, configured, or granted through this API.
    #[oai(path = "/plugins/:name/grants", method = "get", operation_id = "getPluginGrants", tag = "ApiTags::Admin")]
    async fn get_grants(
        &self,
        _auth: AdminAuth,
        host: Data<&Arc<PluginHost>>,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"), example = "super::examples::plugin_name")] name: Path<String>,
    ) -> Result<Json<Grant>, AdminError> {
        Ok(Json(host.registry.grants.lookup(&name.0)))
    }

    /// Grant capabilities to a plugin name
    ///
    /// Replaces what the name may hold, for the whole fleet (kept in the database); the name
    /// need not exist yet (but may not be `shopmesh-guard`). Uploads from now on are checked against it, and so is every effect
    /// of the versions already running: a revoked capability stops with the next batch (on
    /// the other hosts within 2 s; their events that need it are dead-lettered with the reason).
    #[oai(path = "/plugins/:name/grants", method = "put", operation_id = "setPluginGrants", tag = "ApiTags::Admin")]
    async fn set_grants(
        &self,
        _auth: AdminAuth,
        req: &Request,
        host: Data<&Arc<PluginHost>>,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"), example = "super::examples::plugin_name")] name: Path<String>,
        body: StrictJson<SetGrants>,
    ) -> Result<Json<Grant>, GrantsError> {
        let (before, by) = (host.registry.grants.lookup(&name.0).capabilities, who(req));
        let grant = host.registry.grants.set(&host.shop().db, &name.0, &body.0.capabilities, &by).await?;
        tracing::info!(plugin = %name.0, ?before, after = ?grant.capabilities, %by, "plugin grants changed");
        Ok(Json(grant))
    }

    /// Hand a plugin name's grant back to the configuration
    ///
    /// Removes the grant an operator set through this API, for the whole fleet: the name
    /// holds again what each host's configuration or the built-in grants give it (`source`
    /// says which, on the host that answers; `none`: nothing). Like a change through PUT, it
    /// holds for the version already running too. A name without such a grant is answered as
    /// it is.
    #[oai(path = "/plugins/:name/grants", method = "delete", operation_id = "resetPluginGrants", tag = "ApiTags::Admin")]
    async fn reset_grants(
        &self,
        _auth: AdminAuth,
        req: &Request,
        host: Data<&Arc<PluginHost>>,
        #[oai(validator(pattern = r"^[A-Za-z0-9_-]{1,64}$"), example = "super::examples::plugin_name")] name: Path<String>,
    ) -> Result<Json<Grant>, GrantsError> {
        let (grant, removed) = host.registry.grants.reset(&host.shop().db, &name.0).await?;
        if removed {
            tracing::info!(plugin = %name.0, after = ?grant.capabilities, source = ?grant.source, by = %who(req), "plugin grants handed back to the configuration");
        }
        Ok(Json(grant))
    }

    /// Disable a plugin on every host: its events wait in JetStream until it is enabled
    #[oai(path = "/plugins/:name/disable", method = "post", operation_id = "disablePlugin", tag = "ApiTags::Admin")]
    async fn disable(&self, _auth: AdminAuth, req: &Request, host: Data<&Arc<PluginHost>>, #[oai(example = "super::examples::plugin_name")] name: Path<String>) -> Result<Json<PluginStatus>, SwitchError> {
        host.registry.switch(&name.0, false).await?;
        tracing::info!(plugin = %name.0, by = %who(req), "plugin disabled");
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// Enable a plugin on every host
    #[oai(path = "/plugins/:name/enable", method = "post", operation_id = "enablePlugin", tag = "ApiTags::Admin")]
    async fn enable(&self, _auth: AdminAuth, req: &Request, host: Data<&Arc<PluginHost>>, #[oai(example = "super::examples::plugin_name")] name: Path<String>) -> Result<Json<PluginStatus>, SwitchError> {
        host.registry.switch(&name.0, true).await?;
        tracing::info!(plugin = %name.0, by = %who(req), "plugin enabled");
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// List dead letters
    ///
    /// Events a plugin could not handle after its retries (or that were malformed), with
    /// the reason. Optionally for one plugin.
    #[oai(path = "/dead-letters", method = "get", operation_id = "listDeadLetters", tag = "ApiTags::Admin")]
    async fn dead_letters(
        &self,
        _auth: AdminAuth,
        shop: Data<&Arc<Shop>>,
        plugin: Query<Option<String>>,
    ) -> Result<Json<Vec<DeadLetter>>, AdminError> {
        Ok(Json(dead_letters::list(&shop.db, plugin.0.as_deref()).await.map_err(DeadLetterError::from)?))
    }

    /// Get one dead letter, with its event
    #[oai(path = "/dead-letters/:id", method = "get", operation_id = "getDeadLetter", tag = "ApiTags::Admin")]
    async fn dead_letter(&self, _auth: AdminAuth, shop: Data<&Arc<Shop>>, id: Path<crate::ids::Id>) -> Result<Json<DeadLetterDetail>, DeadLetterLookupError> {
        let (letter, event) = dead_letters::get(&shop.db, id.0).await?;
        Ok(Json(DeadLetterDetail { letter, event }))
    }

    /// Redrive one dead letter
    ///
    /// Runs the event through the plugin's current version once more (after a fix). It is
    /// applied at most once: the plugin's inbox still guards it. `applied` closes the letter;
    /// any other result leaves it open. A letter of `shopmesh-guard` (the host's check of
    /// every event) is checked again: `well-formed now` closes it, `still malformed: …` not.
    #[oai(path = "/dead-letters/:id/redrive", method = "post", operation_id = "redriveDeadLetter", tag = "ApiTags::Admin")]
    async fn redrive(&self, _auth: AdminAuth, req: &Request, host: Data<&Arc<PluginHost>>, id: Path<crate::ids::Id>) -> Result<Json<RedriveResult>, RedriveError> {
        let redriven = host.redrive(id.0).await?;
        // Who ran it again, and what came of it: a redrive can move points or money.
        tracing::info!(dead_letter = %id.0, result = %redriven.result, closed = redriven.closed, by = %who(req), "dead letter redrive");
        Ok(Json(RedriveResult::of(id.0, redriven)))
    }

    /// Dismiss one dead letter
    ///
    /// Closes an open dead letter without running its event: for one that can never succeed
    /// (a malformed event stays malformed) or is no longer wanted. It leaves the open count,
    /// its result says who dismissed it, and retention prunes it with the resolved ones.
    #[oai(path = "/dead-letters/:id/dismiss", method = "post", operation_id = "dismissDeadLetter", tag = "ApiTags::Admin")]
    async fn dismiss(&self, _auth: AdminAuth, req: &Request, shop: Data<&Arc<Shop>>, id: Path<crate::ids::Id>) -> Result<Json<DeadLetter>, RedriveError> {
        let by = who(req);
        let letter = dead_letters::dismiss(&shop.db, id.0, &by).await?;
        tracing::info!(dead_letter = %id.0, plugin = %letter.plugin, %by, "dead letter dismissed");
        Ok(Json(letter))
    }

    /// Redrive every pending dead letter of a plugin
    #[oai(path = "/plugins/:name/redrive", method = "post", operation_id = "redrivePlugin", tag = "ApiTags::Admin")]
    async fn redrive_all(&self, _auth: AdminAuth, req: &Request, host: Data<&Arc<PluginHost>>, #[oai(example = "super::examples::plugin_name")] name: Path<String>) -> Result<Json<Vec<RedriveResult>>, PluginError> {
        let results = host.redrive_all(&name.0).await?;
        let by = who(req);
        for (id, redriven) in &results {
            tracing::info!(dead_letter = %id.0, plugin = %name.0, result = %redriven.result, closed = redriven.closed, %by, "dead letter redrive");
        }
        // Nothing to redrive is an empty list for a plugin this host runs and for the guard
        // (the host's own check); any other name it does not run is no plugin at all.
        if results.is_empty() && name.0 != GUARD && host.registry.current(&name.0).is_none() {
            return Err(InstallError::UnknownPlugin(name.0).into());
        }
        Ok(Json(results.into_iter().map(|(id, redriven)| RedriveResult::of(id, redriven)).collect()))
    }
}
