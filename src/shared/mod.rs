//! A second cache level shared by a fleet of replicas, on Redis (feature `redis`).
//!
//! Each replica keeps its own in-process cache ([`TokenCache`](crate::cache::TokenCache),
//! moka) in front; on a miss there, it asks Redis before HelseID:
//!
//! 1. **Level 1**, in process: a warm token costs what it always cost; Redis is not
//!    touched.
//! 2. **Level 2**, Redis: a token another replica fetched, sealed (AES-256-GCM with the
//!    service's [`SealKey`], the entry's Redis key as associated data) and expiring
//!    with the token, a little before it ([`SharedSettings::refresh_before`], at most
//!    half the token's lifetime), so that the replicas' refreshes ahead find it gone and
//!    fetch a new one. An exchanged token leaves Redis when its subject token expires,
//!    and is never taken from it after that. A token a service refused (`401
//!    invalid_token`) is deleted from Redis if it is still there, and never taken from
//!    it again by the replica that saw the refusal.
//! 3. **HelseID**, by one replica only: it takes a lock (`SET NX PX` with a random
//!    fencing value, released only by its holder), fetches, stores the token and
//!    releases the lock. The other replicas wait for that token, up to
//!    [`SharedSettings::lock_wait`], and then fetch themselves.
//!
//! DPoP-bound tokens are shared only between replicas that share the DPoP key: the
//! key's thumbprint is part of the Redis key, as the tenant, the scopes, the resource,
//! the subject token's digest and the client id are. Names in Redis are keyed
//! (HMAC-SHA256 with a key derived from the [`SealKey`]): whoever reads Redis cannot
//! confirm which client, organisations or sessions they stand for.
//!
//! Refresh sessions are shared too ([`RefreshSession::shared`]): the token set is kept
//! sealed in Redis with a version that grows with every write, and a refresh runs under
//! a lease and swaps the set only if it is still the one the refresh started from, in
//! one Redis script, so replicas that want to refresh at once make exactly one refresh
//! and all get its result. A replica takes a set from Redis only when its version is
//! greater than its own (an older set written back is refused).
//!
//! **Redis is never needed to serve a request with a token of the client's own.** When
//! it is down, slow (every command has [`SharedSettings::command_timeout`]) or flushed,
//! replicas go on with their in-process caches and HelseID; the first failure is
//! logged once as a warning, and the recovery once as information. A shared refresh
//! session is the exception: HelseID rotates refresh tokens, and a replica that
//! refreshed without telling the others would leave them a spent one, so while Redis
//! does not answer, a refresh waits for it (up to [`SharedSettings::lock_wait`]; the
//! session's current access token is used meanwhile), and a refresh whose new set
//! cannot be written retries the write as long as it holds the lease.
//!
//! [`RefreshSession::shared`]: crate::refresh::RefreshSession::shared
//!
//! # Example
//! ```no_run
//! # async fn run(endpoint: helseid::endpoint::TokenEndpoint) -> Result<(), helseid::Error> {
//! use helseid::HelseIdLayer;
//! use helseid::shared::{SealKey, SharedCache};
//!
//! let key = SealKey::from_base64(&std::env::var("HELSEID_SHARED_KEY").unwrap_or_default())?;
//! let shared = SharedCache::new("redis://127.0.0.1:6379/", key)?;
//! let layer = HelseIdLayer::builder(shared.source(endpoint)).build();
//! # drop(layer); Ok(()) }
//! ```

mod seal;
mod session;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use redis::AsyncCommands;
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;
use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::cache::{CacheKey, FetchFuture, FetchToken};
use crate::endpoint::TokenRequest;
use crate::error::{Error, Result};
use crate::exchange::SubjectToken;
use crate::token::{AccessToken, TokenType};

pub use seal::SealKey;
pub(crate) use session::{Held, Known, Lease, Pending, Retry, SharedSession, spent_after};

