//! `POST /connect/token`: the grants, and the access tokens the emulator issues.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use super::Tenancy;
use super::client_auth::{AuthenticatedClient, authenticate};
use super::form::TokenForm;
use super::response::{TokenError, no_store, quote};
use super::state::{State, unix_now};
use crate::key::b64;

/// The token exchange grant type (RFC 8693).
pub(crate) const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";

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
            tracing::debug!(
                error = error.code(),
                description = error.description(),
                "helseid emulator refused a token request"
            );
            error.into_response()
        }
    }
}

/// Checks a token request and answers it.
fn handle(state: &State, headers: &HeaderMap, body: &[u8]) -> Result<Response, TokenError> {
    let form = TokenForm::parse(headers, body)?;
    match form.get("grant_type") {
        Some("client_credentials") => {
            let client = authenticate(state, &form)?;
            client_credentials(state, &form, &client)
        }
        // Token exchange (RFC 8693) and refresh tokens are announced in the discovery
        // document, as HelseID announces them, and will get their own arms here.
        Some(grant @ (TOKEN_EXCHANGE | "refresh_token")) => {
            Err(TokenError::unsupported_grant_type(format!(
                "grant_type {grant} is not implemented by the emulator yet"
            )))
        }
        Some(other) => Err(TokenError::unsupported_grant_type(format!(
            "grant_type {} is not supported",
            quote(other)
        ))),
        None => Err(TokenError::unsupported_grant_type("grant_type is missing")),
    }
}

/// The `client_credentials` grant.
fn client_credentials(
    state: &State,
    form: &TokenForm,
    client: &AuthenticatedClient<'_>,
) -> Result<Response, TokenError> {
    let scopes = granted_scopes(form.get("scope"), client)?;
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
    issue(state, client, &scopes, resources)
}

/// The scopes to grant: those requested (space separated), or all the client's scopes
/// when none are requested. Every requested scope must be granted to the client.
fn granted_scopes(
    requested: Option<&str>,
    client: &AuthenticatedClient<'_>,
) -> Result<Vec<String>, TokenError> {
    let registered = &client.client.scopes;
    let Some(requested) = requested.filter(|s| !s.trim().is_empty()) else {
        if registered.is_empty() {
            return Err(TokenError::invalid_scope(format!(
                "no scope was requested and client {} has no scopes",
                quote(&client.client.id)
            )));
        }
        return Ok(registered.clone());
    };
    let mut scopes: Vec<String> = Vec::new();
    for scope in requested.split(' ').filter(|s| !s.is_empty()) {
        if !scopes.iter().any(|s| s == scope) {
            scopes.push(scope.to_owned());
        }
    }
    let refused: Vec<String> = scopes
        .iter()
        .filter(|s| !registered.contains(s))
        .map(|s| quote(s))
        .collect();
    if !refused.is_empty() {
        return Err(TokenError::invalid_scope(format!(
            "scope {} is not granted to client {}",
            refused.join(", "),
            quote(&client.client.id)
        )));
    }
    Ok(scopes)
}

/// The API a scope belongs to: the part before its last `/` (`nhn:cp-api/access` ->
/// `nhn:cp-api`), or the whole scope when it has no `/`.
fn audience_of(scope: &str) -> &str {
    scope.rsplit_once('/').map_or(scope, |(api, _)| api)
}

/// Signs an access token and writes the token response.
fn issue(
    state: &State,
    client: &AuthenticatedClient<'_>,
    scopes: &[String],
    resources: &[String],
) -> Result<Response, TokenError> {
    let mut audiences: Vec<&str> = Vec::new();
    for aud in scopes
        .iter()
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
    let lifetime = state.access_token_lifetime.as_secs();
    let now = unix_now();
    let mut jti = [0u8; 16];
    aws_lc_rs::rand::fill(&mut jti)
        .map_err(|_| TokenError::server_error("cannot generate a jti"))?;
    let registered = client.client;
    let mut claims = json!({
        "iss": state.issuer,
        "aud": aud,
        "scope": scopes,
        "client_id": registered.id,
        "iat": now,
        "nbf": now,
        "exp": now.saturating_add(i64::try_from(lifetime).unwrap_or(i64::MAX)),
        "jti": b64(jti),
        "client_amr": "private_key_jwt",
        "helseid://claims/client/client_tenancy": match registered.tenancy {
            Tenancy::Multi => "multi",
            Tenancy::Single { .. } => "single",
        },
    });
    if let Value::Object(map) = &mut claims {
        let organisation = &client.organisation;
        if let Some(parent) = &organisation.parent {
            map.insert(
                "helseid://claims/client/claims/orgnr_parent".into(),
                json!(parent),
            );
        }
        if let Some(child) = &organisation.child {
            map.insert(
                "helseid://claims/client/claims/orgnr_child".into(),
                json!(child),
            );
        }
    }
    let access_token = state
        .signing_key
        .sign_jwt("at+jwt", &claims)
        .map_err(|_| TokenError::server_error("cannot sign the access token"))?;
    state.tokens_issued.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(client_id = %registered.id, scope = %scopes.join(" "), "helseid emulator issued an access token");
    let body = json!({
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": lifetime,
        "scope": scopes.join(" "),
    });
    Ok(no_store(Json(body).into_response()))
}
