//! Generates the Lock, Election and Auth services from proto/ (protoc comes from scripts/setup).
//! etcd-client's `build-server` feature has no usable server side for them; the messages they
//! share with the other services (ResponseHeader, KeyValue) are etcd-client's own types.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    tonic_prost_build::configure()
        .build_client(false)
        .extern_path(".etcdserverpb.ResponseHeader", "::etcd_client::proto::PbResponseHeader")
        .extern_path(".mvccpb.KeyValue", "::etcd_client::proto::PbKeyValue")
        .compile_protos(&["proto/v3lock.proto", "proto/v3election.proto", "proto/auth.proto"], &["proto"])?;
    Ok(())
}
