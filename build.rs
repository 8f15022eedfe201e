//! Generates the typed API clients from the OpenAPI documents in `openapi/`, with
//! `helseid-codegen` (the generator a service's own build.rs uses, with the runtime
//! `crate` instead of `::helseid`).
//!
//! With the `cpe` feature, `openapi/cpe.json` becomes `$OUT_DIR/cpe.rs`, which
//! `src/cpe/mod.rs` includes; with the `cpapi` feature, `openapi/cpapi.json` becomes
//! `$OUT_DIR/cpapi.rs`, which `src/cpapi/mod.rs` includes. Each has its notes beside it
//! (`cpe.rs.notes.txt`): what normalisation changed. Every generated call goes through
//! `crate::typed::Stack`; date-times are `crate::typed::DateTimeOffset`.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cpe")]
    generate("openapi/cpe.json", "CPE API", "cpe.rs");
    #[cfg(feature = "cpapi")]
    generate("openapi/cpapi.json", "CommunicationParty API", "cpapi.rs");
    // NHN's document as published: `src/msh/mod.rs` includes `$OUT_DIR/msh.rs`.
    #[cfg(feature = "msh")]
    {
        let generated =
            helseid_codegen::Api::from_file("openapi/msh-api-v2.json").and_then(|api| {
                api.scopes(["nhn:msh/api"])
                    .dpop(true)
                    .default_header("api-version", "2")
                    .runtime("crate")
                    .builder(false)
                    .generate("msh.rs")
            });
        if let Err(e) = generated {
            println!("cargo::error={e}");
        }
    }
}

/// Generates the client of the document at `spec` into `$OUT_DIR/<out>`, named `name`
/// in its errors; the crate's own builders make its stack.
#[cfg(any(feature = "cpe", feature = "cpapi"))]
fn generate(spec: &str, name: &str, out: &str) {
    let generated = helseid_codegen::Api::from_file(spec)
        .and_then(|api| api.name(name).runtime("crate").builder(false).generate(out));
    if let Err(e) = generated {
        println!("cargo::error={e}");
    }
}
