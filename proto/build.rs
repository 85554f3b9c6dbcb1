//! Compiles the .proto files with protox (pure Rust): no protoc needed on the machine.
fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=proto");
    let fds = protox::compile(["proto/lifeline.proto"], ["proto"])?;
    // Sealed objects are the bulk of every upload and download: as `Bytes`
    // they are decoded without a copy out of the receive buffer, and sent
    // without a copy out of the sealer's buffer.
    tonic_prost_build::configure()
        .bytes(".lifeline.v1.SealedObject.sealed")
        .compile_fds(fds)?;
    Ok(())
}
