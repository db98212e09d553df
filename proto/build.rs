//! Compiles the .proto contracts with protox, a pure-Rust protobuf compiler,
//! so that building Synod never needs a system `protoc`.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/synod/v1/coordination.proto",
        "proto/synod/v1/peer.proto",
        "proto/synod/v1/admin.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto"])?;
    tonic_prost_build::configure()
        .build_server(true)
        .build_client(true)
        // A peer frame's payload is handed on as it was received, not
        // copied out of the receive buffer (it was 4-5% of a node's CPU
        // under write load).
        .bytes(".synod.v1.PeerFrame.payload")
        .compile_fds(descriptors)?;
    Ok(())
}
