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
//! [`Error::BackingOff`]: crate::Error::BackingOff
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

mod backoff;
mod entry;
mod flight;
mod front;
mod key;
pub(crate) mod refused;
mod source;
mod storm;
mod tenants;

use std::cell::Cell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

use crate::endpoint::TokenRequest;
use crate::error::Result;
use crate::token::AccessToken;

use backoff::Backoff;
pub(crate) use entry::Entry;
use entry::TokenExpiry;
use flight::InFlight;
pub(crate) use front::{Front, Hit, Live, Seen, Sent};
pub use key::CacheKey;
pub use source::{FetchFn, FetchFuture, FetchToken, fetch_fn};
use storm::StormGuard;
pub(crate) use tenants::Tenants;

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
    /// A key's token is evicted because a service answered `401 invalid_token` at most
    /// once in this interval; the service's further 401s in it are returned as they
    /// are (an API that refuses every token must not make the layer ask HelseID for one
    /// per request). Default: 5 s.
    pub invalid_token_interval: Duration,
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
            invalid_token_interval: Duration::from_secs(5),
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
    /// `401 invalid_token` answers returned as they are, without a new token, because
    /// the key's token had been replaced for one within
    /// [`CacheSettings::invalid_token_interval`].
    pub invalid_token_suppressed: u64,
}

#[derive(Default)]
struct Counters {
    /// Bumped on every warm request: one counter per thread slot, so that two cores
    /// never write the same cache line.
    hits: PerCore,
    misses: AtomicU64,
    fetches: AtomicU64,
    failures: AtomicU64,
    refreshes: AtomicU64,
}

/// How many threads have a slot of [`PerCore`] of their own; the threads started after
/// them share one more slot.
const SLOTS: usize = 16;

/// A counter in one cache line per thread slot. A thread bumps its own slot with a
/// plain load and store (no other thread writes it: no locked instruction); the
/// threads beyond [`SLOTS`] share the last slot, and add to it atomically.
#[derive(Default)]
struct PerCore([Padded; SLOTS + 1]);

/// One counter alone in its cache line (128 bytes: two lines on x86, as
/// crossbeam's `CachePadded` does, against the adjacent-line prefetcher).
#[derive(Default)]
#[repr(align(128))]
struct Padded(AtomicU64);

/// A thread's number before its first count.
const UNNUMBERED: usize = usize::MAX;

/// The current thread's number: threads are numbered in the order they first count.
#[inline]
fn thread_number() -> usize {
    thread_local! {
        // Set at the thread's first count: a constant start needs no lazy
        // initialisation on every read.
        static NUMBER: Cell<usize> = const { Cell::new(UNNUMBERED) };
    }
    let number = NUMBER.get();
    if number < SLOTS {
        return number;
    }
    number_this_thread(&NUMBER)
}

/// The number of a thread that has none yet (or its number beyond [`SLOTS`]).
#[cold]
#[inline(never)]
fn number_this_thread(key: &'static std::thread::LocalKey<Cell<usize>>) -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let number = key.get();
    if number != UNNUMBERED {
        return number;
    }
    let number = NEXT.fetch_add(1, Ordering::Relaxed).min(UNNUMBERED - 1);
    key.set(number);
    number
}

