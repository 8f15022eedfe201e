//! Encoding shared by JWTs, JWKs and the JSON that carries them: base64url, and JSON
//! errors described without quoting their input.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

/// base64url without padding, the encoding of every JWT and JWK member.
pub(crate) fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// base64url(SHA-256(`bytes`)): a JWK thumbprint, a DPoP `ath`, a PKCE challenge.
pub(crate) fn b64_sha256(bytes: impl AsRef<[u8]>) -> String {
    b64(aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA256,
        bytes.as_ref(),
    ))
}

/// Seconds since the Unix epoch, now (0 on a clock before it): `iat`, `exp`, `nbf`.
pub(crate) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
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

/// The JSON type a member of an object must have, for [`json_member_error`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Want {
    /// A string.
    String,
    /// An array of strings.
    Strings,
}

/// Reads a JSON object into `T` (a struct whose members `members` lists: name, type,
/// whether it must be there), or says what is wrong without quoting the input (see
/// [`json_member_error`]). An array is refused: serde would read it into the struct's
/// members by position.
pub(crate) fn json_object<T: serde::de::DeserializeOwned>(
    body: &[u8],
    members: &[(&str, Want, bool)],
) -> Result<T, String> {
    let first = body
        .iter()
        .find(|b| !matches!(b, b' ' | b'\t' | b'\n' | b'\r'));
    if first == Some(&b'[') {
        return Err("expected a JSON object, got an array".to_owned());
    }
    serde_json::from_slice(body).map_err(|e| json_member_error(&e, body, members))
}

/// What is wrong with a JSON object that serde could not read into a struct whose
/// members `members` lists (name, type, whether it must be there): the first member
/// that is missing, of the wrong type or repeated, named without quoting any value. For
/// anything else (not JSON, truncated) [`json_error_without_input`]. A string member
/// that may be missing may also be `null`.
fn json_member_error(e: &serde_json::Error, body: &[u8], members: &[(&str, Want, bool)]) -> String {
    if e.classify() != serde_json::error::Category::Data {
        return json_error_without_input(e);
    }
    let found = match serde_json::from_slice::<shape::Top>(body) {
        Ok(shape::Top::Object(found)) => found,
        Ok(shape::Top::Other(kind)) => return format!("expected a JSON object, got {kind}"),
        Err(_) => return json_error_without_input(e),
    };
    if let Some(name) = found.repeated {
        return format!("member `{name}` appears more than once");
    }
    for (name, want, required) in members {
        let kind = found
            .members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, k)| *k);
        match (kind, want) {
            (None, _) if *required => return format!("the `{name}` member is missing"),
            (None, _) => {}
            // An optional string (an `Option`) may be null; an array (a `Vec`) may not.
            (Some(shape::Kind::Null), Want::String) if !*required => {}
            (Some(shape::Kind::String), Want::String) => {}
            (Some(shape::Kind::Array { strings: true }), Want::Strings) => {}
            (Some(shape::Kind::Array { strings: false }), Want::Strings) => {
                return format!("`{name}` holds an element that is not a string");
            }
            (Some(kind), want) => {
                let want = match want {
                    Want::String => "a string",
                    Want::Strings => "an array of strings",
                };
                return format!("`{name}` is {kind}, expected {want}");
            }
        }
    }
    json_error_without_input(e)
}

/// The shape of a JSON document: the type of each member of an object, read without
/// keeping any value (a value can be a secret).
mod shape {
    use std::fmt;

    use serde::de::{Deserialize, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

    /// A JSON value's type.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub(super) enum Kind {
        Null,
        Bool,
        Number,
        String,
        /// An array, and whether every element is a string.
        Array {
            strings: bool,
        },
        Object,
    }

