//! DPoP (RFC 9449) at the token endpoint: checking proofs, the replay store, and the
//! server nonces. (The APIs check theirs with `helseid::verify`:
//! `crate::server::verify`.)
//!
//! A proof is checked step by step, and a refusal names the step that failed: the
//! `DPoP` header, the JWS form, the header (`typ`, `alg`, `jwk`, `crit`), the
//! signature, the claims (`jti`, `htm`, `htu`, `iat`), then the nonce and last the
//! `jti` replay check. Descriptions quote claim values (cut short), never the proof.
//!
//! **DPoP** (RFC 9449). A token request may carry a `DPoP` header with a proof; a client
//! registered with
//! [`ClientRegistration::require_dpop`](crate::ClientRegistration::require_dpop) must
//! (`invalid_request`
//! otherwise). The client assertion is checked first, so it is spent whatever happens to
//! the proof; then the proof, before the grant (a challenge spends no refresh token). A
//! proof without the token endpoint's nonce, or with a nonce the emulator did not issue
//! or no longer accepts, gets HTTP 400 `{"error":"use_dpop_nonce"}` with the nonce in a
//! `DPoP-Nonce` header; the client retries with a new proof carrying it AND a new client
//! assertion. Nonces are opaque random strings, replaced every five minutes (the one
//! replaced is accepted five minutes more), or at once by
//! [`Emulator::rotate_dpop_nonce`](crate::Emulator::rotate_dpop_nonce).
//! A proof is refused (`invalid_dpop_proof`, the description naming the check) unless:
//! it is one JWS in compact form; its header has `typ: dpop+jwt`, an `alg` among RS256,
//! RS384, RS512, PS256, PS384, PS512, ES256, ES384 and ES512 (the discovery document's
//! `dpop_signing_alg_values_supported`) that fits the key, no `crit`, and a `jwk` that is
//! an RSA (at least 2048 bits) or EC public key without private members (`d`, ...); the
//! signature verifies with that key; `jti` is a non-empty string not seen before with
//! that key (remembered in memory while the proof could still be accepted); `htm` is the
//! request's method; `htu` is exactly the URL the request was sent to, as the emulator
//! knows its own base URL (the issuer, then the path), and has no query (`?`) or fragment
//! (`#`); `iat` is a number at most 60 seconds old and at most 5 seconds ahead. An
//! accepted proof makes the access token DPoP-bound, for every grant: it carries
//! `cnf: {"jkt": <the RFC 7638 thumbprint of the proof's key>}` and the response says
//! `token_type: "DPoP"` (with a `DPoP-Nonce` header when the proof carried the previous
//! nonce). A token exchange with a proof binds the new token to the actor's key. A refresh
//! with a proof binds the session to that key: its later refreshes need a proof by the same
//! key (`invalid_grant` otherwise), and their tokens are bound too.
//! [`Emulator::dpop_nonce_challenges`](crate::Emulator::dpop_nonce_challenges) counts
//! the `use_dpop_nonce` answers (token endpoint
//! and API), [`Emulator::assertion_jtis`](crate::Emulator::assertion_jtis) lists the
//! client assertions' `jti`s.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_lc_rs::signature;
use axum::http::{HeaderMap, HeaderName};
use serde_json::{Map, Value};

use crate::server::error::{b64, b64_decode};
use crate::server::response::quote;
use crate::server::{LEEWAY, lock, unix_now};
use helseid::key::PublicJwk;

/// The request header that carries a proof.
pub(crate) const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `typ` every proof must carry.
pub(crate) const PROOF_TYP: &str = "dpop+jwt";

/// The algorithms accepted for proofs: HelseID's `dpop_signing_alg_values_supported`.
pub(crate) const ALGS: [&str; 9] = [
    "RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512",
];

/// How old a proof's `iat` may be, in seconds.
pub(crate) const MAX_AGE: i64 = 60;

/// How long a nonce is current, in seconds; it is accepted for as long again after the
/// next one replaced it.
pub(crate) const NONCE_LIFETIME: i64 = 300;

