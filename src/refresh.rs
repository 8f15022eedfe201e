//! Refresh tokens: a user's session that renews its access token with the
//! `refresh_token` grant.
//!
//! HelseID rotates refresh tokens: every refresh returns a new one, and the old one is
//! dead (using it again is `invalid_grant`). Two refreshes with one refresh token at once
//! would therefore end the session. A [`RefreshSession`] holds the current
//! [`TokenSet`] behind a lock: refreshes are strictly one after another, each uses the
//! refresh token the previous one returned, and the new set replaces the old at once
//! (and goes to a [`TokenStore`], when there is one). An expired or refused refresh token
//! is [`Error::LoginRequired`]: the user must log in again.
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use helseid::config::ClientConfig;
//! use helseid::endpoint::TokenEndpoint;
//! use helseid::refresh::{FileStore, RefreshSession};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let endpoint = TokenEndpoint::new(ClientConfig::from_file("epj-client.json")?)?;
//! // The token set the login gave, kept (and rotated) in a file only its owner reads.
//! let session = RefreshSession::from_store(endpoint, FileStore::new("tokens.json")).await?;
//! let client = ServiceBuilder::new()
//!     .layer(session.layer().await)
//!     .service(helseid::transport::https_client::<Full<Bytes>>()?);
//! let request = http::Request::get("https://api.example/x").body(Full::new(Bytes::new()))?;
//! match client.oneshot(request).await {
//!     Err(e) if e.downcast_ref::<helseid::Error>().is_some_and(helseid::Error::is_login_required) => {
//!         eprintln!("log in again");
//!     }
//!     other => drop(other?),
//! }
//! # Ok(()) }
//! ```

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::assertion::Tenant;
use crate::auth::HelseIdLayer;
use crate::cache::{CacheKey, FetchFuture, FetchToken, TokenCache};
use crate::dpop::DpopKey;
use crate::endpoint::{Grant, TokenEndpoint, TokenRequest};
use crate::error::{Error, OAuthErrorCode, Result};
use crate::key::PrivateJwk;
use crate::token::{AccessToken, RefreshToken, TokenType};

/// An access token, its refresh token and their expiries, as wall-clock times: what a
/// [`TokenStore`] keeps.
///
/// `Debug` never shows the tokens. Serialised (by [`FileStore`]) as
/// `{"access_token", "token_type", "expires_at", "refresh_token",
/// "refresh_token_expires_at", "scope"}` with Unix times in seconds; reading also
/// accepts a token endpoint's answer (`expires_in`, `rt_expires_in`).
#[derive(Clone, Serialize, Deserialize)]
pub struct TokenSet {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    access_token: Option<Zeroizing<String>>,
    #[serde(default = "bearer")]
    token_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    expires_at: Option<u64>,
    #[serde(default, skip_serializing)]
    expires_in: Option<u64>,
    refresh_token: Zeroizing<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    refresh_token_expires_at: Option<u64>,
    #[serde(default, skip_serializing)]
    rt_expires_in: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    scope: Option<String>,
    /// The private key the session's tokens (and its refresh token, at HelseID) are
    /// bound to with DPoP, kept with the tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    dpop_jwk: Option<PrivateJwk>,
    /// The ID token of the login that started the session, for ending it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<Zeroizing<String>>,
}

fn bearer() -> String {
    "Bearer".to_owned()
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The Unix time `seconds` after `now`, with `seconds` capped at the crate's
/// [`FAR_AHEAD`](crate::token::FAR_AHEAD): a stored or received lifetime of 1e19
/// neither overflows nor panics.
fn unix_after(now: u64, seconds: u64) -> u64 {
    now.saturating_add(seconds.min(crate::token::FAR_AHEAD.as_secs()))
}

impl fmt::Debug for TokenSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenSet")
            .field(
                "access_token",
                &self.access_token.as_ref().map(|_| "[redacted]"),
            )
            .field("token_type", &self.token_type)
            .field("expires_at", &self.expires_at)
            .field("refresh_token", &"[redacted]")
            .field("refresh_token_expires_at", &self.refresh_token_expires_at)
            .field("scope", &self.scope)
            .field("dpop_jwk", &self.dpop_jwk)
            .field("id_token", &self.id_token.as_ref().map(|_| "[redacted]"))
            .finish()
    }
}

impl TokenSet {
    /// The set in an access token that came with a refresh token.
    ///
    /// # Errors
    /// [`Error::LoginRequired`] when the token has no refresh token.
    pub fn from_access_token(token: &AccessToken) -> Result<Self> {
        let refresh = token.refresh_token().ok_or_else(|| Error::LoginRequired {
            reason: "the token response has no refresh_token".into(),
            source: None,
        })?;
        let now = unix_now();
        let wall =
            |at: Instant| unix_after(now, at.saturating_duration_since(Instant::now()).as_secs());
        let scopes: Vec<&str> = token.scopes().collect();
        Ok(TokenSet {
            access_token: Some(Zeroizing::new(token.secret().to_owned())),
            token_type: token.token_type().scheme().to_owned(),
            expires_at: Some(wall(token.expires_at())),
            expires_in: None,
            refresh_token: Zeroizing::new(refresh.secret().to_owned()),
            refresh_token_expires_at: token.refresh_token_expires_at().map(wall),
            rt_expires_in: None,
            scope: (!scopes.is_empty()).then(|| scopes.join(" ")),
            dpop_jwk: None,
            id_token: None,
        })
    }

