//! The client-facing front ends of a node: the gRPC `Coordination` service
//! (`coordination`), the `Admin` service (`admin`), and the conversions
//! between the protobuf messages and the core's types (`convert`). They
//! hand the driver closures and await the answers; they decide nothing.

pub mod admin;
pub mod convert;
pub mod coordination;
pub mod zookeeper;
