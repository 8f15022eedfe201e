//! Token exchange (RFC 8693), the SFM pattern: a service that receives calls carrying a
//! token meant for itself exchanges that token at HelseID for a token to a downstream
//! API, keeping the original client's identity.
//!
//! The received token is a [`SubjectToken`]. Put it in the request's extensions (from
//! an incoming `Authorization` header: [`SubjectToken::from_headers`]) and send the
//! request through a [`HelseIdLayer`](crate::HelseIdLayer) built with
//! [`token_exchange`](crate::auth::HelseIdLayerBuilder::token_exchange): the layer
//! exchanges it (authenticating with the service's own client assertion), caches the
//! result per (service client, downstream scopes, subject token), never past the subject
//! token's own expiry, and attaches the new token.
//!
//! # Example
//! ```no_run
//! use bytes::Bytes;
//! use http_body_util::Full;
//! use helseid::HelseIdLayer;
//! use helseid::config::ClientConfig;
//! use helseid::endpoint::TokenEndpoint;
//! use helseid::exchange::SubjectToken;
//! use tower::{ServiceBuilder, ServiceExt};
//!
//! # async fn run(incoming: http::HeaderMap) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let endpoint = TokenEndpoint::new(ClientConfig::from_file("sfm-client.json")?)?;
//! let downstream = ServiceBuilder::new()
//!     .layer(
//!         HelseIdLayer::builder(endpoint)
//!             .token_exchange()
//!             .scopes(["nhn:reseptformidleren/access"])
//!             .build(),
//!     )
//!     .service(helseid::transport::https_client::<Full<Bytes>>()?);
//!
//! // In a handler: the caller's token, from its `Authorization` header.
//! let subject = SubjectToken::from_headers(&incoming)?;
//! let mut request = http::Request::get("https://rf.example/api").body(Full::new(Bytes::new()))?;
//! request.extensions_mut().insert(subject);
//! let _response = downstream.oneshot(request).await?;
//! # Ok(()) }
//! ```

use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{HeaderMap, header};
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// `grant_type` of a token exchange.
pub const TOKEN_EXCHANGE_GRANT: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// `subject_token_type` of an access token.
pub const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// An access token a service received, to exchange for a token to a downstream API
/// (RFC 8693 `subject_token`).
///
/// Cheap to clone. Two subject tokens are equal when the tokens are; the cache keys them
/// by a SHA-256 fingerprint, and `Debug` shows only the fingerprint's first bytes.
#[derive(Clone)]
pub struct SubjectToken {
    inner: Arc<Inner>,
}

struct Inner {
    secret: Zeroizing<String>,
    fingerprint: [u8; 32],
    expires_at: Option<Instant>,
}

impl SubjectToken {
    /// Wraps a received access token. When it is a JWT, its `exp` claim (read without
    /// verifying anything: the service has verified the token) bounds how long an
    /// exchanged token is used.
    pub fn new(token: impl Into<String>) -> Self {
        let secret = Zeroizing::new(token.into());
        let expires_at = jwt_expiry(&secret);
        Self::build(secret, expires_at)
    }

    /// Wraps a received access token that expires at `expires_at` (for opaque tokens,
    /// whose expiry the service learnt from introspection).
    pub fn with_expiry(token: impl Into<String>, expires_at: Instant) -> Self {
        Self::build(Zeroizing::new(token.into()), Some(expires_at))
    }

    fn build(secret: Zeroizing<String>, expires_at: Option<Instant>) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, secret.as_bytes());
        let mut fingerprint = [0u8; 32];
        fingerprint.copy_from_slice(digest.as_ref());
        SubjectToken {
            inner: Arc::new(Inner {
                secret,
                fingerprint,
                expires_at,
            }),
        }
    }

    /// The token from an incoming `Authorization: Bearer <token>` (or `DPoP <token>`)
    /// header.
    ///
    /// # Errors
    /// [`Error::SubjectToken`] when there is no `Authorization` header, it is not
    /// `Bearer` or `DPoP`, or it has no token.
    pub fn from_headers(headers: &HeaderMap) -> Result<Self> {
        let value = headers
            .get(header::AUTHORIZATION)
            .ok_or_else(|| subject_error("the request has no Authorization header"))?;
        let value = value
            .to_str()
            .map_err(|_| subject_error("the Authorization header is not ASCII"))?;
        let (scheme, token) = value
            .split_once(' ')
            .ok_or_else(|| subject_error("the Authorization header has no scheme"))?;
        if !(scheme.eq_ignore_ascii_case("bearer") || scheme.eq_ignore_ascii_case("dpop")) {
            return Err(subject_error(format!(
                "the Authorization scheme `{}` is neither Bearer nor DPoP",
                scheme.chars().take(20).collect::<String>()
            )));
        }
        let token = token.trim();
        if token.is_empty() {
            return Err(subject_error("the Authorization header has no token"));
        }
        Ok(Self::new(token))
    }

    /// The token itself.
    ///
    /// # Security
    /// A bearer credential of the service's caller. Never log or print it.
    pub fn secret(&self) -> &str {
        &self.inner.secret
    }

    /// When the token expires, when known.
    pub fn expires_at(&self) -> Option<Instant> {
        self.inner.expires_at
    }

    /// Whether the token is known to have expired.
    pub fn is_expired(&self) -> bool {
        self.inner.expires_at.is_some_and(|at| Instant::now() >= at)
    }

    /// The whole SHA-256 of the token.
    #[cfg(feature = "redis")]
    pub(crate) fn digest(&self) -> &[u8; 32] {
        &self.inner.fingerprint
    }

    /// The first bytes of the token's SHA-256, in hex: enough to tell tokens apart in
    /// logs, useless to an attacker.
    pub fn fingerprint(&self) -> String {
        crate::text::hex(&self.inner.fingerprint[..6])
    }
}

