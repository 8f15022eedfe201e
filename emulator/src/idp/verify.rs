//! What the IdP publishes for the APIs it protects, checked as any API would check it:
//! the token of an `Authorization` header and the scope an access token carries (the
//! signature and claims:
//! [`State::verify_access_token`](crate::idp::state::State::verify_access_token);
//! a DPoP-bound request: [`check_bound_request`]).

use axum::http::{HeaderMap, header};
use serde_json::Value;

use crate::idp::dpop::{Expected, Nonces, ProofError, proof_header};

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

/// Why a request to a DPoP-protected API was refused: the `WWW-Authenticate` error code
/// (`invalid_token`, `invalid_dpop_proof`, `use_dpop_nonce`), what is wrong (never
/// quoting the token or the proof), and the nonce to hand out.
pub(crate) struct BoundRefusal {
    pub(crate) error: &'static str,
    pub(crate) description: String,
    pub(crate) nonce: Option<String>,
}

impl BoundRefusal {
    fn new(error: &'static str, description: impl Into<String>) -> Self {
        BoundRefusal {
            error,
            description: description.into(),
            nonce: None,
        }
    }
}

/// Checks a request to a DPoP-protected API (`api` names it in descriptions):
/// `Authorization: DPoP <token>` with an unexpired access token of this emulator that
/// has a `cnf.jkt`, and a `DPoP` proof that verifies for the request's method at this
/// URL, with `ath` for the token and the key the token is bound to, carrying one of
/// `nonces` when given. Returns the token's claims; the scope is the caller's to check.
pub(crate) fn check_bound_request(
    state: &crate::idp::state::State,
    request: &axum::http::request::Parts,
    api: &str,
    nonces: Option<&Nonces>,
) -> Result<Value, BoundRefusal> {
    let invalid_token = |description: String| BoundRefusal::new("invalid_token", description);
    let headers = &request.headers;
    let token = authorization_token(headers, "DPoP", api).map_err(invalid_token)?;
    let claims = state.verify_access_token(token).map_err(invalid_token)?;
    let jkt = match claims.get("cnf").and_then(|cnf| cnf.get("jkt")) {
        Some(Value::String(jkt)) => jkt.clone(),
        Some(_) => {
            return Err(invalid_token(
                "the access token's cnf.jkt is not a string".to_owned(),
            ));
        }
        None => {
            return Err(invalid_token(
                "the access token is not DPoP-bound (it has no cnf.jkt): get a token with a \
                 DPoP proof at the token endpoint"
                    .to_owned(),
            ));
        }
    };
    let refuse = |error: ProofError| match error {
        ProofError::Invalid(description) => BoundRefusal::new("invalid_dpop_proof", description),
        ProofError::UseNonce(description) => {
            state.dpop.count_challenge();
            BoundRefusal {
                nonce: Some(state.dpop.api_nonces.current()),
                ..BoundRefusal::new("use_dpop_nonce", description)
            }
        }
    };
    let proof = proof_header(headers).map_err(refuse)?.ok_or_else(|| {
        BoundRefusal::new(
            "invalid_dpop_proof",
            "the request has no DPoP header: a DPoP-bound token is sent with a DPoP proof",
        )
    })?;
    let url = format!("{}{}", state.issuer, request.uri.path());
    let expected = Expected {
        method: request.method.as_str(),
        url: &url,
        bound_to: Some((token, &jkt)),
        nonces,
    };
    state.dpop.verify(proof, &expected).map_err(refuse)?;
    Ok(claims)
}
