//! DPoP (RFC 9449): proof-of-possession keys, proofs, and the nonces servers hand out.
//!
//! A DPoP-bound access token is useless without the private key it is bound to: every
//! request carries, beside `Authorization: DPoP <token>`, a fresh proof (a JWT signed
//! with that key) naming the request's method and URL. HelseID's security profile
//! requires DPoP, and NHN's newer APIs (CommunicationParty API v2, CPPA v2, EDI 2.0)
//! accept only DPoP-bound tokens.
//!
//! [`DpopKey`] is the key and what servers said about it: by default an ephemeral P-256
//! key generated at start-up ([`DpopKey::generate`]), or one read from a JWK
//! ([`DpopKey::from_jwk`], RSA allowed). Its proofs have header `typ: dpop+jwt`, `alg`
//! and the public `jwk`, and claims `jti` (new every time), `htm`, `htu` (scheme, host,
//! port and path: never the query or fragment), `iat`, `nonce` when the server gave one,
//! and `ath` (the SHA-256 of the access token) on API calls. Nonces are remembered per
//! server (scheme, host and port) and replaced by every `DPoP-Nonce` header.
//!
//! Turning DPoP on is one setting of the layer,
//! [`HelseIdLayerBuilder::dpop`](crate::auth::HelseIdLayerBuilder::dpop): the token
//! endpoint then answers HelseID's nonce challenge, tokens are cached per DPoP key, and
//! every request gets its proof.
//!
//! # Example
//! ```
//! use helseid::dpop::DpopKey;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = DpopKey::generate()?;
//! let uri: http::Uri = "https://cpapi.test.grunndata.nhn.no/api/v1/event?maxEvents=10".parse()?;
//! let proof = key.proof(&http::Method::GET, &uri, Some("eyJhbGciOi..."))?;
//! // Header and claims are base64url JSON; the query never reaches `htu`.
//! assert_eq!(proof.htu(), "https://cpapi.test.grunndata.nhn.no/api/v1/event");
//! assert!(!format!("{proof:?}").contains(proof.as_str()));
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::{Arc, Mutex, PoisonError};

use aws_lc_rs::rand::{SecureRandom, SystemRandom};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Uri};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::jose::b64;
use crate::key::{Algorithm, PrivateJwk, SigningKey};

/// The `DPoP` request header, which carries the proof.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// The `DPoP-Nonce` response header, with which a server hands out a nonce.
pub const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// The `typ` of a DPoP proof's header.
pub const PROOF_TYPE: &str = "dpop+jwt";

/// How many servers' nonces are kept; past that, the oldest are forgotten (a nonce is
/// only an optimisation: a forgotten one costs one challenge).
const MAX_SERVERS: usize = 64;

/// A DPoP key, and the nonces servers gave it.
///
/// Clones share the key and the nonces. Two keys are equal when their public keys are
/// (same RFC 7638 thumbprint): tokens are cached per key. `Debug` shows the algorithm
/// and the thumbprint, never the private key.
#[derive(Clone)]
pub struct DpopKey {
    inner: Arc<Inner>,
}

struct Inner {
    key: SigningKey,
    /// The base64url JOSE header `{"alg","typ":"dpop+jwt","jwk"}`, encoded once.
    header: String,
    rng: SystemRandom,
    /// Per origin (`scheme://host[:port]`), the last nonce it sent.
    nonces: Mutex<HashMap<Box<str>, Arc<str>>>,
}

impl fmt::Debug for DpopKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopKey")
            .field("alg", &self.inner.key.algorithm())
            .field("jkt", &self.thumbprint())
            .finish_non_exhaustive()
    }
}

impl PartialEq for DpopKey {
    fn eq(&self, other: &Self) -> bool {
        self.thumbprint() == other.thumbprint()
    }
}

impl Eq for DpopKey {}

impl Hash for DpopKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.thumbprint().hash(state);
    }
}