/// Settings of a [`SharedCache`].
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct SharedSettings {
    /// The first part of every Redis key. Default: `helseid`.
    ///
    /// The rest of a token's key names the client id, never the HelseID it comes
    /// from: services of two environments (test and production) that share one Redis
    /// and one [`SealKey`] must use two prefixes (or two keys).
    pub prefix: String,
    /// The longest one Redis command may take before the replica goes on without
    /// Redis. Default: 250 ms.
    pub command_timeout: Duration,
    /// How long a replica's lock on a fetch or a refresh lasts at most (a replica that
    /// dies holding it blocks the others no longer). Default: 30 s, the cache's fetch
    /// timeout.
    pub lock_ttl: Duration,
    /// How long a replica waits for the token another replica is fetching before it
    /// fetches itself. Default: 10 s.
    pub lock_wait: Duration,
    /// Tokens leave Redis this long before they expire, so that no replica is handed a
    /// token its own cache would refresh at once. Default: 70 s, the in-process
    /// cache's expiry margin and refresh window together.
    pub refresh_before: Duration,
}

impl Default for SharedSettings {
    fn default() -> Self {
        SharedSettings {
            prefix: "helseid".into(),
            command_timeout: Duration::from_millis(250),
            lock_ttl: Duration::from_secs(30),
            lock_wait: Duration::from_secs(10),
            refresh_before: Duration::from_secs(70),
        }
    }
}

/// Counters of a [`SharedCache`], read with [`SharedCache::stats`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct SharedStats {
    /// Lookups Redis answered with a token (level-2 hits): at once, after taking the
    /// lock, or after waiting for another replica's fetch.
    pub hits: u64,
    /// Lookups Redis did not answer with a token (this replica fetched it, or went on
    /// without Redis). Every lookup is a hit or a miss.
    pub misses: u64,
    /// Tokens this replica fetched from HelseID under the shared lock.
    pub fetches: u64,
    /// Times this replica waited for another replica's fetch or refresh.
    pub lock_waits: u64,
    /// Waits that ended without the other replica's result (the replica then fetched
    /// itself).
    pub lock_timeouts: u64,
    /// Entries refused because they did not open with the key (tampered, or sealed
    /// with another key, or for another Redis key).
    pub refused: u64,
    /// Redis commands that failed or timed out.
    pub failures: u64,
}

#[derive(Default)]
struct Counters {
    hits: AtomicU64,
    misses: AtomicU64,
    fetches: AtomicU64,
    lock_waits: AtomicU64,
    lock_timeouts: AtomicU64,
    refused: AtomicU64,
    failures: AtomicU64,
}

/// Redis as a second cache level for a fleet of replicas. Cheap to clone: clones share
/// the connection. See [the module](self).
#[derive(Clone)]
pub struct SharedCache {
    inner: Arc<Inner>,
}

struct Inner {
    client: redis::Client,
    /// The server's address (`host:port`, never a password), named in the log lines.
    server: String,
    /// The connection, made at the first command and again after one breaks.
    connection: tokio::sync::Mutex<Option<MultiplexedConnection>>,
    key: SealKey,
    settings: SharedSettings,
    /// Whether the last Redis command failed: the warning is logged on the change.
    down: AtomicBool,
    counters: Counters,
    /// Tokens a service refused, by Redis key: the SHA-256 of the token and when it
    /// expires. Found in Redis, such a token is deleted there and fetched anew.
    refused: std::sync::Mutex<std::collections::HashMap<String, ([u8; 32], Instant)>>,
}

impl fmt::Debug for SharedCache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedCache")
            .field("key", &self.inner.key)
            .field("settings", &self.inner.settings)
            .field("available", &self.is_available())
            .field("stats", &self.stats())
            .finish()
    }
}

/// What a failed Redis command leaves: the caller goes on without Redis.
#[derive(Debug)]
pub(crate) struct Unavailable;

/// The most tokens a replica remembers as refused (see [`SharedCache::refused`]).
const MAX_REFUSED: usize = 1024;

/// A token as it is sealed into Redis.
#[derive(Serialize, Deserialize)]
struct StoredToken {
    /// The token.
    token: Zeroizing<String>,
    /// `Bearer` or `DPoP`.
    token_type: String,
    /// When it expires, in milliseconds since the Unix epoch.
    expires_at_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
}

/// Milliseconds since the Unix epoch, now.
pub(crate) fn unix_ms_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

impl SharedCache {
    /// A shared cache on the Redis at `url` (`redis://[user:password@]host:port/db`,
    /// or `rediss://` is not supported: put Redis on a private network or a local
    /// proxy) with the default settings. No connection is made until the first miss.
    ///
    /// # Errors
    /// [`Error::Config`] when `url` is not a Redis URL (the message never quotes it: it
    /// may hold a password).
    pub fn new(url: &str, key: SealKey) -> Result<Self> {
        Self::with_settings(url, key, SharedSettings::default())
    }

