//! Token endpoint answers: OAuth 2.0 error bodies (RFC 6749 section 5.2) and the
//! headers every token response carries.

use axum::Json;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::dpop::DPOP_NONCE;
use crate::error::ErrorBody;

/// The longest claim or parameter value quoted in an error description.
const MAX_QUOTED: usize = 80;

/// Quotes a client-supplied value in an error description, cut short when long.
///
/// Only claim and parameter values are ever quoted, never an assertion or a token.
pub(crate) fn quote(value: &str) -> String {
    if value.chars().count() <= MAX_QUOTED {
        format!("`{value}`")
    } else {
        let cut: String = value.chars().take(MAX_QUOTED).collect();
        format!("`{cut}...`")
    }
}

/// Makes a description fit in a quoted-string of a `WWW-Authenticate` challenge: no
/// quotes or backslashes inside, visible ASCII only.
pub(crate) fn challenge_text(description: &str) -> String {
    description
        .chars()
        .map(|c| match c {
            '"' | '\\' => '\'',
            c if c.is_ascii() && !c.is_ascii_control() => c,
            _ => '?',
        })
        .collect()
}

/// A failed token request.
#[derive(Debug)]
pub(crate) struct TokenError {
    status: StatusCode,
    code: &'static str,
    description: String,
    /// The nonce a `use_dpop_nonce` answer hands out in `DPoP-Nonce`.
    nonce: Option<String>,
}

impl TokenError {
    fn new(status: StatusCode, code: &'static str, description: impl Into<String>) -> Self {
        TokenError {
            status,
            code,
            description: description.into(),
            nonce: None,
        }
    }

    pub(crate) fn invalid_dpop_proof(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_dpop_proof", description)
    }

    /// `use_dpop_nonce`, handing out `nonce` in the `DPoP-Nonce` header.
    pub(crate) fn use_dpop_nonce(description: impl Into<String>, nonce: String) -> Self {
        TokenError {
            nonce: Some(nonce),
            ..Self::new(StatusCode::BAD_REQUEST, "use_dpop_nonce", description)
        }
    }

    pub(crate) fn invalid_request(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", description)
    }

    pub(crate) fn invalid_client(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_client", description)
    }

    pub(crate) fn invalid_grant(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_grant", description)
    }

    pub(crate) fn invalid_scope(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_scope", description)
    }

    pub(crate) fn invalid_target(description: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_target", description)
    }

    pub(crate) fn unsupported_grant_type(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            description,
        )
    }

    pub(crate) fn server_error(description: impl Into<String>) -> Self {
        Self::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "server_error",
            description,
        )
    }

    pub(crate) fn code(&self) -> &'static str {
        self.code
    }

    pub(crate) fn description(&self) -> &str {
        &self.description
    }

    /// The error body, for answers given in Rust rather than over HTTP.
    pub(crate) fn into_oauth(self) -> ErrorBody {
        ErrorBody::new(self.code, self.description)
    }
}

impl IntoResponse for TokenError {
    fn into_response(self) -> Response {
        let mut response = no_store(
            (
                self.status,
                Json(ErrorBody::new(self.code, self.description)),
            )
                .into_response(),
        );
        if let Some(nonce) = self.nonce.and_then(|n| HeaderValue::from_str(&n).ok()) {
            response.headers_mut().insert(DPOP_NONCE, nonce);
        }
        response
    }
}

/// Adds `Cache-Control: no-store` and `Pragma: no-cache` (RFC 6749 section 5.1).
pub(crate) fn no_store(mut response: Response) -> Response {
    let headers = response.headers_mut();
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(header::PRAGMA, HeaderValue::from_static("no-cache"));
    response
}
