//! The token cache: one token per (client, grant, scopes, resource, tenant), fetched
//! once, kept until shortly before it expires, and renewed in the background.
//!
//! - **Single flight**: concurrent misses on one key make one token request; every
//!   waiter gets its result or its error.
//! - **Refresh ahead**: inside the refresh window before expiry, one background fetch
//!   runs while callers keep the still-valid token. A failed refresh leaves the current
//!   token in use until it really expires.
//! - **Timeouts**: every fetch has one, and runs as its own task: a caller that gives up
//!   or is dropped neither stalls nor fails the others.
//! - **Back-off**: errors are not cached, but after two consecutive failures for a key
//!   the cache waits (exponentially longer, with jitter) before asking HelseID again,
//!   and callers get [`Error::BackingOff`] at once meanwhile.
//!
//! Expiry is judged on tokio's clock, so tests drive it with paused time.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use helseid::cache::TokenCache;
//! use helseid::endpoint::TokenRequest;
//! use helseid::token::{AccessToken, TokenType};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), helseid::Error> {
//! let cache = TokenCache::new();
//! // Any `FetchToken`: a `TokenEndpoint`, or a closure as here.
//! let source = helseid::cache::fetch_fn("my-client", |_request: TokenRequest| async {
//!     AccessToken::new("token", TokenType::Bearer, Duration::from_secs(3600))
//! });
//! let request = TokenRequest::client_credentials(["nhn:cp-api/access"]);
//! let first = cache.get(&source, &request).await?;
//! let second = cache.get(&source, &request).await?;
//! assert_eq!(cache.stats().fetches, 1);
//! assert_eq!(first.secret(), second.secret());
//! # Ok(()) }
//! ```

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use tokio::time::Instant;

use crate::assertion::Tenant;
use crate::dpop::DpopKey;
use crate::endpoint::{Grant, TokenEndpoint, TokenRequest};
use crate::error::{Error, Result};
use crate::exchange::SubjectToken;
use crate::token::AccessToken;

/// The future of one token fetch ([`FetchToken::fetch`]): a boxed future in a named
/// type.
#[must_use = "futures do nothing unless polled"]
pub struct FetchFuture {
    inner: Pin<Box<dyn Future<Output = Result<AccessToken>> + Send + 'static>>,
}

impl FetchFuture {
    /// Boxes `future`.
    pub fn new(future: impl Future<Output = Result<AccessToken>> + Send + 'static) -> Self {
        FetchFuture {
            inner: Box::pin(future),
        }
    }
}

impl Future for FetchFuture {
    type Output = Result<AccessToken>;

    fn poll(
        mut self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        self.inner.as_mut().poll(cx)
    }
}

impl fmt::Debug for FetchFuture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchFuture").finish_non_exhaustive()
    }
}

/// Something that gets tokens: a [`TokenEndpoint`], or a closure made one with
/// [`fetch_fn`] (tests, custom sources).
pub trait FetchToken: Send + Sync + 'static {
    /// Fetches a new token for `request`.
    fn fetch(&self, request: TokenRequest) -> FetchFuture;

    /// The client id the tokens are for; part of the cache key, so that two sources
    /// for different clients never share a token in one cache.
    fn client_id(&self) -> &str;

    /// The scopes a [`HelseIdLayer`](crate::HelseIdLayer) asks for when its builder is
    /// given none. Default: none (HelseID then grants the client's scopes); a
    /// [`TokenEndpoint`]'s are its configuration's.
    fn default_scopes(&self) -> Vec<String> {
        Vec::new()
    }

    /// Tells apart sources of one client whose tokens are not interchangeable, such as
    /// two users' refresh sessions; part of the cache key. Default: 0.
    fn partition(&self) -> u64 {
        0
    }
}

impl FetchToken for TokenEndpoint {
    fn fetch(&self, request: TokenRequest) -> FetchFuture {
        let endpoint = self.clone();
        FetchFuture::new(async move { endpoint.request(&request).await })
    }

    fn client_id(&self) -> &str {
        self.config().client_id()
    }

