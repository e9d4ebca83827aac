//! shopmesh: an event mesh for commerce side effects.
//!
//! Map of the crate (data flows top to bottom; no module imports one above it back):
//! - [`api`]: the HTTP edge (poem-openapi): shop endpoints, the signed payment callback, the
//!   admin endpoints; every error gets its `SHOP_*` code and status here ([`api::errors`]);
//!   the operator console at `/console` ([`api::console`]) is pages over the admin endpoints.
//! - [`shop`]: the domain. The order flow ([`shop::orders`], [`shop::checkout`]), payments,
//!   the [`shop::sweeper`], and one module per resource owning its table and both directions
//!   of its change ([`shop::stock`], [`shop::coupons`], [`shop::balance`], [`shop::points`],
//!   [`shop::audit_log`], [`shop::users`]); [`shop::steps`] fences every give-back.
//! - [`outbox`]: outbox rows written in the caller's transaction, and the relay that
//!   publishes them to JetStream through [`publish`] (a batch as one atomic batch, else one
//!   by one); [`events`] is the CloudEvents envelope and payloads.
//! - [`plugins`]: the plugin host: consumers, the live delivery path, dispatch to wasmtime,
//!   effects handed to the shop's resources, inbox, dead letters, the version registry.
//! - [`replay`]: a range of stream `SHOP` run again through one plugin version, dry-run
//!   (compared with what was recorded) or applied; in the background, recorded in the database.
//! - [`bus`]: the NATS side: connect, version check, stream `SHOP`, a server's durability;
//!   [`embedded`]: the nats-server a host starts for itself, kept running (started again when
//!   it exits; one a killed host left behind is stopped).
//! - [`store`]: the database (sqlx `Any`: SQLite or Postgres), its writer turns and its
//!   migrations; [`group_commit`]: requests arriving together committed in one transaction.
//! - [`config`], [`startup`]: configuration layers and the assembled [`startup::Application`];
//!   [`demo`]: the seeds' demo rows.
//! - [`cli`]: the `shopmesh` command line (`serve`, and clients of a running host).
//! - [`metrics`]: the Prometheus counters and histograms counted as things happen (served,
//!   with what is read at scrape time, by `GET /metrics` in [`api`]).
//! - [`retention`]: the rows kept only for a while (published outbox rows, inbox rows,
//!   resolved dead letters, finished replays, idempotency keys), pruned by their owners.
//! - [`timeline`]: an order's story (states, steps, events, what each plugin did), read
//!   through the modules that own those tables.
//! - [`trace`]: W3C trace context from the HTTP request through the outbox, NATS headers and
//!   the plugin host's logs.
//! - [`money`], [`ids`], [`timestamp`]: exact money, 64-bit ids and moments, strings in JSON
//!   and BIGINT in both databases; [`signature`]: the callback's HMAC.

pub mod api;
pub mod bus;
pub mod cli;
pub mod config;
pub mod demo;
pub mod embedded;
pub mod events;
pub mod group_commit;
pub mod ids;
pub mod metrics;
pub mod money;
pub mod outbox;
pub mod plugins;
pub mod publish;
pub mod replay;
pub mod retention;
pub mod shop;
pub mod signature;
pub mod startup;
pub mod store;
mod text_type;
pub mod timeline;
pub mod timestamp;
pub mod trace;