    /// As [`new`](Self::new), with `settings`.
    ///
    /// # Errors
    /// As [`new`](Self::new).
    pub fn with_settings(url: &str, key: SealKey, settings: SharedSettings) -> Result<Self> {
        let client = redis::Client::open(url).map_err(|_| {
            Error::config(
                "shared cache URL",
                "is not a Redis URL (redis://host:port/db)",
            )
        })?;
        let server = crate::text::untrusted(&client.get_connection_info().addr().to_string(), &[]);
        let inner = Arc::new(Inner {
            client,
            server,
            connection: tokio::sync::Mutex::new(None),
            key,
            settings,
            down: AtomicBool::new(false),
            counters: Counters::default(),
            refused: std::sync::Mutex::default(),
        });
        let weak = Arc::downgrade(&inner);
        crate::metrics::observe_lookups("shared", move || {
            let inner = weak.upgrade()?;
            let c = &inner.counters;
            Some((
                c.hits.load(Ordering::Relaxed),
                c.misses.load(Ordering::Relaxed),
            ))
        });
        Ok(SharedCache { inner })
    }

    /// `source` with this cache between it and its callers: see [the module](self).
    /// Give the result to [`HelseIdLayer::builder`](crate::HelseIdLayer::builder) or
    /// a [`TokenCache`](crate::cache::TokenCache) as you would give `source`.
    pub fn source<S: FetchToken>(&self, source: S) -> SharedSource<S> {
        SharedSource {
            shared: self.clone(),
            source: Arc::new(source),
        }
    }

    /// The settings.
    pub fn settings(&self) -> &SharedSettings {
        &self.inner.settings
    }

    /// Whether the last Redis command succeeded.
    pub fn is_available(&self) -> bool {
        !self.inner.down.load(Ordering::Relaxed)
    }

    /// The counters so far.
    pub fn stats(&self) -> SharedStats {
        let c = &self.inner.counters;
        SharedStats {
            hits: c.hits.load(Ordering::Relaxed),
            misses: c.misses.load(Ordering::Relaxed),
            fetches: c.fetches.load(Ordering::Relaxed),
            lock_waits: c.lock_waits.load(Ordering::Relaxed),
            lock_timeouts: c.lock_timeouts.load(Ordering::Relaxed),
            refused: c.refused.load(Ordering::Relaxed),
            failures: c.failures.load(Ordering::Relaxed),
        }
    }

    /// The Redis key of `kind` (`token`, `session`) named `name` (a keyed digest),
    /// under this service key's id.
    pub(crate) fn redis_key(&self, kind: &str, name: &str) -> String {
        format!(
            "{}:{kind}:{}:{name}",
            self.inner.settings.prefix,
            self.inner.key.id()
        )
    }

    pub(crate) fn seal_key(&self) -> &SealKey {
        &self.inner.key
    }