    /// This set with the ID token of the login that started the session, kept for
    /// ending the session (`id_token_hint`).
    pub fn with_id_token(mut self, id_token: impl Into<String>) -> Self {
        self.id_token = Some(Zeroizing::new(id_token.into()));
        self
    }

    /// The ID token of the login that started the session, when the set keeps one.
    ///
    /// # Security
    /// The ID token names the user. Do not log it.
    pub fn id_token(&self) -> Option<&str> {
        self.id_token.as_deref().map(String::as_str)
    }

    /// This set with the DPoP key its session binds tokens to: every refresh then
    /// carries a proof made with it (HelseID binds the session to the key at the first
    /// one), and the session's layer sends proofs with it. The key is stored with the
    /// tokens (a [`FileStore`] writes owner-only).
    ///
    /// # Errors
    /// [`Error::Config`] naming the JWK member that is wrong, as [`DpopKey::from_jwk`].
    pub fn with_dpop_jwk(mut self, jwk: PrivateJwk) -> Result<Self> {
        DpopKey::from_jwk(&jwk)?;
        self.dpop_jwk = Some(jwk);
        Ok(self)
    }

    /// Whether the session's tokens are bound to a DPoP key kept in this set.
    pub fn is_dpop_bound(&self) -> bool {
        self.dpop_jwk.is_some()
    }

    /// Reads a stored set, or a token endpoint's JSON answer that has a refresh token.
    ///
    /// # Errors
    /// [`Error::TokenStore`] naming what is wrong (never quoting the text).
    pub fn from_json(json: &str) -> Result<Self> {
        let mut set: TokenSet = serde_json::from_str(json).map_err(|e| Error::TokenStore {
            reason: format!(
                "not a token set: {}",
                crate::jose::json_error_without_input(&e)
            ),
            source: None,
        })?;
        let now = unix_now();
        if set.expires_at.is_none() {
            set.expires_at = set.expires_in.take().map(|s| unix_after(now, s));
        }
        if set.refresh_token_expires_at.is_none() {
            set.refresh_token_expires_at = set.rt_expires_in.take().map(|s| unix_after(now, s));
        }
        if set.refresh_token.is_empty() {
            return Err(Error::TokenStore {
                reason: "not a token set: `refresh_token` is empty".into(),
                source: None,
            });
        }
        Ok(set)
    }

    /// The set as JSON, as [`FileStore`] writes it.
    ///
    /// # Security
    /// The JSON holds the tokens.
    pub fn to_json(&self) -> Zeroizing<String> {
        Zeroizing::new(serde_json::to_string_pretty(self).unwrap_or_default())
    }

    /// The access token, unless it has expired (or is missing).
    pub fn access_token(&self) -> Option<AccessToken> {
        let secret = self.access_token.as_ref()?;
        let left = self.expires_at?.checked_sub(unix_now())?;
        if left == 0 {
            return None;
        }
        let token_type = TokenType::parse(&self.token_type).unwrap_or(TokenType::Bearer);
        AccessToken::new(secret.as_str(), token_type, Duration::from_secs(left)).ok()
    }

    /// The refresh token.
    pub fn refresh_token(&self) -> RefreshToken {
        RefreshToken::new(self.refresh_token.as_str())
    }

    /// When the refresh token expires, when HelseID said so (a stored time further
    /// ahead than the crate keeps instants for is taken as that far ahead).
    pub fn refresh_token_expires_at(&self) -> Option<SystemTime> {
        self.refresh_token_expires_at.map(|s| {
            let at = s.min(unix_after(unix_now(), u64::MAX));
            UNIX_EPOCH
                .checked_add(Duration::from_secs(at))
                .unwrap_or(UNIX_EPOCH)
        })
    }

    /// Whether the refresh token is known to have expired.
    pub fn is_refresh_token_expired(&self) -> bool {
        self.refresh_token_expires_at
            .is_some_and(|at| unix_now() >= at)
    }

    /// The scopes the access token was granted, when known.
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }
}

/// A boxed future of a [`TokenStore`].
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

/// Where a session's rotated token set is kept, so that it survives a restart.
pub trait TokenStore: Send + Sync + 'static {
    /// The stored set, or `None` when nothing is stored.
    fn load(&self) -> StoreFuture<'_, Option<TokenSet>>;

    /// Stores `set` in place of the previous one.
    fn save<'a>(&'a self, set: &'a TokenSet) -> StoreFuture<'a, ()>;
}