impl DpopKey {
    /// A new ephemeral P-256 key (ES256), as HelseID's own libraries use. It lives as
    /// long as the process: tokens bound to it die with it.
    ///
    /// # Errors
    /// [`Error::Sign`] if the system's random generator fails.
    pub fn generate() -> Result<Self> {
        Self::from_jwk(&PrivateJwk::generate_ec(Algorithm::ES256)?)
    }

    /// A key from a private JWK: EC (P-256, P-384 or P-521) or RSA, with the algorithm
    /// its `alg` names (RS256 when an RSA key has none, the curve's ECDSA otherwise).
    ///
    /// # Errors
    /// [`Error::Config`] naming the JWK member that is missing or wrong, as
    /// [`SigningKey::from_jwk`].
    pub fn from_jwk(jwk: &PrivateJwk) -> Result<Self> {
        Ok(Self::from_signing_key(SigningKey::from_jwk(jwk)?))
    }

    /// A key from a signing key.
    pub fn from_signing_key(key: SigningKey) -> Self {
        let header = key.encoded_header(PROOF_TYPE, true);
        DpopKey {
            inner: Arc::new(Inner {
                key,
                header,
                rng: SystemRandom::new(),
                nonces: Mutex::new(HashMap::new()),
            }),
        }
    }

    /// The proof algorithm.
    pub fn algorithm(&self) -> Algorithm {
        self.inner.key.algorithm()
    }

    /// The RFC 7638 JWK SHA-256 thumbprint of the public key: the `cnf.jkt` of the
    /// tokens bound to this key.
    pub fn thumbprint(&self) -> &str {
        self.inner.key.thumbprint()
    }

    /// A new proof for `method` on `uri`, with the nonce last seen from `uri`'s server
    /// and, for API calls, the access token's hash as `ath`.
    ///
    /// # Errors
    /// [`Error::Dpop`] when `uri` is not absolute (`http` or `https` with a host), since
    /// `htu` must name the server; [`Error::Sign`] if signing fails.
    pub fn proof(
        &self,
        method: &Method,
        uri: &Uri,
        access_token: Option<&str>,
    ) -> Result<DpopProof> {
        let ath = access_token.map(ath);
        self.sign(method, &Target::new(uri)?, ath.as_deref())
    }

    /// A new proof for `method` on `target`, with the nonce last seen from its server.
    pub(crate) fn sign(
        &self,
        method: &Method,
        target: &Target,
        ath: Option<&str>,
    ) -> Result<DpopProof> {
        #[derive(Serialize)]
        struct Claims<'a> {
            jti: &'a str,
            htm: &'a str,
            htu: &'a str,
            iat: u64,
            #[serde(skip_serializing_if = "Option::is_none")]
            nonce: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            ath: Option<&'a str>,
        }
        let mut random = [0u8; 16];
        self.inner.rng.fill(&mut random).map_err(|_| Error::Sign {
            what: "a DPoP proof (no randomness for the jti)",
        })?;
        let jti = b64(random);
        let nonce = self.nonce(target);
        let iat = crate::jose::unix_now();
        let claims = Claims {
            jti: &jti,
            htm: method.as_str(),
            htu: &target.htu,
            iat,
            nonce: nonce.as_deref(),
            ath,
        };
        let jwt = self
            .inner
            .key
            .sign_with_header(&self.inner.header, &claims)?;
        let mut value = HeaderValue::try_from(jwt).map_err(|_| Error::Sign {
            what: "a DPoP proof (not a header value)",
        })?;
        value.set_sensitive(true);
        Ok(DpopProof {
            value,
            jti,
            htu: target.htu.clone(),
        })
    }

    /// The nonce last seen from `target`'s server.
    fn nonce(&self, target: &Target) -> Option<Arc<str>> {
        self.nonces().get(target.origin()).cloned()
    }

    /// Remembers the `DPoP-Nonce` of a response from `target`'s server, if it has one.
    /// Returns whether it had one.
    pub(crate) fn remember_nonce(&self, target: &Target, headers: &HeaderMap) -> bool {
        let Some(nonce) = headers.get(DPOP_NONCE).and_then(|v| v.to_str().ok()) else {
            return false;
        };
        // RFC 9449 section 8.1: a nonce is NQCHAR, `%x21 / %x23-5B / %x5D-7E`.
        if nonce.is_empty()
            || !nonce
                .bytes()
                .all(|b| b == 0x21 || (0x23..=0x5b).contains(&b) || (0x5d..=0x7e).contains(&b))
        {
            return false;
        }
        let mut nonces = self.nonces();
        if nonces.get(target.origin()).is_some_and(|n| &**n == nonce) {
            return true;
        }
        if nonces.len() >= MAX_SERVERS && !nonces.contains_key(target.origin()) {
            nonces.clear();
        }
        nonces.insert(target.origin().into(), nonce.into());
        true
    }

    fn nonces(&self) -> std::sync::MutexGuard<'_, HashMap<Box<str>, Arc<str>>> {
        // A poisoned map of nonces is still a map of nonces.
        self.inner
            .nonces
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// `ath`: base64url(SHA-256(access token)).
pub fn ath(access_token: &str) -> String {
    crate::jose::b64_sha256(access_token)
}