/// JWK members that only a private (or symmetric) key has.
const PRIVATE_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Why a proof was refused.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ProofError {
    /// `invalid_dpop_proof`: what is wrong with the proof.
    Invalid(String),
    /// `use_dpop_nonce`: the proof lacks a nonce this server accepts. Answer with the
    /// current nonce in `DPoP-Nonce`.
    UseNonce(String),
}

/// What a proof must match besides its own consistency.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    /// The request method, as `htm` must carry it.
    pub(crate) method: &'a str,
    /// The URL the request was sent to, without query or fragment, as `htu` must carry
    /// it exactly.
    pub(crate) url: &'a str,
    /// The nonces a proof must carry one of, when this server requires a nonce.
    pub(crate) nonces: Option<&'a Nonces>,
}

/// An accepted proof.
#[derive(Debug)]
pub(crate) struct Proof {
    /// The RFC 7638 thumbprint of the proof's key.
    pub(crate) jkt: String,
    /// The nonce the proof carried.
    pub(crate) nonce: Option<String>,
}

/// The `DPoP` header of a request: `None` when there is none.
pub(crate) fn proof_header(headers: &HeaderMap) -> Result<Option<&str>, ProofError> {
    let mut values = headers.get_all(DPOP).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(invalid("the request has more than one DPoP header"));
    }
    let value = value
        .to_str()
        .map_err(|_| invalid("the DPoP header is not visible ASCII"))?
        .trim();
    if value.is_empty() {
        return Err(invalid("the DPoP header is empty"));
    }
    Ok(Some(value))
}

fn invalid(description: impl Into<String>) -> ProofError {
    ProofError::Invalid(description.into())
}

/// The server nonces of one server (the token endpoint, or the API): the current one
/// and the one it replaced, both accepted.
#[derive(Debug)]
pub(crate) struct Nonces {
    inner: Mutex<NonceState>,
}

#[derive(Debug)]
struct NonceState {
    current: String,
    previous: Option<String>,
    /// When `current` was made, in seconds since the epoch.
    since: i64,
}

/// A fresh opaque nonce: 32 random bytes, base64url.
fn fresh_nonce() -> Option<String> {
    let mut bytes = [0u8; 32];
    aws_lc_rs::rand::fill(&mut bytes).ok()?;
    Some(b64(bytes))
}

impl Nonces {
    /// A first nonce; `None` when no random bytes can be had.
    pub(crate) fn new() -> Option<Self> {
        Some(Nonces {
            inner: Mutex::new(NonceState {
                current: fresh_nonce()?,
                previous: None,
                since: unix_now(),
            }),
        })
    }

    /// The state after the lifetime has been applied: the current nonce is replaced
    /// when it is [`NONCE_LIFETIME`] old, and the previous one forgotten when the
    /// current one is.
    fn aged(&self, now: i64) -> std::sync::MutexGuard<'_, NonceState> {
        let mut state = lock(&self.inner);
        let age = now.saturating_sub(state.since);
        if age >= NONCE_LIFETIME
            && let Some(fresh) = fresh_nonce()
        {
            let replaced = std::mem::replace(&mut state.current, fresh);
            state.previous = (age < 2 * NONCE_LIFETIME).then_some(replaced);
            state.since = now;
        }
        state
    }

    /// The nonce to hand out now.
    pub(crate) fn current(&self) -> String {
        self.aged(unix_now()).current.clone()
    }

    /// Whether `nonce` is the current or the previous nonce.
    fn accepts(&self, nonce: &str) -> bool {
        let state = self.aged(unix_now());
        state.current == nonce || state.previous.as_deref() == Some(nonce)
    }

    /// Replaces the nonce and forgets every earlier one, so that the next proof is
    /// challenged whatever nonce it carries.
    pub(crate) fn rotate(&self) {
        if let Some(fresh) = fresh_nonce() {
            let mut state = lock(&self.inner);
            state.current = fresh;
            state.previous = None;
            state.since = unix_now();
        }
    }
}

/// The emulator's DPoP state: nonces, the replay store and counters.
#[derive(Debug)]
pub(crate) struct Dpop {
    /// The token endpoint's nonces.
    pub(crate) token_nonces: Nonces,
    /// Proofs seen, by key thumbprint and `jti`, with the time (seconds since the
    /// epoch) until which they must be remembered.
    seen: Mutex<HashMap<(String, String), i64>>,
    /// `use_dpop_nonce` answers, token endpoint and API.
    nonce_challenges: AtomicU64,
}