/// A [`TokenStore`] in a JSON file that only its owner may read.
///
/// A save writes a new file next to the old one, flushes it to disk, and renames it over
/// the old one: a crash at any point leaves either the old set or the new one, never a
/// truncated file.
#[derive(Clone, Debug)]
pub struct FileStore {
    path: PathBuf,
}

impl FileStore {
    /// A store in the file at `path` (created on the first save).
    pub fn new(path: impl Into<PathBuf>) -> Self {
        FileStore { path: path.into() }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn io_error(&self, action: &str, e: std::io::Error) -> Error {
        Error::TokenStore {
            reason: format!("cannot {action} {}", self.path.display()),
            source: Some(Arc::new(e)),
        }
    }

    /// Reads the file, with the configuration file's rules: a regular file (a FIFO,
    /// socket, device or directory is refused before it is opened, so that nothing
    /// blocks) of at most [`MAX_CONFIG_FILE`](crate::config::MAX_CONFIG_FILE) bytes of
    /// UTF-8.
    fn read(&self) -> Result<Option<TokenSet>> {
        match crate::config::read_private_text(&self.path) {
            Ok(text) => TokenSet::from_json(&text).map(Some).map_err(|e| match e {
                Error::TokenStore { reason, source } => Error::TokenStore {
                    reason: format!("{}: {reason}", self.path.display()),
                    source,
                },
                other => other,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io_error("read", e)),
        }
    }

    /// Writes `set` to a new temporary file beside the store, on disk; returns its path.
    /// The store itself is untouched until [`commit`](Self::commit).
    fn stage(&self, set: &TokenSet) -> Result<PathBuf> {
        crate::private_file::stage(&self.path, set.to_json().as_bytes())
            .map_err(|e| self.io_error("write a new version of", e))
    }

    /// Renames the staged file over the store and flushes the directory.
    fn commit(&self, temp: &Path) -> Result<()> {
        crate::private_file::commit(temp, &self.path).map_err(|e| self.io_error("replace", e))
    }
}

impl TokenStore for FileStore {
    fn load(&self) -> StoreFuture<'_, Option<TokenSet>> {
        Box::pin(async move { self.read() })
    }

    fn save<'a>(&'a self, set: &'a TokenSet) -> StoreFuture<'a, ()> {
        Box::pin(async move {
            let temp = self.stage(set)?;
            self.commit(&temp)
        })
    }
}

/// A user's session: the current token set, renewed with the `refresh_token` grant.
///
/// Cheap to clone: clones share the session. Refreshes are serialised; each uses the
/// refresh token the previous one returned. It is a [`FetchToken`], so
/// [`layer`](Self::layer) gives a [`HelseIdLayer`] whose tokens come from it (cached,
/// one refresh at a time, the key unique to this session).
#[derive(Clone)]
pub struct RefreshSession {
    inner: Arc<SessionInner>,
}

struct SessionInner {
    endpoint: TokenEndpoint,
    partition: u64,
    /// The DPoP key of the stored set, made once.
    /// Made again when the set's key changes (a new login taken from the shared
    /// cache): `None` until the first use.
    dpop: std::sync::Mutex<Option<Option<DpopKey>>>,
    /// `None` once the session has ended (the refresh token was refused).
    state: tokio::sync::Mutex<Option<TokenSet>>,
    store: Option<Arc<dyn TokenStore>>,
    refreshes: AtomicU64,
    /// Where replicas share this session, when they do.
    #[cfg(feature = "redis")]
    shared: Option<crate::shared::SharedSession>,
}

impl fmt::Debug for RefreshSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshSession")
            .field("client_id", &self.inner.endpoint.config().client_id())
            .field("partition", &self.inner.partition)
            .field("refreshes", &self.refreshes())
            .finish_non_exhaustive()
    }
}

static NEXT_PARTITION: AtomicU64 = AtomicU64::new(1);

impl RefreshSession {
    /// A session starting from `set`, refreshing at `endpoint` (whose client the refresh
    /// token was issued to). Nothing is stored.
    pub fn new(endpoint: TokenEndpoint, set: TokenSet) -> Self {
        Self::build(endpoint, Some(set), None)
    }

    /// A session starting from `set` that stores every rotated set in `store`.
    pub fn with_store(endpoint: TokenEndpoint, set: TokenSet, store: impl TokenStore) -> Self {
        Self::build(endpoint, Some(set), Some(Arc::new(store)))
    }

    /// A session from the set in `store`, storing every rotated set there.
    ///
    /// # Errors
    /// The store's error; [`Error::LoginRequired`] when it holds nothing.
    pub async fn from_store(endpoint: TokenEndpoint, store: impl TokenStore) -> Result<Self> {
        let set = store.load().await?.ok_or_else(|| Error::LoginRequired {
            reason: "no token set is stored".into(),
            source: None,
        })?;
        Ok(Self::build(endpoint, Some(set), Some(Arc::new(store))))
    }

