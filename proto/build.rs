//! Generates the tonic/prost code from `proto/`. Uses the protoc binary vendored
//! by `protoc-bin-vendored`, so a fresh machine needs nothing installed by hand.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    // SAFETY: build scripts are single-threaded; nothing else reads the environment concurrently.
    unsafe { std::env::set_var("PROTOC", protoc_bin_vendored::protoc_bin_path()?) };
    let protos = ["proto/chat.proto", "proto/cluster.proto", "proto/raft.proto"];
    tonic_prost_build::configure().compile_protos(&protos, &["proto"])?;
    for proto in protos {
        println!("cargo:rerun-if-changed={proto}");
    }
    Ok(())
}
