//! An issuer's signing keys: the discovery document (kept a day), the JWKS, a lock-free
//! snapshot readers load without waiting, and one refetch at a time, at most once per
//! cooldown.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use http::{Request, StatusCode, header};
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use tokio::time::Instant;
use tower::ServiceExt;

use super::jwk::VerifyingKey;

/// The type-erased HTTP service keys are fetched through: the token endpoint's.
pub(crate) use crate::endpoint::{HttpService, erase};

/// The largest discovery document or JWKS read.
pub(crate) const MAX_KEYS_BODY: usize = 256 * 1024;

/// The most keys kept of one JWKS.
const MAX_KEYS: usize = 100;

/// How soon a fetch may follow a failed one while no key set was ever loaded.
const FIRST_RETRY: Duration = Duration::from_secs(5);

/// The keys of one issuer as last fetched.
#[derive(Default)]
pub(crate) struct KeySet {
    keys: HashMap<String, Arc<VerifyingKey>>,
    /// Whether a non-empty set was ever loaded.
    loaded: bool,
    /// When it was fetched.
    fetched_at: Option<Instant>,
}

impl KeySet {
    pub(crate) fn get(&self, kid: &str) -> Option<&Arc<VerifyingKey>> {
        self.keys.get(kid)
    }
}

/// What a key lookup found.
#[derive(Clone, Debug)]
pub(crate) enum Lookup {
    Found(Arc<VerifyingKey>),
    /// The issuer's keys are known, and none has this `kid`.
    Unknown,
    /// No key set could be loaded yet.
    Unavailable,
}

/// Why a fetch failed, for a log line (no outside text but escaped).
#[derive(Clone, Debug)]
struct FetchError(String);

type Flight = Shared<BoxFuture<'static, ()>>;

#[derive(Default)]
struct FetchState {
    flight: Option<Flight>,
    last_started: Option<Instant>,
    jwks_uri: Option<(Arc<str>, Instant)>,
}

/// Settings of the fetches.
#[derive(Clone)]
pub(crate) struct FetchSettings {
    pub(crate) http: HttpService,
    pub(crate) timeout: Duration,
    pub(crate) cooldown: Duration,
    pub(crate) discovery_lifetime: Duration,
    /// How old a key set may grow before a use fetches it again in the background.
    pub(crate) max_age: Duration,
}

/// One issuer and its keys.
pub(crate) struct IssuerKeys {
    pub(crate) issuer: Arc<str>,
    discovery_url: String,
    settings: FetchSettings,
    snapshot: ArcSwap<KeySet>,
    state: Mutex<FetchState>,
    fetches: std::sync::atomic::AtomicU64,
}

impl fmt::Debug for IssuerKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssuerKeys")
            .field("issuer", &self.issuer)
            .field("keys", &self.snapshot.load().keys.len())
            .finish_non_exhaustive()
    }
}