    fn build(
        endpoint: TokenEndpoint,
        set: Option<TokenSet>,
        store: Option<Arc<dyn TokenStore>>,
    ) -> Self {
        RefreshSession {
            inner: Arc::new(SessionInner {
                endpoint,
                partition: NEXT_PARTITION.fetch_add(1, Ordering::Relaxed),
                dpop: std::sync::Mutex::new(None),
                state: tokio::sync::Mutex::new(set),
                store,
                refreshes: AtomicU64::new(0),
                #[cfg(feature = "redis")]
                shared: None,
            }),
        }
    }

    /// How many refreshes this session made.
    pub fn refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// The current token set; `None` once the session has ended.
    pub async fn token_set(&self) -> Option<TokenSet> {
        self.inner.state.lock().await.clone()
    }

    /// The current access token when it is still valid, or a refreshed one.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn access_token(&self) -> Result<AccessToken> {
        let mut state = self.inner.state.lock().await;
        // Checked under the lock: a refresh that finished while this call waited has
        // left a fresh token.
        if let Some(token) = state.as_ref().and_then(TokenSet::access_token)
            && token.expires_in() > Duration::from_secs(10)
        {
            return Ok(token);
        }
        self.refresh_locked(
            &mut state,
            &Target {
                scopes: &[],
                tenant: None,
                resource: None,
            },
        )
        .await
    }

    /// Refreshes now, for `scopes` (none: the session's scopes), and returns the new
    /// access token. The rotated set replaces the old one, and is stored.
    ///
    /// # Errors
    /// - [`Error::LoginRequired`] when the refresh token has expired, when HelseID
    ///   refuses it (`invalid_grant`: used already, revoked, expired), or when the
    ///   session ended that way before; the user must log in again.
    /// - [`Error::InvalidResponse`] when HelseID answered without a new refresh token.
    /// - Any other error of [`TokenEndpoint::request`]; the session stays as it was.
    pub async fn refresh(&self, scopes: &[String]) -> Result<AccessToken> {
        self.refresh_for(&Target {
            scopes,
            tenant: None,
            resource: None,
        })
        .await
    }

    /// As [`refresh`](Self::refresh), for an organisation: the client assertion of the
    /// `refresh_token` grant names `tenant` (NHN's pattern for one user session with
    /// tokens per organisation), and `resource` (RFC 8707) is asked for when given.
    ///
    /// # Errors
    /// As [`refresh`](Self::refresh).
    pub async fn refresh_as(
        &self,
        scopes: &[String],
        tenant: Option<Tenant>,
        resource: Option<&str>,
    ) -> Result<AccessToken> {
        self.refresh_for(&Target {
            scopes,
            tenant,
            resource,
        })
        .await
    }

    async fn refresh_for(&self, target: &Target<'_>) -> Result<AccessToken> {
        let mut state = self.inner.state.lock().await;
        self.refresh_locked(&mut state, target).await
    }

    /// The DPoP key of the session's set, when it has one.
    fn dpop_key(&self, set: &TokenSet) -> Result<Option<DpopKey>> {
        let mut made = self.inner.dpop.lock().unwrap_or_else(|e| e.into_inner());
        let current = match (&*made, &set.dpop_jwk) {
            (Some(Some(key)), Some(jwk)) => jwk
                .public()
                .is_ok_and(|public| public.thumbprint() == key.thumbprint()),
            (Some(None), None) => true,
            _ => false,
        };
        if !current {
            *made = Some(set.dpop_jwk.as_ref().map(DpopKey::from_jwk).transpose()?);
        }
        Ok(made.clone().flatten())
    }

    async fn refresh_locked(
        &self,
        state: &mut Option<TokenSet>,
        target: &Target<'_>,
    ) -> Result<AccessToken> {
        #[cfg(feature = "redis")]
        if let Some(session) = &self.inner.shared {
            return self.refresh_shared(session, state, target).await;
        }
        self.refresh_alone(state, target).await
    }

    /// Refreshes with this replica's set, telling no other replica.
    async fn refresh_alone(
        &self,
        state: &mut Option<TokenSet>,
        target: &Target<'_>,
    ) -> Result<AccessToken> {
        let Some(set) = state.as_ref() else {
            return Err(Error::LoginRequired {
                reason: "the session has ended".into(),
                source: None,
            });
        };
        if set.is_refresh_token_expired() {
            *state = None;
            return Err(Error::LoginRequired {
                reason: "the refresh token has expired".into(),
                source: None,
            });
        }
        let mut request = TokenRequest::refresh(set.refresh_token(), target.scopes.iter().cloned());
        if let Some(tenant) = target.tenant {
            request = request.with_tenant(tenant);
        }
        if let Some(resource) = target.resource {
            request = request.with_resource(resource);
        }
        let dpop_jwk = set.dpop_jwk.clone();
        let id_token = set.id_token.clone();
        if let Some(key) = self.dpop_key(set)? {
            request = request.with_dpop(key);
        }
        let token = match self.inner.endpoint.request(&request).await {
            Ok(token) => token,
            Err(e)
                if e.oauth_error()
                    .is_some_and(|o| o.error == OAuthErrorCode::InvalidGrant) =>
            {
                *state = None;
                tracing::warn!("the refresh token was refused: the user must log in again");
                return Err(Error::LoginRequired {
                    reason: "HelseID refused the refresh token (invalid_grant)".into(),
                    source: Some(Box::new(e)),
                });
            }
            Err(e) => return Err(e),
        };
        if token.refresh_token().is_none() {
            return Err(Error::InvalidResponse {
                endpoint: "token endpoint",
                status: http::StatusCode::OK,
                reason: "the refresh response has no new refresh_token (HelseID rotates them)"
                    .into(),
                retry_after: None,
            });
        }
        let mut new_set = TokenSet::from_access_token(&token)?;
        new_set.dpop_jwk = dpop_jwk;
        new_set.id_token = id_token;
        *state = Some(new_set.clone());
        self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
        if let Some(store) = &self.inner.store
            && let Err(e) = store.save(&new_set).await
        {
            // The session goes on with the new set in memory; only a restart loses it.
            tracing::warn!(error = %e, "cannot store the rotated token set");
        }
        Ok(token)
    }

    /// A layer that attaches this session's access tokens: the current one while it
    /// lasts, then refreshed ones, cached under a key unique to this session.
    pub async fn layer(&self) -> HelseIdLayer {
        self.layer_with_cache(TokenCache::new()).await
    }

    /// As [`layer`](Self::layer), in a shared `cache`.
    pub async fn layer_with_cache(&self, cache: TokenCache) -> HelseIdLayer {
        let mut request = TokenRequest::with_grant(Grant::RefreshToken, Vec::<String>::new());
        let (current, dpop) = {
            let state = self.inner.state.lock().await;
            let set = state.as_ref();
            let dpop = match set.map(|set| self.dpop_key(set)) {
                Some(Ok(key)) => key,
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "the stored DPoP key is unusable: refreshes will fail");
                    None
                }
                None => None,
            };
            (set.and_then(TokenSet::access_token), dpop)
        };
        if let Some(key) = dpop {
            request = request.with_dpop(key);
        }
        let key = CacheKey::for_source(self, &request);
        if let Some(token) = current {
            cache.seed(&key, token).await;
        }
        HelseIdLayer::builder(self.clone())
            .request(request)
            .cache(cache)
            .build()
    }
}

