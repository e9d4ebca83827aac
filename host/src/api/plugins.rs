//! The operators' plugin endpoints: versions (upload, activate, disable, enable, status)
//! and dead letters (list, redrive). All need the admin token.

use std::sync::Arc;

use poem::web::Data;
use poem_openapi::{OpenApi, param::{Path, Query}, payload::{Binary, Json}};

use super::{admin::{AdminAuth, AdminError}, errors::api_error, ApiTags};
use crate::{
    plugins::{
        dead_letters::{self, DeadLetter, DeadLetterError},
        InstallError, PluginHost, PluginStatus, Registry,
    },
    shop::Shop,
};

#[derive(Debug, Clone, poem_openapi::Object)]
pub struct RedriveResult {
    pub id: crate::ids::Id,
    /// "applied", or why it failed again.
    pub result: String,
}

/// Which kept version to make active.
#[derive(Debug, Clone, poem_openapi::Object)]
pub struct Activate {
    #[oai(validator(min_length = 1, max_length = 64))]
    pub version: String,
}

api_error!(
    /// Errors of managing plugins.
    PluginAdminError {
        401 => Unauthorized: "Missing or wrong bearer token.",
        404 => NotFound: "No such plugin or kept version.",
        409 => Conflict: "That version is already known (upload a new version, or activate the kept one).",
        503 => Unavailable: "The fleet registry could not be reached (nothing was activated), or did not come back in time.",
    }
);

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
    #[oai(path = "/plugins", method = "get", tag = "ApiTags::Admin")]
    async fn list_plugins(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>) -> Result<Json<Vec<PluginStatus>>, AdminError> {
        Ok(Json(host.registry.status()))
    }

    /// Upload a new plugin version
    ///
    /// The body is the component (`.wasm`). It is compiled and checked (world, imports,
    /// manifest name, capabilities allowed for the name, a version not seen before), then
    /// put into the fleet's registry, from which every host, this one included, keeps it
    /// and activates it in the same order. Deliveries in flight finish on the old version.
    /// Answers once it is active here. With `activate=false` the version is only kept
    /// (staged) fleet-wide, to be dry-run by a replay and activated later.
    #[oai(path = "/plugins/:name", method = "put", tag = "ApiTags::Admin")]
    async fn upload(
        &self,
        _auth: AdminAuth,
        host: Data<&Arc<PluginHost>>,
        name: Path<String>,
        /// `false`: keep the version fleet-wide without running it (default `true`).
        activate: Query<Option<bool>>,
        body: Binary<Vec<u8>>,
    ) -> Result<Json<PluginStatus>, PluginAdminError> {
        let activate = activate.0.unwrap_or(true);
        let staged = host.registry.stage(&name.0, &body.0)?;
        host.registry.distribute(&name.0, staged.version(), activate).await?;
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// Activate a kept version (rollback)
    #[oai(path = "/plugins/:name/activate", method = "post", tag = "ApiTags::Admin")]
    async fn activate(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>, body: Json<Activate>) -> Result<Json<PluginStatus>, PluginAdminError> {
        // Through the registry, so every host rolls back, in the same order.
        host.registry.distribute(&name.0, &body.0.version, true).await?;
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// Disable a plugin: its events wait in JetStream until it is enabled
    #[oai(path = "/plugins/:name/disable", method = "post", tag = "ApiTags::Admin")]
    async fn disable(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>) -> Result<Json<PluginStatus>, PluginAdminError> {
        host.registry.set_enabled(&name.0, false)?;
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// Enable a plugin
    #[oai(path = "/plugins/:name/enable", method = "post", tag = "ApiTags::Admin")]
    async fn enable(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>) -> Result<Json<PluginStatus>, PluginAdminError> {
        host.registry.set_enabled(&name.0, true)?;
        Ok(Json(status_of(&host.registry, &name.0)?))
    }

    /// List dead letters
    ///
    /// Events a plugin could not handle after its retries (or that were malformed), with
    /// the reason. Optionally for one plugin.
    #[oai(path = "/dead-letters", method = "get", tag = "ApiTags::Admin")]
    async fn dead_letters(
        &self,
        _auth: AdminAuth,
        shop: Data<&Arc<Shop>>,
        plugin: Query<Option<String>>,
    ) -> Result<Json<Vec<DeadLetter>>, AdminError> {
        Ok(Json(dead_letters::list(&shop.db, plugin.0.as_deref()).await.map_err(DeadLetterError::from)?))
    }

    /// Redrive one dead letter
    ///
    /// Runs the event through the plugin's current version once more (after a fix). It is
    /// applied at most once: the plugin's inbox still guards it.
    #[oai(path = "/dead-letters/:id/redrive", method = "post", tag = "ApiTags::Admin")]
    async fn redrive(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, id: Path<crate::ids::Id>) -> Result<Json<RedriveResult>, AdminError> {
        let result = host.redrive(id.0).await?;
        Ok(Json(RedriveResult { id: id.0, result }))
    }

    /// Redrive every pending dead letter of a plugin
    #[oai(path = "/plugins/:name/redrive", method = "post", tag = "ApiTags::Admin")]
    async fn redrive_all(&self, _auth: AdminAuth, host: Data<&Arc<PluginHost>>, name: Path<String>) -> Result<Json<Vec<RedriveResult>>, AdminError> {
        let results = host.redrive_all(&name.0).await?;
        Ok(Json(results.into_iter().map(|(id, result)| RedriveResult { id, result }).collect()))
    }
}
