//! `POST /connect/token`: the grants, and the access tokens the emulator issues.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::{exchange, refresh};
use crate::idp::client_auth::{AuthenticatedClient, authenticate};
use crate::idp::clients::{RegisteredClient, Tenancy};
use crate::idp::dpop::{Expected, Proof, ProofError, proof_header};
use crate::idp::issue::{
    JOURNAL_ID_CLAIM, client_claims, granted_scopes, issue_access_token, resources, token_response,
};
use crate::idp::login::{self, AUTHORIZATION_CODE};
use crate::idp::state::State;
use crate::server::form::TokenForm;
use crate::server::response::DPOP_NONCE;
use crate::server::response::{TokenError, quote};

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
        REFRESH_TOKEN => refresh::grant::refresh(state, &form, &client, jkt),
        AUTHORIZATION_CODE => login::flow::authorization_code(state, &form, &client, jkt),
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
    let mut identity = client_claims(client.client, &client.organisation);
    // A multi-tenant client names its SFM journal in the assertion; a token for SFM
    // carries it (issue_access_token drops it from tokens for other APIs).
    if let (Some(journal_id), Tenancy::Multi) = (&client.journal_id, &client.client.tenancy) {
        identity.insert(JOURNAL_ID_CLAIM.into(), json!(journal_id));
    }
    let issued = issue_access_token(state, identity, &scopes, resources, None, jkt)?;
    let mut body = issued.response_body();
    if !rejected.is_empty() {
        body["rejected_scope"] = json!(rejected.join(" "));
    }
    Ok(token_response(body))
}
