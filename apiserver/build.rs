//! Generates prost types for gnostic's OpenAPIv2 `Document` (proto/OpenAPIv2.proto, vendored from
//! github.com/google/gnostic-models; protoc comes from scripts/setup). Only the tests use them: they
//! decode the protobuf `/openapi/v2` with an independent decoder and compare it with the JSON.

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    prost_build::compile_protos(&["proto/OpenAPIv2.proto"], &["proto"])?;
    Ok(())
}
