//! The emulator's shared state: registered clients, its signing key, counters, the
//! replay cache, and the CPE register.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::AtomicU64;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{DecodingKey, Validation};
use serde_json::{Value, json};

use crate::Tenancy;
use crate::apis::cpapi::Cpapi;
use crate::apis::cpe::Cpe;
use crate::idp::dpop::Dpop;
use crate::server::error::b64_decode;
use crate::server::error::{Error, Result};
use crate::server::faults::Faults;
use helseid::key::{Algorithm, PublicJwk, SigningKey};

/// Clock skew allowed when checking `exp`, `nbf` and `iat`, in seconds.
pub(crate) const LEEWAY: i64 = 5;

/// The current time in seconds since the Unix epoch.
pub(crate) fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or_default()
}

/// Locks a mutex, carrying on after a panic elsewhere (the data stays usable).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kind of public key a client registered, which decides the algorithms it may use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum KeyKind {
    Rsa,
    /// An EC key: the one ES algorithm that fits its curve.
    Ec(Algorithm),
}

/// A client's registered public key, ready to verify signatures.
pub(crate) struct ClientKey {
    pub(crate) kind: KeyKind,
    /// jsonwebtoken's key, for every algorithm it knows (all but ES512).
    pub(crate) decoding: Option<DecodingKey>,
    /// The uncompressed EC point, for ES512 (P-521), which aws-lc-rs verifies.
    pub(crate) point: Option<Vec<u8>>,
    /// The RFC 7638 thumbprint: two keys are the same key when theirs are equal.
    thumbprint: String,
}

impl ClientKey {
    /// Prepares a public JWK for verification.
    pub(crate) fn from_jwk(jwk: &PublicJwk) -> std::result::Result<Self, String> {
        let member = |name: &str, value: &Option<String>| {
            value
                .as_deref()
                .filter(|v| !v.is_empty())
                .map(str::to_owned)
                .ok_or_else(|| format!("the public key has no `{name}`"))
        };
        match jwk.kty.as_str() {
            "RSA" => {
                let (n, e) = (member("n", &jwk.n)?, member("e", &jwk.e)?);
                let modulus = b64_decode(&n)
                    .ok_or_else(|| "the RSA modulus `n` is not base64url".to_owned())?;
                let bits = modulus.iter().skip_while(|b| **b == 0).count() * 8;
                if bits < 2048 {
                    return Err(format!(
                        "the RSA key has about {bits} bits; at least 2048 are needed"
                    ));
                }
                let decoding = DecodingKey::from_rsa_components(&n, &e)
                    .map_err(|_| "the RSA public key is not valid base64url".to_owned())?;
                Ok(ClientKey {
                    kind: KeyKind::Rsa,
                    decoding: Some(decoding),
                    point: None,
                    thumbprint: jwk.thumbprint(),
                })
            }
            "EC" => {
                let alg = match jwk.crv.as_deref() {
                    Some("P-256") => Algorithm::ES256,
                    Some("P-384") => Algorithm::ES384,
                    Some("P-521") => Algorithm::ES512,
                    Some(other) => {
                        return Err(format!(
                            "unsupported curve `{other}` (use P-256, P-384 or P-521)"
                        ));
                    }
                    None => return Err("the EC public key has no `crv`".to_owned()),
                };
                let (x, y) = (member("x", &jwk.x)?, member("y", &jwk.y)?);
                let len = match alg {
                    Algorithm::ES256 => 32,
                    Algorithm::ES384 => 48,
                    _ => 66,
                };
                for (name, value) in [("x", &x), ("y", &y)] {
                    if b64_decode(value).map(|v| v.len()) != Some(len) {
                        return Err(format!(
                            "the EC coordinate `{name}` must be {len} bytes of base64url"
                        ));
                    }
                }
                if alg == Algorithm::ES512 {
                    let point = [
                        &[4u8][..],
                        &b64_decode(&x).unwrap_or_default(),
                        &b64_decode(&y).unwrap_or_default(),
                    ]
                    .concat();
                    return Ok(ClientKey {
                        kind: KeyKind::Ec(alg),
                        decoding: None,
                        point: Some(point),
                        thumbprint: jwk.thumbprint(),
                    });
                }
                let decoding = DecodingKey::from_ec_components(&x, &y)
                    .map_err(|_| "the EC public key is not valid base64url".to_owned())?;
                Ok(ClientKey {
                    kind: KeyKind::Ec(alg),
                    decoding: Some(decoding),
                    point: None,
                    thumbprint: jwk.thumbprint(),
                })
            }
            other => Err(format!("unsupported key type `{other}` (use RSA or EC)")),
        }
    }

