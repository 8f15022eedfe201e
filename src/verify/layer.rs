//! [`VerifyLayer`] and its builder.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body_util::Full;

use super::answer::rfc6750_char;
use super::cache::TokenCache;
use super::dpop::{MemoryReplayStore, Nonces, ReplayStore, normalise_uri};
use super::keys::{FetchSettings, HttpService, IssuerKeys, erase};
use super::{Dpop, Settings, Verify};
use crate::error::{BoxError, Error, Result};

/// The default leeway on `exp`, `nbf` and `iat`: 5 seconds.
pub const DEFAULT_LEEWAY: Duration = Duration::from_secs(5);
/// The default shortest time between two key fetches for unknown `kid`s: 30 seconds.
pub const DEFAULT_REFETCH_COOLDOWN: Duration = Duration::from_secs(30);
/// The default age past which a key set is fetched again at its next use: 15 minutes.
pub const DEFAULT_KEYS_MAX_AGE: Duration = Duration::from_secs(15 * 60);
/// The default age past which a DPoP proof is refused: 60 seconds.
pub const DEFAULT_PROOF_MAX_AGE: Duration = Duration::from_secs(60);

/// A tower layer that verifies HelseID access tokens (and their DPoP proofs) before the
/// inner service sees a request. See the [module docs](super).
///
/// Cheap to clone: clones share the keys, the cache of verified tokens and the replay
/// store.
#[derive(Clone)]
pub struct VerifyLayer {
    pub(crate) settings: Arc<Settings>,
}

impl fmt::Debug for VerifyLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyLayer")
            .field("settings", &self.settings)
            .finish()
    }
}

impl<S> tower_layer::Layer<S> for VerifyLayer {
    type Service = Verify<S>;

    fn layer(&self, inner: S) -> Verify<S> {
        Verify {
            inner,
            settings: self.settings.clone(),
        }
    }
}

impl VerifyLayer {
    /// Starts a layer that accepts tokens of `issuer` (for example
    /// `https://helseid-sts.nhn.no`; more with [`VerifyLayerBuilder::issuer`]).
    pub fn builder(issuer: impl Into<String>) -> VerifyLayerBuilder {
        VerifyLayerBuilder {
            issuers: vec![issuer.into()],
            audiences: Vec::new(),
            scopes: Vec::new(),
            dpop: Dpop::Required,
            public_base_url: None,
            leeway: DEFAULT_LEEWAY,
            allow_jwt_typ: false,
            strict_single_audience: false,
            optional: false,
            http: None,
            timeout: Duration::from_secs(10),
            cooldown: DEFAULT_REFETCH_COOLDOWN,
            discovery_lifetime: Duration::from_secs(24 * 60 * 60),
            keys_max_age: DEFAULT_KEYS_MAX_AGE,
            proof_max_age: DEFAULT_PROOF_MAX_AGE,
            replay: None,
            nonce: false,
            nonce_secret: None,
            cache_capacity: 10_000,
            clock: None,
            preloaded: Vec::new(),
        }
    }

    /// Verifies a token without a request, as the layer does for a Bearer request
    /// (every check of the token, the cache, the scopes; no DPoP proof): for tools and
    /// for tests.
    ///
    /// # Errors
    /// The [`Refusal`](super::Refusal) the layer would answer a Bearer request with.
    pub async fn verify_token(
        &self,
        token: &str,
    ) -> std::result::Result<Arc<super::HelseIdClaims>, super::Refusal> {
        self.settings.verify_alone(token).await
    }

    /// How many JWKS fetches the layer started, over all its issuers.
    pub fn key_fetches(&self) -> u64 {
        self.settings.issuers.iter().map(|i| i.fetches()).sum()
    }

    /// Fetches every issuer's keys now, whatever the refetch cooldown, for a service
    /// told that an issuer rotated or withdrew a key (an admin call, a message, an
    /// emulator's key rotation): a token whose key left its issuer's set is refused
    /// from then on, a cached one included. A fetch that runs is waited for first.
    /// Returns how many keys the layer holds now, over all its issuers.
    ///
    /// # Errors
    /// A [`Refusal`](super::Refusal) with [`Reason::Unavailable`](super::Reason::Unavailable)
    /// when an issuer's keys cannot be fetched or its set holds no usable key (the
    /// reason is logged); that issuer's keys at hand are kept, the others reloaded.
    pub async fn reload_keys(&self) -> std::result::Result<usize, super::Refusal> {
        let mut count = 0;
        let mut failed = false;
        for issuer in &self.settings.issuers {
            match issuer.reload().await {
                Ok(keys) => count += keys,
                Err(()) => failed = true,
            }
        }
        if failed {
            return Err(self.settings.refusal(super::Reason::Unavailable, None));
        }
        Ok(count)
    }

