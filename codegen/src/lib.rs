//! Typed clients for NHN's APIs, generated in a `build.rs` from their OpenAPI documents
//! as published: every call goes through `helseid`'s tower stack (`HelseIdLayer` with
//! the API's scopes, DPoP where asked, the tenant, a timeout).
//!
//! ```no_run
//! // build.rs
//! fn main() -> Result<(), helseid_codegen::Error> {
//!     helseid_codegen::Api::from_file("openapi/msh-api-v2.json")?
//!         .scopes(["nhn:msh/api"])
//!         .dpop(true)
//!         .default_header("api-version", "2")
//!         .generate("msh.rs")?;
//!     Ok(())
//! }
//! ```
//! and in the service (whose only dependency is `helseid`, with the feature `codegen`):
//! ```ignore
//! mod msh {
//!     helseid::include_client!("msh.rs");
//! }
//! let msh = msh::Client::builder(config).base_url(url).build()?;
//! ```
//!
//! The generated code reaches serde, progenitor's client support, reqwest and chrono
//! through `helseid::__codegen`, so the service adds one dependency. Its methods return
//! `helseid::typed::Error`, one error type for every generated client.
//!
//! # What is read
//! JSON or YAML (a document whose first character is `{` is JSON), OpenAPI 3.0.x.
//! OpenAPI 3.1 and Swagger 2.0 are refused with one line naming the version and what to
//! do.
//!
//! # What is normalised
//! NHN's documents are written by .NET tools (Swashbuckle, NSwag, openapi-generator),
//! and progenitor 0.15 rejects or panics on much of what they write. Each change below
//! is made to the document before generation, and each one made is written, one line
//! each, to the notes file beside the output (`msh.rs.notes.txt`):
//!
//! - **operation ids**: an operation without an `operationId` is named from its method and
//!   path: the method in lower case, then each literal segment of the path after a
//!   leading `/api` and `/v<digits>`, its first letter in upper case (or cased as a schema
//!   of the same name, ignoring case), then `By` and each path parameter. So
//!   `GET /api/v1/event/latest` is `getEventLatest` (the method
//!   `get_event_latest`) and `GET /api/v1/communicationparty/{herId}` is
//!   `getCommunicationPartyByHerId`. Two operations with one name are refused.
//! - **ids with spaces, dots or dashes**: the words are joined, each but the first with
//!   its first letter in upper case (`Get person.v2` is `GetPersonV2`).
//! - **several media types of one body**: one is kept, `application/json` when offered,
//!   else the first JSON one, else form-urlencoded, else the first.
//! - **JSON of another media type** (`application/problem+json`, `text/json`) in a
//!   response is read as `application/json`.
//! - **a text response holding a string** (`text/plain` with a string schema, a UUID
//!   say) is typed as that string; the client reads it bare or quoted.
//! - **error responses** are not typed per operation: every status outside the success
//!   ones reaches the caller as `helseid::typed::Error` with its status and body, a
//!   problem-details body decoded (RFC 9457), whatever the document declares.
//! - **several success bodies** (200 and 201 with different bodies): the lowest status's
//!   body is kept; the others reach the caller as errors with their status and body.
//! - **one-item `allOf` / `oneOf` / `anyOf`** wrappers are unwrapped into their one
//!   schema.
//! - **`nullable` beside a `$ref`** (or a wrapper so unwrapped): the property is made
//!   optional, so a `null` decodes.
//! - **integer enums** keep their integer type; their values (and names, from
//!   `x-enumNames` where present, `Value<n>` where not) go into the description.
//! - **dotted schema names** (`Melde.Api.Models.Report`) are renamed to their last
//!   segment where that is unique, else with the dots dropped, and every `$ref` with them.
//! - **required header parameters** (`api-version`, `nhn-source-system`) are taken out
//!   of the methods and set once on the client: [`Api::default_header`] gives their
//!   values at build time, the client builder's `default_header` at run time, and the
//!   builder refuses to build without one.
//! - **form-urlencoded bodies** keep their schema, without the `encoding` map progenitor
//!   cannot read; **multipart bodies** are dropped where the operation offers another
//!   media type.
//! - **`additionalProperties: false`** is removed (a client must not fail on a field the
//!   server adds), and **string constraints** (`pattern`, `minLength`, `maxLength`) and a
//!   `pattern` on a non-string (a server checks what it is sent).
//! - **query parameters of an object type** are sent as their JSON.
//!
//! What progenitor cannot express is left out, by name: an operation whose only request
//! body is multipart, a server-sent-events stream (`text/event-stream`), or any other
//! operation progenitor refuses. Each is printed as a `cargo::warning=` by
//! [`Api::generate`], and listed in [`Generated::left_out`] and the notes file; never
//! silently.

