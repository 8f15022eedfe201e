//! Access and refresh tokens: secrets with a redacted `Debug`, and expiry arithmetic.
//!
//! # Example
//! ```
//! use std::time::Duration;
//! use helseid::token::{AccessToken, TokenType};
//!
//! # fn main() -> Result<(), helseid::Error> {
//! let token = AccessToken::new("eyJhbGciOi...", TokenType::Bearer, Duration::from_secs(3600))?;
//! assert!(!token.is_expired());
//! assert_eq!(format!("{token:?}").contains("eyJ"), false);
//! assert_eq!(token.authorization().to_str().unwrap_or_default(), "Bearer eyJhbGciOi...");
//! # Ok(()) }
//! ```

use std::fmt;
use std::sync::OnceLock;
use std::time::Duration;

use http::HeaderValue;
use tokio::time::Instant;
use zeroize::Zeroizing;

use crate::error::{Error, Result};

/// How an access token is presented to an API.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum TokenType {
    /// `Authorization: Bearer <token>`.
    Bearer,
    /// `Authorization: DPoP <token>` with a DPoP proof (RFC 9449).
    DPoP,
}

impl TokenType {
    /// The scheme written before the token in an `Authorization` header.
    pub fn scheme(&self) -> &'static str {
        match self {
            TokenType::Bearer => "Bearer",
            TokenType::DPoP => "DPoP",
        }
    }

    /// Reads a `token_type` value of a token response (case-insensitive, RFC 6749 5.1).
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("bearer") {
            Some(TokenType::Bearer)
        } else if s.eq_ignore_ascii_case("dpop") {
            Some(TokenType::DPoP)
        } else {
            None
        }
    }
}

/// An access token issued by HelseID, with its absolute expiry.
///
/// `Debug` shows the type and the expiry, never the token. The `Authorization` header
/// value is built once, marked sensitive, and cloned into every request.
#[derive(Clone)]
pub struct AccessToken {
    token_type: TokenType,
    expires_at: Instant,
    scope: Option<String>,
    rejected_scope: Option<String>,
    refresh_token: Option<RefreshToken>,
    refresh_token_expires_at: Option<Instant>,
    /// `<scheme> <token>`: the token's only copy, shared by every request that carries
    /// it, and wiped when the last of them is dropped.
    authorization: HeaderValue,
    /// The DPoP `ath` (SHA-256 of the token), computed on first use.
    ath: OnceLock<String>,
    /// This token's number in this process (its clones share it): what tells a `401`'s
    /// token from its successor without comparing the bytes or keeping a copy.
    id: u64,
}

/// The next [`AccessToken`]'s id.
static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);

impl fmt::Debug for AccessToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AccessToken")
            .field("token", &"[redacted]")
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in())
            .field("scope", &self.scope)
            .field("rejected_scope", &self.rejected_scope)
            .field("refresh_token", &self.refresh_token)
            .finish()
    }
}

/// The longest time ahead the crate keeps an instant for: a lifetime or an expiry
/// further away (a server's `expires_in` of 1e19, a JWT's `exp` near `u64::MAX`) is
/// taken as this, so that adding it to `now` cannot overflow.
pub(crate) const FAR_AHEAD: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// `now + after`, with `after` capped at [`FAR_AHEAD`]: never overflows, never panics.
pub(crate) fn instant_in(after: Duration) -> Instant {
    let now = Instant::now();
    now.checked_add(after.min(FAR_AHEAD)).unwrap_or(now)
}

impl AccessToken {
    /// A token that expires `expires_in` from now.
    ///
    /// # Errors
    /// [`Error::InvalidResponse`] when the token contains characters that cannot stand in
    /// an HTTP header.
    pub fn new(
        secret: impl Into<String>,
        token_type: TokenType,
        expires_in: Duration,
    ) -> Result<Self> {
        let secret = Zeroizing::new(secret.into());
        let authorization = authorization_header(&token_type, &secret)?;
        Ok(AccessToken {
            token_type,
            expires_at: instant_in(expires_in),
            scope: None,
            rejected_scope: None,
            refresh_token: None,
            refresh_token_expires_at: None,
            authorization,
            ath: OnceLock::new(),
            id: NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        })
    }

