//! Reading HelseID's answers: a bounded body, and a token response or an OAuth error.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body_util::BodyExt;
use serde::Deserialize;
use zeroize::Zeroizing;

use super::{
    HttpBody, MAX_BODY, MAX_EXPIRES_IN, MAX_RT_EXPIRES_IN, TOKEN_ENDPOINT, TokenRequest, shared,
};
use crate::error::{Error, OAuthError, Result};
use crate::jose::{Want, json_object};
use crate::text::untrusted;
use crate::token::{AccessToken, RefreshToken, TokenType};

/// A successful token response (RFC 6749 section 5.1), every member optional so that a
/// missing one is named in the error.
#[derive(Deserialize)]
struct TokenResponse {
    access_token: Option<Zeroizing<String>>,
    token_type: Option<String>,
    expires_in: Option<serde_json::Value>,
    scope: Option<String>,
    /// Scopes HelseID left out (HelseID's extension), space separated.
    rejected_scope: Option<String>,
    refresh_token: Option<Zeroizing<String>>,
    rt_expires_in: Option<serde_json::Value>,
}

/// The string members of [`TokenResponse`], for an error that names a mistyped one.
const MEMBERS: &[(&str, Want, bool)] = &[
    ("access_token", Want::String, false),
    ("token_type", Want::String, false),
    ("scope", Want::String, false),
    ("refresh_token", Want::String, false),
];

/// An [`Error::InvalidResponse`] from `endpoint`.
pub(super) fn invalid(
    endpoint: &'static str,
    status: StatusCode,
    reason: impl Into<String>,
) -> Error {
    Error::InvalidResponse {
        endpoint,
        status,
        // The reason may quote the server (a member's value, a type name).
        reason: untrusted(&reason.into(), &[]),
        retry_after: None,
    }
}

/// Reads a lifetime in seconds: a JSON number, or a string holding one.
fn seconds(
    field: &str,
    value: &serde_json::Value,
    status: StatusCode,
    max: Duration,
) -> Result<Duration> {
    let secs = match value {
        serde_json::Value::Number(n) => n.as_f64(),
        serde_json::Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    };
    match secs {
        Some(s) if s >= 1.0 && s <= max.as_secs_f64() => Ok(Duration::from_secs(s as u64)),
        Some(s) => Err(invalid(
            TOKEN_ENDPOINT,
            status,
            format!(
                "`{field}` of {s} seconds is not a plausible lifetime (1 s to {} h)",
                max.as_secs() / 3600
            ),
        )),
        None => Err(invalid(
            TOKEN_ENDPOINT,
            status,
            format!("`{field}` is not a number"),
        )),
    }
}

/// `token`, when its type is the one `request` asked for: a DPoP request must get a
/// DPoP token, any other request a Bearer token (either way round, the API would refuse
/// every request made with it).
pub(super) fn bound_as_asked(
    token: AccessToken,
    request: &TokenRequest,
    status: StatusCode,
) -> Result<AccessToken> {
    let asked = if request.dpop.is_some() {
        TokenType::DPoP
    } else {
        TokenType::Bearer
    };
    if *token.token_type() != asked {
        // A DPoP token sent as Bearer, or a Bearer token sent with proofs: the API
        // refuses every request until it expires. Nothing of it is kept.
        return Err(invalid(
            TOKEN_ENDPOINT,
            status,
            format!(
                "a {} token was asked for, and the answer is token_type `{}`",
                asked.scheme(),
                token.token_type().scheme()
            ),
        ));
    }
    Ok(token)
}

/// Reads a whole body of at most `MAX_BODY` bytes.
pub(super) async fn read_limited(
    mut body: HttpBody,
    endpoint: &'static str,
    status: StatusCode,
) -> Result<Bytes> {
    let mut collected = bytes::BytesMut::new();
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| Error::Transport {
            endpoint,
            source: shared(e),
        })?;
        if let Ok(data) = frame.into_data() {
            if collected.len() + data.len() > MAX_BODY {
                return Err(invalid(
                    endpoint,
                    status,
                    format!("the body is larger than {MAX_BODY} bytes"),
                ));
            }
            collected.extend_from_slice(&data);
        }
    }
    Ok(collected.freeze())
}