    /// Runs one Redis command (or script, or pipeline) with the command timeout, and
    /// keeps the health: a warning when Redis is first found failing, information when
    /// it answers again.
    pub(crate) async fn run<T, F>(&self, what: &'static str, command: F) -> Result<T, Unavailable>
    where
        F: Fn(
            MultiplexedConnection,
        ) -> futures_util::future::BoxFuture<'static, redis::RedisResult<T>>,
    {
        let outcome = tokio::time::timeout(self.inner.settings.command_timeout, async {
            match command(self.connection().await?).await {
                // A connection that broke (Redis restarted, say) is forgotten, and the
                // command tried once more on a new one.
                Err(e) if e.is_connection_dropped() || e.is_io_error() => {
                    self.forget_connection().await;
                    command(self.connection().await?).await
                }
                other => other,
            }
        })
        .await;
        if !matches!(outcome, Ok(Ok(_))) {
            self.forget_connection().await;
        }
        match outcome {
            Ok(Ok(value)) => {
                if self.inner.down.swap(false, Ordering::Relaxed) {
                    tracing::info!(
                        server = %self.inner.server,
                        "the shared token cache (Redis) answers again"
                    );
                    crate::metrics::shared_available(true);
                }
                Ok(value)
            }
            Ok(Err(e)) => {
                self.failed(what, &crate::text::untrusted(&e.to_string(), &[]));
                Err(Unavailable)
            }
            Err(_) => {
                self.failed(what, "timed out");
                Err(Unavailable)
            }
        }
    }

    /// The connection, made now if there is none.
    async fn connection(&self) -> redis::RedisResult<MultiplexedConnection> {
        let mut slot = self.inner.connection.lock().await;
        if let Some(connection) = &*slot {
            return Ok(connection.clone());
        }
        let timeout = Some(self.inner.settings.command_timeout);
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(timeout)
            .set_response_timeout(timeout);
        let connection = self
            .inner
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *slot = Some(connection.clone());
        Ok(connection)
    }

    /// Drops the connection, so that the next command makes a new one.
    async fn forget_connection(&self) {
        *self.inner.connection.lock().await = None;
    }

    fn failed(&self, what: &str, reason: &str) {
        self.inner.counters.failures.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(command = what, reason, "a shared cache command failed");
        if !self.inner.down.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                server = %self.inner.server,
                command = what,
                reason,
                "the shared token cache (Redis) is unavailable: going on with the local cache and HelseID"
            );
            crate::metrics::shared_available(false);
        }
    }

    pub(crate) fn count_refused(&self) {
        self.inner.counters.refused.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn count_wait(&self) {
        self.inner
            .counters
            .lock_waits
            .fetch_add(1, Ordering::Relaxed);
        crate::metrics::lock_wait();
    }

    pub(crate) fn count_wait_timeout(&self) {
        self.inner
            .counters
            .lock_timeouts
            .fetch_add(1, Ordering::Relaxed);
    }

    /// Takes the lock `lock` with `fence`; `true` when this replica holds it now
    /// (taken now, or by an earlier try with the same `fence` whose answer was lost).
    pub(crate) async fn lock(&self, lock: &str, fence: &str) -> Result<bool, Unavailable> {
        let (lock, fence) = (lock.to_owned(), fence.to_owned());
        let ttl = self.inner.settings.lock_ttl.as_millis() as u64;
        self.run("lock", move |mut redis| {
            let (lock, fence) = (lock.clone(), fence.clone());
            Box::pin(async move {
                let held: i64 = redis::Script::new(LOCK)
                    .key(&lock)
                    .arg(&fence)
                    .arg(ttl.max(1))
                    .invoke_async(&mut redis)
                    .await?;
                Ok(held == 1)
            })
        })
        .await
    }

    /// Releases `lock` if this replica (`fence`) still holds it.
    pub(crate) async fn unlock(&self, lock: &str, fence: &str) {
        let (lock, fence) = (lock.to_owned(), fence.to_owned());
        let _ = self
            .run("unlock", move |mut redis| {
                let (lock, fence) = (lock.clone(), fence.clone());
                Box::pin(async move {
                    redis::Script::new(UNLOCK)
                        .key(&lock)
                        .arg(&fence)
                        .invoke_async::<i64>(&mut redis)
                        .await
                })
            })
            .await;
    }

    /// The raw value at `name`, and whether `lock` is held, in one round trip.
    pub(crate) async fn get_with_lock(
        &self,
        name: &str,
        lock: &str,
    ) -> Result<(Option<Vec<u8>>, bool), Unavailable> {
        let (name, lock) = (name.to_owned(), lock.to_owned());
        self.run("get", move |mut redis| {
            let (name, lock) = (name.clone(), lock.clone());
            Box::pin(async move {
                redis::pipe()
                    .get(&name)
                    .exists(&lock)
                    .query_async(&mut redis)
                    .await
            })
        })
        .await
    }

    /// The token sealed at `name`, if there is one that opens and is still good (and,
    /// for an exchange, whose subject token is still good). A token a service refused
    /// is deleted, if Redis still holds it, and is none.
    async fn read_token(
        &self,
        name: &str,
        lock: &str,
        subject: Option<&SubjectToken>,
    ) -> Result<(Option<AccessToken>, bool), Unavailable> {
        let (raw, locked) = self.get_with_lock(name, lock).await?;
        let Some(raw) = raw else {
            return Ok((None, locked));
        };
        let token = self
            .open_token(name, &raw)
            .filter(|_| !subject.is_some_and(SubjectToken::is_expired));
        if let Some(token) = &token
            && self.is_refused(name, token)
        {
            self.delete_if(name, raw).await;
            return Ok((None, locked));
        }
        Ok((token, locked))
    }

    /// Remembers that a service refused `token`, stored at `name`, so that this
    /// replica never takes it from Redis again, and deletes it from Redis if it is
    /// still there (in a task of its own, when there is a runtime).
    fn refused(&self, name: String, token: &AccessToken) {
        let digest = token_digest(token);
        {
            let mut refused = self.inner.refused.lock().unwrap_or_else(|e| e.into_inner());
            if refused.len() >= MAX_REFUSED {
                let now = Instant::now();
                refused.retain(|_, (_, until)| *until > now);
                if refused.len() >= MAX_REFUSED
                    && let Some(oldest) = refused
                        .iter()
                        .min_by_key(|(_, (_, until))| *until)
                        .map(|(name, _)| name.clone())
                {
                    refused.remove(&oldest);
                }
            }
            refused.insert(name.clone(), (digest, token.expires_at()));
        }
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            let this = self.clone();
            runtime.spawn(async move {
                if let Ok(Some(raw)) = this.get(&name).await
                    && this
                        .open_token(&name, &raw)
                        .is_some_and(|held| token_digest(&held) == digest)
                {
                    this.delete_if(&name, raw).await;
                }
            });
        }
    }

    /// Whether a service refused `token`, found at `name`.
    fn is_refused(&self, name: &str, token: &AccessToken) -> bool {
        let refused = self.inner.refused.lock().unwrap_or_else(|e| e.into_inner());
        refused
            .get(name)
            .is_some_and(|(digest, _)| *digest == token_digest(token))
    }

    /// The raw value at `name`.
    async fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Unavailable> {
        let name = name.to_owned();
        self.run("get", move |mut redis| {
            let name = name.clone();
            Box::pin(async move { redis.get(&name).await })
        })
        .await
    }

    /// Deletes `name` if it still holds `raw` (compare and delete, in one script).
    async fn delete_if(&self, name: &str, raw: Vec<u8>) {
        let name = name.to_owned();
        let _ = self
            .run("delete", move |mut redis| {
                let (name, raw) = (name.clone(), raw.clone());
                Box::pin(async move {
                    redis::Script::new(UNLOCK)
                        .key(&name)
                        .arg(raw)
                        .invoke_async::<i64>(&mut redis)
                        .await
                })
            })
            .await;
    }

    /// The plaintext of the entry `raw` read at `name`; an entry that does not open
    /// (tampered, another key, moved) is counted, logged and treated as none.
    pub(crate) fn open(&self, name: &str, raw: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
        let plain = self.inner.key.open(name, raw);
        if plain.is_none() {
            self.count_refused();
            tracing::warn!("refused an entry of the shared cache that does not open with the key");
        }
        plain
    }

    fn open_token(&self, name: &str, raw: &[u8]) -> Option<AccessToken> {
        let plain = self.open(name, raw)?;
        let stored: StoredToken = serde_json::from_slice(&plain).ok()?;
        let left = stored.expires_at_ms.checked_sub(unix_ms_now())?;
        let token_type = TokenType::parse(&stored.token_type)?;
        AccessToken::new(
            stored.token.as_str(),
            token_type,
            Duration::from_millis(left),
        )
        .ok()
        .map(|token| token.with_scope(stored.scope))
    }

    /// Seals `token` at `name`, expiring [`SharedSettings::refresh_before`] (at most
    /// half the token's lifetime, as the in-process cache's margins are each at most a
    /// quarter) before the token does, and not after `until` (an exchange's subject
    /// token's expiry).
    async fn write_token(&self, name: &str, token: &AccessToken, until: Option<Instant>) {
        let lifetime = token.expires_in();
        let mut keep =
            lifetime.saturating_sub(self.inner.settings.refresh_before.min(lifetime / 2));
        if let Some(until) = until {
            keep = keep.min(until.saturating_duration_since(Instant::now()));
        }
        if keep.as_millis() == 0 {
            return;
        }
        let expires_at_ms = unix_ms_now() + token.expires_in().as_millis() as u64;
        let stored = StoredToken {
            token: Zeroizing::new(token.secret().to_owned()),
            token_type: token.token_type().scheme().to_owned(),
            expires_at_ms,
            scope: {
                let scopes: Vec<&str> = token.scopes().collect();
                (!scopes.is_empty()).then(|| scopes.join(" "))
            },
        };
        let Ok(plain) = serde_json::to_vec(&stored).map(Zeroizing::new) else {
            return;
        };
        let Some(sealed) = self.inner.key.seal(name, &plain) else {
            return;
        };
        let name = name.to_owned();
        let ms = keep.as_millis() as u64;
        let _ = self
            .run("set", move |mut redis| {
                let (name, sealed) = (name.clone(), sealed.clone());
                Box::pin(async move { redis.pset_ex::<_, _, ()>(&name, sealed, ms).await })
            })
            .await;
    }

    /// A token for `request` from Redis, or fetched by `source` under the shared lock.
    async fn fetch(&self, source: &dyn FetchToken, request: TokenRequest) -> Result<AccessToken> {
        let key = CacheKey::for_source(source, &request);
        if key.partition() != 0 {
            // A source of its own (a user's session) has nothing to share by key.
            return source.fetch(request).await;
        }
        let subject = request.subject().cloned();
        if subject.as_ref().is_some_and(SubjectToken::is_expired) {
            // The source refuses it, as it would without Redis.
            self.count_miss();
            return source.fetch(request).await;
        }
        let subject = subject.as_ref();
        let name = self.token_name(&key);
        let lock = format!("{name}:lock");
        let Ok((found, _)) = self.read_token(&name, &lock, subject).await else {
            self.count_miss();
            return source.fetch(request).await;
        };
        if let Some(token) = found {
            return Ok(self.hit(token));
        }
        let Some(fence) = fence() else {
            self.count_miss();
            return source.fetch(request).await;
        };
        let deadline = Instant::now() + self.inner.settings.lock_wait;
        let mut waited = false;
        loop {
            match self.lock(&lock, &fence).await {
                Err(Unavailable) => {
                    self.count_miss();
                    return source.fetch(request).await;
                }
                Ok(true) => {
                    // Another replica may have stored a token and let go of the lock
                    // between this replica's read and its lock.
                    if let Ok((Some(token), _)) = self.read_token(&name, &lock, subject).await {
                        self.unlock(&lock, &fence).await;
                        return Ok(self.hit(token));
                    }
                    self.count_miss();
                    self.inner.counters.fetches.fetch_add(1, Ordering::Relaxed);
                    let fetched = source.fetch(request).await;
                    if let Ok(token) = &fetched {
                        let until = subject.and_then(SubjectToken::expires_at);
                        self.write_token(&name, token, until).await;
                    }
                    self.unlock(&lock, &fence).await;
                    return fetched;
                }
                Ok(false) => {
                    if !waited {
                        waited = true;
                        self.count_wait();
                    }
                    match self.wait_for_token(&name, &lock, subject, deadline).await {
                        Waited::Token(token) => return Ok(self.hit(*token)),
                        Waited::LockGone => continue,
                        Waited::Unavailable => {
                            self.count_miss();
                            return source.fetch(request).await;
                        }
                        Waited::TimedOut => {
                            self.count_wait_timeout();
                            tracing::warn!(
                                "waited {:?} for another replica's token: fetching it here",
                                self.inner.settings.lock_wait
                            );
                            self.count_miss();
                            return source.fetch(request).await;
                        }
                    }
                }
            }
        }
    }

    /// The Redis key of the token of `key`: keyed by the service's key, so that whoever
    /// reads Redis cannot tell the client, scopes or organisations from it.
    fn token_name(&self, key: &CacheKey) -> String {
        let name = self.inner.key.name(|add| key.encode(add));
        self.redis_key("token", &name)
    }

    /// Counts a lookup answered from Redis (at once, after the lock, or after waiting
    /// for another replica), and returns its token.
    fn hit(&self, token: AccessToken) -> AccessToken {
        self.inner.counters.hits.fetch_add(1, Ordering::Relaxed);
        token
    }

    /// Counts a lookup that Redis did not answer with a token.
    fn count_miss(&self) {
        self.inner.counters.misses.fetch_add(1, Ordering::Relaxed);
    }

    /// Polls `name` until a token is there, the lock is gone, or `deadline`.
    async fn wait_for_token(
        &self,
        name: &str,
        lock: &str,
        subject: Option<&SubjectToken>,
        deadline: Instant,
    ) -> Waited {
        let polled = self
            .poll(name, lock, deadline, |raw, locked| {
                let token = raw
                    .and_then(|raw| self.open_token(name, &raw))
                    .filter(|token| {
                        !subject.is_some_and(SubjectToken::is_expired)
                            && !self.is_refused(name, token)
                    });
                match token {
                    Some(token) => Some(Waited::Token(Box::new(token))),
                    None => (!locked).then_some(Waited::LockGone),
                }
            })
            .await;
        match polled {
            Polled::Done(waited) => waited,
            Polled::Unavailable => Waited::Unavailable,
            Polled::TimedOut => Waited::TimedOut,
        }
    }

    /// Reads `name` and whether `lock` is held, pausing between reads (2 ms, doubled up
    /// to 50 ms), until `done` makes something of them, Redis fails, or `deadline`.
    pub(crate) async fn poll<R>(
        &self,
        name: &str,
        lock: &str,
        deadline: Instant,
        mut done: impl FnMut(Option<Vec<u8>>, bool) -> Option<R>,
    ) -> Polled<R> {
        let mut pause = Duration::from_millis(2);
        loop {
            if Instant::now() >= deadline {
                return Polled::TimedOut;
            }
            tokio::time::sleep(pause).await;
            pause = (pause * 2).min(Duration::from_millis(50));
            match self.get_with_lock(name, lock).await {
                Err(Unavailable) => return Polled::Unavailable,
                Ok((raw, locked)) => {
                    if let Some(result) = done(raw, locked) {
                        return Polled::Done(result);
                    }
                }
            }
        }
    }
}

