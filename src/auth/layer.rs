use std::fmt;
use std::sync::{Arc, OnceLock};

use http::{HeaderMap, HeaderValue};
use tower_layer::Layer;

use super::{HelseId, Replay};
use crate::assertion::Tenant;
use crate::cache::{CacheKey, Entry, FetchToken, Front, Hit, Live, Sent, Tenants, TokenCache};
use crate::dpop::DpopKey;
use crate::endpoint::{Grant, TokenEndpoint, TokenRequest};
use crate::error::{Error, Result};
use crate::exchange::SubjectToken;

/// What every clone of a layer and its services shares.
///
/// Aligned to 128 bytes (two cache lines, as adjacent-line prefetchers pair them), so
/// that in the `Arc` that holds it the reference counts, which every clone of a service
/// writes, share no cache line with the fields every request reads: a service cloned
/// per request on one core does not make the other core's reads miss.
#[repr(align(128))]
pub(crate) struct Shared {
    source: Arc<dyn FetchToken>,
    pub(crate) cache: TokenCache,
    key: CacheKey,
    /// The entry of the layer's own key (no tenant), mirrored for a lock-free read on
    /// the hot path. The cache stays the store of record.
    front: Front,
    /// The tenants' entries in use, mirrored the same way (made at the first tenant).
    tenants: OnceLock<Tenants>,
    pub(crate) retry_on_invalid_token: bool,
    /// How requests are copied for a retry.
    pub(crate) replay: Replay,
    /// Token exchange: each request's [`SubjectToken`] is exchanged.
    pub(crate) exchanges: bool,
    /// DPoP: tokens are bound to this key, and every request carries a proof.
    pub(crate) dpop: Option<DpopKey>,
    /// Whether requests take Bearer tokens from the fronts (no token exchange, no DPoP).
    pub(crate) fronted: bool,
    /// Whether a request keeps a copy of itself for a retry, by whether its token has
    /// been accepted (index 1) or not (index 0).
    pub(crate) copies: [bool; 2],
}

impl Shared {
    /// The layer's own token, when it is in front, not yet due for a refresh, and no
    /// service has refused it: no lock, no clock read, no allocation, no await, no write
    /// to a cache line another core writes.
    #[inline]
    pub(crate) fn own_header(&self) -> Option<Hit> {
        self.front.get()
    }

    /// Sets `tenant`'s token on a request's `headers`, when it is in the tenants' front
    /// and not yet due for a refresh (see [`own_header`](Self::own_header)).
    #[inline]
    pub(crate) fn attach_tenant(&self, tenant: &Tenant, headers: &mut HeaderMap) -> Option<Sent> {
        self.tenants.get()?.attach(tenant, headers)
    }

    /// Notes that a service accepted the token with id `id` (the layer's own, or
    /// `tenant`'s), so that requests with it keep no copy for a retry.
    pub(crate) fn accept(&self, tenant: Option<&Tenant>, id: u64) {
        match tenant {
            None => self.front.accept(id),
            Some(tenant) => {
                if let Some(tenants) = self.tenants.get() {
                    tenants.accept(tenant, id);
                }
            }
        }
    }

    /// The id of the layer's token in front and what its [`Live`] flag says, cloning
    /// nothing (see [`Front::peek`]).
    #[inline]
    pub(crate) fn front_id(&self) -> Option<(u64, crate::cache::Seen)> {
        self.front.peek()
    }

    /// The layer's token in front with its [`Live`] flag, for a clone's own copy.
    pub(crate) fn front_token(&self) -> Option<(HeaderValue, u64, Arc<Live>)> {
        self.front.current()
    }

    /// Puts `tenant`'s entry in the tenants' front.
    fn put_tenant(&self, tenant: &Tenant, entry: &Arc<Entry>) {
        if let Some(tenants) = self.tenants.get() {
            tenants.set(tenant, entry);
        } else if let Some(tenants) = Tenants::new(self.cache.settings().max_capacity) {
            // Made at most once: a loser's ticker stops with its front.
            self.tenants.get_or_init(|| tenants).set(tenant, entry);
        }
    }

    fn key(&self, tenant: Option<Tenant>, subject: Option<&SubjectToken>) -> CacheKey {
        let key = match tenant {
            None => self.key.clone(),
            Some(tenant) => self.key.with_tenant(Some(tenant)),
        };
        match subject {
            None => key,
            Some(subject) => key.with_subject(Some(subject.clone())),
        }
    }