    /// This token's number in this process: the same for its clones, another for
    /// every other token.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    pub(crate) fn with_scope(mut self, scope: Option<String>) -> Self {
        self.scope = scope;
        self
    }

    pub(crate) fn with_rejected_scope(mut self, rejected: Option<String>) -> Self {
        self.rejected_scope = rejected;
        self
    }

    pub(crate) fn with_refresh_token(
        mut self,
        token: Option<RefreshToken>,
        expires_in: Option<Duration>,
    ) -> Self {
        self.refresh_token = token;
        self.refresh_token_expires_at = expires_in.map(instant_in);
        self
    }

    /// The access token itself.
    ///
    /// # Security
    /// This is a bearer credential: whoever holds it can call the APIs it is meant for,
    /// as this client, until it expires. Do not log it, print it or put it in an error.
    pub fn secret(&self) -> &str {
        let scheme = self.token_type.scheme();
        let token = self.authorization.as_bytes().get(scheme.len() + 1..);
        // Made of a `String`, so always UTF-8.
        std::str::from_utf8(token.unwrap_or_default()).unwrap_or_default()
    }

    /// How the token is presented (`Bearer` or `DPoP`).
    pub fn token_type(&self) -> &TokenType {
        &self.token_type
    }

    /// When the token expires.
    pub fn expires_at(&self) -> Instant {
        self.expires_at
    }

    /// How long the token stays valid from now (zero once expired).
    pub fn expires_in(&self) -> Duration {
        self.expires_at.saturating_duration_since(Instant::now())
    }

    /// Whether the token has expired.
    pub fn is_expired(&self) -> bool {
        Instant::now() >= self.expires_at
    }

    /// The granted scopes, when the token endpoint said which (`scope` in the response).
    pub fn scopes(&self) -> impl Iterator<Item = &str> {
        self.scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }

    /// The scopes HelseID left out of this token (its `rejected_scope`, for example
    /// when a multi-tenant organisation has not accepted an API's terms): asked for, or
    /// granted to the client, and not in the token. Empty when none were.
    pub fn rejected_scopes(&self) -> impl Iterator<Item = &str> {
        self.rejected_scope
            .as_deref()
            .unwrap_or_default()
            .split_ascii_whitespace()
    }

    /// The refresh token that came with this access token, if any.
    pub fn refresh_token(&self) -> Option<&RefreshToken> {
        self.refresh_token.as_ref()
    }

    /// When the refresh token expires, when HelseID said so (`rt_expires_in`).
    pub fn refresh_token_expires_at(&self) -> Option<Instant> {
        self.refresh_token_expires_at
    }

    /// The `Authorization` header value (`Bearer <token>` or `DPoP <token>`), marked
    /// sensitive so that HTTP/2 never indexes it and `Debug` hides it.
    pub fn authorization(&self) -> &HeaderValue {
        &self.authorization
    }

    /// The token's hash for DPoP proofs (`ath`, RFC 9449 section 4.2).
    pub(crate) fn ath(&self) -> &str {
        self.ath.get_or_init(|| crate::dpop::ath(self.secret()))
    }
}

fn authorization_header(token_type: &TokenType, secret: &str) -> Result<HeaderValue> {
    // Exactly as long as it must be: the header lives as long as the cached token, and
    // `format!` would leave it up to twice that.
    let scheme = token_type.scheme();
    let mut text = Vec::with_capacity(scheme.len() + 1 + secret.len());
    text.extend_from_slice(scheme.as_bytes());
    text.push(b' ');
    text.extend_from_slice(secret.as_bytes());
    sensitive_header(text).ok_or_else(|| Error::InvalidResponse {
        endpoint: "token endpoint",
        status: http::StatusCode::OK,
        reason: "the access token contains characters not allowed in an HTTP header".into(),
        retry_after: None,
    })
}

/// A sensitive header value of `bytes` (`None` when they cannot be one), whose bytes are
/// wiped when the last clone of the value is dropped.
pub(crate) fn sensitive_header(bytes: Vec<u8>) -> Option<HeaderValue> {
    sensitive(wiped(bytes))
}

/// `bytes`, zeroed when the last `Bytes` that holds them is dropped.
fn wiped(bytes: Vec<u8>) -> bytes::Bytes {
    bytes::Bytes::from_owner(Wiped(Zeroizing::new(bytes)))
}

/// A sensitive header value of `bytes` (`None` when they cannot be one).
fn sensitive(bytes: bytes::Bytes) -> Option<HeaderValue> {
    let mut value = HeaderValue::from_maybe_shared(bytes).ok()?;
    value.set_sensitive(true);
    Some(value)
}

/// Sensitive copies of `values`, all slices of one buffer that is wiped when the last of
/// them is dropped: their clones share one reference count, where clones of the values
/// themselves each write their own (`None` only if a copy were not a valid value).
pub(crate) fn in_one_buffer(values: &[&HeaderValue]) -> Option<Vec<HeaderValue>> {
    let mut buffer = Vec::with_capacity(values.iter().map(|value| value.len()).sum());
    for value in values {
        buffer.extend_from_slice(value.as_bytes());
    }
    let bytes = wiped(buffer);
    let mut start = 0;
    values
        .iter()
        .map(|value| {
            let end = start + value.len();
            let copy = sensitive(bytes.slice(start..end));
            start = end;
            copy
        })
        .collect()
}

/// Bytes that are zeroed when dropped: the owner of a header value's `Bytes`.
struct Wiped(Zeroizing<Vec<u8>>);