fn subject_error(reason: impl Into<String>) -> Error {
    Error::SubjectToken {
        reason: reason.into(),
    }
}

impl fmt::Debug for SubjectToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SubjectToken")
            .field("fingerprint", &self.fingerprint())
            .field(
                "expires_in",
                &self
                    .inner
                    .expires_at
                    .map(|at| at.saturating_duration_since(Instant::now())),
            )
            .finish()
    }
}

impl PartialEq for SubjectToken {
    fn eq(&self, other: &Self) -> bool {
        self.inner.fingerprint == other.inner.fingerprint
    }
}

impl Eq for SubjectToken {}

impl Hash for SubjectToken {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.inner.fingerprint.hash(state);
    }
}

/// The expiry of a JWT's `exp` claim on tokio's clock, or `None` when the token is not a
/// JWT with a numeric `exp`.
fn jwt_expiry(token: &str) -> Option<Instant> {
    #[derive(serde::Deserialize)]
    struct Exp {
        exp: Option<f64>,
    }
    let payload = token.split('.').nth(1)?;
    let bytes = Zeroizing::new(URL_SAFE_NO_PAD.decode(payload).ok()?);
    let exp = serde_json::from_slice::<Exp>(&bytes).ok()?.exp?;
    if !exp.is_finite() || exp < 0.0 {
        return None;
    }
    let now = SystemTime::now().duration_since(UNIX_EPOCH).ok()?;
    // An `exp` far in the future (1e19, say) is capped, not added as it is: `Instant`
    // arithmetic would overflow.
    let remaining = Duration::try_from_secs_f64(exp)
        .unwrap_or(Duration::MAX)
        .saturating_sub(now);
    Some(crate::token::instant_in(remaining))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn jwt(claims: &serde_json::Value) -> String {
        format!(
            "eyJhbGciOiJSUzI1NiJ9.{}.c2ln",
            URL_SAFE_NO_PAD.encode(claims.to_string())
        )
    }

    fn unix_now() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("clock")
            .as_secs()
    }

    #[tokio::test(start_paused = true)]
    async fn the_expiry_comes_from_the_jwt() {
        let token = SubjectToken::new(jwt(&serde_json::json!({ "exp": unix_now() + 120 })));
        let left = token
            .expires_at()
            .expect("exp")
            .duration_since(Instant::now());
        assert!(left > Duration::from_secs(110) && left <= Duration::from_secs(120));
        assert!(!token.is_expired());
        tokio::time::advance(Duration::from_secs(121)).await;
        assert!(token.is_expired());

        assert_eq!(SubjectToken::new("opaque").expires_at(), None);
        assert_eq!(
            SubjectToken::new(jwt(&serde_json::json!({ "exp": "soon" }))).expires_at(),
            None
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_exp_far_in_the_future_is_capped_not_overflowed() {
        // 1e19 s lies past what `Instant` can add: it once panicked here.
        for exp in [
            serde_json::json!(1e19),
            serde_json::json!(u64::MAX),
            serde_json::json!(1.7e19),
        ] {
            let token = SubjectToken::new(jwt(&serde_json::json!({ "exp": exp })));
            let left = token
                .expires_at()
                .expect("exp")
                .duration_since(Instant::now());
            assert_eq!(left, crate::token::FAR_AHEAD, "{exp}");
            assert!(!token.is_expired());
        }
        // Past what `Duration` holds at all: also far ahead, not absent.
        let token = SubjectToken::new(jwt(&serde_json::json!({ "exp": 1e300 })));
        assert!(token.expires_at().is_some() && !token.is_expired());
    }

    #[test]
    fn equality_and_debug_go_by_fingerprint() {
        let a = SubjectToken::new("token-a-secret");
        assert_eq!(a, SubjectToken::new("token-a-secret"));
        assert_ne!(a, SubjectToken::new("token-b-secret"));
        let debug = format!("{a:?}");
        assert!(!debug.contains("secret"), "{debug}");
        assert!(debug.contains(&a.fingerprint()), "{debug}");
        assert_eq!(a.fingerprint().len(), 12);
    }

    #[test]
    fn from_headers_reads_bearer_and_dpop_and_names_what_is_wrong() {
        let headers = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(
                header::AUTHORIZATION,
                HeaderValue::from_str(value).expect("value"),
            );
            headers
        };
        let token = SubjectToken::from_headers(&headers("Bearer abc.def.ghi")).expect("bearer");
        assert_eq!(token.secret(), "abc.def.ghi");
        let token = SubjectToken::from_headers(&headers("DPoP xyz")).expect("dpop");
        assert_eq!(token.secret(), "xyz");
        for (headers, expected) in [
            (HeaderMap::new(), "no Authorization header"),
            (
                headers("Basic dXNlcjpwYXNz"),
                "`Basic` is neither Bearer nor DPoP",
            ),
            (headers("Bearer "), "has no token"),
            (headers("Bearer"), "has no scheme"),
        ] {
            let e = SubjectToken::from_headers(&headers)
                .unwrap_err()
                .to_string();
            assert!(e.contains(expected), "{e}");
            assert!(!e.contains("dXNlcjpwYXNz"), "{e}");
        }
    }
}