impl Dpop {
    /// Fresh nonces, nothing seen; `None` when no random bytes can be had.
    pub(crate) fn new() -> Option<Self> {
        Some(Dpop {
            token_nonces: Nonces::new()?,
            seen: Mutex::new(HashMap::new()),
            nonce_challenges: AtomicU64::new(0),
        })
    }

    pub(crate) fn nonce_challenges(&self) -> u64 {
        self.nonce_challenges.load(Ordering::Relaxed)
    }

    /// Counts a `use_dpop_nonce` answer.
    pub(crate) fn count_challenge(&self) {
        self.nonce_challenges.fetch_add(1, Ordering::Relaxed);
    }

    /// Checks a proof against the request, and spends its `jti` when it is accepted.
    pub(crate) fn verify(&self, proof: &str, expected: &Expected<'_>) -> Result<Proof, ProofError> {
        let now = unix_now();
        let (claims, jkt) = verify_jws(proof)?;
        let (jti, iat) = check_claims(&claims, expected, now)?;
        let nonce = match claims.get("nonce") {
            None => None,
            Some(Value::String(nonce)) if !nonce.is_empty() => Some(nonce.clone()),
            Some(_) => return Err(invalid("the DPoP proof's nonce must be a non-empty string")),
        };
        if let Some(nonces) = expected.nonces {
            match &nonce {
                None => {
                    return Err(ProofError::UseNonce(
                        "the DPoP proof has no nonce: this server requires one; sign a new proof \
                         with the nonce in the DPoP-Nonce header"
                            .to_owned(),
                    ));
                }
                Some(nonce) if !nonces.accepts(nonce) => {
                    return Err(ProofError::UseNonce(
                        "the DPoP proof's nonce is not one this server issued, or it has expired: \
                         sign a new proof with the nonce in the DPoP-Nonce header"
                            .to_owned(),
                    ));
                }
                Some(_) => {}
            }
        }
        if !self.remember(
            &jkt,
            jti,
            iat.max(now).saturating_add(MAX_AGE + LEEWAY),
            now,
        ) {
            return Err(invalid(format!(
                "the DPoP proof's jti {} has been used before with this key: sign a new proof \
                 for every request",
                quote(jti)
            )));
        }
        Ok(Proof { jkt, nonce })
    }

    /// Records a proof's `jti` under its key, to be remembered until `keep_until`.
    /// Returns `false` when it was seen before. Forgets proofs whose time has passed.
    fn remember(&self, jkt: &str, jti: &str, keep_until: i64, now: i64) -> bool {
        let mut seen = lock(&self.seen);
        seen.retain(|_, until| *until >= now);
        let key = (jkt.to_owned(), jti.to_owned());
        if seen.contains_key(&key) {
            return false;
        }
        seen.insert(key, keep_until);
        true
    }
}

/// Decodes one base64url part of a JWT into a JSON object.
fn json_object(part: &str) -> Option<Map<String, Value>> {
    match serde_json::from_slice(&b64_decode(part)?).ok()? {
        Value::Object(map) => Some(map),
        _ => None,
    }
}

/// A proof's algorithm: how to verify it, and the key it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ProofAlg {
    Rsa(&'static signature::RsaParameters),
    Ec(&'static signature::EcdsaVerificationAlgorithm, &'static str),
}

impl FromStr for ProofAlg {
    type Err = ();

    fn from_str(alg: &str) -> Result<Self, ()> {
        Ok(match alg {
            "RS256" => ProofAlg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA256),
            "RS384" => ProofAlg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA384),
            "RS512" => ProofAlg::Rsa(&signature::RSA_PKCS1_2048_8192_SHA512),
            "PS256" => ProofAlg::Rsa(&signature::RSA_PSS_2048_8192_SHA256),
            "PS384" => ProofAlg::Rsa(&signature::RSA_PSS_2048_8192_SHA384),
            "PS512" => ProofAlg::Rsa(&signature::RSA_PSS_2048_8192_SHA512),
            "ES256" => ProofAlg::Ec(&signature::ECDSA_P256_SHA256_FIXED, "P-256"),
            "ES384" => ProofAlg::Ec(&signature::ECDSA_P384_SHA384_FIXED, "P-384"),
            "ES512" => ProofAlg::Ec(&signature::ECDSA_P521_SHA512_FIXED, "P-521"),
            _ => return Err(()),
        })
    }
}

