//! The crate's error type, and the OAuth 2.0 error body (RFC 6749 section 5.2).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::StatusCode;
use serde::{Deserialize, Serialize};

/// A boxed error from an HTTP service or another pluggable piece.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// A shared error from an HTTP service: shared so that [`Error`] is `Clone`, and one
/// failed token fetch can be handed to every caller that waited for it.
pub type SharedError = Arc<dyn std::error::Error + Send + Sync + 'static>;

/// Everything that can go wrong in this crate.
///
/// Messages are lowercase, name what is wrong, and never contain a secret (keys,
/// assertions, access or refresh tokens). `Clone`, because a token fetch that fails
/// fails for every caller that waited on it.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is missing or wrong. `field` names it (for example
    /// `clientId`, `privateJwk.crv`, `authority`).
    #[error("invalid configuration: `{field}`: {reason}")]
    #[non_exhaustive]
    Config {
        /// The field (JSON key or builder setting) that is wrong.
        field: String,
        /// What is wrong with it.
        reason: String,
    },

    /// A configuration file could not be read.
    #[error("cannot read configuration file {path}")]
    #[non_exhaustive]
    ConfigFile {
        /// The path that was read.
        path: String,
        /// The I/O error.
        #[source]
        source: Arc<std::io::Error>,
    },

    /// Signing a JWT (client assertion or DPoP proof) failed.
    #[error("cannot sign {what}")]
    #[non_exhaustive]
    Sign {
        /// What was being signed.
        what: &'static str,
    },

    /// The token endpoint answered with an OAuth 2.0 error body.
    #[error("token endpoint returned {error} (HTTP {status})")]
    #[non_exhaustive]
    OAuth {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// The parsed error body.
        error: OAuthError,
        /// How long the server asked the client to wait (`Retry-After` on a 429 or
        /// 503), when it said.
        retry_after: Option<Duration>,
    },

    /// A server answered with something that is not what the protocol says it should.
    #[error("{endpoint} answered HTTP {status} with an unusable body: {reason}")]
    #[non_exhaustive]
    InvalidResponse {
        /// Which endpoint answered (`token endpoint`, `discovery document`).
        endpoint: &'static str,
        /// The HTTP status of the answer.
        status: StatusCode,
        /// What is wrong with the answer.
        reason: String,
        /// How long the server asked the client to wait (`Retry-After` on a 429 or
        /// 503), when it said.
        retry_after: Option<Duration>,
    },

    /// The request did not complete in time.
    #[error("{endpoint} request timed out after {after:?}")]
    #[non_exhaustive]
    Timeout {
        /// Which endpoint was called.
        endpoint: &'static str,
        /// The timeout that elapsed.
        after: Duration,
    },

    /// The HTTP service failed (connection refused, TLS failure, ...). The service's own
    /// error is the [`source`](std::error::Error::source).
    #[error("{endpoint} request failed")]
    #[non_exhaustive]
    Transport {
        /// Which endpoint was called.
        endpoint: &'static str,
        /// The HTTP service's error.
        #[source]
        source: SharedError,
    },

    /// An API (Selvbetjening's client-secret API, say) refused a request; `detail` is
    /// its problem's `detail` (or `title`), made safe to show.
    #[error("{api} answered HTTP {status}: {detail}")]
    #[non_exhaustive]
    Api {
        /// Which API answered.
        api: &'static str,
        /// The HTTP status of the answer.
        status: StatusCode,
        /// What the API said was wrong.
        detail: String,
    },

    /// A key rotation stopped at `step`; `advice` says where the configuration stands
    /// and what to do. The step's error is the [`source`](std::error::Error::source).
    #[error("key rotation failed {step}: {advice}")]
    #[non_exhaustive]
    KeyRotation {
        /// The step that failed.
        step: &'static str,
        /// Where the configuration stands, and what to do.
        advice: String,
        /// The step's error.
        #[source]
        source: Box<Error>,
    },

    /// The task that fetched a token panicked or was cancelled (its runtime shut down);
    /// the join error is the [`source`](std::error::Error::source).
    #[error("the token fetch task failed")]
    #[non_exhaustive]
    FetchTask {
        /// Why the task ended without a result.
        #[source]
        source: Arc<tokio::task::JoinError>,
    },

    /// A DPoP proof cannot be made for this request (a URL that is not absolute, say),
    /// or the token endpoint did not bind the token to the DPoP key.
    #[error("dpop: {reason}")]
    #[non_exhaustive]
    Dpop {
        /// What is wrong.
        reason: String,
    },

    /// The subject token of a token exchange is missing or unusable (see
    /// [`SubjectToken`](crate::exchange::SubjectToken)).
    #[error("cannot exchange the subject token: {reason}")]
    #[non_exhaustive]
    SubjectToken {
        /// What is wrong.
        reason: String,
    },

    /// The refresh token is expired, was rejected (`invalid_grant`) or is gone: the user
    /// must log in again. When HelseID said so, its answer is the
    /// [`source`](std::error::Error::source).
    #[error("the user must log in again: {reason}")]
    #[non_exhaustive]
    LoginRequired {
        /// Why.
        reason: String,
        /// HelseID's answer, when there was one.
        #[source]
        source: Option<Box<Error>>,
    },

    /// A [`TokenStore`](crate::refresh::TokenStore) could not read or write a token set.
    #[error("token store: {reason}")]
    #[non_exhaustive]
    TokenStore {
        /// What failed (never the tokens).
        reason: String,
        /// The I/O error, when there was one.
        #[source]
        source: Option<SharedError>,
    },

    /// Logging a user in failed: the user cancelled, the redirect was forged or
    /// refused, or the ID token failed a check. The [`LoginError`] (also the
    /// [`source`](std::error::Error::source)) says which.
    #[error("login failed")]
    Login(#[from] LoginError),

    /// Fetching a token for this key failed repeatedly, and the cache does not ask
    /// HelseID again until the back-off delay has passed. The last failure is the
    /// [`source`](std::error::Error::source).
    #[error("not asking HelseID again for {retry_in:?} after {failures} failed token fetches")]
    #[non_exhaustive]
    BackingOff {
        /// How long until the next attempt.
        retry_in: Duration,
        /// Consecutive failures so far.
        failures: u32,
        /// The last failure.
        #[source]
        last: Box<Error>,
    },
}

