//! DPoP proofs at a resource server (RFC 9449 sections 4.3, 7.1, 9 and 11): every check
//! of the `DPoP` header, the store of `jti`s seen, and stateless server nonces.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::time::Duration;

use aws_lc_rs::{digest, hmac};
use serde_json::Value;
use tokio::time::Instant;

use super::answer::Reason;
use super::claims::seconds;
use super::jwk::VerifyingKey;
use super::jws::{self, JwsError};
use crate::error::BoxError;

/// The future a [`ReplayStore`] answers with.
pub type ReplayFuture<'a> = Pin<Box<dyn Future<Output = Result<bool, BoxError>> + Send + 'a>>;

/// Where the `jti`s of the DPoP proofs seen are kept, for as long as a proof is
/// accepted, so that none is accepted twice. [`MemoryReplayStore`] keeps them in this
/// process; `RedisReplayStore` (feature `redis`) keeps them in Redis, shared by
/// replicas; any other store implements this trait, and so does any closure
/// `Fn([u8; 32], Duration) -> impl Future<Output = Result<bool, BoxError>>`.
pub trait ReplayStore: Send + Sync + 'static {
    /// Records `key` (the SHA-256 of a proof's `jti`) for `ttl`: `Ok(true)` when it was
    /// not there (the proof is fresh), `Ok(false)` when it was (a replay). An error
    /// refuses the request with 503.
    fn first_use(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_>;
}

impl<F, Fut> ReplayStore for F
where
    F: Fn([u8; 32], Duration) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<bool, BoxError>> + Send + 'static,
{
    fn first_use(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_> {
        Box::pin(self(key, ttl))
    }
}

const SHARDS: usize = 16;

/// A bounded in-memory [`ReplayStore`]: hashes of `jti`s with their expiry, in
/// sixteen shards under short locks (never held across an await). When a shard is full
/// even after dropping what has expired, new proofs are refused (503) rather than a
/// `jti` forgotten early.
pub struct MemoryReplayStore {
    shards: Vec<Mutex<HashMap<[u8; 32], Instant>>>,
    per_shard: usize,
}

impl fmt::Debug for MemoryReplayStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryReplayStore")
            .field("capacity", &(self.per_shard * SHARDS))
            .finish_non_exhaustive()
    }
}

impl Default for MemoryReplayStore {
    /// Room for 1,000,000 `jti`s.
    fn default() -> Self {
        Self::with_capacity(1_000_000)
    }
}

impl MemoryReplayStore {
    /// A store with room for about `capacity` `jti`s.
    pub fn with_capacity(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        MemoryReplayStore {
            shards: (0..SHARDS).map(|_| Mutex::new(HashMap::new())).collect(),
            per_shard,
        }
    }

    fn record(&self, key: [u8; 32], ttl: Duration) -> Result<bool, BoxError> {
        let now = Instant::now();
        let shard = &self.shards[usize::from(key[0]) % SHARDS];
        let mut map = shard.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(until) = map.get(&key)
            && *until > now
        {
            return Ok(false);
        }
        if map.len() >= self.per_shard {
            map.retain(|_, until| *until > now);
            if map.len() >= self.per_shard {
                return Err("the DPoP replay store is full".into());
            }
        }
        map.insert(key, now + ttl);
        Ok(true)
    }
}

impl ReplayStore for MemoryReplayStore {
    fn first_use(&self, key: [u8; 32], ttl: Duration) -> ReplayFuture<'_> {
        let result = self.record(key, ttl);
        Box::pin(std::future::ready(result))
    }
}

/// Stateless server nonces: HMAC-SHA256 of the time window, under a key the layer
/// holds (give replicas the same key). The nonce of the current window and of the one
/// before are accepted.
pub(crate) struct Nonces {
    key: hmac::Key,
    window: u64,
}

impl fmt::Debug for Nonces {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Nonces")
            .field("window", &self.window)
            .finish_non_exhaustive()
    }
}

impl Nonces {
    pub(crate) fn new(secret: &[u8], window: Duration) -> Self {
        Nonces {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
            window: window.as_secs().max(1),
        }
    }