/// The byte length of a coordinate on an EC curve.
fn coordinate_len(crv: &str) -> Option<usize> {
    match crv {
        "P-256" => Some(32),
        "P-384" => Some(48),
        "P-521" => Some(66),
        _ => None,
    }
}

/// A string member of the proof's `jwk`, base64url-decoded.
fn jwk_member(jwk: &Map<String, Value>, name: &str) -> Result<(String, Vec<u8>), ProofError> {
    let Some(Value::String(value)) = jwk.get(name) else {
        return Err(invalid(format!(
            "the DPoP proof's jwk has no `{name}` string member"
        )));
    };
    let bytes = b64_decode(value)
        .filter(|b| !b.is_empty())
        .ok_or_else(|| invalid(format!("the DPoP proof's jwk `{name}` is not base64url")))?;
    Ok((value.clone(), bytes))
}

/// Checks the form, the header (`typ`, `alg`, `jwk`, `crit`), and the signature with
/// the header's key. Returns the claims and the key's RFC 7638 thumbprint.
fn verify_jws(proof: &str) -> Result<(Map<String, Value>, String), ProofError> {
    let parts: Vec<&str> = proof.split('.').collect();
    let [header_part, payload_part, signature_part] = parts[..] else {
        return Err(invalid(
            "the DPoP proof is not one JWS in compact form (three base64url parts separated by dots)",
        ));
    };
    let header = json_object(header_part)
        .ok_or_else(|| invalid("the DPoP proof's header is not a base64url-encoded JSON object"))?;
    match header.get("typ") {
        Some(Value::String(typ)) if typ == PROOF_TYP => {}
        Some(Value::String(typ)) => {
            return Err(invalid(format!(
                "the DPoP proof's typ {} is not accepted; it must be {PROOF_TYP}",
                quote(typ)
            )));
        }
        Some(_) => return Err(invalid("the DPoP proof's typ must be a string")),
        None => {
            return Err(invalid(format!(
                "the DPoP proof's header has no typ; it must be {PROOF_TYP}"
            )));
        }
    }
    let alg = match header.get("alg") {
        Some(Value::String(alg)) => ProofAlg::from_str(alg).map_err(|()| {
            invalid(format!(
                "the DPoP proof's alg {} is not accepted: use an asymmetric one of {}",
                quote(alg),
                ALGS.join(", ")
            ))
        })?,
        Some(_) => return Err(invalid("the DPoP proof's alg must be a string")),
        None => return Err(invalid("the DPoP proof's header has no alg")),
    };
    if header.contains_key("crit") {
        return Err(invalid(
            "the DPoP proof's header has crit; no critical extensions are understood",
        ));
    }
    let Some(jwk) = header.get("jwk") else {
        return Err(invalid(
            "the DPoP proof's header has no jwk: it must carry the public key",
        ));
    };
    let Value::Object(jwk) = jwk else {
        return Err(invalid("the DPoP proof's jwk is not a JSON object"));
    };
    if let Some(member) = PRIVATE_MEMBERS.iter().find(|m| jwk.contains_key(**m)) {
        return Err(invalid(format!(
            "the DPoP proof's jwk has the private member `{member}`: it must be a public key"
        )));
    }
    let signature = b64_decode(signature_part)
        .ok_or_else(|| invalid("the DPoP proof's signature is not base64url"))?;
    let message = proof
        .rsplit_once('.')
        .map_or("", |(signed, _)| signed)
        .as_bytes();
    let kty = jwk.get("kty").and_then(Value::as_str).unwrap_or_default();
    let public = match (alg, kty) {
        (ProofAlg::Rsa(params), "RSA") => {
            let (n, n_bytes) = jwk_member(jwk, "n")?;
            let (e, e_bytes) = jwk_member(jwk, "e")?;
            let bits = n_bytes.iter().skip_while(|b| **b == 0).count() * 8;
            if bits < 2048 {
                return Err(invalid(format!(
                    "the DPoP proof's jwk is an RSA key of about {bits} bits; at least 2048 are needed"
                )));
            }
            signature::RsaPublicKeyComponents {
                n: &n_bytes,
                e: &e_bytes,
            }
            .verify(params, message, &signature)
            .map_err(|_| bad_signature())?;
            PublicJwk {
                kty: "RSA".to_owned(),
                n: Some(n),
                e: Some(e),
                ..PublicJwk::default()
            }
        }
        (ProofAlg::Ec(verification, curve), "EC") => {
            let crv = jwk.get("crv").and_then(Value::as_str).unwrap_or_default();
            if crv != curve {
                return Err(invalid(format!(
                    "the DPoP proof's alg needs a key on curve {curve}, but its jwk's crv is {}",
                    quote(crv)
                )));
            }
            let len = coordinate_len(crv).unwrap_or_default();
            let (x, x_bytes) = jwk_member(jwk, "x")?;
            let (y, y_bytes) = jwk_member(jwk, "y")?;
            if x_bytes.len() != len || y_bytes.len() != len {
                return Err(invalid(format!(
                    "the DPoP proof's jwk coordinates must be {len} bytes each on {curve}"
                )));
            }
            let mut point = Vec::with_capacity(1 + 2 * len);
            point.push(4);
            point.extend_from_slice(&x_bytes);
            point.extend_from_slice(&y_bytes);
            signature::UnparsedPublicKey::new(verification, &point)
                .verify(message, &signature)
                .map_err(|_| bad_signature())?;
            PublicJwk {
                kty: "EC".to_owned(),
                crv: Some(crv.to_owned()),
                x: Some(x),
                y: Some(y),
                ..PublicJwk::default()
            }
        }
        (_, "RSA" | "EC") => {
            return Err(invalid(format!(
                "the DPoP proof's alg does not fit its jwk's kty {}",
                quote(kty)
            )));
        }
        _ => {
            return Err(invalid(format!(
                "the DPoP proof's jwk has kty {}; an RSA or EC public key is needed",
                quote(kty)
            )));
        }
    };
    let claims = json_object(payload_part).ok_or_else(|| {
        invalid("the DPoP proof's payload is not a base64url-encoded JSON object")
    })?;
    Ok((claims, public.thumbprint()))
}

