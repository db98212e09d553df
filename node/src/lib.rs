//! synod-node: the shell around the deterministic core. It owns the driver
//! task that serialises every change, the gRPC front end, configuration and
//! process lifecycle; it decides nothing the core could decide.

pub mod admin;
pub mod config;
pub mod convert;
pub mod driver;
pub mod durable;
pub mod metrics;
pub mod peer;
pub mod server;
pub mod service;
pub mod storage;
pub mod wire;

pub use config::NodeConfig;
pub use server::{ServeError, run};