/// Where a proof is for: its `htu`, and the origin whose nonce it carries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// `scheme://host[:port]/path`, normalised (RFC 3986 6.2.2, 6.2.3): lowercase
    /// scheme and host, no default port, `/` for an empty path, no userinfo, query or
    /// fragment.
    htu: String,
    /// The length of the origin prefix of `htu`.
    origin_len: usize,
}

impl Target {
    pub(crate) fn new(uri: &Uri) -> Result<Self> {
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            Some(other) => {
                return Err(Error::Dpop {
                    reason: format!("the request URL's scheme `{other}` is not http or https"),
                });
            }
            None => {
                return Err(Error::Dpop {
                    reason: format!(
                        "the request URL `{}` is not absolute: a proof's htu needs the scheme and host",
                        uri.path()
                    ),
                });
            }
        };
        let authority = uri.authority().ok_or_else(|| Error::Dpop {
            reason: "the request URL has no host".into(),
        })?;
        let host = authority.host().to_ascii_lowercase();
        let port = authority
            .port_u16()
            .filter(|&p| !matches!((scheme, p), ("https", 443) | ("http", 80)));
        let mut htu = format!("{scheme}://{host}");
        if let Some(port) = port {
            htu.push(':');
            htu.push_str(&port.to_string());
        }
        let origin_len = htu.len();
        match uri.path() {
            "" => htu.push('/'),
            path => htu.push_str(path),
        }
        Ok(Target { htu, origin_len })
    }

    pub(crate) fn from_url(url: &str) -> Result<Self> {
        let uri: Uri = url.parse().map_err(|_| Error::Dpop {
            reason: "the URL does not parse".into(),
        })?;
        Self::new(&uri)
    }

    pub(crate) fn origin(&self) -> &str {
        &self.htu[..self.origin_len]
    }
}

/// One DPoP proof, for one request. Send it once: servers refuse a `jti` they have seen.
///
/// `Debug` shows the `jti` and `htu`, never the proof.
#[derive(Clone)]
pub struct DpopProof {
    value: HeaderValue,
    jti: String,
    htu: String,
}

impl fmt::Debug for DpopProof {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DpopProof")
            .field("jti", &self.jti)
            .field("htu", &self.htu)
            .field("proof", &"[redacted]")
            .finish()
    }
}

impl DpopProof {
    /// The proof's `jti`.
    pub fn jti(&self) -> &str {
        &self.jti
    }

    /// The proof's `htu`.
    pub fn htu(&self) -> &str {
        &self.htu
    }

