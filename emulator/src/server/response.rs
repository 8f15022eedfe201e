//! Token endpoint answers: OAuth 2.0 error bodies (RFC 6749 section 5.2) and the
//! headers every token response carries.

use axum::Json;
use axum::http::HeaderName;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use utoipa::ToSchema;

use crate::server::error::ErrorBody;

/// The longest claim or parameter value quoted in an error description.
const MAX_QUOTED: usize = 80;

/// Quotes a client-supplied value in an error description, cut short when long, with
/// control characters escaped (`\n`, `\u{1b}`), so that a description never carries a
/// raw line break or escape sequence into a log line or a terminal.
///
/// Only claim and parameter values are ever quoted, never an assertion or a token.
pub(crate) fn quote(value: &str) -> String {
    let mut quoted = String::with_capacity(value.len().min(4 * MAX_QUOTED) + 5);
    quoted.push('`');
    for (i, c) in value.chars().enumerate() {
        if i == MAX_QUOTED {
            quoted.push_str("...");
            break;
        }
        push_escaped(&mut quoted, c);
    }
    quoted.push('`');
    quoted
}

/// `text` (a message that may repeat what a client sent, such as a serde error naming
/// an unknown field) with its control characters escaped.
pub(crate) fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in text.chars() {
        push_escaped(&mut escaped, c);
    }
    escaped
}

fn push_escaped(out: &mut String, c: char) {
    if c.is_control() {
        out.extend(c.escape_default());
    } else {
        out.push(c);
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

/// The response header that carries a server nonce.
pub(crate) const DPOP_NONCE: HeaderName = HeaderName::from_static("dpop-nonce");

/// An RFC 9457 problem description, as ASP.NET writes it.
#[derive(Clone, Debug, Serialize, ToSchema)]
pub(crate) struct ProblemDetails {
    /// A URI that identifies the kind of problem.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    #[schema(rename = "type")]
    pub(crate) kind: Option<String>,
    /// A short summary of the kind of problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) title: Option<String>,
    /// The HTTP status.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) status: Option<i32>,
    /// What is wrong with this request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) detail: Option<String>,
    /// The path of the request.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) instance: Option<String>,
}

/// A ProblemDetails answer, as ASP.NET writes one.
pub(crate) fn problem(status: StatusCode, detail: String, instance: &str) -> Response {
    let kind = match status {
        StatusCode::NOT_FOUND => "https://tools.ietf.org/html/rfc9110#section-15.5.5",
        _ => "https://tools.ietf.org/html/rfc9110#section-15.5.1",
    };
    tracing::debug!(status = status.as_u16(), detail = %detail, "helseid emulator refused a CPE request");
    let body = ProblemDetails {
        kind: Some(kind.to_owned()),
        title: status.canonical_reason().map(str::to_owned),
        status: Some(i32::from(status.as_u16())),
        detail: Some(detail),
        instance: Some(instance.to_owned()),
    };
    (status, Json(body)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Found by `fuzz_client_assertion`: a claim's control characters reached the
    /// description raw.
    #[test]
    fn quoted_values_have_their_control_characters_escaped() {
        assert_eq!(quote("ES256"), "`ES256`");
        assert_eq!(quote("a\nb\u{1b}[31m\u{7}"), r"`a\nb\u{1b}[31m\u{7}`");
        assert_eq!(
            escape("unknown field `\u{1b}[2J`"),
            r"unknown field `\u{1b}[2J`"
        );
        let long = "é".repeat(MAX_QUOTED + 1);
        assert_eq!(quote(&long), format!("`{}...`", "é".repeat(MAX_QUOTED)));
    }
}
