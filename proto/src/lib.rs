//! Synod's wire contracts: the generated protobuf messages and tonic
//! services of the client API, the admin API and the peer protocol. This crate holds no
//! logic.

#[allow(clippy::all, clippy::pedantic, missing_debug_implementations)]
pub mod v1 {
    tonic::include_proto!("synod.v1");
}
