//! `helseid codegen SPEC`: the typed client `helseid-codegen` generates from an NHN
//! OpenAPI document, as a service's build.rs would generate it (the same generator, the
//! same code), written to a file or standard output; what normalisation changed and
//! what was left out go to standard error.

use std::path::PathBuf;

use helseid::text::escape;
use helseid_codegen::Api;

use super::CliResult;
use crate::output::Stdout;

#[derive(clap::Args)]
pub(crate) struct CodegenArgs {
    /// The API's OpenAPI 3.0 document (JSON or YAML), as its owner publishes it.
    #[arg(value_name = "SPEC")]
    spec: PathBuf,
    /// Write the code to FILE. Default: standard output.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
    /// A HelseID scope the client's tokens are asked with (repeatable). Default: the
    /// client configuration's scopes.
    #[arg(long = "scope", value_name = "S")]
    scopes: Vec<String>,
    /// The API takes DPoP-bound tokens (a proof on every call).
    #[arg(long)]
    dpop: bool,
    /// A header every call sends, such as `api-version=2` (repeatable); a required
    /// header of the document gets its value so.
    #[arg(long = "header", value_name = "NAME=VALUE", value_parser = header)]
    headers: Vec<(String, String)>,
    /// What the client's errors name the API as. Default: the document's title.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
}

/// `NAME=VALUE`, with a header name before the `=`.
fn header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once('=')
        .ok_or_else(|| format!("`{}` is not NAME=VALUE", escape(text)))?;
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b));
    if !valid {
        return Err(format!("`{}` is not a header name", escape(name)));
    }
    if value.bytes().any(|b| b.is_ascii_control() && b != b'\t') {
        return Err(format!("the value of `{name}` is not a header value"));
    }
    Ok((name.to_owned(), value.to_owned()))
}

pub(crate) async fn codegen(args: CodegenArgs) -> CliResult {
    let mut api = Api::from_file(&args.spec)?
        .scopes(args.scopes)
        .dpop(args.dpop);
    for (name, value) in args.headers {
        api = api.default_header(name, value);
    }
    if let Some(name) = args.name {
        api = api.name(name);
    }
    let generated = api.generate_code()?;
    for line in &generated.notes {
        eprintln!("note: {}", escape(line));
    }
    for line in &generated.left_out {
        eprintln!("warning: left out {}", escape(line));
    }
    match args.out {
        Some(path) => std::fs::write(&path, &generated.code)
            .map_err(|e| format!("cannot write {}: {e}", escape(&path.display().to_string())))?,
        None => {
            // Code, as a file would hold it.
            let mut stdout = Stdout::lock();
            stdout.raw(generated.code.trim_end())?;
            stdout.flush()?;
        }
    }
    Ok(())
}