    fn of_window(&self, index: u64) -> String {
        let tag = hmac::sign(&self.key, &index.to_be_bytes());
        crate::jose::b64(&tag.as_ref()[..24])
    }

    /// The nonce to hand out now.
    pub(crate) fn current(&self, now: u64) -> String {
        self.of_window(now / self.window)
    }

    /// Whether `nonce` is this window's or the last one's.
    pub(crate) fn accepts(&self, nonce: &str, now: u64) -> bool {
        let index = now / self.window;
        [index, index.saturating_sub(1)].into_iter().any(|i| {
            aws_lc_rs::constant_time::verify_slices_are_equal(
                self.of_window(i).as_bytes(),
                nonce.as_bytes(),
            )
            .is_ok()
        })
    }
}

/// What a proof is checked against.
pub(crate) struct Expected<'a> {
    pub(crate) method: &'a str,
    /// The request's URI, normalised ([`normalise_uri`]).
    pub(crate) htu: &'a str,
    /// base64url(SHA-256(access token)).
    pub(crate) ath: &'a str,
    /// The token's `cnf.jkt`.
    pub(crate) jkt: &'a str,
    pub(crate) now: u64,
    /// How old a proof may be, in seconds.
    pub(crate) max_age: u64,
    /// How far in the future a proof's `iat` may be, in seconds.
    pub(crate) future: u64,
}

/// A proof that passed every check but the replay store, with the hash of its `jti`.
#[derive(Debug)]
pub(crate) struct CheckedProof {
    pub(crate) jti_hash: [u8; 32],
    pub(crate) nonce: Option<String>,
}

fn proof_reason(e: JwsError) -> Reason {
    match e {
        JwsError::Alg => Reason::ProofAlgorithm,
        _ => Reason::MalformedProof,
    }
}

/// Checks a proof against the request and the token (everything but the nonce and
/// the replay store, which the caller asks next).
pub(crate) fn check(proof: &str, expected: &Expected<'_>) -> Result<CheckedProof, Reason> {
    let jws = jws::parse(proof).map_err(proof_reason)?;
    let typ = jws
        .header
        .get("typ")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !typ.eq_ignore_ascii_case("dpop+jwt") {
        return Err(Reason::ProofType);
    }
    let Some(Value::Object(jwk)) = jws.header.get("jwk") else {
        return Err(Reason::ProofKey);
    };
    let key = VerifyingKey::from_json(jwk, true).map_err(|_| Reason::ProofKey)?;
    if !key.fits(jws.alg) {
        return Err(Reason::ProofKey);
    }
    if !key.verifies(jws.alg, jws.signing_input.as_bytes(), &jws.signature) {
        return Err(Reason::ProofSignature);
    }
    let claims = &jws.payload;
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    if text("htm") != Some(expected.method) {
        return Err(Reason::ProofMethod);
    }
    match text("htu").and_then(normalise_uri) {
        Some(htu) if htu == expected.htu => {}
        _ => return Err(Reason::ProofUri),
    }
    let Some(iat) = claims.get("iat").and_then(seconds) else {
        return Err(Reason::ProofTime);
    };
    if iat.saturating_add(expected.max_age) < expected.now
        || iat > expected.now.saturating_add(expected.future)
    {
        return Err(Reason::ProofTime);
    }
    match text("ath") {
        Some(ath) if constant_eq(ath, expected.ath) => {}
        _ => return Err(Reason::ProofTokenHash),
    }
    // The key's thumbprint (RFC 7638) from its required members only.
    let public = super::jwk::public_jwk(jwk).ok_or(Reason::ProofKey)?;
    if !constant_eq(&public.thumbprint(), expected.jkt) {
        return Err(Reason::ProofKeyBinding);
    }
    let Some(jti) = text("jti").filter(|j| !j.is_empty() && j.len() <= 256) else {
        return Err(Reason::ProofReplay);
    };
    let mut jti_hash = [0u8; 32];
    jti_hash.copy_from_slice(digest::digest(&digest::SHA256, jti.as_bytes()).as_ref());
    // An empty nonce (as NHN's example proof carries) is no nonce.
    let nonce = text("nonce").filter(|n| !n.is_empty()).map(str::to_owned);
    Ok(CheckedProof { jti_hash, nonce })
}

