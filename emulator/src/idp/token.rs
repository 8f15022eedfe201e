//! `POST /connect/token`: the grants, and the access tokens the emulator issues.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

use super::{exchange, refresh};
use crate::idp::client_auth::{AuthenticatedClient, authenticate};
use crate::idp::clients::RegisteredClient;
use crate::idp::clients::Tenancy;
use crate::idp::dpop::{Expected, Proof, ProofError, proof_header};
use crate::idp::login::{self, AUTHORIZATION_CODE, is_identity_scope};
use crate::idp::state::State;
use crate::idp::tenancy::Organisation;
use crate::server::error::b64;
use crate::server::form::TokenForm;
use crate::server::response::DPOP_NONCE;
use crate::server::response::{TokenError, no_store, quote};
use crate::server::unix_now;

/// The token exchange grant type (RFC 8693).
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

/// The refresh token grant type (RFC 6749 section 6).
pub(crate) const REFRESH_TOKEN: &str = "refresh_token";

/// `POST /connect/token`.
pub(crate) async fn token(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    state.token_requests.fetch_add(1, Ordering::Relaxed);
    let result = handle(&state, &headers, &body);
    let delay = state.token_delay();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    match result {
        Ok(response) => response,
        Err(error) => {
            if error.code() == "invalid_grant" {
                state.invalid_grants.fetch_add(1, Ordering::Relaxed);
            }
            tracing::debug!(
                error = error.code(),
                description = error.description(),
                "helseid emulator refused a token request"
            );
            error.into_response()
        }
    }
}