/// How a [`SharedCache::poll`] ended.
pub(crate) enum Polled<R> {
    /// What the caller made of a read.
    Done(R),
    /// Redis failed.
    Unavailable,
    /// The deadline passed.
    TimedOut,
}

/// How a wait for another replica ended.
enum Waited {
    Token(Box<AccessToken>),
    LockGone,
    Unavailable,
    TimedOut,
}

/// A random fencing value: only the replica that set a lock releases it. `None` when
/// the random generator failed: a lock is then not taken (a fence of zeros would be
/// every failing replica's).
pub(crate) fn fence() -> Option<String> {
    let mut bytes = [0u8; 16];
    seal::random(&mut bytes).ok()?;
    Some(crate::text::hex(&bytes))
}

/// The SHA-256 of a token, to recognise it without keeping it.
fn token_digest(token: &AccessToken) -> [u8; 32] {
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, token.secret().as_bytes());
    let mut out = [0u8; 32];
    out.copy_from_slice(digest.as_ref());
    out
}

/// Takes the lock when it is free, or says it is held already when it holds the
/// caller's fencing value (an earlier try whose answer was lost).
const LOCK: &str = r"
local current = redis.call('GET', KEYS[1])
if current == ARGV[1] then
  return 1
end
if not current then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
return 0
";