/// Names a content type for an error message.
pub(super) fn describe(content_type: Option<&str>) -> String {
    match content_type {
        Some(ct) => format!("content-type {ct}"),
        None => "no content-type".to_owned(),
    }
}

/// Reads a token endpoint's answer: an [`AccessToken`], or the OAuth error (RFC 6749
/// section 5.2) or [`Error::InvalidResponse`] saying what is wrong. The server's text
/// enters an error only through [`untrusted`], with `secrets` (what the request sent:
/// the assertion, a refresh or subject token) replaced.
pub(super) fn parse_token_response(
    status: StatusCode,
    content_type: Option<&str>,
    body: &[u8],
    secrets: &[&str],
) -> Result<AccessToken> {
    if !status.is_success() {
        // RFC 6749 5.2: a JSON object with `error`.
        return match serde_json::from_slice::<OAuthError>(body) {
            Ok(error) => Err(Error::OAuth {
                status,
                error: error.made_safe(secrets),
                retry_after: None,
            }),
            Err(_) => Err(invalid(
                TOKEN_ENDPOINT,
                status,
                format!(
                    "expected an OAuth error object, got {} bytes of {}",
                    body.len(),
                    describe(content_type)
                ),
            )),
        };
    }
    let response: TokenResponse = json_object(body, MEMBERS).map_err(|reason| {
        invalid(
            TOKEN_ENDPOINT,
            status,
            format!(
                "expected a JSON token response: {reason} ({})",
                describe(content_type)
            ),
        )
    })?;
    let secret = response
        .access_token
        .filter(|t| !t.is_empty())
        .ok_or_else(|| invalid(TOKEN_ENDPOINT, status, "the response has no `access_token`"))?;
    let token_type = match response.token_type.as_deref() {
        Some(t) => TokenType::parse(t).ok_or_else(|| {
            invalid(
                TOKEN_ENDPOINT,
                status,
                format!("unknown `token_type` `{}`", untrusted(t, secrets)),
            )
        })?,
        None => {
            return Err(invalid(
                TOKEN_ENDPOINT,
                status,
                "the response has no `token_type`",
            ));
        }
    };
    let expires_in = match &response.expires_in {
        Some(v) => seconds("expires_in", v, status, MAX_EXPIRES_IN)?,
        None => {
            return Err(invalid(
                TOKEN_ENDPOINT,
                status,
                "the response has no `expires_in`",
            ));
        }
    };
    let rt_expires_in = response
        .rt_expires_in
        .as_ref()
        .map(|v| seconds("rt_expires_in", v, status, MAX_RT_EXPIRES_IN))
        .transpose()?;
    let refresh_token = response
        .refresh_token
        .filter(|t| !t.is_empty())
        .map(|t| RefreshToken::new(t.as_str()));
    let rejected_scope = response
        .rejected_scope
        .map(|s| untrusted(&s, secrets))
        .filter(|s| !s.trim().is_empty());
    if let Some(rejected) = &rejected_scope {
        tracing::warn!(
            rejected_scope = %rejected,
            "HelseID left scopes out of the token (an organisation that has not accepted an API's terms, say)"
        );
    }
    Ok(AccessToken::new(secret.as_str(), token_type, expires_in)?
        .with_scope(response.scope)
        .with_rejected_scope(rejected_scope)
        .with_refresh_token(refresh_token, rt_expires_in))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(status: u16, ct: &str, body: &str) -> Result<AccessToken> {
        parse_token_response(
            StatusCode::from_u16(status).expect("status"),
            Some(ct),
            body.as_bytes(),
            &[],
        )
    }

    #[tokio::test(start_paused = true)]
    async fn reads_a_token_response() {
        let token = parse(
            200,
            "application/json",
            r#"{"access_token":"abc","token_type":"Bearer","expires_in":3600,"scope":"a b",
                "refresh_token":"r1","rt_expires_in":"86400"}"#,
        )
        .expect("token");
        assert_eq!(token.secret(), "abc");
        assert_eq!(token.token_type(), &TokenType::Bearer);
        assert_eq!(token.expires_in(), Duration::from_secs(3600));
        assert_eq!(token.scopes().collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(token.refresh_token().map(RefreshToken::secret), Some("r1"));
        assert!(token.refresh_token_expires_at().is_some());
    }

    #[test]
    fn a_servers_text_enters_errors_escaped_and_without_what_was_sent() {
        let assertion = "eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJjbGllbnQifQ.c2lnbmF0dXJl";
        let body = serde_json::json!({
            "error": "invalid_client\u{1b}[2J",
            "error_description": format!("bad assertion {assertion}\nERROR forged log line\u{1b}[31m"),
            "error_uri": format!("https://x.test/?a={assertion}\r\n"),
        })
        .to_string();
        let err = parse_token_response(
            StatusCode::BAD_REQUEST,
            Some("application/json"),
            body.as_bytes(),
            &[assertion],
        )
        .expect_err("an OAuth error");
        let shown = format!("{err} {err:?}");
        assert!(!shown.contains(assertion), "{shown}");
        assert!(!shown.chars().any(|c| c.is_control()), "{shown}");
        let oauth = err.oauth_error().expect("oauth");
        assert_eq!(
            oauth.error_description.as_deref(),
            Some("bad assertion [redacted]\\nERROR forged log line\\u{1b}[31m")
        );
        assert_eq!(oauth.error.as_str(), "invalid_client\\u{1b}[2J");
        assert_eq!(
            oauth.error_uri.as_deref(),
            Some("https://x.test/?a=[redacted]\\r\\n")
        );

        let body = r#"{"access_token":"abc","token_type":"Bearer\u001b[31m","expires_in":60}"#;
        let err = parse_token_response(StatusCode::OK, None, body.as_bytes(), &[])
            .expect_err("unknown type");
        assert!(err.to_string().contains(r"`Bearer\u{1b}[31m`"), "{err}");
    }

    #[test]
    fn bad_answers_keep_the_status_and_say_what_is_wrong() {
        let cases = [
            (
                400,
                "application/json",
                r#"{"error":"invalid_client","error_description":"x"}"#,
                "invalid_client",
            ),
            (
                502,
                "text/html",
                "<html>Bad gateway</html>",
                "got 24 bytes of content-type text/html",
            ),
            (
                500,
                "application/json",
                r#"{"message":"oops"}"#,
                "expected an OAuth error object",
            ),
            (
                200,
                "text/html",
                "<html>login</html>",
                "expected a JSON token response",
            ),
            (
                200,
                "application/json",
                r#"{"token_type":"Bearer","expires_in":60}"#,
                "no `access_token`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","expires_in":60}"#,
                "no `token_type`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"mac","expires_in":60}"#,
                "unknown `token_type`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer"}"#,
                "no `expires_in`",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":0}"#,
                "plausible",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":-5}"#,
                "plausible",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":1e12}"#,
                "plausible",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":"Bearer","expires_in":"soon"}"#,
                "not a number",
            ),
            (
                200,
                "application/json",
                r#"{"access_token":"a","token_type":5,"expires_in":60}"#,
                "`token_type` is a number, expected a string",
            ),
            (
                200,
                "application/json",
                r#"["a","Bearer",60]"#,
                "expected a JSON object, got an array",
            ),
        ];
        for (status, ct, body, expected) in cases {
            let err = parse(status, ct, body).expect_err(body);
            assert_eq!(err.status().map(|s| s.as_u16()), Some(status), "{err}");
            assert!(err.to_string().contains(expected), "{body}: {err}");
        }
    }

    #[test]
    fn a_token_never_reaches_an_error_message() {
        let err = parse(
            200,
            "application/json",
            r#"{"access_token":"SECRET-TOKEN","token_type":"Bearer","expires_in":true}"#,
        )
        .expect_err("bad expires_in");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        let err = parse(
            200,
            "application/json",
            r#"{"access_token":["SECRET-TOKEN"]}"#,
        )
        .expect_err("bad type");
        assert!(!err.to_string().contains("SECRET"), "{err}");
        assert!(
            err.to_string()
                .contains("`access_token` is an array, expected a string"),
            "{err}"
        );
    }
}
