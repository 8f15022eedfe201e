//! Verifying HelseID access tokens in an API: the other end of the token (feature
//! `verify`).
//!
//! [`VerifyLayer`] is a tower layer for the API's side. Before the inner service sees a
//! request it checks
//!
//! - the `Authorization` header (`DPoP` or `Bearer`, as [`Dpop`] allows; one header,
//!   never both schemes; tokens in the query string or a form body are never read);
//! - the access token: a compact JWS with canonical base64url and no repeated JSON
//!   member or `crit`, an asymmetric algorithm, `typ` `at+jwt`, the signature with the
//!   issuer's key named by `kid` (from the issuer's JWKS, never from the token), the
//!   exact `iss`, `aud`, `exp`/`nbf`/`iat` with a leeway, `scope`; ID tokens and client
//!   assertions never pass;
//! - for DPoP, the proof (RFC 9449 sections 4.3 and 7.1): `typ`, algorithm, a public
//!   `jwk` whose signature verifies, `htm`, `htu` (from the configured public base URL),
//!   `iat`, a `jti` not seen before ([`ReplayStore`]: in memory, or with feature `redis`
//!   in Redis, shared by replicas, `RedisReplayStore`), `ath`, the token's `cnf.jkt`, and
//!   optionally a server nonce.
//!
//! A request that passes carries [`Arc<HelseIdClaims>`](HelseIdClaims) in its
//! extensions; one that does not is answered by the layer ([`Refusal`]: 401 with the
//! `WWW-Authenticate` challenges of RFC 6750 and RFC 9449, 400, 403, or 503 when the
//! issuer's keys cannot be fetched), and the refusal's [`Reason`] goes to a `tracing`
//! event's `refusal` field (and to the current span's, when it has one).
//!
//! Keys: the discovery document is kept 24 hours; the keys live in a lock-free snapshot;
//! a `kid` not in it fetches the JWKS again, at most once per cooldown (30 s) for all
//! callers together; a failed or empty fetch keeps the keys at hand; a key set older
//! than 15 minutes is fetched again in the background at its next use, so that a key
//! the issuer withdrew stops verifying tokens, cached ones included. Verified tokens are
//! kept (by the SHA-256 of the token) until `exp`, which is checked again at every use,
//! as is the presence of their key in the issuer's set.
//!
//! Organisation numbers: HelseID checks `orgnr_parent`, but checks
//! [`orgnr_child`](HelseIdClaims::orgnr_child) against nothing. Do not trust it alone.
//!
//! # Example
//! ```no_run
//! use std::sync::Arc;
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use helseid::verify::{Dpop, HelseIdClaims, VerifyLayer};
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let verify = VerifyLayer::builder("https://helseid-sts.test.nhn.no")
//!     .audience("nhn:msh")
//!     .scopes_any_of(["nhn:msh/api"])
//!     .dpop(Dpop::Required)
//!     .public_base_url("https://msh.example.no")
//!     .build()?;
//! let service = ServiceBuilder::new().layer(verify).service_fn(
//!     |request: http::Request<Full<Bytes>>| async move {
//!         let claims = request.extensions().get::<Arc<HelseIdClaims>>().cloned();
//!         let client = claims.and_then(|c| c.client_id.clone()).unwrap_or_default();
//!         Ok::<_, std::convert::Infallible>(http::Response::new(Full::new(Bytes::from(client))))
//!     },
//! );
//! let answer = service
//!     .oneshot(http::Request::get("/messages").body(Full::new(Bytes::new()))?)
//!     .await?;
//! assert_eq!(answer.status(), 401); // no token
//! # Ok(()) }
//! ```

mod answer;
mod cache;
mod claims;
mod dpop;
mod jwk;
mod jws;
mod keys;
mod layer;
mod metrics;
#[cfg(feature = "redis")]
mod redis_replay;
mod service;
mod token;

use std::fmt;
use std::sync::Arc;

use http::{HeaderMap, Method, Uri, header};

