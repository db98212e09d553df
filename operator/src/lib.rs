//! The Synod Kubernetes operator as a library: the `CoordinationEnsemble`
//! resource, the pure builders of the objects it owns, the pure planner of
//! ensemble actions and the reconciler that drives them. The binary
//! (`src/main.rs`) only parses flags and starts these.

pub mod admin;
pub mod build;
pub mod crd;
pub mod metrics;
pub mod planner;
pub mod reconcile;
pub mod render;
pub mod status;
