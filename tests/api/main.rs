//! The behavioural suite: every test talks to a real nats-server and a real database, and
//! most run twice, on SQLite and on Postgres (`on_both_databases!`).

mod helpers;

mod batches;
mod callback;
mod cluster;
mod concurrency;
mod console;
mod crash;
mod fault_matrix;
mod faults;
mod first_hour;
mod grants;
mod hotswap;
mod idempotency;
mod limits;
mod operations;
mod outage;
mod plugin_config;
mod plugin_sdk;
mod plugins;
mod publishing;
mod replay;
mod retention;
mod sandbox;
mod scenario;
mod shutdown;
mod spec;
mod storage;
mod validation;
