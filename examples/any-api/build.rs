//! Generates a client from each of NHN's documents, unchanged: Melde.no v2,
//! Persontjenesten v2 (YAML), the Meldingstjener (MSH) v2, and the two the helseid crate
//! ships (CPE, CommunicationParty API v2), with the runtime path a user's crate has
//! (`::helseid`). `src/lib.rs` includes them, so the workspace's build and clippy
//! compile every one.

fn main() -> Result<(), helseid_codegen::Error> {
    use helseid_codegen::Api;

    Api::from_file("../../codegen/tests/documents/melde-api-v2.json")?
        .scopes(["nhn:melde/dialog/opprett"])
        .dpop(true)
        .generate("melde.rs")?;
    Api::from_file("../../codegen/tests/documents/persontjenesten-api-v2.yaml")?
        .scopes(["nhn:hgd-persontjenesten-api/read"])
        .dpop(true)
        .generate("persontjenesten.rs")?;
    Api::from_file("../../openapi/msh-api-v2.json")?
        .scopes(["nhn:msh/api"])
        .dpop(true)
        .default_header("api-version", "2")
        .generate("msh.rs")?;
    Api::from_file("../../openapi/cpe.json")?
        .scopes(["nhn:cp-api/access"])
        .generate("cpe.rs")?;
    Api::from_file("../../openapi/cpapi.json")?
        .scopes(["nhn:cp-api/access-v2-dpop"])
        .dpop(true)
        .generate("cpapi.rs")?;
    Ok(())
}