    /// Whether every issuer's key set is loaded (fetched, or given with
    /// [`VerifyLayerBuilder::jwks`]): the layer can verify tokens without fetching first.
    /// For a readiness probe; it never fetches. A key set, once loaded, stays loaded
    /// (a failed or empty refetch keeps it).
    pub fn keys_loaded(&self) -> bool {
        self.settings.issuers.iter().all(|i| i.loaded())
    }

    /// Loads every issuer's key set that is not loaded yet, all issuers at once, and
    /// waits for them (a fetch that runs already is joined): for a service's start or
    /// its readiness probe. Within a few seconds of a failed fetch (the cooldown while
    /// no key set was ever loaded: the shorter of 5 seconds and
    /// [`refetch_cooldown`](VerifyLayerBuilder::refetch_cooldown)) nothing is fetched
    /// again, so a probe that polls cannot flood the issuer. Each fetch is bounded by
    /// the [`timeout`](VerifyLayerBuilder::timeout) of each request.
    ///
    /// # Errors
    /// A [`Refusal`](super::Refusal) with [`Reason::Unavailable`](super::Reason::Unavailable)
    /// (503, as the layer answers requests meanwhile) when an issuer's keys could not be
    /// loaded; the fetch's error is logged at `warn`.
    pub async fn ready(&self) -> std::result::Result<(), super::Refusal> {
        let loads = self.settings.issuers.iter().map(|issuer| issuer.load());
        let loaded = futures_util::future::join_all(loads).await;
        if loaded.into_iter().all(|ok| ok) {
            Ok(())
        } else {
            Err(self.settings.refusal(
                super::Reason::Unavailable,
                Some(self.settings.default_scheme()),
            ))
        }
    }
}

/// Builds a [`VerifyLayer`]. Every setter states its default.
pub struct VerifyLayerBuilder {
    issuers: Vec<String>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    dpop: Dpop,
    public_base_url: Option<String>,
    leeway: Duration,
    allow_jwt_typ: bool,
    strict_single_audience: bool,
    optional: bool,
    http: Option<HttpService>,
    timeout: Duration,
    cooldown: Duration,
    discovery_lifetime: Duration,
    keys_max_age: Duration,
    proof_max_age: Duration,
    replay: Option<Arc<dyn ReplayStore>>,
    nonce: bool,
    nonce_secret: Option<Vec<u8>>,
    cache_capacity: u64,
    clock: Option<super::Clock>,
    preloaded: Vec<(String, serde_json::Value)>,
}

impl fmt::Debug for VerifyLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VerifyLayerBuilder")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("scopes", &self.scopes)
            .field("dpop", &self.dpop)
            .field("public_base_url", &self.public_base_url)
            .finish_non_exhaustive()
    }
}

impl VerifyLayerBuilder {
    /// Accepts tokens of one more issuer (test and production in one layer, say); keys
    /// are kept per issuer. Default: only the builder's.
    pub fn issuer(mut self, issuer: impl Into<String>) -> Self {
        self.issuers.push(issuer.into());
        self
    }

    /// The API's name ("kortnavn" in Selvbetjening, for example `nhn:msh`), which the
    /// token's `aud` must contain. Call again to accept several. Required.
    pub fn audience(mut self, audience: impl Into<String>) -> Self {
        self.audiences.push(audience.into());
        self
    }

    /// A token must have at least one of these scopes (compared exactly); otherwise 403
    /// `insufficient_scope`. Default: any scope, none included.
    pub fn scopes_any_of(mut self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        self.scopes = scopes.into_iter().map(Into::into).collect();
        self
    }

    /// Which schemes are accepted. Default: [`Dpop::Required`], as NHN's profile wants.
    pub fn dpop(mut self, dpop: Dpop) -> Self {
        self.dpop = dpop;
        self
    }

    /// The URL clients call this API at (`https://api.example.no`, or with a path
    /// prefix a proxy strips), from which a proof's `htu` is checked: the request's path
    /// is appended to it. Behind a TLS-terminating proxy the service itself sees
    /// another scheme and host. Required unless DPoP is [disabled](Dpop::Disabled).
    pub fn public_base_url(mut self, url: impl Into<String>) -> Self {
        self.public_base_url = Some(url.into());
        self
    }

    /// The leeway on `exp`, `nbf` and `iat` (and on a proof's `iat` in the future).
    /// Default: 5 seconds.
    pub fn leeway(mut self, leeway: Duration) -> Self {
        self.leeway = leeway;
        self
    }

    /// Whether a token with `typ: JWT` passes (NHN accepts it; RFC 9068 does not). An
    /// ID token never does. Default: `false` (`at+jwt` or `application/at+jwt` only).
    pub fn allow_jwt_typ(mut self, allow: bool) -> Self {
        self.allow_jwt_typ = allow;
        self
    }