fn constant_eq(a: &str, b: &str) -> bool {
    aws_lc_rs::constant_time::verify_slices_are_equal(a.as_bytes(), b.as_bytes()).is_ok()
}

/// An `http`/`https` URI as `scheme://host[:port]/path`, normalised (RFC 3986 section
/// 6.2.2: scheme and host in lower case, no default port, dot segments removed,
/// percent-encoding in upper case and unreserved characters decoded), without query
/// and fragment. `None` for anything else.
pub(crate) fn normalise_uri(uri: &str) -> Option<String> {
    let url = url::Url::parse(uri).ok()?;
    if !matches!(url.scheme(), "http" | "https")
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return None;
    }
    let host = url.host_str()?;
    let mut out = String::with_capacity(uri.len());
    out.push_str(url.scheme());
    out.push_str("://");
    out.push_str(host);
    if let Some(port) = url.port() {
        out.push(':');
        out.push_str(&port.to_string());
    }
    normalise_path(url.path(), &mut out);
    Some(out)
}

fn normalise_path(path: &str, out: &mut String) {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%'
            && i + 2 < bytes.len()
            && let (Some(h), Some(l)) = (hex(bytes[i + 1]), hex(bytes[i + 2]))
        {
            let c = h * 16 + l;
            if c.is_ascii_alphanumeric() || matches!(c, b'-' | b'.' | b'_' | b'~') {
                out.push(char::from(c));
            } else {
                out.push('%');
                out.push(char::from(bytes[i + 1].to_ascii_uppercase()));
                out.push(char::from(bytes[i + 2].to_ascii_uppercase()));
            }
            i += 3;
            continue;
        }
        out.push(char::from(b));
        i += 1;
    }
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uris_are_normalised() {
        let n = |s: &str| normalise_uri(s);
        assert_eq!(
            n("HTTPS://API.Example.no:443/a/%7eb/../c?q=1#f").as_deref(),
            Some("https://api.example.no/a/c")
        );
        assert_eq!(
            n("https://api.example.no/a%2fb").as_deref(),
            Some("https://api.example.no/a%2Fb")
        );
        assert_eq!(
            n("https://api.example.no/%7Ex").as_deref(),
            Some("https://api.example.no/~x")
        );
        assert_eq!(
            n("http://127.0.0.1:8080/x").as_deref(),
            Some("http://127.0.0.1:8080/x")
        );
        assert_eq!(
            n("https://api.example.no").as_deref(),
            Some("https://api.example.no/")
        );
        assert_eq!(n("ftp://api.example.no/x"), None);
        assert_eq!(n("https://u:p@api.example.no/x"), None);
        assert_eq!(n("/relative"), None);
    }

    #[test]
    fn nonces_last_two_windows() {
        let nonces = Nonces::new(b"secret", Duration::from_secs(300));
        let nonce = nonces.current(1_000_000);
        assert!(nonces.accepts(&nonce, 1_000_000));
        assert!(nonces.accepts(&nonce, 1_000_000 + 300));
        assert!(!nonces.accepts(&nonce, 1_000_000 + 600));
        assert!(!nonces.accepts("", 1_000_000));
        assert!(!Nonces::new(b"other", Duration::from_secs(300)).accepts(&nonce, 1_000_000));
    }

    #[tokio::test]
    async fn the_memory_store_sees_replays_and_stays_bounded() {
        let store = MemoryReplayStore::with_capacity(16);
        let ttl = Duration::from_secs(60);
        assert!(store.first_use([1; 32], ttl).await.expect("store"));
        assert!(!store.first_use([1; 32], ttl).await.expect("store"));
        assert!(store.first_use([2; 32], ttl).await.expect("store"));
        // One per shard: a second key in shard 1 does not fit.
        let mut other = [1; 32];
        other[1] = 9;
        assert!(store.first_use(other, ttl).await.is_err());
    }
}