    fn default_scopes(&self) -> Vec<String> {
        self.config().scopes().to_vec()
    }
}

/// A [`FetchToken`] made of a closure `Fn(TokenRequest) -> impl Future<Output =
/// Result<AccessToken>>`, for the client `client_id`: see [`fetch_fn`].
#[derive(Clone)]
pub struct FetchFn<F> {
    client_id: Arc<str>,
    fetch: F,
}

impl<F> fmt::Debug for FetchFn<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FetchFn")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// Makes a closure a [`FetchToken`] for the client `client_id` (which keys its tokens
/// in a cache: two sources with one client id share tokens).
///
/// # Example
/// ```
/// use std::time::Duration;
/// use helseid::cache::fetch_fn;
/// use helseid::endpoint::TokenRequest;
/// use helseid::token::{AccessToken, TokenType};
///
/// let source = fetch_fn("my-client", |_request: TokenRequest| async {
///     AccessToken::new("token", TokenType::Bearer, Duration::from_secs(3600))
/// });
/// # drop(source);
/// ```
pub fn fetch_fn<F, Fut>(client_id: impl Into<Arc<str>>, fetch: F) -> FetchFn<F>
where
    F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken>> + Send + 'static,
{
    FetchFn {
        client_id: client_id.into(),
        fetch,
    }
}

impl<F, Fut> FetchToken for FetchFn<F>
where
    F: Fn(TokenRequest) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<AccessToken>> + Send + 'static,
{
    fn fetch(&self, request: TokenRequest) -> FetchFuture {
        FetchFuture::new((self.fetch)(request))
    }

    fn client_id(&self) -> &str {
        &self.client_id
    }
}

/// Everything a token depends on. Two requests share a token exactly when their keys
/// are equal.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct CacheKey {
    client_id: Arc<str>,
    grant: Grant,
    /// Sorted and deduplicated: the order of scopes does not change the token.
    scopes: Arc<[String]>,
    resource: Option<Arc<str>>,
    tenant: Option<Tenant>,
    /// A token exchange's subject token, compared by its SHA-256 fingerprint.
    subject: Option<SubjectToken>,
    /// The DPoP key a token is bound to, compared by its thumbprint.
    dpop: Option<DpopKey>,
    partition: u64,
}

impl CacheKey {
    /// The key of `request` for `client_id`. A refresh request's refresh token is not
    /// part of it: the token rotates, the session stays.
    pub(crate) fn new(client_id: &str, request: &TokenRequest) -> Self {
        let mut scopes = request.scopes().to_vec();
        scopes.sort_unstable();
        scopes.dedup();
        CacheKey {
            client_id: client_id.into(),
            grant: request.grant().clone(),
            scopes: scopes.into(),
            resource: request.resource().map(Into::into),
            tenant: request.tenant().copied(),
            subject: request.subject().cloned(),
            dpop: request.dpop().cloned(),
            partition: 0,
        }
    }

    /// The key of `request` for `source`'s client and partition.
    pub(crate) fn for_source(source: &dyn FetchToken, request: &TokenRequest) -> Self {
        CacheKey {
            partition: source.partition(),
            ..Self::new(source.client_id(), request)
        }
    }

    /// The token request this key stands for (without a refresh token: the source
    /// holds that).
    pub fn request(&self) -> TokenRequest {
        let mut request = TokenRequest::with_grant(self.grant.clone(), self.scopes.iter().cloned());
        if let Some(resource) = &self.resource {
            request = request.with_resource(&**resource);
        }
        if let Some(tenant) = self.tenant {
            request = request.with_tenant(tenant);
        }
        if let Some(subject) = &self.subject {
            request = request.with_subject(subject.clone());
        }
        if let Some(key) = &self.dpop {
            request = request.with_dpop(key.clone());
        }
        request
    }

    /// This key with another tenant.
    pub fn with_tenant(&self, tenant: Option<Tenant>) -> Self {
        CacheKey {
            tenant,
            ..self.clone()
        }
    }