    /// The token for `tenant` and `subject` (or the layer's own), through the cache.
    pub(crate) async fn entry(
        &self,
        tenant: Option<Tenant>,
        subject: Option<&SubjectToken>,
    ) -> Result<Arc<Entry>> {
        Ok(match (tenant, subject) {
            (None, None) => {
                if self.exchanges {
                    return Err(Error::SubjectToken {
                        reason: "the request carries no SubjectToken in its extensions".into(),
                    });
                }
                let entry = self.cache.entry(&self.source, &self.key).await?;
                self.front.set(&entry);
                entry
            }
            (Some(tenant), None) => {
                let key = self.key(Some(tenant), None);
                let entry = self.cache.entry(&self.source, &key).await?;
                self.put_tenant(&tenant, &entry);
                entry
            }
            _ => {
                let key = self.key(tenant, subject);
                self.cache.entry(&self.source, &key).await?
            }
        })
    }

    /// Forgets the token with id `sent`, if it is still the current one,
    /// because a service answered `401 invalid_token` to it; `false` (nothing
    /// forgotten) when the cache's storm guard holds the key back.
    pub(crate) async fn evict(
        &self,
        tenant: Option<Tenant>,
        subject: Option<&SubjectToken>,
        sent: u64,
    ) -> bool {
        let key = self.key(tenant, subject);
        if !self.cache.may_replace_invalid_token(&key) {
            return false;
        }
        match (tenant, subject) {
            (None, None) => self.front.retire_if(sent),
            (Some(tenant), None) => {
                if let Some(tenants) = self.tenants.get() {
                    tenants.retire_if(&tenant, sent);
                }
            }
            _ => {}
        }
        self.cache.evict(&key, sent).await;
        true
    }
}

/// Applies [`HelseId`] to a service: every request gets a HelseID token.
///
/// Clones share one cache and one token.
#[derive(Clone)]
pub struct HelseIdLayer {
    shared: Arc<Shared>,
}

impl fmt::Debug for HelseIdLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelseIdLayer")
            .field("key", &self.shared.key)
            .field("cache", &self.shared.cache)
            .finish()
    }
}

impl HelseIdLayer {
    /// Client-credentials tokens for the endpoint's configured scopes, in a new cache
    /// with the default settings: the same as `HelseIdLayer::builder(endpoint).build()`.
    pub fn new(endpoint: TokenEndpoint) -> Self {
        Self::builder(endpoint).build()
    }

    /// Starts building a layer that gets its tokens from `source`: a [`TokenEndpoint`],
    /// or any [`FetchToken`] ([`fetch_fn`](crate::cache::fetch_fn) makes one of a
    /// closure). It asks for the source's [`default_scopes`](FetchToken::default_scopes)
    /// (a `TokenEndpoint`'s: the configuration's) unless [`scopes`](HelseIdLayerBuilder::scopes)
    /// says otherwise.
    pub fn builder(source: impl FetchToken) -> HelseIdLayerBuilder {
        let scopes = source.default_scopes();
        HelseIdLayerBuilder {
            source: Arc::new(source),
            request: TokenRequest::client_credentials(scopes),
            cache: None,
            retry_on_invalid_token: true,
            retry_after_acceptance: false,
            replay: Replay::new(),
        }
    }