/// Checks a token request and answers it: the grant type, the client assertion, the
/// DPoP proof (before the grant, so that a nonce challenge spends no refresh token),
/// then the grant.
fn handle(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response, TokenError> {
    let form = TokenForm::parse(headers, body)?;
    let grant = match form.get("grant_type") {
        Some(
            grant @ ("client_credentials" | TOKEN_EXCHANGE | REFRESH_TOKEN | AUTHORIZATION_CODE),
        ) => grant,
        Some(other) => {
            return Err(TokenError::unsupported_grant_type(format!(
                "grant_type {} is not supported",
                quote(other)
            )));
        }
        None => return Err(TokenError::unsupported_grant_type("grant_type is missing")),
    };
    let client = authenticate(state, &form)?;
    let proof = dpop_proof(state, headers, client.client)?;
    let jkt = proof.as_ref().map(|proof| proof.jkt.as_str());
    let mut response = match grant {
        TOKEN_EXCHANGE => exchange::exchange(state, &form, &client, jkt),
        REFRESH_TOKEN => refresh::refresh(state, &form, &client, jkt),
        AUTHORIZATION_CODE => login::authorization_code(state, &form, &client, jkt),
        _ => client_credentials(state, &form, &client, jkt),
    }?;
    // A proof that carried the previous nonce learns the current one.
    if let Some(proof) = proof {
        let current = state.dpop.token_nonces.current();
        if proof.nonce.as_deref() != Some(current.as_str())
            && let Ok(current) = HeaderValue::from_str(&current)
        {
            response.headers_mut().insert(DPOP_NONCE, current);
        }
    }
    Ok(response)
}

/// Checks the request's DPoP proof, if it has one: a proof for `POST` at the token
/// endpoint with the token endpoint's nonce. A client registered to require DPoP must
/// send one.
fn dpop_proof(
    state: &State,
    headers: &HeaderMap,
    client: &RegisteredClient,
) -> Result<Option<Proof>, TokenError> {
    let refused = |error| match error {
        ProofError::Invalid(description) => TokenError::invalid_dpop_proof(description),
        ProofError::UseNonce(description) => {
            state.dpop.count_challenge();
            TokenError::use_dpop_nonce(description, state.dpop.token_nonces.current())
        }
    };
    let Some(proof) = proof_header(headers).map_err(refused)? else {
        if client.require_dpop {
            return Err(TokenError::invalid_request(format!(
                "client {} is registered to require DPoP, and the token request has no DPoP \
                 header: send a DPoP proof",
                quote(&client.id)
            )));
        }
        return Ok(None);
    };
    let expected = Expected {
        method: "POST",
        url: &state.token_endpoint,
        bound_to: None,
        nonces: Some(&state.dpop.token_nonces),
    };
    state
        .dpop
        .verify(proof, &expected)
        .map(Some)
        .map_err(refused)
}

/// The `client_credentials` grant.
fn client_credentials(
    state: &State,
    form: &TokenForm,
    client: &AuthenticatedClient<'_>,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let asked = granted_scopes(form.get("scope"), client.client)?;
    let (rejected, scopes): (Vec<String>, Vec<String>) = asked
        .into_iter()
        .partition(|s| client.client.rejected_scopes.contains(s));
    if scopes.is_empty() {
        return Err(TokenError::invalid_scope(format!(
            "every scope asked for is rejected for client {}: {}",
            quote(&client.client.id),
            rejected.join(" ")
        )));
    }
    let resources = resources(form)?;
    let identity = client_claims(client.client, &client.organisation);
    let issued = issue_access_token(state, identity, &scopes, resources, None, jkt)?;
    let mut body = issued.response_body();
    if !rejected.is_empty() {
        body["rejected_scope"] = json!(rejected.join(" "));
    }
    Ok(token_response(body))
}

/// The `resource` parameters of a request (RFC 8707): at most one, not empty.
pub(crate) fn resources(form: &TokenForm) -> Result<&[String], TokenError> {
    let resources = form.resources();
    if resources.len() > 1 {
        return Err(TokenError::invalid_target(
            "only one resource parameter is supported",
        ));
    }
    if resources.iter().any(String::is_empty) {
        return Err(TokenError::invalid_target(
            "the resource parameter is empty",
        ));
    }
    Ok(resources)
}

/// The scopes to grant: those requested (space separated), or all the client's scopes
/// when none are requested. Every requested scope must be granted to the client.
pub(crate) fn granted_scopes(
    requested: Option<&str>,
    client: &RegisteredClient,
) -> Result<Vec<String>, TokenError> {
    let registered = &client.scopes;
    let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
        if registered.is_empty() {
            return Err(TokenError::invalid_scope(format!(
                "no scope was requested and client {} has no scopes",
                quote(&client.id)
            )));
        }
        return Ok(registered.clone());
    };
    let scopes = split_scopes(requested);
    check_granted(&scopes, client, |_| false)?;
    Ok(scopes)
}

/// Refuses (`invalid_scope`) the scopes of `scopes` not granted to `client`, except
/// those `free` lets through.
pub(crate) fn check_granted(
    scopes: &[String],
    client: &RegisteredClient,
    free: fn(&str) -> bool,
) -> Result<(), TokenError> {
    let refused: Vec<String> = scopes
        .iter()
        .filter(|s| !free(s) && !client.scopes.contains(s))
        .map(|s| quote(s))
        .collect();
    if !refused.is_empty() {
        return Err(TokenError::invalid_scope(format!(
            "scope {} is not granted to client {}",
            refused.join(", "),
            quote(&client.id)
        )));
    }
    Ok(())
}

/// The scopes of a space-separated `scope` parameter, without duplicates, in order.
pub(crate) fn split_scopes(requested: &str) -> Vec<String> {
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    scopes
}

/// The API a scope belongs to: the part before its last `/` (`nhn:cp-api/access` ->
/// `nhn:cp-api`), or the whole scope when it has no `/`.
fn audience_of(scope: &str) -> &str {
    scope.rsplit_once('/').map_or(scope, |(api, _)| api)
}

