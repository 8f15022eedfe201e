//! What the IdP publishes for the APIs it protects, checked as any API would check it:
//! the token of an `Authorization` header and the scope an access token carries (the
//! signature and claims: [`State::verify_access_token`](crate::idp::state::State::verify_access_token);
//! a DPoP-bound request: [`check_bound_request`](crate::idp::dpop::check_bound_request)).

use axum::http::{HeaderMap, header};
use serde_json::Value;

/// Checks that an access token's claims carry `scope`, which `api` (named in the
/// description) needs.
pub(crate) fn check_scope(claims: &Value, scope: &str, api: &str) -> Result<(), String> {
    if has_scope(claims, scope) {
        Ok(())
    } else if claims.get("scope").is_none() {
        Err(format!(
            "the access token has no scope claim; {api} needs the scope {scope}"
        ))
    } else {
        Err(format!("the access token does not carry the scope {scope}"))
    }
}

/// The token of an `Authorization: <scheme> <token>` header, for `api` (named in the
/// descriptions). The scheme name is case-insensitive.
pub(crate) fn authorization_token<'h>(
    headers: &'h HeaderMap,
    scheme: &str,
    api: &str,
) -> Result<&'h str, String> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Err(format!(
            "the request has no Authorization header; send Authorization: {scheme} <access token>"
        ));
    };
    if values.next().is_some() {
        return Err("the request has more than one Authorization header".to_owned());
    }
    let value = value
        .to_str()
        .map_err(|_| "the Authorization header is not visible ASCII".to_owned())?;
    let Some((given, credentials)) = value.trim().split_once(' ') else {
        return Err(format!(
            "the Authorization header is not a scheme and credentials; send {scheme} <access token>"
        ));
    };
    if !given.eq_ignore_ascii_case(scheme) {
        // Name the scheme only when it looks like one, never anything that could be a
        // credential.
        let looks_like_scheme =
            given.len() <= 16 && given.bytes().all(|b| b.is_ascii_alphanumeric());
        return Err(if looks_like_scheme {
            format!("the Authorization scheme is {given}; {api} takes {scheme} tokens")
        } else {
            format!("the Authorization scheme is not {scheme}; {api} takes {scheme} tokens")
        });
    }
    let token = credentials.trim();
    if token.is_empty() {
        return Err(format!(
            "the Authorization header has no token after {scheme}"
        ));
    }
    Ok(token)
}

/// Whether the claims carry `scope`: in a `scope` array, or a space-separated string.
fn has_scope(claims: &Value, scope: &str) -> bool {
    match claims.get("scope") {
        Some(Value::Array(scopes)) => scopes.iter().any(|s| s.as_str() == Some(scope)),
        Some(Value::String(scopes)) => scopes.split(' ').any(|s| s == scope),
        _ => false,
    }
}