/// What a refresh is for: scopes (none: the session's), an organisation, a resource.
struct Target<'a> {
    scopes: &'a [String],
    tenant: Option<Tenant>,
    resource: Option<&'a str>,
}

impl Target<'_> {
    /// Whether this is the session's own token (its scopes, no tenant, no resource),
    /// which another replica's refresh gives too.
    #[cfg(feature = "redis")]
    fn is_session_default(&self) -> bool {
        self.scopes.is_empty() && self.tenant.is_none() && self.resource.is_none()
    }
}

#[cfg(feature = "redis")]
impl RefreshSession {
    /// A session shared by replicas under `id` (any name the service gives the user's
    /// session; it is keyed and hashed with the client id and the issuer before it
    /// reaches Redis): its token set lives sealed in `cache`'s Redis, and replicas that
    /// want to refresh it at once make exactly one refresh and all get its result (see
    /// [`crate::shared`]).
    ///
    /// `set` is this replica's starting set, after a login: it replaces what Redis holds
    /// for `id`, unless Redis holds the same session (`set`'s refresh token, or a later
    /// rotation of it, which this replica then takes). When Redis does not answer, it
    /// is written at the first refresh. `None` takes the set from Redis.
    ///
    /// # Errors
    /// [`Error::LoginRequired`] when `set` is `None` and Redis holds no set (or cannot
    /// be reached).
    pub async fn shared(
        endpoint: TokenEndpoint,
        set: Option<TokenSet>,
        cache: &crate::shared::SharedCache,
        id: &str,
    ) -> Result<Self> {
        use crate::shared::Pending;
        let config = endpoint.config();
        let session = crate::shared::SharedSession::new(
            cache,
            config.client_id(),
            config.authority().issuer(),
            id,
        );
        let mut state = match set {
            Some(set) => {
                session.known().pending = Pending::Login;
                Some(set)
            }
            None => None,
        };
        if state.is_some() {
            // Tried once: a Redis that does not answer now is asked again at the first
            // refresh, before anything else.
            let _ = install_login(&session, &mut state).await;
        } else {
            match session.read().await {
                Ok(held) if held.set.is_some() => {
                    let mut known = session.known();
                    known.version = held.version;
                    known.spent = held.spent;
                    state = held.set;
                }
                _ => {
                    return Err(Error::LoginRequired {
                        reason: "the shared cache holds no token set for this session".into(),
                        source: None,
                    });
                }
            }
        }
        let mut built = Self::build(endpoint, state, None);
        if let Some(inner) = Arc::get_mut(&mut built.inner) {
            inner.shared = Some(session);
        }
        Ok(built)
    }

