//! Compiles the test-side copy of etcd's v3 KV API (tests/proto/etcd) for
//! synod-bench's `--protocol etcd`, with protox like proto/build.rs, so that
//! no system `protoc` is needed (the `etcd-client` crate would run one).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let files = [
        "proto/etcd/etcdserverpb/rpc.proto",
        "proto/etcd/mvccpb/kv.proto",
    ];
    for file in files {
        println!("cargo:rerun-if-changed={file}");
    }
    let descriptors = protox::compile(files, ["proto/etcd"])?;
    // Only the client: the benchmark loads etcd servers, it serves nothing.
    tonic_prost_build::configure()
        .build_server(false)
        .build_client(true)
        .compile_fds(descriptors)?;
    Ok(())
}
