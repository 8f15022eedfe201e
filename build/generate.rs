//! The generation of a typed client from an OpenAPI document: normalisation
//! ([`super::normalise`]), then progenitor with the settings every client of this crate
//! shares, then the code as text.
//!
//! Used by `build.rs`, and by `tests/generate.rs`, which proves that NHN's documents go
//! through it as published.

use progenitor::{GenerationSettings, Generator, HooksMode, InterfaceStyle, TagStyle};

/// The code of a client generated from `json` (the document at `spec`, named so in
/// errors) for the module `module`, whose `Stack` is the client's inner type and whose
/// `DateTimeOffset` every date-time; and what normalisation changed.
///
/// # Errors
/// When the document is not an OpenAPI 3.0 document progenitor can generate from, or
/// its output does not parse.
pub(crate) fn code(
    spec: &str,
    mut json: serde_json::Value,
    module: &str,
) -> Result<(String, Vec<String>), String> {
    let notes = super::normalise::normalise(&mut json).map_err(|e| format!("{spec}: {e}"))?;
    let document: openapiv3::OpenAPI = serde_json::from_value(json)
        .map_err(|e| format!("{spec} is not an OpenAPI 3.0 document: {e}"))?;

    let mut settings = GenerationSettings::new();
    settings
        .with_interface(InterfaceStyle::Positional)
        .with_tag(TagStyle::Merged)
        .with_hooks(HooksMode::Expected)
        .with_inner_type(quote(&format!("{module}::Stack"))?)
        .with_derive("PartialEq")
        .with_conversion(
            date_time_schema(),
            format!("{module}::DateTimeOffset"),
            [progenitor::TypeImpl::Display].into_iter(),
        );
    let mut generator = Generator::new(&settings);
    let tokens = generator
        .generate_tokens(&document)
        .map_err(|e| format!("progenitor cannot generate a client from {spec}: {e}"))?;
    let file: syn::File = syn::parse2(tokens)
        .map_err(|e| format!("progenitor's output for {spec} does not parse: {e}"))?;
    Ok((prettyplease::unparse(&file), notes))
}

/// The schema every `{"type": "string", "format": "date-time"}` matches.
fn date_time_schema() -> schemars::schema::SchemaObject {
    schemars::schema::SchemaObject {
        instance_type: Some(schemars::schema::InstanceType::String.into()),
        format: Some("date-time".to_owned()),
        ..Default::default()
    }
}

fn quote(path: &str) -> Result<proc_macro2::TokenStream, String> {
    path.parse()
        .map_err(|e| format!("`{path}` is not a Rust path: {e}"))
}