impl IssuerKeys {
    pub(crate) fn new(issuer: &str, settings: FetchSettings) -> Self {
        let issuer = issuer.trim_end_matches('/');
        IssuerKeys {
            issuer: Arc::from(issuer),
            discovery_url: format!("{issuer}/.well-known/openid-configuration"),
            settings,
            snapshot: ArcSwap::from_pointee(KeySet::default()),
            state: Mutex::new(FetchState::default()),
            fetches: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// The key set as it is now.
    pub(crate) fn snapshot(&self) -> arc_swap::Guard<Arc<KeySet>> {
        self.snapshot.load()
    }

    /// Whether a non-empty key set was ever loaded.
    pub(crate) fn loaded(&self) -> bool {
        self.snapshot.load().loaded
    }

    /// Loads the key set now when none was ever loaded (joining a fetch that runs;
    /// within the cooldown after a failed one, nothing is fetched): whether one is
    /// loaded afterwards.
    pub(crate) async fn load(self: &Arc<Self>) -> bool {
        if self.loaded() {
            return true;
        }
        if let Some(flight) = self.refetch() {
            flight.await;
        }
        self.loaded()
    }

    /// How many JWKS fetches were started.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(std::sync::atomic::Ordering::Relaxed)
    }

    fn state(&self) -> std::sync::MutexGuard<'_, FetchState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Starts a background refetch when the key set is older than its maximum age
    /// (within the cooldown, and never more than one at a time), so that a key the
    /// issuer withdrew is dropped even while no unknown `kid` arrives. Nobody waits.
    pub(crate) fn refresh_if_stale(self: &Arc<Self>, set: &KeySet) {
        if set
            .fetched_at
            .is_some_and(|at| at.elapsed() >= self.settings.max_age)
        {
            let _ = self.refetch();
        }
    }

    /// The key with `kid`: from the snapshot, or after one refetch when the cooldown
    /// allows it (a refetch that runs is joined, not repeated).
    pub(crate) async fn key(self: &Arc<Self>, kid: &str) -> Lookup {
        {
            let snapshot = self.snapshot.load();
            if let Some(key) = snapshot.get(kid) {
                self.refresh_if_stale(&snapshot);
                return Lookup::Found(key.clone());
            }
        }
        if let Some(flight) = self.refetch() {
            flight.await;
        }
        let snapshot = self.snapshot.load();
        match snapshot.get(kid) {
            Some(key) => Lookup::Found(key.clone()),
            None if snapshot.loaded => Lookup::Unknown,
            None => Lookup::Unavailable,
        }
    }

    /// Fetches the key set now, whatever the cooldown: a fetch that runs is waited for
    /// first (it may have started before the issuer's change), then one of its own.
    /// Returns how many keys the new set holds.
    ///
    /// # Errors
    /// Why the fetch failed, or that the set holds no usable key (logged); the keys at
    /// hand are kept.
    pub(crate) async fn reload(&self) -> Result<usize, ()> {
        let running = self.state().flight.clone();
        if let Some(flight) = running {
            flight.await;
        }
        self.state().last_started = Some(Instant::now());
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let result = self.fetch().await;
        let outcome = match &result {
            Ok(set) if set.keys.is_empty() => "empty",
            Ok(_) => "success",
            Err(_) => "failure",
        };
        super::metrics::key_fetch(&self.issuer, outcome);
        let issuer = crate::text::escape(&self.issuer);
        match result {
            Ok(set) if set.keys.is_empty() => {
                tracing::warn!(%issuer, "reloaded JWKS holds no usable key: keeping the keys at hand");
                Err(())
            }
            Ok(set) => {
                let count = set.keys.len();
                tracing::debug!(%issuer, keys = count, "reloaded the issuer's keys");
                self.snapshot.store(Arc::new(set));
                Ok(count)
            }
            Err(FetchError(why)) => {
                self.state().jwks_uri = None;
                tracing::warn!(%issuer, error = %why, "cannot reload the issuer's keys: keeping the keys at hand");
                Err(())
            }
        }
    }

    /// The refetch to wait for: the one that runs, or a new one when the cooldown has
    /// passed; `None` when the cooldown holds.
    fn refetch(self: &Arc<Self>) -> Option<Flight> {
        let mut state = self.state();
        if let Some(flight) = &state.flight {
            return Some(flight.clone());
        }
        let cooldown = if self.snapshot.load().loaded {
            self.settings.cooldown
        } else {
            self.settings.cooldown.min(FIRST_RETRY)
        };
        let now = Instant::now();
        if state
            .last_started
            .is_some_and(|at| now.saturating_duration_since(at) < cooldown)
        {
            return None;
        }
        if tokio::runtime::Handle::try_current().is_err() {
            return None;
        }
        state.last_started = Some(now);
        self.fetches
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let me = Arc::clone(self);
        // A task of its own: a caller that gives up does not stop the fetch.
        let task = tokio::spawn(async move {
            let result = me.fetch().await;
            let outcome = match &result {
                Ok(set) if set.keys.is_empty() => "empty",
                Ok(_) => "success",
                Err(_) => "failure",
            };
            super::metrics::key_fetch(&me.issuer, outcome);
            let mut state = me.state();
            match result {
                Ok(set) if set.keys.is_empty() => tracing::warn!(
                    issuer = %crate::text::escape(&me.issuer),
                    "the issuer's JWKS holds no usable key: keeping the keys at hand"
                ),
                Ok(set) => {
                    tracing::debug!(
                        issuer = %crate::text::escape(&me.issuer),
                        keys = set.keys.len(),
                        "fetched the issuer's keys"
                    );
                    me.snapshot.store(Arc::new(set));
                }
                Err(FetchError(why)) => {
                    // A JWKS that fails may have moved: discover it again next time.
                    state.jwks_uri = None;
                    tracing::warn!(
                        issuer = %crate::text::escape(&me.issuer),
                        error = %why,
                        "cannot fetch the issuer's keys: keeping the keys at hand"
                    );
                }
            }
            state.flight = None;
        });
        let waiter = Arc::clone(self);
        let flight = async move {
            // A task that panicked or whose runtime stopped did not clear the flight.
            if task.await.is_err() {
                waiter.state().flight = None;
            }
        }
        .boxed()
        .shared();
        state.flight = Some(flight.clone());
        Some(flight)
    }

    /// Fetches the discovery document when the copy at hand is older than its
    /// lifetime, then the JWKS.
    async fn fetch(&self) -> Result<KeySet, FetchError> {
        let known = {
            let state = self.state();
            state.jwks_uri.as_ref().and_then(|(uri, at)| {
                (at.elapsed() < self.settings.discovery_lifetime).then(|| uri.clone())
            })
        };
        let jwks_uri = match known {
            Some(uri) => uri,
            None => {
                let uri: Arc<str> = Arc::from(self.discover().await?);
                self.state().jwks_uri = Some((uri.clone(), Instant::now()));
                uri
            }
        };
        let body = self.get(&jwks_uri).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| {
            FetchError(format!(
                "the JWKS is not JSON ({})",
                crate::jose::json_error_without_input(&e)
            ))
        })?;
        self.key_set(&doc)
    }

