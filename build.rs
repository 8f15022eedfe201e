//! Generates the typed API clients from the OpenAPI documents in `openapi/`.
//!
//! With the `cpe` feature, progenitor turns `openapi/cpe.json` into `$OUT_DIR/cpe.rs`,
//! which `src/cpe/mod.rs` includes; with the `cpapi` feature, `openapi/cpapi.json` into
//! `$OUT_DIR/cpapi.rs`, which `src/cpapi/mod.rs` includes. Every generated call goes
//! through `ClientHooks::exec`, which each module implements by sending through a tower
//! stack (`<module>::Stack`). Date-times become `<module>::DateTimeOffset`, which reads
//! the way .NET writes them.

fn main() {
    println!("cargo::rerun-if-changed=build.rs");
    #[cfg(feature = "cpe")]
    if let Err(e) = generate::client("openapi/cpe.json", "cpe.rs", "crate::cpe") {
        println!("cargo::error={e}");
    }
    #[cfg(feature = "cpapi")]
    if let Err(e) = generate::client("openapi/cpapi.json", "cpapi.rs", "crate::cpapi") {
        println!("cargo::error={e}");
    }
}

#[cfg(any(feature = "cpe", feature = "cpapi"))]
#[allow(dead_code)]
#[path = "build/normalise.rs"]
mod normalise;

#[cfg(any(feature = "cpe", feature = "cpapi"))]
#[path = "build/generate.rs"]
mod generator;

#[cfg(any(feature = "cpe", feature = "cpapi"))]
mod generate {
    use std::path::{Path, PathBuf};

    /// Generates a client from the OpenAPI document at `spec` (relative to the crate) into
    /// `$OUT_DIR/<out>`, for the module `module`: its `Stack` is the client's inner type,
    /// its `DateTimeOffset` every date-time.
    pub(super) fn client(spec: &str, out: &str, module: &str) -> Result<(), String> {
        println!("cargo::rerun-if-changed={spec}");
        println!("cargo::rerun-if-changed=build/normalise.rs");
        println!("cargo::rerun-if-changed=build/generate.rs");
        let text = std::fs::read_to_string(spec).map_err(|e| format!("cannot read {spec}: {e}"))?;
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| format!("{spec} is not JSON: {e}"))?;
        let (code, notes) = super::generator::code(spec, json, module)?;

        let dir = PathBuf::from(std::env::var_os("OUT_DIR").ok_or("OUT_DIR is not set")?);
        // What normalisation changed, for whoever wonders why a response is untyped.
        write_if_changed(
            &dir.join(format!("{out}.normalised.txt")),
            &notes.join("\n"),
        )?;
        write_if_changed(&dir.join(out), &code)
    }

    /// Writes `code` unless the file already holds it, so an unchanged client does not
    /// trigger a rebuild.
    fn write_if_changed(path: &Path, code: &str) -> Result<(), String> {
        if std::fs::read_to_string(path).is_ok_and(|old| old == code) {
            return Ok(());
        }
        std::fs::write(path, code).map_err(|e| format!("cannot write {}: {e}", path.display()))
    }
}