    /// The token cache, for its counters.
    pub fn cache(&self) -> &TokenCache {
        &self.shared.cache
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl<S> Layer<S> for HelseIdLayer {
    type Service = HelseId<S>;

    fn layer(&self, inner: S) -> HelseId<S> {
        HelseId::from_layer(inner, self.clone())
    }
}

/// Builds a [`HelseIdLayer`].
pub struct HelseIdLayerBuilder {
    source: Arc<dyn FetchToken>,
    request: TokenRequest,
    cache: Option<TokenCache>,
    retry_on_invalid_token: bool,
    retry_after_acceptance: bool,
    replay: Replay,
}

impl fmt::Debug for HelseIdLayerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelseIdLayerBuilder")
            .field("request", &self.request)
            .field("cache", &self.cache)
            .field("retry_on_invalid_token", &self.retry_on_invalid_token)
            .field("retry_after_acceptance", &self.retry_after_acceptance)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl HelseIdLayerBuilder {
    /// The scopes to ask for. Default: the source's
    /// [`default_scopes`](FetchToken::default_scopes): for a [`TokenEndpoint`], the
    /// scopes of its configuration.
    pub fn scopes(self, scopes: impl IntoIterator<Item = impl Into<String>>) -> Self {
        let grant = self.request.grant().clone();
        self.grant(grant, scopes.into_iter().map(Into::into).collect())
    }

    /// Token exchange (RFC 8693) instead of client credentials: each request must carry
    /// a [`SubjectToken`] in its extensions (the token the service received; see
    /// [`SubjectToken::from_headers`]), which is exchanged for a token with this
    /// layer's [`scopes`](Self::scopes). Exchanged tokens are cached per subject token,
    /// never past its expiry. A request without one fails with
    /// [`Error::SubjectToken`].
    pub fn token_exchange(self) -> Self {
        let scopes = self.request.scopes().to_vec();
        self.grant(Grant::TokenExchange, scopes)
    }

    /// The request with `grant` and `scopes`, keeping the resource and DPoP key.
    fn grant(mut self, grant: Grant, scopes: Vec<String>) -> Self {
        let mut request = TokenRequest::with_grant(grant, scopes);
        if let Some(resource) = self.request.resource() {
            request = request.with_resource(resource);
        }
        if let Some(key) = self.request.dpop() {
            request = request.with_dpop(key.clone());
        }
        self.request = request;
        self
    }

    /// DPoP (RFC 9449) with `key`, usually [`DpopKey::generate`]: tokens are asked for
    /// bound to the key (answering HelseID's nonce challenge) and cached per key, and
    /// every request gets `Authorization: DPoP <token>` and a fresh `DPoP` proof for
    /// its method and URL (which must be absolute). An API's `401` with
    /// `WWW-Authenticate: DPoP error="use_dpop_nonce"` and a `DPoP-Nonce` is answered
    /// once with a new proof carrying the nonce, when the body can be replayed.
    /// Default: off (Bearer tokens).
    pub fn dpop(mut self, key: DpopKey) -> Self {
        self.request = self.request.with_dpop(key);
        self
    }

    /// The token request the layer makes, whole (a refresh session's layer sets it).
    pub(crate) fn request(mut self, request: TokenRequest) -> Self {
        self.request = request;
        self
    }

    /// The resource (RFC 8707) to ask for. Default: none.
    pub fn resource(mut self, resource: impl Into<String>) -> Self {
        self.request = self.request.with_resource(resource);
        self
    }

    /// Shares `cache` with other layers. Default: a new cache with default settings.
    pub fn cache(mut self, cache: TokenCache) -> Self {
        self.cache = Some(cache);
        self
    }

    /// Whether a request answered `401` with `invalid_token` is sent again once, with a
    /// new token, when its body can be replayed (see
    /// [`retry_after_acceptance`](Self::retry_after_acceptance) for which requests keep
    /// the copy that needs). Either way the refused token is taken out of use: the next
    /// request gets a new one (at most once per key in the cache's
    /// [`invalid_token_interval`](crate::cache::CacheSettings::invalid_token_interval)).
    /// Default: true.
    pub fn retry_on_invalid_token(mut self, retry: bool) -> Self {
        self.retry_on_invalid_token = retry;
        self
    }

    /// Whether requests keep a copy of themselves for that retry also once the service
    /// has accepted their token. Default: false.
    ///
    /// By default a token's requests keep a copy until the first success (a `2xx`
    /// answer) of a request that carried it. A token the service has accepted has
    /// passed its checks of signature, issuer, audience, lifetime and scope; HelseID's
    /// access tokens are JWTs (`typ: at+jwt`) that a service checks by itself, so they
    /// are not withdrawn before they expire. The requests sent with it afterwards keep
    /// no copy and no reference to the layer, which makes them cost about what a static
    /// header costs. Should such a request be answered `401 invalid_token` all the same,
    /// that answer is returned as it is, and the token is taken out of use.
    ///
    /// Set it for a service that may withdraw a token it has accepted (one that keeps a
    /// list of withdrawn tokens, say): every replayable request then keeps a copy, and
    /// any of them refused is sent again.
    pub fn retry_after_acceptance(mut self, retry: bool) -> Self {
        self.retry_after_acceptance = retry;
        self
    }

    /// How request bodies are copied for a retry (after `401 invalid_token`, or a DPoP
    /// nonce challenge); [`Replay::never`] switches both retries off. Default:
    /// [`Replay::new`], the cheap body types.
    pub fn replay(mut self, replay: Replay) -> Self {
        self.replay = replay;
        self
    }

    /// Copies request bodies of type `B` with `copy` for a retry (`None`: this one
    /// cannot be), in addition to the policy's other body types. The same as
    /// `.replay(policy.body(copy))`.
    pub fn replay_body<B, F>(mut self, copy: F) -> Self
    where
        B: Send + 'static,
        F: Fn(&B) -> Option<B> + Send + Sync + 'static,
    {
        self.replay = self.replay.body(copy);
        self
    }

    /// Builds the layer.
    pub fn build(self) -> HelseIdLayer {
        let key = CacheKey::for_source(&*self.source, &self.request);
        let exchanges = self.request.grant() == &Grant::TokenExchange;
        HelseIdLayer {
            shared: Arc::new(Shared {
                source: self.source,
                cache: self.cache.unwrap_or_default(),
                key,
                front: Front::default(),
                tenants: OnceLock::new(),
                retry_on_invalid_token: self.retry_on_invalid_token,
                replay: self.replay,
                exchanges,
                fronted: !exchanges && self.request.dpop().is_none(),
                copies: [
                    self.retry_on_invalid_token,
                    self.retry_on_invalid_token && self.retry_after_acceptance,
                ],
                dpop: self.request.dpop().cloned(),
            }),
        }
    }
}