/// The claims that say which client a token was issued to: `client_id`, `client_amr`,
/// the tenancy, and the organisations it acts for.
pub(crate) fn client_claims(
    client: &RegisteredClient,
    organisation: &Organisation,
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("client_id".into(), json!(client.id));
    claims.insert("client_amr".into(), json!("private_key_jwt"));
    claims.insert(
        "helseid://claims/client/client_tenancy".into(),
        json!(match client.tenancy {
            Tenancy::Multi => "multi",
            Tenancy::Single { .. } => "single",
        }),
    );
    if let Some(parent) = &organisation.parent {
        claims.insert(
            "helseid://claims/client/claims/orgnr_parent".into(),
            json!(parent),
        );
    }
    if let Some(child) = &organisation.child {
        claims.insert(
            "helseid://claims/client/claims/orgnr_child".into(),
            json!(child),
        );
    }
    claims
}

/// A signed access token, and what its token response says about it.
#[derive(Debug)]
pub(crate) struct IssuedToken {
    pub(crate) access_token: String,
    /// Seconds until the token expires.
    pub(crate) expires_in: i64,
    /// The granted scopes, space separated.
    pub(crate) scope: String,
    /// `DPoP` for a token bound to a DPoP key, `Bearer` otherwise.
    pub(crate) token_type: &'static str,
}

impl IssuedToken {
    /// The token response body (RFC 6749 section 5.1) for this token alone.
    pub(crate) fn response_body(self) -> Value {
        json!({
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        })
    }
}

/// Signs an access token: `identity` (whose token it is: client and user claims) plus
/// `iss`, `aud` (the APIs of the scopes, then the resources), `scope`, `iat`, `nbf`,
/// `exp` and `jti`. `exp` is `now` plus the access token lifetime, or `not_after` when
/// that is earlier. With `jkt` (the thumbprint of a DPoP proof's key) the token is bound
/// to that key: `cnf: {"jkt": ..}`, and its type is `DPoP`.
pub(crate) fn issue_access_token(
    state: &State,
    identity: Map<String, Value>,
    scopes: &[String],
    resources: &[String],
    not_after: Option<i64>,
    jkt: Option<&str>,
) -> Result<IssuedToken, TokenError> {
    let mut audiences: Vec<&str> = Vec::new();
    // Identity scopes (`openid`, `profile`, ...) name no API.
    for aud in scopes
        .iter()
        .filter(|s| !is_identity_scope(s))
        .map(|s| audience_of(s))
        .chain(resources.iter().map(String::as_str))
    {
        if !audiences.contains(&aud) {
            audiences.push(aud);
        }
    }
    let aud = match audiences.as_slice() {
        [one] => json!(one),
        many => json!(many),
    };
    let lifetime = i64::try_from(state.access_token_lifetime.as_secs()).unwrap_or(i64::MAX);
    let now = unix_now();
    let mut exp = now.saturating_add(lifetime);
    if let Some(not_after) = not_after {
        exp = exp.min(not_after);
    }
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti)
        .map_err(|_| TokenError::server_error("cannot generate a jti"))?;
    let mut claims = identity;
    for (name, value) in [
        ("iss", json!(state.issuer)),
        ("aud", aud),
        ("scope", json!(scopes)),
        ("iat", json!(now)),
        ("nbf", json!(now)),
        ("exp", json!(exp)),
        ("jti", json!(b64(jti))),
    ] {
        claims.insert(name.into(), value);
    }
    if let Some(jkt) = jkt {
        claims.insert("cnf".into(), json!({ "jkt": jkt }));
    }
    let access_token = state
        .signing_key
        .sign_jwt("at+jwt", &claims)
        .map_err(|_| TokenError::server_error("cannot sign the access token"))?;
    state.tokens_issued.fetch_add(1, Ordering::Relaxed);
    let scope = scopes.join(" ");
    let client_id = claims
        .get("client_id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    tracing::debug!(
        client_id = %client_id,
        scope = %scope,
        "helseid emulator issued an access token"
    );
    Ok(IssuedToken {
        access_token,
        expires_in: exp.saturating_sub(now),
        scope,
        token_type: if jkt.is_some() { "DPoP" } else { "Bearer" },
    })
}

/// A successful token response: the body as JSON, with `Cache-Control: no-store`.
pub(crate) fn token_response(body: Value) -> Response {
    no_store(Json(body).into_response())
}
