//! synod-node: the shell around the deterministic core. It owns the driver
//! task that serialises every change, the gRPC front end, configuration and
//! process lifecycle; it decides nothing the core could decide.
//!
//! Its rooms: `api` (the gRPC front ends), `peer` (the transport between
//! nodes and the frame envelope), `storage` (log segments, snapshot files,
//! the storage thread and recovery), `driver` (the task that runs the core),
//! `config`, `metrics`, `memory` (returning freed memory) and `server`
//! (process start and stop).

pub mod api;
pub mod config;
pub mod driver;
pub mod memory;
pub mod metrics;
pub mod peer;
pub mod server;
pub mod storage;

pub use config::NodeConfig;
pub use server::{ServeError, run};