    /// Whether `other` is the same public key.
    pub(crate) fn same_key(&self, other: &ClientKey) -> bool {
        self.thumbprint == other.thumbprint
    }

    /// Whether `alg` can be verified with this key.
    pub(crate) fn fits(&self, alg: Algorithm) -> bool {
        match self.kind {
            KeyKind::Rsa => alg.is_rsa(),
            KeyKind::Ec(curve_alg) => alg == curve_alg,
        }
    }

    /// The key kind for error messages.
    pub(crate) fn describe(&self) -> &'static str {
        match self.kind {
            KeyKind::Rsa => "RSA",
            KeyKind::Ec(Algorithm::ES384) => "EC P-384",
            KeyKind::Ec(Algorithm::ES512) => "EC P-521",
            KeyKind::Ec(_) => "EC P-256",
        }
    }
}

/// A registered client.
pub(crate) struct RegisteredClient {
    pub(crate) id: String,
    /// The scopes the client may request, without duplicates, in registration order.
    pub(crate) scopes: Vec<String>,
    pub(crate) tenancy: Tenancy,
    /// The key in effect, its expiration, and a key registered but not yet in effect.
    pub(crate) keys: crate::idp::selvbetjening::Keys,
    /// The APIs (token audiences) the client is, for token exchange: a subject token is
    /// meant for the client when its `aud` holds one of them.
    pub(crate) audiences: Vec<String>,
    /// Whether the client's token requests must carry a DPoP proof.
    pub(crate) require_dpop: bool,
    /// Scopes left out of the client's tokens and named in `rejected_scope`.
    pub(crate) rejected_scopes: Vec<String>,
}

impl fmt::Debug for RegisteredClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegisteredClient")
            .field("id", &self.id)
            .field("scopes", &self.scopes)
            .field("tenancy", &self.tenancy)
            .field("audiences", &self.audiences)
            .field("require_dpop", &self.require_dpop)
            .field("rejected_scopes", &self.rejected_scopes)
            .finish_non_exhaustive()
    }
}

/// Everything the request handlers share.
pub(crate) struct State {
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    pub(crate) clients: HashMap<String, RegisteredClient>,
    pub(crate) signing_key: SigningKey,
    verifying_key: DecodingKey,
    pub(crate) access_token_lifetime: Duration,
    pub(crate) token_requests: AtomicU64,
    pub(crate) tokens_issued: AtomicU64,
    /// Successful token exchanges.
    pub(crate) token_exchanges: AtomicU64,
    /// Successful refreshes.
    pub(crate) refreshes: AtomicU64,
    /// `invalid_grant` answers of the token endpoint, all grants.
    pub(crate) invalid_grants: AtomicU64,
    /// The refresh tokens issued, used and revoked.
    pub(crate) refresh_tokens: crate::idp::refresh::RefreshStore,
    token_delay: Mutex<Duration>,
    /// Client assertion `jti`s seen, with the time (seconds since the epoch) until which
    /// they must be remembered.
    seen_jtis: Mutex<HashMap<String, i64>>,
    /// The client assertion `jti`s that reached the replay check, oldest first (at most
    /// [`MAX_ASSERTION_JTIS`]).
    assertion_jtis: Mutex<VecDeque<String>>,
    /// The CPE API: its register, page size and request counter.
    pub(crate) cpe: Cpe,
    /// DPoP: nonces, the proof replay store, counters.
    pub(crate) dpop: Dpop,
    /// The CommunicationParty API v2 (which serves the CPE register).
    pub(crate) cpapi: Cpapi,
    /// Whether Selvbetjening takes new keys.
    pub(crate) selvbetjening_open: std::sync::atomic::AtomicBool,
    /// The lifetime and propagation delay of keys registered at Selvbetjening.
    pub(crate) key_settings: Mutex<KeySettings>,
    /// The faults tests inject.
    pub(crate) faults: Faults,
    /// Logins: pushed requests, pending logins, codes, sessions.
    pub(crate) login: crate::idp::login::Logins,
}

/// How keys registered at Selvbetjening behave.
#[derive(Clone, Copy, Debug)]
pub(crate) struct KeySettings {
    /// How long a newly registered key is valid.
    pub(crate) lifetime: Duration,
    /// How long until a newly registered key is in effect (the old one until then).
    pub(crate) propagation: Duration,
}

/// How many client assertion `jti`s [`State::assertion_jtis`] keeps.
pub(crate) const MAX_ASSERTION_JTIS: usize = 1024;