impl PerCore {
    #[inline]
    fn bump(&self) {
        match thread_number() {
            own if own < SLOTS => {
                let slot = &self.0[own].0;
                slot.store(slot.load(Ordering::Relaxed) + 1, Ordering::Relaxed);
            }
            _ => {
                self.0[SLOTS].0.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    fn sum(&self) -> u64 {
        self.0.iter().map(|p| p.0.load(Ordering::Relaxed)).sum()
    }
}

struct Inner {
    entries: moka::future::Cache<CacheKey, Arc<Entry>>,
    in_flight: Mutex<HashMap<CacheKey, InFlight>>,
    backoff: Backoff,
    storm: StormGuard,
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
        let inner = Arc::new(Inner {
            entries,
            in_flight: Mutex::new(HashMap::new()),
            backoff: Backoff::default(),
            storm: StormGuard::default(),
            counters: Counters::default(),
            settings,
        });
        let weak = Arc::downgrade(&inner);
        crate::metrics::observe_lookups("local", move || {
            let inner = weak.upgrade()?;
            let c = &inner.counters;
            Some((c.hits.sum(), c.misses.load(Ordering::Relaxed)))
        });
        TokenCache { inner }
    }

    /// The settings.
    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    /// The counters so far.
    pub fn stats(&self) -> CacheStats {
        let c = &self.inner.counters;
        CacheStats {
            hits: c.hits.sum(),
            misses: c.misses.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
            refreshes: c.refreshes.load(Ordering::Relaxed),
            invalid_token_suppressed: self.inner.storm.suppressed(),
        }
    }

    /// Counts a lookup answered with a cached token (by the cache or by a front).
    #[inline]
    pub(crate) fn count_hit(&self) {
        self.inner.counters.hits.bump();
    }

    /// A usable token for `request` from `source`: cached, or fetched now.
    ///
    /// # Errors
    /// The fetch's error (shared by every caller that waited for it), an
    /// [`Error::Timeout`] when the fetch took longer than the fetch timeout, or
    /// [`Error::BackingOff`] after repeated failures.
    ///
    /// [`Error::Timeout`]: crate::Error::Timeout
    /// [`Error::BackingOff`]: crate::Error::BackingOff
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
        self.inner
            .backoff
            .check(key, now)
            .inspect_err(|_| crate::metrics::backoff())?;
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

    /// Whether `key`'s token may be replaced because a service answered `401
    /// invalid_token` to it: once per
    /// [`invalid_token_interval`](CacheSettings::invalid_token_interval). On `false`,
    /// the caller returns the 401 as it is.
    pub(crate) fn may_replace_invalid_token(&self, key: &CacheKey) -> bool {
        self.inner
            .storm
            .allow(key, self.inner.settings.invalid_token_interval)
    }

    /// Removes `key`'s entry if it still holds the token with id `sent`, and tells the
    /// source that gave it that a service refused it (a shared source then stops
    /// handing it out to this replica and to the others).
    pub(crate) async fn evict(&self, key: &CacheKey, sent: u64) {
        let mut removed = None;
        self.inner
            .entries
            .entry_by_ref(key)
            .and_compute_with(|current| {
                let op = match current {
                    Some(current) if current.value().token.id() == sent => {
                        removed = Some(current.into_value());
                        moka::ops::compute::Op::Remove
                    }
                    _ => moka::ops::compute::Op::Nop,
                };
                std::future::ready(op)
            })
            .await;
        if let Some(entry) = removed
            && let Some(source) = &entry.source
        {
            source.refused(&key.request(), &entry.token);
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    //! The fixture every test of the cache uses, and the tests of its contract.

    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::Duration;

    use super::{FetchFuture, FetchToken, TokenCache};
    use crate::endpoint::TokenRequest;
    use crate::error::Error;
    use crate::token::{AccessToken, TokenType};

    /// A source that counts its fetches, answers after `delay`, and fails while `fail`
    /// is set.
    #[derive(Clone, Default)]
    pub(in crate::cache) struct Counting {
        pub(in crate::cache) calls: Arc<AtomicUsize>,
        pub(in crate::cache) delay: Duration,
        pub(in crate::cache) fail: Arc<AtomicBool>,
        pub(in crate::cache) lifetime: Option<Duration>,
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
                        retry_after: None,
                    });
                }
                AccessToken::new(format!("token-{n}"), TokenType::Bearer, lifetime)
            })
        }

        fn client_id(&self) -> &str {
            "client"
        }
    }

    /// The request most tests make.
    pub(in crate::cache) fn request() -> TokenRequest {
        TokenRequest::client_credentials(["b", "a"])
    }

    /// An entry for a one-hour Bearer token `secret`, as the fronts hold them.
    pub(in crate::cache) fn entry(secret: &str) -> Arc<super::Entry> {
        let token =
            AccessToken::new(secret, TokenType::Bearer, Duration::from_secs(3600)).expect("token");
        Arc::new(super::Entry::new(
            token,
            &super::CacheSettings::default(),
            None,
        ))
    }

    #[test]
    fn hits_from_more_threads_than_slots_are_all_counted() {
        let cache = TokenCache::new();
        let threads = 2 * super::SLOTS + 3;
        std::thread::scope(|scope| {
            for _ in 0..threads {
                scope.spawn(|| {
                    for _ in 0..1_000 {
                        cache.count_hit();
                    }
                });
            }
        });
        assert_eq!(cache.stats().hits, threads as u64 * 1_000);
    }

    #[tokio::test(start_paused = true)]
    async fn invalidate_makes_the_next_lookup_fetch() {
        let cache = TokenCache::new();
        let source = Counting::default();
        let first = cache.get(&source, &request()).await.expect("first");
        cache.invalidate(&source, &request()).await;
        let second = cache.get(&source, &request()).await.expect("second");
        assert_ne!(first.secret(), second.secret());
        let stats = cache.stats();
        assert_eq!((stats.fetches, stats.misses, stats.hits), (2, 2, 0));
    }
}