impl Error {
    /// A configuration error; the reason may quote the value, so it is made safe to
    /// show (control characters escaped, long text cut).
    pub(crate) fn config(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Error::Config {
            field: crate::text::untrusted(&field.into(), &[]),
            reason: crate::text::untrusted(&reason.into(), &[]),
        }
    }

    /// The OAuth 2.0 error body, when the token endpoint sent one (also behind
    /// [`Error::BackingOff`]).
    pub fn oauth_error(&self) -> Option<&OAuthError> {
        match self {
            Error::OAuth { error, .. } => Some(error),
            Error::BackingOff { last, .. } => last.oauth_error(),
            Error::LoginRequired {
                source: Some(source),
                ..
            } => source.oauth_error(),
            _ => None,
        }
    }

    /// Whether the user must log in again: [`Error::LoginRequired`], also behind
    /// [`Error::BackingOff`].
    pub fn is_login_required(&self) -> bool {
        match self {
            Error::LoginRequired { .. } => true,
            Error::BackingOff { last, .. } => last.is_login_required(),
            _ => false,
        }
    }

    /// How long the server asked the client to wait before it asks again: the
    /// `Retry-After` of a 429 or 503 answer (also behind [`Error::BackingOff`]).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::OAuth { retry_after, .. } | Error::InvalidResponse { retry_after, .. } => {
                *retry_after
            }
            Error::BackingOff { last, .. } => last.retry_after(),
            _ => None,
        }
    }

    /// This error with the server's `Retry-After`, when it is an answer's error.
    pub(crate) fn with_retry_after(mut self, after: Option<Duration>) -> Self {
        if let Error::OAuth { retry_after, .. } | Error::InvalidResponse { retry_after, .. } =
            &mut self
        {
            *retry_after = after;
        }
        self
    }

    /// The HTTP status of the answer that caused this error, when there was one (also
    /// behind [`Error::BackingOff`]).
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            Error::OAuth { status, .. }
            | Error::InvalidResponse { status, .. }
            | Error::Api { status, .. } => Some(*status),
            Error::BackingOff { last, .. } => last.status(),
            Error::LoginRequired {
                source: Some(source),
                ..
            } => source.status(),
            _ => None,
        }
    }
}