impl State {
    pub(crate) fn new(
        issuer: String,
        clients: HashMap<String, RegisteredClient>,
        signing_key: SigningKey,
        access_token_lifetime: Duration,
        cpe: Cpe,
    ) -> Result<Self> {
        let public = signing_key.public_jwk();
        let verifying_key = DecodingKey::from_rsa_components(
            public.n.as_deref().unwrap_or_default(),
            public.e.as_deref().unwrap_or_default(),
        )
        .map_err(|_| Error::key("make the emulator's verification key", None))?;
        Ok(State {
            token_endpoint: format!("{issuer}/connect/token"),
            issuer,
            clients,
            signing_key,
            verifying_key,
            access_token_lifetime,
            token_requests: AtomicU64::new(0),
            tokens_issued: AtomicU64::new(0),
            token_exchanges: AtomicU64::new(0),
            refreshes: AtomicU64::new(0),
            invalid_grants: AtomicU64::new(0),
            refresh_tokens: crate::idp::refresh::RefreshStore::default(),
            token_delay: Mutex::new(Duration::ZERO),
            seen_jtis: Mutex::new(HashMap::new()),
            assertion_jtis: Mutex::new(VecDeque::new()),
            cpe,
            dpop: Dpop::new().ok_or_else(|| Error::key("make the emulator's DPoP nonces", None))?,
            cpapi: Cpapi::default(),
            selvbetjening_open: std::sync::atomic::AtomicBool::new(true),
            key_settings: Mutex::new(KeySettings {
                lifetime: crate::idp::selvbetjening::DEFAULT_KEY_LIFETIME,
                propagation: Duration::ZERO,
            }),
            faults: Faults::default(),
            login: crate::idp::login::Logins::default(),
        })
    }

    /// The JWKS URI announced in the discovery document.
    pub(crate) fn jwks_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration/jwks", self.issuer)
    }

    /// The emulator's public keys as a JWKS.
    pub(crate) fn signing_jwks(&self) -> Value {
        json!({ "keys": [self.signing_key.public_jwk()] })
    }

    pub(crate) fn token_delay(&self) -> Duration {
        *lock(&self.token_delay)
    }

    pub(crate) fn set_token_delay(&self, delay: Duration) {
        *lock(&self.token_delay) = delay;
    }

    /// Records a client assertion's `jti`, to be remembered until `keep_until`, and in
    /// [`assertion_jtis`](Self::assertion_jtis).
    /// Returns `false` when it was seen before (a replay). Forgets `jti`s whose time has
    /// passed.
    pub(crate) fn remember_jti(&self, jti: &str, keep_until: i64, now: i64) -> bool {
        {
            let mut jtis = lock(&self.assertion_jtis);
            if jtis.len() >= MAX_ASSERTION_JTIS {
                jtis.pop_front();
            }
            jtis.push_back(jti.to_owned());
        }
        let mut seen = lock(&self.seen_jtis);
        seen.retain(|_, until| *until >= now);
        if seen.contains_key(jti) {
            return false;
        }
        seen.insert(jti.to_owned(), keep_until);
        true
    }

    /// The client assertion `jti`s that reached the replay check, oldest first.
    pub(crate) fn assertion_jtis(&self) -> Vec<String> {
        lock(&self.assertion_jtis).iter().cloned().collect()
    }

    /// Checks an access token this emulator issued and returns its claims.
    pub(crate) fn verify_access_token(&self, token: &str) -> std::result::Result<Value, String> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|_| "the access token is not a well-formed JWT".to_owned())?;
        if header.typ.as_deref() != Some("at+jwt") {
            return Err("the access token's typ is not at+jwt".to_owned());
        }
        if header.kid.as_deref() != self.signing_key.kid() {
            return Err("the access token's kid is not the emulator's signing key".to_owned());
        }
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = LEEWAY.unsigned_abs();
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &self.verifying_key, &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                match e.kind() {
                    ErrorKind::InvalidSignature => {
                        "the access token's signature does not verify".to_owned()
                    }
                    ErrorKind::InvalidAlgorithm => "the access token's alg is not RS256".to_owned(),
                    ErrorKind::ExpiredSignature => "the access token has expired".to_owned(),
                    ErrorKind::InvalidIssuer => {
                        format!("the access token's iss is not `{}`", self.issuer)
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        format!("the access token has no `{claim}` claim")
                    }
                    ErrorKind::InvalidClaimFormat(claim) => {
                        format!("the access token's `{claim}` is malformed")
                    }
                    _ => "the access token is not a well-formed JWT".to_owned(),
                }
            })
    }
}
