//! Encoding shared by JWTs, JWKs and the JSON that carries them: base64url, and JSON
//! errors described without quoting their input.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// base64url without padding, the encoding of every JWT and JWK member.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url, tolerating trailing padding (some tools write it).
pub(crate) fn b64_decode(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s.trim_end_matches('=')).ok()
}

/// Describes a serde_json error by category and position only: the message of a
/// data error can quote the input, and the input can be a secret (a private key, a
/// token).
pub(crate) fn json_error_without_input(e: &serde_json::Error) -> String {
    let what = match e.classify() {
        serde_json::error::Category::Io => "unreadable",
        serde_json::error::Category::Syntax => "not valid JSON",
        serde_json::error::Category::Data => "a member has the wrong type",
        serde_json::error::Category::Eof => "truncated JSON",
    };
    format!("{what} (line {}, column {})", e.line(), e.column())
}
