//! The IdP's state: the registered clients, its signing key, counters, the replay
//! cache of client assertions, DPoP nonces, refresh sessions and logins. The APIs read
//! what it publishes: the issuer, [`State::verify_access_token`] and the DPoP checks.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use jsonwebtoken::Validation;
use serde_json::Value;

use crate::idp::clients::RegisteredClient;
use crate::idp::dpop::Dpop;
use crate::idp::keys::SigningKeys;
use crate::server::error::{Error, Result};
use crate::server::{LEEWAY, lock};

/// What the IdP's handlers share.
pub(crate) struct State {
    pub(crate) issuer: String,
    pub(crate) token_endpoint: String,
    pub(crate) clients: HashMap<String, RegisteredClient>,
    /// The keys tokens are signed with: the current one and those still published.
    pub(crate) signing_keys: SigningKeys,
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
    /// DPoP: nonces, the proof replay store, counters.
    pub(crate) dpop: Dpop,
    /// Whether Selvbetjening takes new keys.
    pub(crate) selvbetjening_open: std::sync::atomic::AtomicBool,
    /// The lifetime and propagation delay of keys registered at Selvbetjening.
    pub(crate) key_settings: Mutex<KeySettings>,
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
        access_token_lifetime: Duration,
    ) -> Result<Self> {
        let signing_keys = SigningKeys::generate()
            .ok_or_else(|| Error::key("generate the emulator's signing key", None))?;
        Ok(State {
            token_endpoint: format!("{issuer}/connect/token"),
            issuer,
            clients,
            signing_keys,
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
            dpop: Dpop::new().ok_or_else(|| Error::key("make the emulator's DPoP nonces", None))?,
            selvbetjening_open: std::sync::atomic::AtomicBool::new(true),
            key_settings: Mutex::new(KeySettings {
                lifetime: crate::idp::clients::DEFAULT_KEY_LIFETIME,
                propagation: Duration::ZERO,
            }),
            login: crate::idp::login::Logins::default(),
        })
    }

    /// The JWKS URI announced in the discovery document.
    pub(crate) fn jwks_uri(&self) -> String {
        format!("{}/.well-known/openid-configuration/jwks", self.issuer)
    }

    /// The emulator's public keys as a JWKS: the current one first, then those rotated
    /// out and not yet retired.
    pub(crate) fn signing_jwks(&self) -> Value {
        self.signing_keys.jwks()
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
        let Some(key) = header
            .kid
            .as_deref()
            .and_then(|kid| self.signing_keys.find(kid))
        else {
            return Err(
                "the access token's kid is not the emulator's signing key (nor one it still publishes)"
                    .to_owned(),
            );
        };
        let mut validation = Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.leeway = LEEWAY.unsigned_abs();
        validation.set_issuer(&[&self.issuer]);
        validation.set_required_spec_claims(&["exp", "iss"]);
        validation.validate_aud = false;
        jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
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
