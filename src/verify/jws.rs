//! Compact JWS, read strictly: three parts, canonical base64url, JSON objects without
//! repeated members, no `crit`, an asymmetric `alg`.

use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Value};

use crate::key::Algorithm;

/// The longest JWT read (an access token or a proof): HelseID's are 1-3 KB.
pub(crate) const MAX_JWT: usize = 16 * 1024;

/// What is wrong with a compact JWS, before any key is looked at.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum JwsError {
    /// Longer than [`MAX_JWT`].
    TooLong,
    /// Not three non-empty parts separated by dots.
    Parts,
    /// A part is not canonical base64url (padding, other characters, trailing bits).
    Base64,
    /// The header or the payload is not a JSON object.
    Json,
    /// A JSON object has a member twice.
    Duplicate,
    /// The header has `crit`: no extension is understood.
    Crit,
    /// `alg` is missing, symmetric, `none` or unknown.
    Alg,
}

/// A compact JWS, split and decoded; the signature is not checked here.
pub(crate) struct Jws<'a> {
    pub(crate) header: Map<String, Value>,
    pub(crate) payload: Map<String, Value>,
    /// `header.payload`, the bytes the signature covers.
    pub(crate) signing_input: &'a str,
    pub(crate) signature: Vec<u8>,
    pub(crate) alg: Algorithm,
}

impl fmt::Debug for Jws<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Jws")
            .field("alg", &self.alg)
            .finish_non_exhaustive()
    }
}

/// Decodes canonical base64url: no padding, only the alphabet, no stray trailing bits
/// (the decoded bytes encode back to exactly `part`).
pub(crate) fn b64_canonical(part: &str) -> Option<Vec<u8>> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    // Cheap re-encoding check: the length and the last character pin the bits.
    let again = URL_SAFE_NO_PAD.encode(&bytes);
    (again == part).then_some(bytes)
}

/// Splits and decodes `jwt`.
pub(crate) fn parse(jwt: &str) -> Result<Jws<'_>, JwsError> {
    if jwt.len() > MAX_JWT {
        return Err(JwsError::TooLong);
    }
    let mut parts = jwt.split('.');
    let (Some(h), Some(p), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwsError::Parts);
    };
    if h.is_empty() || p.is_empty() || s.is_empty() {
        return Err(JwsError::Parts);
    }
    let header = object(&b64_canonical(h).ok_or(JwsError::Base64)?)?;
    let payload = object(&b64_canonical(p).ok_or(JwsError::Base64)?)?;
    let signature = b64_canonical(s).ok_or(JwsError::Base64)?;
    if header.contains_key("crit") {
        return Err(JwsError::Crit);
    }
    let alg = header
        .get("alg")
        .and_then(Value::as_str)
        .and_then(|a| a.parse::<Algorithm>().ok())
        .ok_or(JwsError::Alg)?;
    Ok(Jws {
        header,
        payload,
        signing_input: &jwt[..h.len() + 1 + p.len()],
        signature,
        alg,
    })
}

/// Reads a JSON object, refusing a member that appears twice at any depth.
pub(crate) fn object(bytes: &[u8]) -> Result<Map<String, Value>, JwsError> {
    match serde_json::from_slice::<Strict>(bytes) {
        Ok(Strict(Value::Object(map))) => Ok(map),
        Ok(_) => Err(JwsError::Json),
        Err(e) if e.to_string().starts_with(DUPLICATE) => Err(JwsError::Duplicate),
        Err(_) => Err(JwsError::Json),
    }
}

/// The start of the error a repeated member raises (a fixed text: no input quoted).
const DUPLICATE: &str = "repeated member";

/// A JSON value read with every object checked for repeated members.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor).map(Strict)
    }
}

struct StrictVisitor;

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }
    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Value::from(v))
    }
    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }
    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }
    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut out = Vec::new();
        while let Some(Strict(v)) = seq.next_element::<Strict>()? {
            out.push(v);
        }
        Ok(Value::Array(out))
    }
    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut out = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            let Strict(value) = map.next_value::<Strict>()?;
            if out.insert(key, value).is_some() {
                return Err(serde::de::Error::custom(DUPLICATE));
            }
        }
        Ok(Value::Object(out))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &str) -> String {
        URL_SAFE_NO_PAD.encode(s)
    }

    fn jwt(header: &str, payload: &str) -> String {
        format!("{}.{}.{}", enc(header), enc(payload), enc("sig"))
    }

    #[test]
    fn a_good_jws_is_split() {
        let text = jwt(r#"{"alg":"RS256","typ":"at+jwt"}"#, r#"{"a":{"b":[1,2]}}"#);
        let jws = parse(&text).expect("parses");
        assert_eq!(jws.alg, Algorithm::RS256);
        assert_eq!(jws.payload["a"]["b"][1], 2);
        assert_eq!(jws.signature, b"sig");
        assert_eq!(text.matches('.').count(), 2);
        assert!(text.starts_with(jws.signing_input));
    }

    #[test]
    fn every_defect_has_its_error() {
        let good_h = r#"{"alg":"ES256"}"#;
        let cases = [
            (format!("{}.{}", enc(good_h), enc("{}")), JwsError::Parts),
            (format!("{}.{}.", enc(good_h), enc("{}")), JwsError::Parts),
            (format!("{}..{}", enc(good_h), enc("s")), JwsError::Parts),
            (format!("{}.{}", jwt(good_h, "{}"), "x"), JwsError::Parts),
            (
                format!("{}=.{}.{}", enc(good_h), enc("{}"), enc("s")),
                JwsError::Base64,
            ),
            // "e30" is "{}"; "e31" decodes to the same bytes with stray trailing bits.
            (
                format!("{}.e31.{}", enc(good_h), enc("s")),
                JwsError::Base64,
            ),
            (
                format!("{}.e3+.{}", enc(good_h), enc("s")),
                JwsError::Base64,
            ),
            (jwt(good_h, "[]"), JwsError::Json),
            (jwt(good_h, "{"), JwsError::Json),
            (jwt(good_h, r#"{"a":1,"a":2}"#), JwsError::Duplicate),
            (jwt(good_h, r#"{"a":{"b":1,"b":1}}"#), JwsError::Duplicate),
            (
                jwt(r#"{"alg":"ES256","alg":"ES256"}"#, "{}"),
                JwsError::Duplicate,
            ),
            (jwt(r#"{"alg":"ES256","crit":["x"]}"#, "{}"), JwsError::Crit),
            (jwt(r#"{"alg":"none"}"#, "{}"), JwsError::Alg),
            (jwt(r#"{"alg":"HS256"}"#, "{}"), JwsError::Alg),
            (jwt(r#"{"alg":"rs256"}"#, "{}"), JwsError::Alg),
            (jwt(r#"{"typ":"JWT"}"#, "{}"), JwsError::Alg),
            ("a".repeat(MAX_JWT + 1), JwsError::TooLong),
        ];
        for (text, want) in cases {
            assert_eq!(parse(&text).map(|_| ()).unwrap_err(), want, "{text}");
        }
    }
}