impl AsRef<[u8]> for Wiped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// A refresh token. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct RefreshToken(Zeroizing<String>);

impl RefreshToken {
    /// Wraps a refresh token.
    pub fn new(secret: impl Into<String>) -> Self {
        RefreshToken(Zeroizing::new(secret.into()))
    }

    /// The refresh token itself.
    ///
    /// # Security
    /// A refresh token renews a user's session for days. Never log or print it.
    pub fn secret(&self) -> &str {
        &self.0
    }
}

impl std::hash::Hash for RefreshToken {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.secret().hash(state);
    }
}

impl fmt::Debug for RefreshToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("RefreshToken([redacted])")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_and_header_is_sensitive() {
        let token = AccessToken::new("s3cr3t-access", TokenType::DPoP, Duration::from_secs(60))
            .expect("token")
            .with_refresh_token(
                Some(RefreshToken::new("s3cr3t-refresh")),
                Some(Duration::from_secs(600)),
            );
        let debug = format!("{token:?}");
        assert!(!debug.contains("s3cr3t"), "{debug}");
        assert!(token.authorization().is_sensitive());
        assert!(!format!("{:?}", token.authorization()).contains("s3cr3t"));
        assert_eq!(
            token.authorization().to_str().expect("ascii"),
            "DPoP s3cr3t-access"
        );
        assert_eq!(
            token.refresh_token().map(RefreshToken::secret),
            Some("s3cr3t-refresh")
        );
    }

    #[test]
    fn values_in_one_buffer_are_equal_sensitive_and_side_by_side() {
        let (a, b) = (
            HeaderValue::from_static("Bearer a.b"),
            HeaderValue::from_static("DPoP cde"),
        );
        let copies = in_one_buffer(&[&a, &b, &a]).expect("valid values");
        assert_eq!(copies, [a.clone(), b, a]);
        assert!(copies.iter().all(HeaderValue::is_sensitive));
        let start = copies[0].as_bytes().as_ptr();
        assert_eq!(copies[1].as_bytes().as_ptr(), start.wrapping_add(10));
        assert_eq!(copies[2].as_bytes().as_ptr(), start.wrapping_add(18));
        assert_eq!(in_one_buffer(&[]), Some(Vec::new()));
    }

    #[test]
    fn the_token_is_kept_once_in_its_header_and_its_clones_share_it() {
        let token =
            AccessToken::new("abc.def", TokenType::Bearer, Duration::from_secs(60)).expect("token");
        assert_eq!(token.secret(), "abc.def");
        assert_eq!(token.authorization(), "Bearer abc.def");
        let header = token.authorization().as_bytes().as_ptr_range();
        assert!(header.contains(&token.secret().as_ptr()), "no second copy");
        let clone = token.authorization().clone();
        assert_eq!(
            clone.as_bytes().as_ptr(),
            header.start,
            "a clone shares the bytes"
        );
        let dpop =
            AccessToken::new("xyz", TokenType::DPoP, Duration::from_secs(60)).expect("token");
        assert_eq!(
            (dpop.secret(), dpop.authorization().to_str().ok()),
            ("xyz", Some("DPoP xyz"))
        );
        assert_ne!(token.id(), dpop.id());
        assert_eq!(token.clone().id(), token.id());
    }

    #[test]
    fn header_injection_is_refused() {
        let err = AccessToken::new(
            "abc\r\nX-Evil: 1",
            TokenType::Bearer,
            Duration::from_secs(60),
        )
        .expect_err("newline in token");
        assert!(!err.to_string().contains("Evil"), "{err}");
    }

    #[test]
    fn a_lifetime_past_what_instant_holds_is_capped() {
        let token = AccessToken::new("t", TokenType::Bearer, Duration::MAX).expect("token");
        assert!(token.expires_in() <= FAR_AHEAD);
        assert!(token.expires_in() > FAR_AHEAD - Duration::from_secs(60));
        let token = AccessToken::new("t", TokenType::Bearer, Duration::from_secs(60))
            .expect("token")
            .with_refresh_token(None, Some(Duration::MAX));
        assert!(token.refresh_token_expires_at.is_some());
    }

    #[tokio::test(start_paused = true)]
    async fn expiry_follows_tokio_time() {
        let token =
            AccessToken::new("t", TokenType::Bearer, Duration::from_secs(60)).expect("token");
        assert!(!token.is_expired());
        tokio::time::advance(Duration::from_secs(59)).await;
        assert_eq!(token.expires_in(), Duration::from_secs(1));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(token.is_expired());
        assert_eq!(token.expires_in(), Duration::ZERO);
    }

    #[test]
    fn token_type_parses_case_insensitively() {
        assert_eq!(TokenType::parse("bearer"), Some(TokenType::Bearer));
        assert_eq!(TokenType::parse("DPoP"), Some(TokenType::DPoP));
        assert_eq!(TokenType::parse("mac"), None);
    }
}