/// Deletes the lock only when it still holds the caller's fencing value.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// A [`FetchToken`] that asks Redis before its source, and fetches under a lock shared
/// by the fleet: made by [`SharedCache::source`].
pub struct SharedSource<S> {
    shared: SharedCache,
    source: Arc<S>,
}

impl<S> Clone for SharedSource<S> {
    fn clone(&self) -> Self {
        SharedSource {
            shared: self.shared.clone(),
            source: self.source.clone(),
        }
    }
}

impl<S: fmt::Debug> fmt::Debug for SharedSource<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SharedSource")
            .field("source", &self.source)
            .field("shared", &self.shared)
            .finish()
    }
}

impl<S> SharedSource<S> {
    /// The shared cache.
    pub fn shared(&self) -> &SharedCache {
        &self.shared
    }

    /// The source behind it.
    pub fn inner(&self) -> &S {
        &self.source
    }
}

impl<S: FetchToken> FetchToken for SharedSource<S> {
    fn fetch(&self, request: TokenRequest) -> FetchFuture {
        let this = self.clone();
        FetchFuture::new(async move { this.shared.fetch(&*this.source, request).await })
    }

    fn client_id(&self) -> &str {
        self.source.client_id()
    }

    fn default_scopes(&self) -> Vec<String> {
        self.source.default_scopes()
    }

    fn partition(&self) -> u64 {
        self.source.partition()
    }

    fn refused(&self, request: &TokenRequest, token: &AccessToken) {
        let key = CacheKey::for_source(self, request);
        if key.partition() == 0 {
            self.shared.refused(self.shared.token_name(&key), token);
        }
        self.source.refused(request, token);
    }
}