    /// Starts with the keys of `jwks` (a JWKS document) instead of none.
    ///
    /// # Errors
    /// What is wrong, when the document holds no usable key.
    pub(crate) fn preload(&self, jwks: &Value) -> Result<(), String> {
        let set = self.key_set(jwks).map_err(|FetchError(why)| why)?;
        if set.keys.is_empty() {
            return Err("the JWKS holds no usable key".to_owned());
        }
        self.snapshot.store(Arc::new(set));
        Ok(())
    }

    /// The usable keys of a JWKS document (each with a `kid`; the others are skipped).
    fn key_set(&self, doc: &Value) -> Result<KeySet, FetchError> {
        let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
            return Err(FetchError("the JWKS has no `keys` array".into()));
        };
        let mut keys = HashMap::new();
        for entry in entries.iter().take(MAX_KEYS) {
            let Some(object) = entry.as_object() else {
                continue;
            };
            let Some(kid) = object.get("kid").and_then(Value::as_str) else {
                continue;
            };
            match VerifyingKey::from_json(object, false) {
                Ok(key) => {
                    keys.insert(kid.to_owned(), Arc::new(key));
                }
                Err(why) => tracing::debug!(
                    issuer = %crate::text::escape(&self.issuer),
                    kid = %crate::text::untrusted(kid, &[]),
                    reason = ?why,
                    "skipping a key of the issuer's JWKS"
                ),
            }
        }
        let loaded = !keys.is_empty();
        Ok(KeySet {
            keys,
            loaded,
            fetched_at: Some(Instant::now()),
        })
    }

    /// The `jwks_uri` of the issuer's discovery document, which must name this issuer.
    async fn discover(&self) -> Result<String, FetchError> {
        let body = self.get(&self.discovery_url).await?;
        let doc: Value = serde_json::from_slice(&body).map_err(|e| {
            FetchError(format!(
                "the discovery document is not JSON ({})",
                crate::jose::json_error_without_input(&e)
            ))
        })?;
        let issuer = doc
            .get("issuer")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if issuer.trim_end_matches('/') != &*self.issuer {
            return Err(FetchError(format!(
                "the discovery document names issuer `{}`",
                crate::text::untrusted(issuer, &[])
            )));
        }
        let Some(uri) = doc.get("jwks_uri").and_then(Value::as_str) else {
            return Err(FetchError("the discovery document has no jwks_uri".into()));
        };
        crate::config::check_url("jwks_uri", uri)
            .map_err(|e| FetchError(e.to_string()))
            .map(|url| url.to_string())
    }

    /// GETs `url` under the timeout: a 200 with a body of at most
    /// [`MAX_KEYS_BODY`] bytes (a redirect is a failure: none is followed).
    async fn get(&self, url: &str) -> Result<Bytes, FetchError> {
        let request = Request::get(url)
            .header(header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|_| FetchError("not a valid URL".into()))?;
        let exchange = async {
            let response = self
                .settings
                .http
                .clone()
                .oneshot(request)
                .await
                .map_err(|e| {
                    FetchError(format!(
                        "request failed ({})",
                        crate::text::untrusted(&e.to_string(), &[])
                    ))
                })?;
            if response.status() != StatusCode::OK {
                return Err(FetchError(format!("answered HTTP {}", response.status())));
            }
            let mut body = response.into_body();
            let mut collected = bytes::BytesMut::new();
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|_| FetchError("the body broke off".into()))?;
                if let Ok(data) = frame.into_data() {
                    if collected.len() + data.len() > MAX_KEYS_BODY {
                        return Err(FetchError(format!(
                            "the body is larger than {MAX_KEYS_BODY} bytes"
                        )));
                    }
                    collected.extend_from_slice(&data);
                }
            }
            Ok(collected.freeze())
        };
        tokio::time::timeout(self.settings.timeout, exchange)
            .await
            .map_err(|_| FetchError(format!("no answer within {:?}", self.settings.timeout)))?
    }
}
