//! The operators' replay endpoints: start a replay (dry-run or apply) of a range of stream
//! `SHOP` through one plugin version, follow it, read its events, cancel it. All need the
//! admin token.

use std::sync::Arc;

use poem::{web::Data, Request};
use poem_openapi::{param::{Path, Query}, payload::Json, ApiResponse, OpenApi};

use super::{admin::{AdminAuth, AdminError}, errors::api_error, strict::StrictJson, ApiTags};
use crate::{
    ids::Id,
    replay::{runner::Replays, Outcome, Replay, ReplayEvent, ReplayRequest, State},
};

api_error!(
    /// Errors of starting a replay.
    StartError (400 "SHOP_REPLAY_RANGE_INVALID") admin body {
        404 => NotFound("SHOP_NOT_FOUND"): "No such plugin, or no such kept or staged version.",
    } or 503 ("SHOP_STREAM_UNAVAILABLE"): "Stream SHOP cannot be read right now; nothing was started."
);

api_error!(lookups {
    /// Errors of reading or cancelling a replay.
    ReplayLookupError: admin 404 "SHOP_NOT_FOUND": "No such replay.";
});

/// 202 with the replay's record: it runs in the background.
#[derive(Debug, ApiResponse)]
pub enum Started {
    /// Started; follow it with `GET /api/admin/replays/{replay_id}`.
    #[oai(status = 202)]
    Accepted(Json<Replay>),
}

pub struct ReplaysApi;

#[OpenApi(prefix_path = "/api/admin")]
impl ReplaysApi {
    /// Start a replay
    ///
    /// Runs a range of stream SHOP (by sequence or by time, inclusive; default: all it holds)
    /// through one version of a plugin (default: the active one; any kept or staged version).
    /// `dry-run` compares the version's effects with those recorded when each event was
    /// applied, on the same inputs, and writes nothing to the shop; `apply` processes the
    /// events the plugin has not applied yet (running it twice changes nothing). A range the
    /// stream does not hold is `SHOP_REPLAY_RANGE_INVALID`.
    #[oai(path = "/replays", method = "post", operation_id = "startReplay", tag = "ApiTags::Admin")]
    async fn start(&self, _auth: AdminAuth, req: &Request, replays: Data<&Arc<Replays>>, body: StrictJson<ReplayRequest>) -> Result<Started, StartError> {
        Ok(Started::Accepted(Json(replays.start(body.0, super::plugins::who(req)).await?)))
    }

    /// List replays, newest first
    ///
    /// Of one plugin and in one state when asked; at most `limit` (default and most: 100).
    #[oai(path = "/replays", method = "get", operation_id = "listReplays", tag = "ApiTags::Admin")]
    async fn list(
        &self,
        _auth: AdminAuth,
        replays: Data<&Arc<Replays>>,
        #[oai(validator(min_length = 1, max_length = 64))] plugin: Query<Option<String>>,
        state: Query<Option<State>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "100")))] limit: Query<Option<i64>>,
    ) -> Result<Json<Vec<Replay>>, AdminError> {
        Ok(Json(replays.list(plugin.0.as_deref(), state.0, limit.0.unwrap_or(100)).await?))
    }

    /// Get a replay: state, progress, summary
    #[oai(path = "/replays/:replay_id", method = "get", operation_id = "getReplay", tag = "ApiTags::Admin")]
    async fn get(&self, _auth: AdminAuth, replays: Data<&Arc<Replays>>, replay_id: Path<Id>) -> Result<Json<Replay>, ReplayLookupError> {
        Ok(Json(replays.get(replay_id.0).await?))
    }

    /// A replay's events
    ///
    /// In stream order, after sequence `after`, at most `limit` (default 100, at most 1000),
    /// optionally of one outcome, and (`regressed`) only the failures of the version's own on
    /// events applied before, or only the others; each with the recorded and the candidate
    /// effects.
    #[oai(path = "/replays/:replay_id/events", method = "get", operation_id = "listReplayEvents", tag = "ApiTags::Admin")]
    async fn events(
        &self,
        _auth: AdminAuth,
        replays: Data<&Arc<Replays>>,
        replay_id: Path<Id>,
        outcome: Query<Option<Outcome>>,
        regressed: Query<Option<bool>>,
        #[oai(validator(minimum(value = "1"), maximum(value = "1000")))] limit: Query<Option<i64>>,
        #[oai(validator(minimum(value = "0")))] after: Query<Option<i64>>,
    ) -> Result<Json<Vec<ReplayEvent>>, ReplayLookupError> {
        let events = replays.events(replay_id.0, outcome.0, regressed.0, after.0.unwrap_or(0), limit.0.unwrap_or(100)).await?;
        Ok(Json(events))
    }

    /// Cancel a running replay
    ///
    /// It stops after the chunk it is on; what it did so far is kept. A finished replay is
    /// left as it is.
    #[oai(path = "/replays/:replay_id", method = "delete", operation_id = "cancelReplay", tag = "ApiTags::Admin")]
    async fn cancel(&self, _auth: AdminAuth, req: &Request, replays: Data<&Arc<Replays>>, replay_id: Path<Id>) -> Result<Json<Replay>, ReplayLookupError> {
        Ok(Json(replays.cancel(replay_id.0, &super::plugins::who(req)).await?))
    }
}