    /// Refreshes in step with the other replicas: see [`crate::shared`].
    async fn refresh_shared(
        &self,
        session: &crate::shared::SharedSession,
        state: &mut Option<TokenSet>,
        target: &Target<'_>,
    ) -> Result<AccessToken> {
        use crate::shared::{Pending, Retry, SharedSession};
        let settings = session.shared().settings();
        let deadline = Instant::now() + settings.lock_wait;
        let Some(fence) = SharedSession::new_fence() else {
            return Err(redis_unavailable(settings));
        };
        let mut retry = Retry::new();
        let mut waited = false;
        loop {
            if matches!(session.known().pending, Pending::Login)
                && install_login(session, state).await.is_err()
            {
                if !retry.pause(deadline).await {
                    return Err(redis_unavailable(settings));
                }
                continue;
            }
            let Ok(held) = session.read().await else {
                // No refresh alone: another replica may hold the lease.
                if !retry.pause(deadline).await {
                    return Err(redis_unavailable(settings));
                }
                continue;
            };
            if let Some(token) = reconcile(session, state, &held, target) {
                return Ok(token);
            }
            let lease = match session.take_lease(&fence).await {
                Ok(Some(lease)) => lease,
                Ok(None) => {
                    if !waited {
                        waited = true;
                        session.shared().count_wait();
                    }
                    if session.wait_for_change(held.raw.as_deref(), deadline).await {
                        continue;
                    }
                    session.shared().count_wait_timeout();
                    return Err(Error::Timeout {
                        endpoint: "shared refresh session (waiting for another replica)",
                        after: settings.lock_wait,
                    });
                }
                Err(_) => {
                    // The lease may have been taken without the answer arriving: the
                    // next try, with the same fencing value, finds it held.
                    if !retry.pause(deadline).await {
                        session.shared().unlock(session.lease_name(), &fence).await;
                        return Err(redis_unavailable(settings));
                    }
                    continue;
                }
            };
            return self.refresh_leased(session, state, target, &lease).await;
        }
    }

    /// Refreshes holding `lease`: reads what Redis holds, writes this replica's pending
    /// rotation, refreshes, and swaps the new set in, trying again until it lands or
    /// the lease ends.
    async fn refresh_leased(
        &self,
        session: &crate::shared::SharedSession,
        state: &mut Option<TokenSet>,
        target: &Target<'_>,
        lease: &crate::shared::Lease,
    ) -> Result<AccessToken> {
        use crate::shared::{Pending, Retry};
        let settings = session.shared().settings();
        let mut retry = Retry::new();
        let held = loop {
            let Ok(held) = session.read().await else {
                if !retry.pause(lease.until).await {
                    session.release(lease).await;
                    return Err(redis_unavailable(settings));
                }
                continue;
            };
            if let Some(token) = reconcile(session, state, &held, target) {
                session.release(lease).await;
                return Ok(token);
            }
            // A refresh of this replica's whose new set did not reach Redis: written
            // now, if Redis still holds the set it came from, before anything else.
            let pending = std::mem::take(&mut session.known().pending);
            match (pending, state.as_ref()) {
                (
                    Pending::Rotation {
                        from,
                        version,
                        spent,
                    },
                    Some(set),
                ) if held.raw == from => {
                    match session
                        .swap(from.as_deref(), set, version, &spent, None)
                        .await
                    {
                        Ok(true) => {
                            let mut known = session.known();
                            known.version = version;
                            known.spent = spent;
                        }
                        Ok(false) => {}
                        Err(_) => {
                            session.known().pending = Pending::Rotation {
                                from,
                                version,
                                spent,
                            };
                            if !retry.pause(lease.until).await {
                                session.release(lease).await;
                                return Err(redis_unavailable(settings));
                            }
                        }
                    }
                    continue;
                }
                _ => break held,
            }
        };
        let Some(from) = state.as_ref() else {
            session.release(lease).await;
            return self.refresh_alone(state, target).await;
        };
        let (version, spent) = {
            let known = session.known();
            (
                known.version.max(held.version) + 1,
                crate::shared::spent_after(&known.spent, from),
            )
        };
        let refreshed = self.refresh_alone(state, target).await;
        let (Ok(_), Some(set)) = (&refreshed, state.as_ref()) else {
            session.release(lease).await;
            return refreshed;
        };
        let mut retry = Retry::new();
        loop {
            match session
                .swap(held.raw.as_deref(), set, version, &spent, Some(lease))
                .await
            {
                Ok(true) => {
                    let mut known = session.known();
                    known.version = version;
                    known.spent = spent;
                    break;
                }
                Ok(false) => {
                    // A new login replaced the session meanwhile: taken at the next
                    // refresh (its version is greater than this replica's).
                    tracing::warn!(
                        "another replica changed the shared session during this refresh"
                    );
                    break;
                }
                Err(_) => {
                    if !retry.pause(lease.until).await {
                        tracing::warn!(
                            "the refreshed token set could not be written to the shared cache before the lease ended: it is written at the next refresh"
                        );
                        session.known().pending = Pending::Rotation {
                            from: held.raw.clone(),
                            version,
                            spent,
                        };
                        break;
                    }
                }
            }
        }
        refreshed
    }
}