mod generate;
mod normalise;
mod rewrite;
mod yaml;

use std::fmt;
use std::path::{Path, PathBuf};

use serde_json::Value;

/// Why a document could not be turned into a client: one line, naming the document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Error(String);

impl Error {
    fn new(message: impl Into<String>) -> Self {
        Error(message.into())
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Error {}

/// One API's OpenAPI document, and how its client is to be generated. Made by
/// [`Api::from_file`] or [`Api::from_text`]; setters by value, each stating its default.
#[derive(Debug, Clone)]
pub struct Api {
    source: String,
    path: Option<PathBuf>,
    document: Value,
    name: Option<String>,
    scopes: Vec<String>,
    dpop: bool,
    headers: Vec<(String, String)>,
    runtime: String,
    builder: bool,
}

/// A generated client: its code, what normalisation changed, and what was left out.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Generated {
    /// The Rust code, to be `include!`d in a module of its own.
    pub code: String,
    /// One line per change normalisation made to the document.
    pub notes: Vec<String>,
    /// One line per operation left out (its method, path and why).
    pub left_out: Vec<String>,
}

impl Api {
    /// Reads the document at `path` (JSON or YAML). A relative path is read from the
    /// current directory, which in a `build.rs` is the package's root.
    ///
    /// # Errors
    /// When the file cannot be read, is neither JSON nor YAML, or is not an OpenAPI
    /// 3.0.x document (3.1 and Swagger 2.0 are named as such).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Api, Error> {
        let path = path.as_ref();
        let text = std::fs::read_to_string(path)
            .map_err(|e| Error::new(format!("cannot read {}: {e}", path.display())))?;
        let mut api = Api::from_text(&path.display().to_string(), &text)?;
        api.path = Some(path.to_owned());
        Ok(api)
    }

    /// Reads a document from `text` (JSON or YAML); `source` names it in errors and in
    /// the generated file's header.
    ///
    /// # Errors
    /// When `text` is neither JSON nor YAML, or not an OpenAPI 3.0.x document.
    pub fn from_text(source: &str, text: &str) -> Result<Api, Error> {
        let document = if text.trim_start().starts_with('{') {
            serde_json::from_str(text)
                .map_err(|e| Error::new(format!("{source} is not JSON: {e}")))?
        } else {
            yaml::to_json(text).map_err(|e| Error::new(format!("{source} is not YAML: {e}")))?
        };
        check_version(source, &document)?;
        Ok(Api {
            source: source.to_owned(),
            path: None,
            document,
            name: None,
            scopes: Vec::new(),
            dpop: false,
            headers: Vec::new(),
            runtime: "::helseid".to_owned(),
            builder: true,
        })
    }