/// Why a login failed (see [`Error::Login`]). Text a server sent is made safe to show
/// (control characters escaped, long text cut) before it gets here.
#[derive(Clone, Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoginError {
    /// The pushed authorization request was refused: the client assertion, the redirect
    /// URI, the scopes or PKCE.
    #[error("the pushed authorization request was refused with {error} (HTTP {status})")]
    #[non_exhaustive]
    ParRefused {
        /// The HTTP status of the answer.
        status: StatusCode,
        /// HelseID's error.
        error: OAuthError,
    },
    /// The user cancelled the login, or HelseID denied it (`access_denied`).
    #[error(
        "the login was cancelled or denied (access_denied){}",
        describe(description)
    )]
    #[non_exhaustive]
    AccessDenied {
        /// HelseID's description, when it gave one.
        description: Option<String>,
    },
    /// The pushed request's `request_uri` had expired or had been used already
    /// (`invalid_request_uri`): start the login again.
    #[error(
        "the authorization request expired or was used already (invalid_request_uri){}",
        describe(description)
    )]
    #[non_exhaustive]
    RequestExpired {
        /// HelseID's description, when it gave one.
        description: Option<String>,
    },
    /// The authorize endpoint redirected with another error.
    #[error("the authorization was refused with {error}")]
    #[non_exhaustive]
    Authorization {
        /// HelseID's error.
        error: OAuthError,
    },
    /// The redirect's `state` is not the one this login sent: a forged or stale
    /// redirect, which is refused.
    #[error("the redirect's state is not this login's: a forged or stale redirect was refused")]
    WrongState,
    /// The redirect's `iss` is not the issuer (RFC 9207): a mix-up was refused.
    #[error("the redirect's iss is not the issuer: a mix-up was refused")]
    WrongIssuer,
    /// The redirect carries neither a code nor an error.
    #[error("the redirect has no code")]
    NoCode,
    /// No redirect came within the login's timeout.
    #[error("no redirect came within {after:?}: the login was not finished in time")]
    #[non_exhaustive]
    Timeout {
        /// The timeout.
        after: std::time::Duration,
    },
    /// The loopback listener for the redirect failed.
    #[error("the loopback redirect listener failed: {reason}")]
    #[non_exhaustive]
    Listener {
        /// What failed.
        reason: String,
    },
    /// The ID token failed a check; the token is refused, and with it the login.
    #[error("the ID token failed the {check} check: {reason}")]
    #[non_exhaustive]
    IdToken {
        /// Which check failed.
        check: IdTokenCheck,
        /// What is wrong (never the token).
        reason: String,
    },
}

/// `": <description>"`, or nothing.
fn describe(description: &Option<String>) -> String {
    description
        .as_deref()
        .map(|d| format!(": {d}"))
        .unwrap_or_default()
}

/// The check of an ID token that failed (see [`LoginError::IdToken`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum IdTokenCheck {
    /// The token is not a signed JWT in compact form, or its JSON is unreadable.
    Format,
    /// The token is missing from the token response.
    Missing,
    /// The `alg` is not an asymmetric algorithm the crate verifies.
    Algorithm,
    /// The issuer's JWKS has no key for the token (its `kid`), or it cannot be fetched.
    Key,
    /// The signature does not verify with the issuer's key.
    Signature,
    /// `iss` is not the issuer.
    Issuer,
    /// `aud` is not (or does not hold) the client id, or `azp` (required when `aud` has
    /// several values) is not the client id.
    Audience,
    /// `nonce` is not the one the login sent.
    Nonce,
    /// `exp` has passed, or `iat` or `nbf` lies in the future (beyond the clock skew
    /// allowed).
    Expiry,
    /// The header's `crit` names extensions that must be understood: this client
    /// understands none (RFC 7515 section 4.1.11).
    Critical,
}

