//! The clients registered at the IdP, as HelseID's self-service portal registers them:
//! their tenancy, scopes and audiences, and their keys, which Selvbetjening rotates (a key
//! expires; a new one takes effect after a propagation delay).

use std::fmt;
use std::sync::{Arc, Mutex};

use jsonwebtoken::DecodingKey;

use crate::server::error::b64_decode;
use crate::server::{lock, unix_now};
use helseid::key::{Algorithm, PublicJwk};

/// How a client acts for organisations (HelseID's client tenancy).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Tenancy {
    /// A multi-tenant client: it names the parent organisation (and optionally a child
    /// organisation) in each client assertion, with system `urn:oid:1.0.6523` and value
    /// `NO:ORGNR:<parent>` or `NO:ORGNR:<parent>:<child>`.
    #[default]
    Multi,
    /// A single-tenant client: the parent organisation is fixed by the registration, and
    /// the client may name a child organisation with system
    /// `urn:oid:2.16.578.1.12.4.1.4.101` and value `<child>`.
    Single {
        /// The parent organisation's number (nine digits).
        parent_orgnr: String,
    },
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
    pub(crate) keys: Keys,
    /// The APIs (token audiences) the client is, for token exchange: a subject token is
    /// meant for the client when its `aud` holds one of them.
    pub(crate) audiences: Vec<String>,
    /// Whether the client's token requests must carry a DPoP proof.
    pub(crate) require_dpop: bool,
    /// Scopes left out of the client's tokens and named in `rejected_scope`.
    pub(crate) rejected_scopes: Vec<String>,
    /// What HelseID knows of the client besides: its name, its supplier, its SFM ids.
    pub(crate) profile: ClientProfile,
}

/// The registration's details that tokens carry as claims.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ClientProfile {
    /// `helseid://claims/client/client_name`; the client id when not registered.
    pub(crate) name: Option<String>,
    /// `helseid://claims/client/claims/orgnr_supplier`, when registered.
    pub(crate) supplier_orgnr: Option<String>,
    /// `e-helse:sfm.api/client/claims/sfm-id` in tokens for SFM; derived from the client
    /// id when not registered.
    pub(crate) sfm_id: Option<String>,
    /// `nhn:sfm:journal-id` in a multi-tenant client's tokens for SFM; derived from the
    /// client id when not registered.
    pub(crate) journal_id: Option<String>,
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
            .field("profile", &self.profile)
            .finish_non_exhaustive()
    }
}

/// How long a client's key is valid, unless its registration says otherwise: a year.
pub(crate) const DEFAULT_KEY_LIFETIME: std::time::Duration =
    std::time::Duration::from_secs(365 * 24 * 60 * 60);

/// A client's key, its expiration, and a key registered but not yet in effect.
pub(crate) struct Keys {
    state: Mutex<KeyState>,
}

struct KeyState {
    current: Arc<ClientKey>,
    /// Unix seconds.
    expires_at: i64,
    /// A registered key, in effect from `active_at` (Unix seconds), with its expiration.
    pending: Option<(Arc<ClientKey>, i64, i64)>,
}

impl Keys {
    pub(crate) fn new(key: ClientKey, expires_at: i64) -> Self {
        Keys {
            state: Mutex::new(KeyState {
                current: Arc::new(key),
                expires_at,
                pending: None,
            }),
        }
    }

    /// The key in effect now, and its expiration.
    pub(crate) fn current(&self) -> (Arc<ClientKey>, i64) {
        let mut state = lock(&self.state);
        if let Some((_, active_at, _)) = &state.pending
            && unix_now() >= *active_at
            && let Some((key, _, expires_at)) = state.pending.take()
        {
            state.current = key;
            state.expires_at = expires_at;
        }
        (state.current.clone(), state.expires_at)
    }

    /// Registers `key`, in effect from `active_at`, expiring at `expires_at`.
    pub(crate) fn register(&self, key: ClientKey, active_at: i64, expires_at: i64) {
        let mut state = lock(&self.state);
        if active_at <= unix_now() {
            state.current = Arc::new(key);
            state.expires_at = expires_at;
            state.pending = None;
        } else {
            state.pending = Some((Arc::new(key), active_at, expires_at));
        }
    }
}