/// The error of a shared refresh that Redis did not answer in time.
#[cfg(feature = "redis")]
fn redis_unavailable(settings: &crate::shared::SharedSettings) -> Error {
    Error::Timeout {
        endpoint: "shared refresh session (the shared cache does not answer)",
        after: settings.lock_wait,
    }
}

/// Writes this replica's new login to Redis, in place of what Redis holds, unless
/// Redis holds the same session (the login's refresh token, or a later rotation of
/// it), which this replica then takes when it is newer.
#[cfg(feature = "redis")]
async fn install_login(
    session: &crate::shared::SharedSession,
    state: &mut Option<TokenSet>,
) -> std::result::Result<(), crate::shared::Unavailable> {
    use crate::shared::Pending;
    for _ in 0..8 {
        let Some(local) = state.as_ref() else {
            session.known().pending = Pending::Nothing;
            return Ok(());
        };
        let held = session.read().await?;
        if held.is_same_session(local) {
            let mut known = session.known();
            known.pending = Pending::Nothing;
            let local_is_redis = held
                .set
                .as_ref()
                .is_some_and(|remote| remote.refresh_token == local.refresh_token);
            if !local_is_redis {
                take(state, &held, &mut known);
            } else {
                known.version = held.version;
                known.spent = held.spent;
            }
            return Ok(());
        }
        let version = held.version + 1;
        if session
            .swap(held.raw.as_deref(), local, version, &[], None)
            .await?
        {
            let mut known = session.known();
            known.version = version;
            known.spent = Vec::new();
            known.pending = Pending::Nothing;
            return Ok(());
        }
    }
    Err(crate::shared::Unavailable)
}

/// Brings this replica's set up to date with what Redis holds: takes `held` when its
/// version is greater than this replica's (an older one, written back by anyone, is
/// refused), and returns its access token when that serves `target` and is still good.
#[cfg(feature = "redis")]
fn reconcile(
    session: &crate::shared::SharedSession,
    state: &mut Option<TokenSet>,
    held: &crate::shared::Held,
    target: &Target<'_>,
) -> Option<AccessToken> {
    let mut known = session.known();
    held.set.as_ref()?;
    if held.version <= known.version {
        if held.version < known.version && matches!(known.pending, crate::shared::Pending::Nothing)
        {
            session.shared().count_refused();
            tracing::warn!(
                "refused a shared session set older than this replica's (written back or restored)"
            );
        }
        return None;
    }
    take(state, held, &mut known);
    state
        .as_ref()?
        .access_token()
        .filter(|token| token.expires_in() > Duration::from_secs(10))
        .filter(|_| target.is_session_default())
}

/// Takes the set Redis holds, with its version, keeping this replica's DPoP key when
/// the set has none.
#[cfg(feature = "redis")]
fn take(
    state: &mut Option<TokenSet>,
    held: &crate::shared::Held,
    known: &mut crate::shared::Known,
) {
    let Some(remote) = &held.set else {
        return;
    };
    let mut adopted = remote.clone();
    if adopted.dpop_jwk.is_none() {
        adopted.dpop_jwk = state.as_ref().and_then(|local| local.dpop_jwk.clone());
    }
    *state = Some(adopted);
    known.version = held.version;
    known.spent = held.spent.clone();
    known.pending = crate::shared::Pending::Nothing;
}

impl FetchToken for RefreshSession {
    fn fetch(&self, request: TokenRequest) -> FetchFuture {
        let session = self.clone();
        FetchFuture::new(async move {
            session
                .refresh_as(
                    request.scopes(),
                    request.tenant().copied(),
                    request.resource(),
                )
                .await
        })
    }

    fn client_id(&self) -> &str {
        self.inner.endpoint.config().client_id()
    }