pub use answer::{Reason, Refusal, Scheme};
pub use claims::{Actor, HelseIdClaims, Pid, names};
pub use dpop::{MemoryReplayStore, ReplayFuture, ReplayStore};
pub use layer::{
    DEFAULT_KEYS_MAX_AGE, DEFAULT_LEEWAY, DEFAULT_PROOF_MAX_AGE, DEFAULT_REFETCH_COOLDOWN,
    VerifyLayer, VerifyLayerBuilder,
};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use redis_replay::RedisReplayStore;
pub use service::{ResponseFuture, Verify};

use cache::TokenCache;
use dpop::{Expected, Nonces};
use keys::IssuerKeys;
use token::Verified;

/// Which schemes an API accepts.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Dpop {
    /// DPoP only: a Bearer token is refused (NHN's profile, and the default).
    #[default]
    Required,
    /// DPoP or Bearer; a DPoP-bound token must still come with DPoP.
    Allowed,
    /// Bearer only.
    Disabled,
}

/// A request that passed: its claims, and a new DPoP nonce for the answer when the
/// proof's is about to go stale.
#[derive(Debug)]
pub(crate) struct Passed {
    pub(crate) claims: Arc<HelseIdClaims>,
    pub(crate) next_nonce: Option<String>,
}

/// Everything a layer and its services share.
pub(crate) struct Settings {
    issuers: Vec<Arc<IssuerKeys>>,
    audiences: Vec<String>,
    scopes: Vec<String>,
    dpop: Dpop,
    /// The public base URL, normalised, without a trailing slash.
    base_url: Option<String>,
    leeway: u64,
    allow_jwt_typ: bool,
    strict_single_audience: bool,
    optional: bool,
    proof_max_age: u64,
    proof_future: u64,
    replay: Arc<dyn ReplayStore>,
    nonces: Option<Nonces>,
    cache: TokenCache,
    clock: Clock,
}

/// The time in seconds since the Unix epoch: the system clock, or the builder's.
pub(crate) type Clock = Arc<dyn Fn() -> u64 + Send + Sync>;

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("issuers", &self.issuers)
            .field("audiences", &self.audiences)
            .field("scopes", &self.scopes)
            .field("dpop", &self.dpop)
            .field("base_url", &self.base_url)
            .field("leeway", &self.leeway)
            .field("optional", &self.optional)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

/// Whether `s` is a `token68` (RFC 9110 section 11.2).
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    // Without an early exit, so that the compiler vectorises it: tokens are long.
    !body.is_empty()
        && body.bytes().fold(true, |ok, b| {
            ok & (b.is_ascii_alphanumeric()
                | (b == b'-')
                | (b == b'.')
                | (b == b'_')
                | (b == b'~')
                | (b == b'+')
                | (b == b'/'))
        })
}

impl Settings {
    fn bearer_ok(&self) -> bool {
        self.dpop != Dpop::Required
    }

    fn dpop_ok(&self) -> bool {
        self.dpop != Dpop::Disabled
    }

    fn refusal(&self, reason: Reason, used: Option<Scheme>) -> Refusal {
        Refusal::new(reason, used, self.bearer_ok(), self.dpop_ok())
    }

    /// The scheme whose challenge carries an error about the request as a whole.
    fn default_scheme(&self) -> Scheme {
        if self.dpop_ok() {
            Scheme::Dpop
        } else {
            Scheme::Bearer
        }
    }