    /// What errors name the API as. Default: the document's `info.title`.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = Some(name.into());
        self
    }

    /// The HelseID scopes the client's tokens are asked with. Default: none (the
    /// configuration's scopes).
    pub fn scopes<I, S>(mut self, scopes: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Whether the API takes DPoP-bound tokens (a proof on every call). Default: no.
    pub fn dpop(mut self, dpop: bool) -> Self {
        self.dpop = dpop;
        self
    }

    /// A header sent on every call, such as `api-version: 2`; a required header
    /// parameter of the document is given its value so. Default: none.
    pub fn default_header(mut self, name: impl Into<String>, value: impl Into<String>) -> Self {
        self.headers.push((name.into(), value.into()));
        self
    }

    /// The path the generated code reaches `helseid` by. Default `::helseid`; `crate`
    /// for the `helseid` crate's own clients.
    pub fn runtime(mut self, path: impl Into<String>) -> Self {
        self.runtime = path.into();
        self
    }

    /// Whether the client gets `Client::builder(config)` (a builder of the default
    /// stack). Default: yes; the `helseid` crate's own clients have builders of their own.
    pub fn builder(mut self, builder: bool) -> Self {
        self.builder = builder;
        self
    }

    /// Generates the client's code, without writing anything.
    ///
    /// # Errors
    /// When progenitor cannot generate from the normalised document even without the
    /// operations it refuses, or a header value is not one.
    pub fn generate_code(&self) -> Result<Generated, Error> {
        generate::generate(self)
    }

    /// Generates the client into `out` (relative: in `$OUT_DIR`), its notes beside it
    /// (`<out>.notes.txt`), and prints the `cargo::rerun-if-changed` line of the
    /// document and a `cargo::warning=` for each operation left out. A file already
    /// holding the same code is not written again.
    ///
    /// # Errors
    /// As [`generate_code`](Self::generate_code); when `out` is relative and `OUT_DIR`
    /// is not set, or the file cannot be written.
    // Cargo reads a build script's directives from its standard output.
    #[allow(clippy::print_stdout)]
    pub fn generate(self, out: impl AsRef<Path>) -> Result<Generated, Error> {
        if let Some(path) = &self.path {
            println!("cargo::rerun-if-changed={}", path.display());
        }
        let generated = self.generate_code()?;
        let out = out.as_ref();
        let out = if out.is_relative() {
            PathBuf::from(
                std::env::var_os("OUT_DIR")
                    .ok_or_else(|| Error::new("OUT_DIR is not set: give an absolute path"))?,
            )
            .join(out)
        } else {
            out.to_owned()
        };
        for line in &generated.left_out {
            println!("cargo::warning={}: left out {line}", self.source);
        }
        let mut notes = out.clone().into_os_string();
        notes.push(".notes.txt");
        write_if_changed(Path::new(&notes), &generated.notes_text())?;
        write_if_changed(&out, &generated.code)?;
        Ok(generated)
    }
}

impl Generated {
    /// The notes file's text: what was changed, then what was left out.
    pub fn notes_text(&self) -> String {
        let mut text = String::new();
        for line in &self.notes {
            text.push_str(line);
            text.push('\n');
        }
        for line in &self.left_out {
            text.push_str("left out ");
            text.push_str(line);
            text.push('\n');
        }
        text
    }
}

/// Refuses what is not OpenAPI 3.0.x, naming the version and what to do.
fn check_version(source: &str, document: &Value) -> Result<(), Error> {
    if let Some(version) = document.get("swagger") {
        let version = version
            .as_str()
            .map_or_else(|| version.to_string(), str::to_owned);
        return Err(Error::new(format!(
            "{source} is Swagger {version}: only OpenAPI 3.0.x is read; convert it to OpenAPI 3.0 first (swagger2openapi, or the API's own 3.0 document)"
        )));
    }
    let version = match document.get("openapi") {
        Some(Value::String(version)) => version.clone(),
        Some(other) => other.to_string(),
        None => {
            return Err(Error::new(format!(
                "{source} is not an OpenAPI document: it has no `openapi` version"
            )));
        }
    };
    if version.starts_with("3.0.") || version == "3.0" {
        return Ok(());
    }
    Err(Error::new(format!(
        "{source} is OpenAPI {version}: only OpenAPI 3.0.x is read (progenitor); ask the API's owner for its 3.0 document, or convert it to 3.0"
    )))
}

/// Writes `text` unless the file already holds it, so an unchanged client does not
/// trigger a rebuild.
fn write_if_changed(path: &Path, text: &str) -> Result<(), Error> {
    if std::fs::read_to_string(path).is_ok_and(|old| old == text) {
        return Ok(());
    }
    std::fs::write(path, text)
        .map_err(|e| Error::new(format!("cannot write {}: {e}", path.display())))
}