    /// This key with another subject token (token exchange).
    pub fn with_subject(&self, subject: Option<SubjectToken>) -> Self {
        CacheKey {
            subject,
            ..self.clone()
        }
    }
}

/// Cache settings. The defaults suit HelseID's one-hour tokens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct CacheSettings {
    /// Tokens are used until this long before they expire (clock skew, time in flight).
    /// Default: 10 s; at most a quarter of the token's lifetime.
    pub expiry_margin: Duration,
    /// A background refresh starts this long before the margin. Default: 60 s; at most
    /// a quarter of the token's lifetime.
    pub refresh_window: Duration,
    /// The longest one fetch may take. Default: 30 s.
    pub fetch_timeout: Duration,
    /// The first back-off delay, doubled after every further failure. Default: 1 s.
    pub backoff_base: Duration,
    /// The longest back-off delay. Default: 60 s.
    pub backoff_max: Duration,
    /// How many tokens the cache holds at most. Default: 10,000.
    pub max_capacity: u64,
}

impl Default for CacheSettings {
    fn default() -> Self {
        CacheSettings {
            expiry_margin: Duration::from_secs(10),
            refresh_window: Duration::from_secs(60),
            fetch_timeout: Duration::from_secs(30),
            backoff_base: Duration::from_secs(1),
            backoff_max: Duration::from_secs(60),
            max_capacity: 10_000,
        }
    }
}

/// Counters of a [`TokenCache`], read with [`TokenCache::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStats {
    /// Lookups answered with a cached token.
    pub hits: u64,
    /// Lookups that found no usable token.
    pub misses: u64,
    /// Token requests made (foreground and background).
    pub fetches: u64,
    /// Token requests that failed.
    pub failures: u64,
    /// Background refreshes started.
    pub refreshes: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fetches: AtomicU64,
    failures: AtomicU64,
    refreshes: AtomicU64,
}

/// A cached token with its schedule.
pub(crate) struct Entry {
    pub(crate) token: Arc<AccessToken>,
    /// Used until then.
    pub(crate) usable_until: Instant,
    /// A background refresh may start from then.
    pub(crate) refresh_at: Instant,
    refreshing: AtomicBool,
}

impl Entry {
    /// An entry for `token`; `cap` ends it earlier (a token exchange's subject token
    /// expiry: an exchanged token is never used past it, nor refreshed ahead of it).
    pub(crate) fn new(token: AccessToken, settings: &CacheSettings, cap: Option<Instant>) -> Self {
        let now = Instant::now();
        let lifetime = token.expires_in();
        let mut usable_until = token.expires_at() - settings.expiry_margin.min(lifetime / 4);
        let mut refresh_at = usable_until - settings.refresh_window.min(lifetime / 4);
        if let Some(cap) = cap
            && cap < usable_until
        {
            usable_until = cap;
            refresh_at = cap;
        }
        Entry {
            token: Arc::new(token),
            usable_until: usable_until.max(now),
            refresh_at: refresh_at.max(now),
            refreshing: AtomicBool::new(false),
        }
    }
}

/// Consecutive failures of one key.
#[derive(Clone)]
struct Failure {
    count: u32,
    retry_at: Instant,
    last: Error,
}

/// The most keys whose failures are remembered; past it, the oldest are forgotten.
const MAX_FAILING_KEYS: usize = 4096;

/// A fetch in flight, shared by every caller that waits for it.
type InFlight = Shared<BoxFuture<'static, Result<Arc<Entry>>>>;

struct Inner {
    entries: moka::future::Cache<CacheKey, Arc<Entry>>,
    in_flight: Mutex<HashMap<CacheKey, InFlight>>,
    failures: Mutex<HashMap<CacheKey, Failure>>,
    counters: Counters,
    settings: CacheSettings,
}

/// A shared cache of HelseID tokens. Cheap to clone: clones share the entries.
#[derive(Clone)]
pub struct TokenCache {
    inner: Arc<Inner>,
}

impl fmt::Debug for TokenCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.inner.entries.entry_count())
            .field("stats", &self.stats())
            .field("settings", &self.inner.settings)
            .finish()
    }
}