    /// Whether the token's `aud` must name this API and nothing else, as NHN's samples
    /// require. Default: `false` (the API among others passes).
    pub fn strict_single_audience(mut self, strict: bool) -> Self {
        self.strict_single_audience = strict;
        self
    }

    /// Whether a request without credentials passes (with no claims in its
    /// extensions), for routes that serve both. Bad credentials are refused all the
    /// same. Default: `false`.
    pub fn optional(mut self, optional: bool) -> Self {
        self.optional = optional;
        self
    }

    /// Fetches discovery documents and keys through `service` instead of the default
    /// HTTPS client. Default: [`https_client`](crate::transport::https_client) (feature
    /// `transport`).
    pub fn http_service<S, B>(mut self, service: S) -> Self
    where
        S: tower::Service<Request<Full<Bytes>>, Response = Response<B>>
            + Clone
            + Send
            + Sync
            + 'static,
        S::Future: Send + 'static,
        S::Error: Into<BoxError>,
        B: http_body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<BoxError>,
    {
        self.http = Some(erase(service));
        self
    }

    /// The timeout of each fetch of a discovery document or key set. Default: 10 s.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// The shortest time between two key fetches for an issuer, however many unknown
    /// `kid`s arrive. Default: 30 seconds.
    pub fn refetch_cooldown(mut self, cooldown: Duration) -> Self {
        self.cooldown = cooldown;
        self
    }

    /// How long a discovery document is kept. Default: 24 hours (NHN's FK2).
    pub fn discovery_lifetime(mut self, lifetime: Duration) -> Self {
        self.discovery_lifetime = lifetime;
        self
    }

    /// How old an issuer's key set may grow before its next use fetches it again in the
    /// background (requests go on with the keys at hand): a key the issuer withdrew is
    /// dropped within this time. Default: 15 minutes.
    pub fn keys_max_age(mut self, age: Duration) -> Self {
        self.keys_max_age = age;
        self
    }

    /// How old a DPoP proof may be. Default: 60 seconds.
    pub fn proof_max_age(mut self, age: Duration) -> Self {
        self.proof_max_age = age;
        self
    }

    /// Where proofs' `jti`s are kept. Default: a [`MemoryReplayStore`] of this layer.
    pub fn replay_store(mut self, store: impl ReplayStore) -> Self {
        self.replay = Some(Arc::new(store));
        self
    }

    /// Whether proofs must carry a server nonce (RFC 9449 section 9): a proof without
    /// a current one is answered 401 `use_dpop_nonce` with a fresh `DPoP-Nonce`. The
    /// nonces are stateless (an HMAC of the five-minute window); the last window's
    /// still passes, and the answer then carries the current one in `DPoP-Nonce` (RFC
    /// 9449 section 8.2). Default: `false`.
    pub fn dpop_nonce(mut self, require: bool) -> Self {
        self.nonce = require;
        self
    }

    /// The key of the nonces' HMAC: replicas behind one name need the same one.
    /// Default: random for each layer.
    pub fn dpop_nonce_secret(mut self, secret: impl Into<Vec<u8>>) -> Self {
        self.nonce_secret = Some(secret.into());
        self
    }

    /// How many verified tokens are kept; 0 keeps none (every token is verified in
    /// full, at every request). Default: 10,000.
    pub fn cache_capacity(mut self, capacity: u64) -> Self {
        self.cache_capacity = capacity;
        self
    }

    /// Starts with the keys of `jwks` (a JWKS document, `{"keys": [...]}`) for `issuer`,
    /// one of the layer's issuers, instead of fetching them at the first token: for an
    /// emulator or a test that has the keys at hand. They are fetched again as usual (an
    /// unknown `kid`, the [maximum age](Self::keys_max_age)). Default: none.
    pub fn jwks(mut self, issuer: impl Into<String>, jwks: serde_json::Value) -> Self {
        self.preloaded.push((issuer.into(), jwks));
        self
    }

