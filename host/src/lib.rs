//! shopmesh: an event mesh for commerce side effects.
//!
//! Map of the crate (data flows top to bottom):
//! - [`api`]: the HTTP API (poem-openapi): shop endpoints, the signed payment callback and
//!   the admin endpoints; turns [`error::ShopError`] into `{code, message}` responses.
//! - [`orders`]: the order flow (validate → pre-order → stock → coupon → balance → confirm),
//!   its cancellation, and the [`sweeper`] that cancels pre-orders a crash left behind.
//! - [`payments`]: payment creation and the callback; [`signature`] checks its HMAC.
//! - [`outbox`]: outbox rows written in the caller's transaction, and the relay that
//!   publishes them to JetStream; [`events`] is the CloudEvents envelope and payloads.
//! - [`bus`]: the NATS side: connect, version check, stream `SHOP`, embedded nats-server.
//! - [`store`]: the database (sqlx `Any`: SQLite or Postgres) and its migrations.
//! - [`config`], [`startup`]: configuration layers and the assembled [`startup::Application`].
//! - [`money`], [`ids`]: exact money and 64-bit ids, both strings in JSON.

pub mod api;
pub mod bus;
pub mod config;
pub mod demo;
pub mod events;
pub mod ids;
pub mod money;
pub mod outbox;
pub mod plugins;
pub mod shop;
pub mod signature;
pub mod startup;
pub mod store;
mod text_type;