impl Default for TokenCache {
    fn default() -> Self {
        Self::new()
    }
}

struct TokenExpiry;

impl moka::Expiry<CacheKey, Arc<Entry>> for TokenExpiry {
    fn expire_after_create(
        &self,
        _key: &CacheKey,
        value: &Arc<Entry>,
        _created_at: std::time::Instant,
    ) -> Option<Duration> {
        // Memory is freed when the token is no longer usable. Usability itself is judged
        // on tokio's clock in `TokenCache::get`.
        Some(value.usable_until.saturating_duration_since(Instant::now()))
    }
}

fn jitter(delay: Duration) -> Duration {
    // Full jitter between half and all of the delay.
    let mut byte = [0u8; 2];
    let _ = aws_lc_rs::rand::fill(&mut byte);
    let fraction = 0.5 + f64::from(u16::from_le_bytes(byte)) / f64::from(u16::MAX) / 2.0;
    delay.mul_f64(fraction)
}

impl TokenCache {
    /// A cache with the default settings.
    pub fn new() -> Self {
        Self::with_settings(CacheSettings::default())
    }

    /// A cache with `settings`.
    pub fn with_settings(settings: CacheSettings) -> Self {
        let entries = moka::future::Cache::builder()
            .max_capacity(settings.max_capacity)
            .expire_after(TokenExpiry)
            .build();
        TokenCache {
            inner: Arc::new(Inner {
                entries,
                in_flight: Mutex::new(HashMap::new()),
                failures: Mutex::new(HashMap::new()),
                counters: Counters::default(),
                settings,
            }),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn count_hit(&self) {
        self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
    }

    /// A usable token for `request` from `source`: cached, or fetched now.
    ///
    /// # Errors
    /// The fetch's error (shared by every caller that waited for it), an
    /// [`Error::Timeout`] when the fetch took longer than the fetch timeout, or
    /// [`Error::BackingOff`] after repeated failures.
    pub async fn get(
        &self,
        source: &(impl FetchToken + Clone),
        request: &TokenRequest,
    ) -> Result<Arc<AccessToken>> {
        let key = CacheKey::for_source(source, request);
        let source: Arc<dyn FetchToken> = Arc::new(source.clone());
        Ok(self.entry(&source, &key).await?.token.clone())
    }

    /// Removes the token of `request`, so the next lookup fetches a new one.
    pub async fn invalidate(&self, source: &impl FetchToken, request: &TokenRequest) {
        self.inner
            .entries
            .invalidate(&CacheKey::for_source(source, request))
            .await;
    }

    /// The usable entry for `key`, fetching it on a miss; starts a background refresh
    /// inside the refresh window.
    pub(crate) async fn entry(
        &self,
        source: &Arc<dyn FetchToken>,
        key: &CacheKey,
    ) -> Result<Arc<Entry>> {
        let now = Instant::now();
        if let Some(entry) = self.inner.entries.get(key).await {
            if now < entry.usable_until {
                self.count_hit();
                if now >= entry.refresh_at {
                    self.refresh_in_background(source, key, &entry);
                }
                return Ok(entry);
            }
            // Expired on tokio's clock: drop it, unless a refresh has replaced it.
            self.inner
                .entries
                .entry_by_ref(key)
                .and_compute_with(|current| {
                    let op = match current {
                        Some(current) if Arc::ptr_eq(current.value(), &entry) => {
                            moka::ops::compute::Op::Remove
                        }
                        _ => moka::ops::compute::Op::Nop,
                    };
                    std::future::ready(op)
                })
                .await;
        }
        self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);
        self.check_backoff(key, now)?;
        self.join_fetch(source, key, true).await
    }

    /// Puts a token that is already in hand (a session's current access token) in
    /// place for `key`.
    pub(crate) async fn seed(&self, key: &CacheKey, token: AccessToken) {
        let entry = Arc::new(Entry::new(token, &self.inner.settings, None));
        if Instant::now() < entry.usable_until {
            self.inner.entries.insert(key.clone(), entry).await;
        }
    }

    /// Removes `key`'s entry if it still holds the token sent as `sent` (a 401 said
    /// it is no good).
    pub(crate) async fn evict(&self, key: &CacheKey, sent: &http::HeaderValue) {
        self.inner
            .entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let op = match current {
                    Some(current) if current.value().token.authorization() == sent => {
                        moka::ops::compute::Op::Remove
                    }
                    _ => moka::ops::compute::Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
    }

    fn check_backoff(&self, key: &CacheKey, now: Instant) -> Result<()> {
        let failures = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        match failures.get(key) {
            Some(f) if f.retry_at > now => Err(Error::BackingOff {
                retry_in: f.retry_at - now,
                failures: f.count,
                last: Box::new(f.last.clone()),
            }),
            _ => Ok(()),
        }
    }

    /// The fetch in flight for `key`, or a new one (`on_miss`: or the token a fetch
    /// stored a moment ago). A fetch runs as its own task, under
    /// the fetch timeout, stores its token, and goes on when the callers waiting for it
    /// are dropped.
    fn join_fetch(&self, source: &Arc<dyn FetchToken>, key: &CacheKey, on_miss: bool) -> InFlight {
        let mut in_flight = self
            .inner
            .in_flight
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if let Some(fetch) = in_flight.get(key) {
            return fetch.clone();
        }
        // A fetch stores its token before it leaves `in_flight`: a caller that missed
        // the token just before it was stored finds it here, instead of fetching again.
        if on_miss && self.inner.entries.contains_key(key) {
            let cache = self.clone();
            let (source, key) = (source.clone(), key.clone());
            return async move {
                match cache.inner.entries.get(&key).await {
                    Some(entry) if Instant::now() < entry.usable_until => Ok(entry),
                    _ => cache.join_fetch(&source, &key, false).await,
                }
            }
            .boxed()
            .shared();
        }
        let cache = self.clone();
        let source = source.clone();
        let task_key = key.clone();
        let task = tokio::spawn(async move {
            let result = cache.fetch(&*source, &task_key).await;
            if let Ok(entry) = &result {
                cache
                    .inner
                    .entries
                    .insert(task_key.clone(), entry.clone())
                    .await;
            }
            cache
                .inner
                .in_flight
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .remove(&task_key);
            result
        });
        let fetch = async move {
            task.await.unwrap_or_else(|e| {
                Err(Error::FetchTask {
                    source: Arc::new(e),
                })
            })
        }
        .boxed()
        .shared();
        in_flight.insert(key.clone(), fetch.clone());
        fetch
    }

    #[tracing::instrument(
        name = "helseid.fetch",
        skip_all,
        fields(client_id = %key.client_id, grant = key.grant.grant_type(), scopes = ?key.scopes, tenant = ?key.tenant)
    )]
    async fn fetch(&self, source: &dyn FetchToken, key: &CacheKey) -> Result<Arc<Entry>> {
        let counters = &self.inner.counters;
        counters.fetches.fetch_add(1, Ordering::Relaxed);
        let timeout = self.inner.settings.fetch_timeout;
        let result = match tokio::time::timeout(timeout, source.fetch(key.request())).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                endpoint: "token fetch",
                after: timeout,
            }),
        };
        match result {
            Ok(token) => {
                self.inner
                    .failures
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(key);
                tracing::debug!(expires_in = ?token.expires_in(), "token fetched");
                let cap = key.subject.as_ref().and_then(SubjectToken::expires_at);
                Ok(Arc::new(Entry::new(token, &self.inner.settings, cap)))
            }
            Err(error) => {
                counters.failures.fetch_add(1, Ordering::Relaxed);
                self.record_failure(key, &error);
                Err(error)
            }
        }
    }

    fn record_failure(&self, key: &CacheKey, error: &Error) {
        let settings = &self.inner.settings;
        let mut failures = self
            .inner
            .failures
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if failures.len() >= MAX_FAILING_KEYS
            && !failures.contains_key(key)
            && let Some(oldest) = failures
                .iter()
                .min_by_key(|(_, f)| f.retry_at)
                .map(|(k, _)| k.clone())
        {
            failures.remove(&oldest);
        }
        let count = failures.get(key).map_or(0, |f| f.count) + 1;
        // The first failure may be retried at once; from the second on, back off.
        let delay = if count < 2 {
            Duration::ZERO
        } else {
            let doubled = settings
                .backoff_base
                .saturating_mul(1 << (count - 2).min(20));
            jitter(doubled.min(settings.backoff_max))
        };
        if delay.is_zero() {
            tracing::warn!(error = %error, failures = count, "token fetch failed");
        } else {
            tracing::warn!(error = %error, failures = count, retry_in = ?delay, "token fetch failed; backing off");
        }
        failures.insert(
            key.clone(),
            Failure {
                count,
                retry_at: Instant::now() + delay,
                last: error.clone(),
            },
        );
    }

    /// Starts one background refresh of `entry`, unless one runs already or the key is
    /// backing off. Needs a tokio runtime; without one, nothing happens.
    fn refresh_in_background(
        &self,
        source: &Arc<dyn FetchToken>,
        key: &CacheKey,
        entry: &Arc<Entry>,
    ) {
        if entry.refreshing.swap(true, Ordering::AcqRel) {
            return;
        }
        if self.check_backoff(key, Instant::now()).is_err()
            || tokio::runtime::Handle::try_current().is_err()
        {
            entry.refreshing.store(false, Ordering::Release);
            return;
        }
        self.inner
            .counters
            .refreshes
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(client_id = %key.client_id, "refreshing a token ahead of expiry");
        let fetch = self.join_fetch(source, key, false);
        let entry = entry.clone();
        tokio::spawn(async move {
            // On failure the current token stays in use until it expires; the next
            // request in the window tries again, after the back-off.
            if fetch.await.is_err() {
                entry.refreshing.store(false, Ordering::Release);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::TokenType;
    use std::sync::atomic::AtomicUsize;

    /// A source that counts its fetches, answers after `delay`, and fails while `fail`
    /// is set.
    #[derive(Clone, Default)]
    struct Counting {
        calls: Arc<AtomicUsize>,
        delay: Duration,
        fail: Arc<AtomicBool>,
        lifetime: Option<Duration>,
    }

    impl FetchToken for Counting {
        fn fetch(&self, _request: TokenRequest) -> FetchFuture {
            let n = self.calls.fetch_add(1, Ordering::SeqCst) + 1;
            let delay = self.delay;
            let fail = self.fail.load(Ordering::SeqCst);
            let lifetime = self.lifetime.unwrap_or(Duration::from_secs(3600));
            FetchFuture::new(async move {
                tokio::time::sleep(delay).await;
                if fail {
                    return Err(Error::OAuth {
                        status: http::StatusCode::BAD_REQUEST,
                        error: crate::OAuthError::new("invalid_client", "no"),
                    });
                }
                AccessToken::new(format!("token-{n}"), TokenType::Bearer, lifetime)
            })
        }

        fn client_id(&self) -> &str {
            "client"
        }
    }

    fn request() -> TokenRequest {
        TokenRequest::client_credentials(["b", "a"])
    }

    #[tokio::test(start_paused = true)]
    async fn concurrent_misses_make_one_fetch() {
        let cache = TokenCache::new();
        let source = Counting {
            delay: Duration::from_millis(50),
            ..Counting::default()
        };
        let tasks: Vec<_> = (0..100)
            .map(|_| {
                let cache = cache.clone();
                let source = source.clone();
                tokio::spawn(async move { cache.get(&source, &request()).await })
            })
            .collect();
        for task in tasks {
            assert_eq!(
                task.await.expect("join").expect("token").secret(),
                "token-1"
            );
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        let stats = cache.stats();
        assert_eq!(stats.fetches, 1);
        assert_eq!(stats.hits + stats.misses, 100);
    }

    #[tokio::test(start_paused = true)]
    async fn the_key_is_what_the_token_depends_on() {
        let cache = TokenCache::new();
        let source = Counting::default();
        let a = cache
            .get(&source, &TokenRequest::client_credentials(["a", "b"]))
            .await
            .expect("a");
        let b = cache
            .get(&source, &TokenRequest::client_credentials(["b", "a", "a"]))
            .await
            .expect("b");
        assert_eq!(
            a.secret(),
            b.secret(),
            "scope order and repeats do not matter"
        );
        let tenant: Tenant = "111111111:222222222".parse().expect("tenant");
        let c = cache
            .get(
                &source,
                &TokenRequest::client_credentials(["a", "b"]).with_tenant(tenant),
            )
            .await
            .expect("c");
        assert_ne!(a.secret(), c.secret(), "another tenant, another token");
        let d = cache
            .get(
                &source,
                &TokenRequest::client_credentials(["a", "b"]).with_resource("r"),
            )
            .await
            .expect("d");
        assert_ne!(a.secret(), d.secret(), "another resource, another token");
        let key = DpopKey::generate().expect("dpop key");
        let bound = TokenRequest::client_credentials(["a", "b"]).with_dpop(key.clone());
        let e = cache.get(&source, &bound).await.expect("e");
        assert_ne!(
            a.secret(),
            e.secret(),
            "a DPoP-bound token is not a Bearer token"
        );
        let again = TokenRequest::client_credentials(["a", "b"]).with_dpop(key);
        let f = cache.get(&source, &again).await.expect("f");
        assert_eq!(e.secret(), f.secret(), "the same DPoP key, the same token");
        let other = TokenRequest::client_credentials(["a", "b"])
            .with_dpop(DpopKey::generate().expect("another key"));
        let g = cache.get(&source, &other).await.expect("g");
        assert_ne!(e.secret(), g.secret(), "another DPoP key, another token");
        assert_eq!(source.calls.load(Ordering::SeqCst), 5);
    }

    #[tokio::test(start_paused = true)]
    async fn expired_tokens_are_fetched_again() {
        let cache = TokenCache::new();
        let source = Counting::default();
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
        // 3600 s token, 10 s margin: usable until 3590 s.
        tokio::time::advance(Duration::from_secs(3589)).await;
        let still = cache.get(&source, &request()).await.expect("t");
        assert_eq!(still.secret(), "token-1");
        tokio::time::advance(Duration::from_secs(2)).await;
        // A refresh may have started in the window; either way the expired one is gone.
        let fresh = cache.get(&source, &request()).await.expect("t");
        assert_ne!(fresh.secret(), "token-1");
    }

    #[tokio::test(start_paused = true)]
    async fn refresh_ahead_keeps_serving_while_one_refresh_runs() {
        let cache = TokenCache::new();
        let source = Counting {
            delay: Duration::from_secs(5),
            ..Counting::default()
        };
        cache.get(&source, &request()).await.expect("first");
        // Into the refresh window: 3600 - 10 - 60 = 3530 s.
        tokio::time::advance(Duration::from_secs(3531)).await;
        let started = Instant::now();
        for _ in 0..10 {
            let token = cache.get(&source, &request()).await.expect("served");
            assert_eq!(
                token.secret(),
                "token-1",
                "the current token is served during the refresh"
            );
        }
        assert_eq!(
            Instant::now(),
            started,
            "no caller waited on the slow token endpoint"
        );
        assert_eq!(
            cache.stats().refreshes,
            1,
            "one refresh, however many callers"
        );
        // Let the background refresh finish.
        tokio::time::sleep(Duration::from_secs(6)).await;
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-2"
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_refresh_keeps_the_current_token_until_expiry() {
        let cache = TokenCache::new();
        let source = Counting::default();
        cache.get(&source, &request()).await.expect("first");
        source.fail.store(true, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(3531)).await;
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
        tokio::time::sleep(Duration::from_millis(1)).await; // the refresh runs and fails
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
        assert!(cache.stats().failures >= 1);
        // Past the usable time, the failure reaches the caller.
        tokio::time::advance(Duration::from_secs(60)).await;
        let err = cache
            .get(&source, &request())
            .await
            .expect_err("expired, endpoint failing");
        assert_eq!(
            err.oauth_error().map(|e| e.error.as_str()),
            Some("invalid_client")
        );
    }

    #[tokio::test(start_paused = true)]
    async fn errors_are_shared_not_cached_and_back_off_with_jitter() {
        let cache = TokenCache::new();
        let source = Counting::default();
        source.fail.store(true, Ordering::SeqCst);
        // One failure: the next call tries again at once.
        assert!(cache.get(&source, &request()).await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
        // The second failure starts the back-off.
        assert!(cache.get(&source, &request()).await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 2);
        let err = cache
            .get(&source, &request())
            .await
            .expect_err("backing off");
        match &err {
            Error::BackingOff {
                retry_in, failures, ..
            } => {
                assert_eq!(*failures, 2);
                assert!(
                    *retry_in >= Duration::from_millis(500) && *retry_in <= Duration::from_secs(1),
                    "{retry_in:?}"
                );
            }
            other => panic!("expected back-off, got {other:?}"),
        }
        assert_eq!(
            err.oauth_error().map(|e| e.error.as_str()),
            Some("invalid_client")
        );
        assert_eq!(
            source.calls.load(Ordering::SeqCst),
            2,
            "no request while backing off"
        );
        // After the delay, one more try, which fails: the delay doubles.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(cache.get(&source, &request()).await.is_err());
        assert_eq!(source.calls.load(Ordering::SeqCst), 3);
        match cache.get(&source, &request()).await {
            Err(Error::BackingOff {
                retry_in,
                failures: 3,
                ..
            }) => {
                assert!(
                    retry_in >= Duration::from_secs(1) && retry_in <= Duration::from_secs(2),
                    "{retry_in:?}"
                );
            }
            other => panic!("expected a longer back-off, got {other:?}"),
        }
        // Recovery clears the back-off.
        source.fail.store(false, Ordering::SeqCst);
        tokio::time::advance(Duration::from_secs(2)).await;
        assert!(cache.get(&source, &request()).await.is_ok());
        assert_eq!(cache.stats().failures, 3);
    }

    #[tokio::test(start_paused = true)]
    async fn a_stalled_fetch_times_out_for_everyone() {
        let cache = TokenCache::with_settings(CacheSettings {
            fetch_timeout: Duration::from_secs(2),
            ..CacheSettings::default()
        });
        let source = Counting {
            delay: Duration::from_secs(3600),
            ..Counting::default()
        };
        let request = request();
        let (a, b) = tokio::join!(cache.get(&source, &request), cache.get(&source, &request));
        for result in [a, b] {
            assert!(
                matches!(result, Err(Error::Timeout { after, .. }) if after == Duration::from_secs(2))
            );
        }
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_dropped_first_caller_neither_stalls_nor_fails_the_others() {
        let cache = TokenCache::new();
        let source = Counting {
            delay: Duration::from_secs(1),
            ..Counting::default()
        };
        let first = {
            let (cache, source) = (cache.clone(), source.clone());
            tokio::spawn(async move { cache.get(&source, &request()).await })
        };
        tokio::task::yield_now().await;
        let second = {
            let (cache, source) = (cache.clone(), source.clone());
            tokio::spawn(async move { cache.get(&source, &request()).await })
        };
        tokio::task::yield_now().await;
        first.abort();
        let token = second
            .await
            .expect("join")
            .expect("the second caller gets a token");
        assert_eq!(
            token.secret(),
            "token-1",
            "the fetch the first caller started went on"
        );
        assert_eq!(source.calls.load(Ordering::SeqCst), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn short_lived_tokens_keep_proportional_margins() {
        let cache = TokenCache::new();
        let source = Counting {
            lifetime: Some(Duration::from_secs(20)),
            ..Counting::default()
        };
        cache.get(&source, &request()).await.expect("t");
        // Margin min(10, 20/4) = 5 s: usable until 15 s.
        tokio::time::advance(Duration::from_secs(14)).await;
        assert_eq!(
            cache.get(&source, &request()).await.expect("t").secret(),
            "token-1"
        );
    }
}