    /// The clock that `exp`, `nbf`, `iat` and proofs' `iat` are checked against, for
    /// tests. Default: the system clock.
    pub fn clock(
        mut self,
        now: impl Fn() -> std::time::SystemTime + Send + Sync + 'static,
    ) -> Self {
        self.clock = Some(Arc::new(move || {
            now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs())
        }));
        self
    }

    /// Builds the layer. Nothing is fetched yet: keys come with the first token.
    ///
    /// # Errors
    /// [`Error::Config`] naming the setting: `issuer` for a URL that is not `https` (or
    /// `http` to loopback), `audience` when none is given or one is empty,
    /// `scopes_any_of` for a scope outside RFC 6749's character set,
    /// `public_base_url` when DPoP is accepted and it is missing or not an `http(s)` URL
    /// without query and fragment, `jwks` for keys of another issuer or a document
    /// without a usable key, `timeout` or `dpop_nonce_secret` when zero or
    /// empty, and `tls` when the default HTTPS client cannot be built.
    pub fn build(self) -> Result<VerifyLayer> {
        for issuer in &self.issuers {
            crate::config::check_url("issuer", issuer)?;
        }
        if self.audiences.is_empty() || self.audiences.iter().any(String::is_empty) {
            return Err(Error::config(
                "audience",
                "give the API's name (its audience, for example `nhn:msh`)",
            ));
        }
        if self
            .scopes
            .iter()
            .any(|s| s.is_empty() || !s.chars().all(|c| c != ' ' && rfc6750_char(c)))
        {
            return Err(Error::config(
                "scopes_any_of",
                "a scope is empty or has a character RFC 6749 does not allow",
            ));
        }
        if self.timeout.is_zero() {
            return Err(Error::config("timeout", "must be more than zero"));
        }
        let base_url = match (&self.public_base_url, self.dpop) {
            (None, Dpop::Disabled) => None,
            (None, _) => {
                return Err(Error::config(
                    "public_base_url",
                    "DPoP proofs are checked against the URL clients call: give it",
                ));
            }
            (Some(url), _) => {
                let parsed = url::Url::parse(url)
                    .map_err(|_| Error::config("public_base_url", "not an absolute http(s) URL"))?;
                if parsed.query().is_some() || parsed.fragment().is_some() {
                    return Err(Error::config(
                        "public_base_url",
                        "must not have a query or fragment",
                    ));
                }
                let normalised = normalise_uri(url).ok_or_else(|| {
                    Error::config("public_base_url", "not an absolute http(s) URL")
                })?;
                Some(normalised.trim_end_matches('/').to_owned())
            }
        };
        let http = match self.http {
            Some(http) => http,
            #[cfg(feature = "transport")]
            None => erase(crate::transport::https_client::<Full<Bytes>>()?),
            #[cfg(not(feature = "transport"))]
            None => {
                return Err(Error::config(
                    "http_service",
                    "no HTTP client: give one with `http_service`, or enable the `transport` feature",
                ));
            }
        };
        let fetch = FetchSettings {
            http,
            timeout: self.timeout,
            cooldown: self.cooldown,
            discovery_lifetime: self.discovery_lifetime,
            max_age: self.keys_max_age,
        };
        let nonces = if self.nonce {
            let secret = match self.nonce_secret {
                Some(secret) if secret.is_empty() => {
                    return Err(Error::config("dpop_nonce_secret", "must not be empty"));
                }
                Some(secret) => secret,
                None => {
                    let mut secret = vec![0u8; 32];
                    aws_lc_rs::rand::fill(&mut secret)
                        .map_err(|_| Error::config("dpop_nonce_secret", "no randomness"))?;
                    secret
                }
            };
            Some(Nonces::new(&secret, Duration::from_secs(300)))
        } else {
            None
        };
        super::metrics::register();
        let leeway = self.leeway.as_secs();
        let clock: super::Clock = self
            .clock
            .unwrap_or_else(|| Arc::new(crate::jose::unix_now));
        let mut issuers: Vec<Arc<IssuerKeys>> = Vec::new();
        for issuer in &self.issuers {
            let keys = IssuerKeys::new(issuer, fetch.clone());
            if !issuers.iter().any(|i| i.issuer == keys.issuer) {
                issuers.push(Arc::new(keys));
            }
        }
        for (issuer, jwks) in &self.preloaded {
            let issuer = issuer.trim_end_matches('/');
            let Some(keys) = issuers.iter().find(|i| &*i.issuer == issuer) else {
                return Err(Error::config(
                    "jwks",
                    "keys of an issuer the layer does not accept",
                ));
            };
            keys.preload(jwks)
                .map_err(|why| Error::config("jwks", why))?;
        }
        Ok(VerifyLayer {
            settings: Arc::new(Settings {
                issuers,
                audiences: self.audiences,
                scopes: self.scopes,
                dpop: self.dpop,
                base_url,
                leeway,
                allow_jwt_typ: self.allow_jwt_typ,
                strict_single_audience: self.strict_single_audience,
                optional: self.optional,
                proof_max_age: self.proof_max_age.as_secs(),
                proof_future: leeway.max(5),
                replay: self
                    .replay
                    .unwrap_or_else(|| Arc::new(MemoryReplayStore::default())),
                nonces,
                cache: TokenCache::new(self.cache_capacity, leeway, clock.clone()),
                clock,
            }),
        })
    }
}