    impl fmt::Display for Kind {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(match self {
                Kind::Null => "null",
                Kind::Bool => "a boolean",
                Kind::Number => "a number",
                Kind::String => "a string",
                Kind::Array { .. } => "an array",
                Kind::Object => "an object",
            })
        }
    }

    /// A whole document: an object's members (in order, with the first repeated name),
    /// or the type of anything else.
    pub(super) enum Top {
        Object(Members),
        Other(Kind),
    }

    pub(super) struct Members {
        pub(super) members: Vec<(String, Kind)>,
        pub(super) repeated: Option<String>,
    }

    struct KindVisitor;

    impl<'de> Visitor<'de> for KindVisitor {
        type Value = Kind;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_unit<E>(self) -> Result<Kind, E> {
            Ok(Kind::Null)
        }
        fn visit_none<E>(self) -> Result<Kind, E> {
            Ok(Kind::Null)
        }
        fn visit_bool<E>(self, _: bool) -> Result<Kind, E> {
            Ok(Kind::Bool)
        }
        fn visit_i64<E>(self, _: i64) -> Result<Kind, E> {
            Ok(Kind::Number)
        }
        fn visit_u64<E>(self, _: u64) -> Result<Kind, E> {
            Ok(Kind::Number)
        }
        fn visit_f64<E>(self, _: f64) -> Result<Kind, E> {
            Ok(Kind::Number)
        }
        fn visit_str<E>(self, _: &str) -> Result<Kind, E> {
            Ok(Kind::String)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Kind, A::Error> {
            let mut strings = true;
            while let Some(kind) = seq.next_element::<Kind>()? {
                strings &= kind == Kind::String;
            }
            Ok(Kind::Array { strings })
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Kind, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(Kind::Object)
        }
    }

    impl<'de> Deserialize<'de> for Kind {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(KindVisitor)
        }
    }

    struct TopVisitor;

    impl<'de> Visitor<'de> for TopVisitor {
        type Value = Top;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Top, A::Error> {
            let mut found = Members {
                members: Vec::new(),
                repeated: None,
            };
            while let Some((name, kind)) = map.next_entry::<String, Kind>()? {
                if found.repeated.is_none() && found.members.iter().any(|(n, _)| *n == name) {
                    found.repeated = Some(name.clone());
                }
                found.members.push((name, kind));
            }
            Ok(Top::Object(found))
        }
        fn visit_unit<E>(self) -> Result<Top, E> {
            Ok(Top::Other(Kind::Null))
        }
        fn visit_bool<E>(self, _: bool) -> Result<Top, E> {
            Ok(Top::Other(Kind::Bool))
        }
        fn visit_i64<E>(self, _: i64) -> Result<Top, E> {
            Ok(Top::Other(Kind::Number))
        }
        fn visit_u64<E>(self, _: u64) -> Result<Top, E> {
            Ok(Top::Other(Kind::Number))
        }
        fn visit_f64<E>(self, _: f64) -> Result<Top, E> {
            Ok(Top::Other(Kind::Number))
        }
        fn visit_str<E>(self, _: &str) -> Result<Top, E> {
            Ok(Top::Other(Kind::String))
        }
        fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Top, A::Error> {
            KindVisitor.visit_seq(seq).map(Top::Other)
        }
    }

    impl<'de> Deserialize<'de> for Top {
        fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
            deserializer.deserialize_any(TopVisitor)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(body: &str, members: &[(&str, Want, bool)]) -> String {
        #[derive(serde::Deserialize, Debug)]
        #[allow(dead_code)]
        struct Doc {
            issuer: String,
            #[serde(default)]
            jwks_uri: Option<String>,
            #[serde(default)]
            algs: Vec<String>,
        }
        json_object::<Doc>(body.as_bytes(), members).expect_err(body)
    }

    const DOC: &[(&str, Want, bool)] = &[
        ("issuer", Want::String, true),
        ("jwks_uri", Want::String, false),
        ("algs", Want::Strings, false),
    ];

    #[test]
    fn a_missing_or_mistyped_member_is_named_without_its_value() {
        let cases = [
            (r#"{"jwks_uri":"x"}"#, "the `issuer` member is missing"),
            (r#"{"issuer":5}"#, "`issuer` is a number, expected a string"),
            (r#"{"issuer":null}"#, "`issuer` is null, expected a string"),
            (
                r#"{"issuer":"i","jwks_uri":["SECRET"]}"#,
                "`jwks_uri` is an array, expected a string",
            ),
            (
                r#"{"issuer":"i","algs":"ES256"}"#,
                "`algs` is a string, expected an array of strings",
            ),
            (
                r#"{"issuer":"i","algs":["ES256",{"SECRET":1}]}"#,
                "`algs` holds an element that is not a string",
            ),
            (
                r#"{"issuer":"i","issuer":"j"}"#,
                "member `issuer` appears more than once",
            ),
            (r#"["SECRET"]"#, "expected a JSON object, got an array"),
            (
                r#" [{"issuer":"i"}]"#,
                "expected a JSON object, got an array",
            ),
            (r#""SECRET""#, "expected a JSON object, got a string"),
            (r#"{"issuer":"#, "truncated JSON (line 1, column 10)"),
            ("{SECRET", "not valid JSON (line 1, column 2)"),
        ];
        for (body, expected) in cases {
            let shown = error(body, DOC);
            assert_eq!(shown, expected, "{body}");
            assert!(!shown.contains("SECRET"), "{shown}");
        }
        // A null for a member that may be missing is no error of its own.
        assert_eq!(
            error(r#"{"issuer":"i","jwks_uri":null,"algs":null}"#, DOC),
            "`algs` is null, expected an array of strings"
        );
    }
}