    /// Checks a request: `Ok(Some(passed))` when it passes, `Ok(None)` when it has no
    /// credentials and they are optional, or the refusal.
    async fn check(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Option<Passed>, Refusal> {
        let result = self.check_inner(method, uri, headers).await;
        match &result {
            Ok(Some(_)) => metrics::passed(),
            Ok(None) => metrics::anonymous(),
            Err(refusal) => metrics::refused(refusal.reason()),
        }
        if let Err(refusal) = &result {
            let reason = refusal.reason().as_str();
            tracing::Span::current().record("refusal", reason);
            tracing::debug!(
                refusal = reason,
                status = refusal.status().as_u16(),
                "request refused"
            );
        }
        result
    }

    async fn check_inner(
        &self,
        method: &Method,
        uri: &Uri,
        headers: &HeaderMap,
    ) -> Result<Option<Passed>, Refusal> {
        let request_error = |reason| self.refusal(reason, Some(self.default_scheme()));
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        let authorization = authorizations.next();
        if authorizations.next().is_some() {
            return Err(request_error(Reason::SeveralAuthorizations));
        }
        let mut proofs = headers.get_all("dpop").iter();
        let proof = proofs.next();
        if proofs.next().is_some() {
            return Err(request_error(Reason::SeveralProofs));
        }
        let no_credentials = || {
            if self.optional && proof.is_none() {
                Ok(None)
            } else {
                Err(self.refusal(Reason::NoCredentials, None))
            }
        };
        let Some(authorization) = authorization else {
            return no_credentials();
        };
        let Ok(authorization) = authorization.to_str() else {
            return Err(request_error(Reason::MalformedAuthorization));
        };
        let (scheme, token) = authorization.split_once(' ').unwrap_or((authorization, ""));
        let token = token.trim_start_matches(' ');
        let scheme = if scheme.eq_ignore_ascii_case("bearer") {
            Scheme::Bearer
        } else if scheme.eq_ignore_ascii_case("dpop") {
            Scheme::Dpop
        } else {
            // Another scheme (Basic, say) brings no HelseID credentials.
            return no_credentials();
        };
        if !is_token68(token) {
            return Err(self.refusal(Reason::MalformedAuthorization, Some(scheme)));
        }
        match scheme {
            Scheme::Bearer if proof.is_some() => {
                return Err(request_error(Reason::BothSchemes));
            }
            Scheme::Bearer if !self.bearer_ok() => {
                return Err(self.refusal(Reason::BearerNotAccepted, Some(Scheme::Dpop)));
            }
            Scheme::Dpop if !self.dpop_ok() => {
                return Err(self.refusal(Reason::DpopNotAccepted, Some(Scheme::Bearer)));
            }
            _ => {}
        }
        let proof = match (scheme, proof) {
            (Scheme::Dpop, None) => return Err(self.refusal(Reason::NoProof, Some(scheme))),
            (Scheme::Dpop, Some(proof)) => {
                let Ok(proof) = proof.to_str() else {
                    return Err(self.refusal(Reason::MalformedProof, Some(scheme)));
                };
                if proof.contains(',') {
                    return Err(request_error(Reason::SeveralProofs));
                }
                Some(proof.trim())
            }
            _ => None,
        };
        let now = (self.clock)();
        let (claims, digest) = self
            .verified(token, now)
            .await
            .map_err(|reason| self.refusal(reason, Some(scheme)))?;
        let mut next_nonce = None;
        match (scheme, proof, claims.jkt.as_deref()) {
            (Scheme::Bearer, _, Some(_)) => {
                return Err(self.refusal(Reason::BoundTokenAsBearer, Some(scheme)));
            }
            (Scheme::Dpop, _, None) => {
                return Err(self.refusal(Reason::UnboundToken, Some(scheme)));
            }
            (Scheme::Dpop, Some(proof), Some(jkt)) => {
                let ath = crate::jose::b64(digest);
                next_nonce = self.check_proof(proof, method, uri, &ath, jkt, now).await?;
            }
            _ => {}
        }
        if !self.scopes_pass(&claims) {
            return Err(self
                .refusal(Reason::InsufficientScope, Some(scheme))
                .with_scope(self.scopes.join(" ")));
        }
        Ok(Some(Passed { claims, next_nonce }))
    }

    /// Whether `claims` have one of the scopes this API accepts (any, when none is set).
    #[inline]
    fn scopes_pass(&self, claims: &HelseIdClaims) -> bool {
        self.scopes.is_empty() || self.scopes.iter().any(|s| claims.has_scope(s))
    }

    /// The warm path, without an await: the claims of a Bearer request whose token this
    /// thread verified or took from the cache before, when the request passes (its key
    /// still in the issuer's set, `exp`/`nbf`, no `cnf`, the scopes). `None` sends the
    /// request the whole way ([`Settings::check`]), which answers it alike or refuses it.
    ///
    /// Reads the `Authorization` header as bytes: a token equal to one verified before is
    /// a `token68` of visible ASCII, which the whole way checks first.
    #[inline]
    pub(crate) fn check_now(&self, headers: &HeaderMap) -> Option<Arc<HelseIdClaims>> {
        if !self.bearer_ok() || headers.contains_key("dpop") {
            return None;
        }
        let mut authorizations = headers.get_all(header::AUTHORIZATION).iter();
        let authorization = authorizations.next()?.as_bytes();
        if authorizations.next().is_some() {
            return None;
        }
        let space = authorization.iter().position(|b| *b == b' ')?;
        let (scheme, token) = authorization.split_at(space);
        if !scheme.eq_ignore_ascii_case(b"bearer") {
            return None;
        }
        let start = token.iter().position(|b| *b != b' ')?;
        let token = &token[start..];
        let now = (self.clock)();
        let (claims, _) = self.front_hit(&cache::token_key(token), token, now)?.ok()?;
        if claims.jkt.is_some() || !self.scopes_pass(&claims) {
            return None;
        }
        metrics::passed();
        Some(claims)
    }

    /// This thread's claims of `token` and its digest, when its key is still in the
    /// issuer's set: `Some(Err)` when `exp` or `nbf` no longer hold.
    #[inline]
    fn front_hit(
        &self,
        key: &cache::TokenKey,
        token: &[u8],
        now: u64,
    ) -> Option<Result<(Arc<HelseIdClaims>, cache::TokenDigest), Reason>> {
        self.cache
            .front(key, token, |entry, claims| {
                if !self.key_kept(&entry.verified) {
                    return None;
                }
                Some(entry.verified.check_times(now, self.leeway).map(|()| {
                    metrics::cache_hit();
                    (claims.clone(), entry.digest)
                }))
            })
            .flatten()
    }

    /// Whether the key that verified `verified` is still in its issuer's set (and a
    /// background refetch started when the set is old).
    #[inline]
    fn key_kept(&self, verified: &Verified) -> bool {
        let issuer = &self.issuers[verified.issuer];
        let snapshot = issuer.snapshot();
        let kept = snapshot.get(&verified.kid).is_some();
        issuer.refresh_if_stale(&snapshot);
        kept
    }

    /// The claims of the verified token: from this thread's front or the cache (with
    /// `exp`/`nbf` checked again, and its key still in its issuer's set), or verified and
    /// kept.
    async fn verified(
        &self,
        token: &str,
        now: u64,
    ) -> Result<(Arc<HelseIdClaims>, cache::TokenDigest), Reason> {
        let key = cache::token_key(token.as_bytes());
        if let Some(found) = self.front_hit(&key, token.as_bytes(), now) {
            return found;
        }
        if let Some(hit) = self.cache.get(&key, token.as_bytes()).await {
            if self.key_kept(&hit.verified) {
                hit.verified.check_times(now, self.leeway)?;
                metrics::cache_hit();
                return Ok((self.cache.remember(key, &hit), hit.digest));
            }
            self.cache.remove(&key).await;
        }
        metrics::cache_miss();
        let verified = token::verify(self, token, now).await?;
        let entry = Arc::new(cache::Entry::new(verified, token));
        self.cache.insert(key, entry.clone()).await;
        Ok((self.cache.remember(key, &entry), entry.digest))
    }

    async fn check_proof(
        &self,
        proof: &str,
        method: &Method,
        uri: &Uri,
        ath: &str,
        jkt: &str,
        now: u64,
    ) -> Result<Option<String>, Refusal> {
        let refuse = |reason| self.refusal(reason, Some(Scheme::Dpop));
        let base = self.base_url.as_deref().unwrap_or_default();
        let htu = dpop::normalise_uri(&format!("{base}{}", uri.path()))
            .ok_or_else(|| refuse(Reason::ProofUri))?;
        let expected = Expected {
            method: method.as_str(),
            htu: &htu,
            ath,
            jkt,
            now,
            max_age: self.proof_max_age,
            future: self.proof_future,
        };
        let checked = dpop::check(proof, &expected).map_err(refuse)?;
        if let Some(nonces) = &self.nonces
            && !checked
                .nonce
                .as_deref()
                .is_some_and(|n| nonces.accepts(n, now))
        {
            return Err(refuse(Reason::ProofNonce).with_nonce(nonces.current(now)));
        }
        let ttl = std::time::Duration::from_secs(self.proof_max_age + self.proof_future + 1);
        match self.replay.first_use(checked.jti_hash, ttl).await {
            // A nonce of the last window passes; the answer hands out the current one
            // (RFC 9449 section 8.2), so the client need not be refused when it expires.
            Ok(true) => Ok(self.nonces.as_ref().and_then(|nonces| {
                let current = nonces.current(now);
                (checked.nonce.as_deref() != Some(current.as_str())).then_some(current)
            })),
            Ok(false) => Err(refuse(Reason::ProofReplay)),
            Err(error) => {
                tracing::warn!(
                    error = %crate::text::untrusted(&error.to_string(), &[]),
                    "the DPoP replay store failed"
                );
                Err(self.refusal(Reason::Unavailable, Some(Scheme::Dpop)))
            }
        }
    }

    /// [`VerifyLayer::verify_token`].
    async fn verify_alone(&self, token: &str) -> Result<Arc<HelseIdClaims>, Refusal> {
        let now = (self.clock)();
        let (claims, _) = self
            .verified(token, now)
            .await
            .map_err(|reason| self.refusal(reason, Some(Scheme::Bearer)))?;
        if !self.scopes_pass(&claims) {
            return Err(self
                .refusal(Reason::InsufficientScope, Some(Scheme::Bearer))
                .with_scope(self.scopes.join(" ")));
        }
        Ok(claims)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use tracing::field::{Field, Visit};
    use tracing::span::{Attributes, Id, Record};
    use tracing::{Event, Metadata, Subscriber};

    use super::*;

    /// Collects the `refusal` field of events and span records. (It does not track
    /// the current span, so only the event's field reaches it here.)
    #[derive(Clone, Default)]
    struct Capture(Arc<Mutex<Vec<String>>>);

    struct Refusals<'a>(&'a Mutex<Vec<String>>);

    impl Visit for Refusals<'_> {
        fn record_str(&mut self, field: &Field, value: &str) {
            if field.name() == "refusal" {
                self.0.lock().expect("lock").push(value.to_owned());
            }
        }
        fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
            if field.name() == "refusal" {
                self.0.lock().expect("lock").push(format!("{value:?}"));
            }
        }
    }

    impl Subscriber for Capture {
        fn enabled(&self, _: &Metadata<'_>) -> bool {
            true
        }
        fn new_span(&self, _: &Attributes<'_>) -> Id {
            Id::from_u64(1)
        }
        fn record(&self, _: &Id, values: &Record<'_>) {
            values.record(&mut Refusals(&self.0));
        }
        fn record_follows_from(&self, _: &Id, _: &Id) {}
        fn event(&self, event: &Event<'_>) {
            event.record(&mut Refusals(&self.0));
        }
        fn enter(&self, _: &Id) {}
        fn exit(&self, _: &Id) {}
    }

    #[test]
    fn a_refusal_names_its_reason_in_a_tracing_field() {
        let capture = Capture::default();
        let layer = VerifyLayer::builder("https://helseid.example.no")
            .audience("nhn:msh")
            .dpop(Dpop::Disabled)
            .build()
            .expect("layer");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        tracing::subscriber::with_default(capture.clone(), || {
            let span = tracing::info_span!("request", refusal = tracing::field::Empty);
            let _entered = span.enter();
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                http::HeaderValue::from_static("Bearer a b"),
            );
            let refused = runtime.block_on(layer.settings.check(
                &Method::GET,
                &Uri::from_static("/x"),
                &headers,
            ));
            assert_eq!(
                refused.expect_err("refused").reason(),
                Reason::MalformedAuthorization
            );
        });
        let seen = capture.0.lock().expect("lock").clone();
        assert_eq!(seen, vec!["malformed_authorization"]);
    }
}