impl fmt::Display for IdTokenCheck {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            IdTokenCheck::Format => "format",
            IdTokenCheck::Missing => "presence",
            IdTokenCheck::Algorithm => "alg",
            IdTokenCheck::Key => "key",
            IdTokenCheck::Signature => "signature",
            IdTokenCheck::Issuer => "iss",
            IdTokenCheck::Audience => "aud",
            IdTokenCheck::Nonce => "nonce",
            IdTokenCheck::Expiry => "exp",
            IdTokenCheck::Critical => "crit",
        })
    }
}

/// An OAuth 2.0 error response body (RFC 6749 section 5.2, RFC 9449 section 8).
///
/// HelseID sends codes such as `invalid_client`, `invalid_grant`, `invalid_scope` and
/// `use_dpop_nonce`; organisation number problems carry `HID-1001`..`HID-1010` codes in
/// the description.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OAuthError {
    /// The error code, for example [`OAuthErrorCode::InvalidClient`].
    pub error: OAuthErrorCode,
    /// A human-readable description.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_description: Option<String>,
    /// A page describing the error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_uri: Option<String>,
}

impl OAuthError {
    /// An error with a code and a description.
    pub fn new(error: impl Into<OAuthErrorCode>, description: impl Into<String>) -> Self {
        OAuthError {
            error: error.into(),
            error_description: Some(description.into()),
            error_uri: None,
        }
    }

    /// This error as a server sent it, made safe to show: control characters escaped,
    /// long text cut, and `secrets` (what the request sent) replaced by a marker, in the
    /// code, the description and the URI.
    pub(crate) fn made_safe(self, secrets: &[&str]) -> Self {
        let safe = |text: &str| crate::text::untrusted(text, secrets);
        OAuthError {
            error: match self.error {
                OAuthErrorCode::Other(code) => OAuthErrorCode::Other(safe(&code)),
                known => known,
            },
            error_description: self.error_description.as_deref().map(safe),
            error_uri: self.error_uri.as_deref().map(safe),
        }
    }
}

impl fmt::Display for OAuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.error.as_str())?;
        if let Some(description) = &self.error_description {
            write!(f, ": {description}")?;
        }
        Ok(())
    }
}

impl std::error::Error for OAuthError {}

/// The `error` code of an OAuth 2.0 error: the codes of RFC 6749 (OAuth 2.0), RFC 6750
/// (bearer tokens), RFC 8693 (token exchange) and RFC 9449 (DPoP) as variants, anything
/// else as [`Other`](OAuthErrorCode::Other).
///
/// (De)serialises as the code itself, for example `"invalid_client"`. A known code never
/// parses to `Other`, and equality compares the codes, so
/// `OAuthErrorCode::Other("invalid_client".into()) == OAuthErrorCode::InvalidClient`.
#[derive(Clone, Debug, Eq)]
#[non_exhaustive]
pub enum OAuthErrorCode {
    /// `invalid_request`: a parameter is missing, repeated or malformed.
    InvalidRequest,
    /// `invalid_client`: client authentication failed (unknown client, bad assertion).
    InvalidClient,
    /// `invalid_grant`: the grant (a refresh token, say) is invalid, expired or revoked.
    InvalidGrant,
    /// `unauthorized_client`: the client may not use this grant type.
    UnauthorizedClient,
    /// `unsupported_grant_type`: the server does not support the grant type.
    UnsupportedGrantType,
    /// `unsupported_response_type`: the server does not support the response type.
    UnsupportedResponseType,
    /// `invalid_scope`: a scope is unknown, malformed or not granted to the client.
    InvalidScope,
    /// `access_denied`: the resource owner or the server refused the request.
    AccessDenied,
    /// `server_error`: the server failed.
    ServerError,
    /// `temporarily_unavailable`: the server is overloaded or down for maintenance.
    TemporarilyUnavailable,
    /// `invalid_token` (RFC 6750): the access token is expired, revoked or malformed.
    InvalidToken,
    /// `insufficient_scope` (RFC 6750): the access token lacks a scope the request needs.
    InsufficientScope,
    /// `invalid_target` (RFC 8693): the requested resource or audience is unknown.
    InvalidTarget,
    /// `invalid_dpop_proof` (RFC 9449): the DPoP proof is invalid.
    InvalidDpopProof,
    /// `use_dpop_nonce` (RFC 9449): the DPoP proof must carry the server's nonce.
    UseDpopNonce,
    /// Any other code, as sent.
    Other(String),
}