    /// The compact JWT.
    ///
    /// # Security
    /// Together with the access token it proves possession of the key for this one
    /// request; do not log it.
    pub fn as_str(&self) -> &str {
        self.value.to_str().unwrap_or_default()
    }

    /// The `DPoP` header value, marked sensitive.
    pub fn header_value(&self) -> &HeaderValue {
        &self.value
    }

    pub(crate) fn into_header_value(self) -> HeaderValue {
        self.value
    }
}

/// Whether an answer is a DPoP nonce challenge from an API (RFC 9449 section 9): `401`
/// with `error="use_dpop_nonce"` in a `WWW-Authenticate` header (alone, or beside a
/// Bearer challenge in the same header).
pub(crate) fn is_nonce_challenge(status: http::StatusCode, headers: &HeaderMap) -> bool {
    status == http::StatusCode::UNAUTHORIZED
        && headers
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jose::b64_decode;

    /// A proof for `GET url`, without a token.
    fn get_proof(key: &DpopKey, url: &str) -> DpopProof {
        key.proof(&Method::GET, &url.parse().expect("uri"), None)
            .expect("proof")
    }

    fn part(jwt: &str, i: usize) -> serde_json::Value {
        let part = jwt.split('.').nth(i).expect("part");
        serde_json::from_slice(&b64_decode(part).expect("base64")).expect("json")
    }

    #[test]
    fn a_proof_has_the_header_and_claims_rfc_9449_asks_for() {
        let key = DpopKey::generate().expect("key");
        let uri: Uri = "HTTPS://Api.Example.NO:443/a/b?x=1#frag"
            .parse()
            .expect("uri");
        let proof = key
            .proof(&Method::POST, &uri, Some("the-token"))
            .expect("proof");
        let header = part(proof.as_str(), 0);
        assert_eq!(header["typ"], "dpop+jwt");
        assert_eq!(header["alg"], "ES256");
        assert_eq!(header["jwk"]["kty"], "EC");
        assert!(header["jwk"].get("d").is_none(), "no private member");
        assert!(header.get("kid").is_none());
        let claims = part(proof.as_str(), 1);
        assert_eq!(claims["htm"], "POST");
        assert_eq!(claims["htu"], "https://api.example.no/a/b");
        assert_eq!(claims["ath"], ath("the-token"));
        assert_eq!(claims["jti"], proof.jti());
        assert!(
            claims["iat"]
                .as_u64()
                .is_some_and(|iat| iat > 1_700_000_000)
        );
        assert!(claims.get("nonce").is_none());
        assert!(proof.header_value().is_sensitive());
    }

    #[test]
    fn ath_is_the_rfc_9449_example() {
        // RFC 9449 section 7.1: the access token and its `ath`.
        assert_eq!(
            ath("Kz~8mXK1EalYznwH-LC-1fBAo.4Ljp~zsPE_NeO.gxU"),
            "fUHyO2r2Z3DZ53EsNrWBb0xWXoaNy59IiKCAqksmQEo"
        );
    }

    #[test]
    fn every_proof_has_a_new_jti() {
        let key = DpopKey::generate().expect("key");
        let uri: Uri = "https://a.example/".parse().expect("uri");
        let jtis: std::collections::HashSet<String> = (0..50)
            .map(|_| {
                key.proof(&Method::GET, &uri, None)
                    .expect("proof")
                    .jti()
                    .to_owned()
            })
            .collect();
        assert_eq!(jtis.len(), 50);
    }

    #[test]
    fn htu_is_normalised_and_never_carries_the_query() {
        for (uri, htu) in [
            ("http://127.0.0.1:8080/x?y#z", "http://127.0.0.1:8080/x"),
            ("http://h:80", "http://h/"),
            ("https://h:8443/", "https://h:8443/"),
            ("https://user@h/p", "https://h/p"),
        ] {
            let target = Target::new(&uri.parse().expect("uri")).expect("target");
            assert_eq!(target.htu, htu, "{uri}");
            assert!(htu.starts_with(target.origin()));
        }
        let relative = Target::new(&"/x?y".parse().expect("uri")).expect_err("relative");
        assert!(relative.to_string().contains("not absolute"), "{relative}");
        let ftp = Target::new(&"ftp://h/x".parse().expect("uri")).expect_err("ftp");
        assert!(ftp.to_string().contains("ftp"), "{ftp}");
    }

    #[test]
    fn nonces_are_kept_per_server_and_replaced_by_each_header() {
        let key = DpopKey::generate().expect("key");
        let a = Target::from_url("https://a.example/token").expect("a");
        let a2 = Target::from_url("https://a.example/other?q").expect("a2");
        let b = Target::from_url("https://b.example/token").expect("b");
        let mut headers = HeaderMap::new();
        assert!(!key.remember_nonce(&a, &headers));
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n1"));
        assert!(key.remember_nonce(&a, &headers));
        assert_eq!(key.nonce(&a2).as_deref(), Some("n1"), "same server");
        assert_eq!(key.nonce(&b), None, "another server");
        headers.insert(DPOP_NONCE, HeaderValue::from_static("n2"));
        key.remember_nonce(&a2, &headers);
        assert_eq!(key.nonce(&a).as_deref(), Some("n2"));
        // A nonce with a quote or space is not an NQCHAR string: ignored.
        headers.insert(DPOP_NONCE, HeaderValue::from_static("bad\"nonce"));
        assert!(!key.remember_nonce(&a, &headers));
        assert_eq!(key.nonce(&a).as_deref(), Some("n2"));
        let proof = get_proof(&key, "https://a.example/x");
        assert_eq!(part(proof.as_str(), 1)["nonce"], "n2");
    }

    #[test]
    fn an_rsa_key_from_a_jwk_signs_rs512_proofs() {
        let jwk = PrivateJwk::generate_rsa(2048, Algorithm::RS512).expect("jwk");
        let key = DpopKey::from_jwk(&jwk).expect("key");
        assert_eq!(key.algorithm(), Algorithm::RS512);
        let proof = get_proof(&key, "https://a.example/");
        let header = part(proof.as_str(), 0);
        assert_eq!(header["alg"], "RS512");
        assert_eq!(header["jwk"]["kty"], "RSA");
        assert!(header["jwk"].get("d").is_none());
        assert_eq!(key.thumbprint(), jwk.public().expect("public").thumbprint());
    }

    #[test]
    fn debug_shows_neither_key_nor_proof() {
        let jwk = PrivateJwk::generate_ec(Algorithm::ES256).expect("jwk");
        let key = DpopKey::from_jwk(&jwk).expect("key");
        let proof = get_proof(&key, "https://a.example/");
        let json = jwk.to_json();
        let d = serde_json::from_str::<serde_json::Value>(&json).expect("json")["d"]
            .as_str()
            .expect("d")
            .to_owned();
        let debug = format!("{key:?} {proof:?}");
        assert!(!debug.contains(&d), "{debug}");
        assert!(!debug.contains(proof.as_str()), "{debug}");
        assert!(debug.contains(key.thumbprint()));
    }

    #[test]
    fn nonce_challenges_are_recognised() {
        let mut headers = HeaderMap::new();
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"DPoP error="use_dpop_nonce", error_description="x""#),
        );
        assert!(is_nonce_challenge(http::StatusCode::UNAUTHORIZED, &headers));
        assert!(!is_nonce_challenge(http::StatusCode::BAD_REQUEST, &headers));
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer realm="api", DPoP error="use_dpop_nonce""#),
        );
        assert!(is_nonce_challenge(http::StatusCode::UNAUTHORIZED, &headers));
        headers.insert(
            http::header::WWW_AUTHENTICATE,
            HeaderValue::from_static(r#"Bearer error="invalid_token""#),
        );
        assert!(!is_nonce_challenge(
            http::StatusCode::UNAUTHORIZED,
            &headers
        ));
    }
}