fn bad_signature() -> ProofError {
    invalid("the DPoP proof's signature does not verify with the jwk in its header")
}

/// Checks `jti`, `htm`, `htu` and `iat`; returns the `jti` and the `iat`.
fn check_claims<'c>(
    claims: &'c Map<String, Value>,
    expected: &Expected<'_>,
    now: i64,
) -> Result<(&'c str, i64), ProofError> {
    let string = |name: &str| match claims.get(name) {
        Some(Value::String(value)) => Ok(value.as_str()),
        Some(_) => Err(invalid(format!("the DPoP proof's {name} must be a string"))),
        None => Err(invalid(format!("the DPoP proof has no {name} claim"))),
    };
    let jti = string("jti")?;
    if jti.is_empty() {
        return Err(invalid("the DPoP proof's jti is empty"));
    }
    let htm = string("htm")?;
    if htm != expected.method {
        return Err(invalid(format!(
            "the DPoP proof's htm {} is not the request's method {}",
            quote(htm),
            expected.method
        )));
    }
    let htu = string("htu")?;
    if htu.contains('?') {
        return Err(invalid(
            "the DPoP proof's htu has a query (`?`): htu is the URL without query and fragment",
        ));
    }
    if htu.contains('#') {
        return Err(invalid(
            "the DPoP proof's htu has a fragment (`#`): htu is the URL without query and fragment",
        ));
    }
    if htu != expected.url {
        return Err(invalid(format!(
            "the DPoP proof's htu {} is not {}, the URL this request was sent to",
            quote(htu),
            quote(expected.url)
        )));
    }
    let iat = match claims.get("iat") {
        Some(Value::Number(n)) => n
            .as_f64()
            .ok_or_else(|| invalid("the DPoP proof's iat is not a number"))?,
        Some(_) => {
            return Err(invalid(
                "the DPoP proof's iat must be a JSON number (seconds since the epoch)",
            ));
        }
        None => return Err(invalid("the DPoP proof has no iat claim")),
    };
    let iat = iat as i64;
    if iat > now.saturating_add(LEEWAY) {
        return Err(invalid(format!(
            "the DPoP proof's iat is {} s in the future; at most {LEEWAY} s of clock skew is accepted",
            iat.saturating_sub(now)
        )));
    }
    if iat < now.saturating_sub(MAX_AGE) {
        return Err(invalid(format!(
            "the DPoP proof's iat is {} s in the past; a proof may be at most {MAX_AGE} s old",
            now.saturating_sub(iat)
        )));
    }
    Ok((jti, iat))
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use helseid::key::{Algorithm, PrivateJwk, SigningKey};

    const URL: &str = "http://127.0.0.1:1/connect/token";

    fn proof(key: &SigningKey, claims: &Value) -> String {
        key.sign_jwt_with_jwk(PROOF_TYP, claims).expect("sign")
    }

    fn claims() -> Value {
        json!({"jti": "a-jti", "htm": "POST", "htu": URL, "iat": unix_now()})
    }

    fn expected() -> Expected<'static> {
        Expected {
            method: "POST",
            url: URL,
            nonces: None,
        }
    }

    #[test]
    fn rsa_and_ec_proofs_verify_and_their_jti_is_spent() {
        let dpop = Dpop::new().expect("random");
        for jwk in [
            PrivateJwk::generate_ec(Algorithm::ES256).expect("key"),
            PrivateJwk::generate_ec(Algorithm::ES384).expect("key"),
            PrivateJwk::generate_rsa(2048, Algorithm::PS256).expect("key"),
            PrivateJwk::generate_rsa(2048, Algorithm::RS512).expect("key"),
        ] {
            let key = SigningKey::from_jwk(&jwk).expect("key");
            let accepted = dpop
                .verify(&proof(&key, &claims()), &expected())
                .expect("accepted");
            assert_eq!(accepted.jkt, key.thumbprint());
            let again = dpop.verify(&proof(&key, &claims()), &expected());
            assert!(
                matches!(&again, Err(ProofError::Invalid(d)) if d.contains("has been used before")),
                "{again:?}"
            );
        }
    }

    #[test]
    fn es512_proofs_verify() {
        use aws_lc_rs::signature::{ECDSA_P521_SHA512_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
        let rng = aws_lc_rs::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, &rng)
            .expect("P-521 key");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P521_SHA512_FIXED_SIGNING, pkcs8.as_ref())
            .expect("P-521 key");
        let point = pair.public_key().as_ref();
        let (x, y) = point[1..].split_at(66);
        let header = json!({"typ": PROOF_TYP, "alg": "ES512",
            "jwk": {"kty": "EC", "crv": "P-521", "x": b64(x), "y": b64(y)}});
        let input = format!("{}.{}", b64(header.to_string()), b64(claims().to_string()));
        let signature = pair.sign(&rng, input.as_bytes()).expect("sign");
        let jws = format!("{input}.{}", b64(signature.as_ref()));
        let dpop = Dpop::new().expect("random");
        assert!(dpop.verify(&jws, &expected()).is_ok());
    }

    #[test]
    fn nonces_rotate_with_time_and_on_demand() {
        let nonces = Nonces::new().expect("random");
        let first = nonces.current();
        assert!(nonces.accepts(&first));
        let now = unix_now();
        let second = nonces.aged(now + NONCE_LIFETIME).current.clone();
        assert_ne!(first, second);
        assert!(
            nonces.accepts(&first),
            "the previous nonce is still accepted"
        );
        let third = nonces.aged(now + 3 * NONCE_LIFETIME).current.clone();
        assert_ne!(second, third);
        let state = nonces.aged(now + 3 * NONCE_LIFETIME);
        assert_eq!(state.previous, None, "too old to keep");
        drop(state);
        nonces.rotate();
        assert!(!nonces.accepts(&third));
        assert!(nonces.accepts(&nonces.current()));
    }
}