impl OAuthErrorCode {
    /// The code as sent, for example `invalid_client`.
    pub fn as_str(&self) -> &str {
        match self {
            OAuthErrorCode::InvalidRequest => "invalid_request",
            OAuthErrorCode::InvalidClient => "invalid_client",
            OAuthErrorCode::InvalidGrant => "invalid_grant",
            OAuthErrorCode::UnauthorizedClient => "unauthorized_client",
            OAuthErrorCode::UnsupportedGrantType => "unsupported_grant_type",
            OAuthErrorCode::UnsupportedResponseType => "unsupported_response_type",
            OAuthErrorCode::InvalidScope => "invalid_scope",
            OAuthErrorCode::AccessDenied => "access_denied",
            OAuthErrorCode::ServerError => "server_error",
            OAuthErrorCode::TemporarilyUnavailable => "temporarily_unavailable",
            OAuthErrorCode::InvalidToken => "invalid_token",
            OAuthErrorCode::InsufficientScope => "insufficient_scope",
            OAuthErrorCode::InvalidTarget => "invalid_target",
            OAuthErrorCode::InvalidDpopProof => "invalid_dpop_proof",
            OAuthErrorCode::UseDpopNonce => "use_dpop_nonce",
            OAuthErrorCode::Other(code) => code,
        }
    }

    /// The variant of a known code.
    fn known(code: &str) -> Option<Self> {
        Some(match code {
            "invalid_request" => OAuthErrorCode::InvalidRequest,
            "invalid_client" => OAuthErrorCode::InvalidClient,
            "invalid_grant" => OAuthErrorCode::InvalidGrant,
            "unauthorized_client" => OAuthErrorCode::UnauthorizedClient,
            "unsupported_grant_type" => OAuthErrorCode::UnsupportedGrantType,
            "unsupported_response_type" => OAuthErrorCode::UnsupportedResponseType,
            "invalid_scope" => OAuthErrorCode::InvalidScope,
            "access_denied" => OAuthErrorCode::AccessDenied,
            "server_error" => OAuthErrorCode::ServerError,
            "temporarily_unavailable" => OAuthErrorCode::TemporarilyUnavailable,
            "invalid_token" => OAuthErrorCode::InvalidToken,
            "insufficient_scope" => OAuthErrorCode::InsufficientScope,
            "invalid_target" => OAuthErrorCode::InvalidTarget,
            "invalid_dpop_proof" => OAuthErrorCode::InvalidDpopProof,
            "use_dpop_nonce" => OAuthErrorCode::UseDpopNonce,
            _ => return None,
        })
    }
}

impl From<&str> for OAuthErrorCode {
    fn from(code: &str) -> Self {
        Self::known(code).unwrap_or_else(|| OAuthErrorCode::Other(code.to_owned()))
    }
}

impl From<String> for OAuthErrorCode {
    fn from(code: String) -> Self {
        Self::known(&code).unwrap_or(OAuthErrorCode::Other(code))
    }
}

impl PartialEq for OAuthErrorCode {
    fn eq(&self, other: &Self) -> bool {
        self.as_str() == other.as_str()
    }
}

impl std::hash::Hash for OAuthErrorCode {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.as_str().hash(state);
    }
}

impl fmt::Display for OAuthErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for OAuthErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for OAuthErrorCode {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        String::deserialize(deserializer).map(Self::from)
    }
}