    fn partition(&self) -> u64 {
        self.inner.partition
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(refresh: &str) -> TokenSet {
        TokenSet::from_json(&format!(
            r#"{{"access_token":"a-{refresh}","token_type":"Bearer","expires_in":3600,
                "refresh_token":"{refresh}","rt_expires_in":28800,"scope":"openid offline_access"}}"#
        ))
        .expect("token set")
    }

    fn tempdir() -> PathBuf {
        let mut random = [0u8; 8];
        aws_lc_rs::rand::fill(&mut random).expect("random");
        let dir =
            std::env::temp_dir().join(format!("helseid-store-{:x}", u64::from_le_bytes(random)));
        std::fs::create_dir_all(&dir).expect("tempdir");
        dir
    }

    #[test]
    fn a_token_response_becomes_a_set_with_wall_clock_expiries() {
        let set = set("r1");
        let now = unix_now();
        assert!(
            set.expires_at
                .is_some_and(|at| at >= now + 3599 && at <= now + 3600)
        );
        assert!(!set.is_refresh_token_expired());
        assert_eq!(set.refresh_token().secret(), "r1");
        assert_eq!(
            set.scopes().collect::<Vec<_>>(),
            ["openid", "offline_access"]
        );
        assert_eq!(set.access_token().expect("valid").secret(), "a-r1");
        // What is stored reads back the same, with absolute times.
        let again = TokenSet::from_json(&set.to_json()).expect("round trip");
        assert_eq!(again.expires_at, set.expires_at);
        assert_eq!(again.refresh_token_expires_at, set.refresh_token_expires_at);
        assert!(!set.to_json().contains("expires_in"));
    }

    #[test]
    fn debug_and_errors_never_show_the_tokens() {
        let set = set("very-secret-refresh");
        let debug = format!("{set:?}");
        assert!(!debug.contains("very-secret"), "{debug}");
        let e = TokenSet::from_json(r#"{"refresh_token": 42, "access_token": "very-secret"}"#)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("not a token set") && !e.contains("very-secret"),
            "{e}"
        );
        let e = TokenSet::from_json(r#"{"refresh_token": ""}"#)
            .unwrap_err()
            .to_string();
        assert!(e.contains("`refresh_token` is empty"), "{e}");
    }

    #[tokio::test]
    async fn the_file_store_survives_a_crash_between_write_and_rename() {
        let dir = tempdir();
        let store = FileStore::new(dir.join("tokens.json"));
        assert!(store.load().await.expect("load").is_none());
        store.save(&set("r1")).await.expect("save");

        // A crash after the new version is written, before it replaces the old one: the
        // store still holds the old set, whole.
        let staged = store.stage(&set("r2")).expect("stage");
        assert!(staged.exists());
        let loaded = FileStore::new(store.path())
            .load()
            .await
            .expect("load")
            .expect("set");
        assert_eq!(loaded.refresh_token().secret(), "r1");
        // A crash in the middle of writing the new version leaves a torn temporary
        // file; the store is untouched by it.
        std::fs::write(&staged, br#"{"refresh_tok"#).expect("torn write");
        let loaded = store.load().await.expect("load").expect("set");
        assert_eq!(loaded.refresh_token().secret(), "r1");

        // The next save goes through.
        store.save(&set("r3")).await.expect("save");
        let loaded = store.load().await.expect("load").expect("set");
        assert_eq!(loaded.refresh_token().secret(), "r3");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(store.path())
                .expect("file")
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600);
        }
        let _ = std::fs::remove_dir_all(dir);
    }

    /// What a load of the store at `path` says, as text. It must end: the load runs on
    /// a thread of its own, and a load that blocks (a FIFO with no writer) fails the
    /// test instead of hanging it.
    fn refusal(path: &Path) -> String {
        let store = FileStore::new(path);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let said = match store.read() {
                Ok(_) => "read".to_owned(),
                Err(error) => {
                    let mut text = error.to_string();
                    let mut source = std::error::Error::source(&error);
                    while let Some(e) = source {
                        text.push_str(&format!(": {e}"));
                        source = e.source();
                    }
                    text
                }
            };
            let _ = tx.send(said);
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the load ends: nothing blocks")
    }

    #[tokio::test]
    async fn the_file_store_reads_only_a_regular_file_of_at_most_64_kib() {
        let dir = tempdir();
        // A FIFO without a writer: opening it would block; it is refused unopened.
        let fifo = dir.join("fifo");
        let made = std::process::Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .expect("mkfifo");
        assert!(made.success());
        let said = refusal(&fifo);
        assert!(
            said.contains("FIFO, socket or device, not a regular file") && said.contains("fifo"),
            "{said}"
        );
        let said = refusal(&dir);
        assert!(said.contains("a directory, not a regular file"), "{said}");
        // Larger than the configuration file's limit: refused, not read whole.
        let big = dir.join("big.json");
        let padding = " ".repeat(crate::config::MAX_CONFIG_FILE as usize);
        std::fs::write(&big, format!("{padding}{}", set("r1").to_json().as_str())).expect("write");
        let said = refusal(&big);
        assert!(said.contains("larger than 65536 bytes"), "{said}");
        // At the limit, it is read.
        let fits = dir.join("fits.json");
        let json = set("r1").to_json();
        let padding = " ".repeat(crate::config::MAX_CONFIG_FILE as usize - json.len());
        std::fs::write(&fits, format!("{}{padding}", json.as_str())).expect("write");
        let loaded = FileStore::new(&fits)
            .load()
            .await
            .expect("load")
            .expect("set");
        assert_eq!(loaded.refresh_token().secret(), "r1");
        let _ = std::fs::remove_dir_all(dir);
    }

    #[tokio::test]
    async fn a_corrupt_store_is_an_error_naming_the_file() {
        let dir = tempdir();
        let path = dir.join("tokens.json");
        std::fs::write(&path, "{ not json").expect("write");
        let e = FileStore::new(&path).load().await.unwrap_err().to_string();
        assert!(
            e.contains("tokens.json") && e.contains("not a token set"),
            "{e}"
        );
        let _ = std::fs::remove_dir_all(dir);
    }
}