/// A shorthand for results of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>() {}
    fn assert_sync<T: Sync>() {}

    #[test]
    fn error_is_send_and_sync() {
        assert_send::<Error>();
        assert_sync::<Error>();
    }

    #[test]
    fn a_login_error_is_the_source_and_names_the_failed_check() {
        assert_send::<LoginError>();
        assert_sync::<LoginError>();
        let e = Error::from(LoginError::IdToken {
            check: IdTokenCheck::Nonce,
            reason: "nonce is missing or is not the one the login sent".into(),
        });
        assert_eq!(e.to_string(), "login failed");
        let source = std::error::Error::source(&e).expect("the login error");
        assert_eq!(
            source.to_string(),
            "the ID token failed the nonce check: nonce is missing or is not the one the login sent"
        );
        let denied = LoginError::AccessDenied {
            description: Some("the user cancelled the login".into()),
        };
        assert_eq!(
            denied.to_string(),
            "the login was cancelled or denied (access_denied): the user cancelled the login"
        );
    }

    #[test]
    fn oauth_error_display() {
        let e = Error::OAuth {
            status: StatusCode::BAD_REQUEST,
            error: OAuthError::new("invalid_client", "bad signature"),
            retry_after: None,
        };
        assert_eq!(
            e.to_string(),
            "token endpoint returned invalid_client: bad signature (HTTP 400 Bad Request)"
        );
        assert_eq!(
            e.oauth_error().map(|e| &e.error),
            Some(&OAuthErrorCode::InvalidClient)
        );
        assert_eq!(e.status(), Some(StatusCode::BAD_REQUEST));
    }

    #[test]
    fn oauth_error_codes_parse_to_variants_and_unknown_codes_round_trip() {
        let known = [
            ("invalid_request", OAuthErrorCode::InvalidRequest),
            ("invalid_client", OAuthErrorCode::InvalidClient),
            ("invalid_grant", OAuthErrorCode::InvalidGrant),
            ("unauthorized_client", OAuthErrorCode::UnauthorizedClient),
            (
                "unsupported_grant_type",
                OAuthErrorCode::UnsupportedGrantType,
            ),
            (
                "unsupported_response_type",
                OAuthErrorCode::UnsupportedResponseType,
            ),
            ("invalid_scope", OAuthErrorCode::InvalidScope),
            ("access_denied", OAuthErrorCode::AccessDenied),
            ("server_error", OAuthErrorCode::ServerError),
            (
                "temporarily_unavailable",
                OAuthErrorCode::TemporarilyUnavailable,
            ),
            ("invalid_token", OAuthErrorCode::InvalidToken),
            ("insufficient_scope", OAuthErrorCode::InsufficientScope),
            ("invalid_target", OAuthErrorCode::InvalidTarget),
            ("invalid_dpop_proof", OAuthErrorCode::InvalidDpopProof),
            ("use_dpop_nonce", OAuthErrorCode::UseDpopNonce),
        ];
        for (code, variant) in known {
            let parsed: OAuthError =
                serde_json::from_str(&format!(r#"{{"error":"{code}"}}"#)).expect(code);
            assert!(
                std::mem::discriminant(&parsed.error) == std::mem::discriminant(&variant),
                "{code}: {:?}",
                parsed.error
            );
            assert_eq!(variant.as_str(), code);
            assert_eq!(variant.to_string(), code);
            assert_eq!(OAuthErrorCode::from(code.to_owned()), variant);
        }

        let json = r#"{"error":"HID-1001","error_description":"unknown organisation"}"#;
        let parsed: OAuthError = serde_json::from_str(json).expect("unknown code");
        assert!(
            matches!(&parsed.error, OAuthErrorCode::Other(code) if code == "HID-1001"),
            "{:?}",
            parsed.error
        );
        assert_eq!(serde_json::to_string(&parsed).expect("serialise"), json);
        assert_eq!(OAuthError::new("HID-1001", "unknown organisation"), parsed);
        assert_eq!(
            OAuthErrorCode::Other("invalid_client".into()),
            OAuthErrorCode::InvalidClient
        );
    }
}
