//! Token exchange (RFC 8693) as HelseID does it for SFM: an API (the actor) exchanges
//! the access token it received for a token to a downstream API, keeping the identity of
//! the client (and user) the received token was issued to.
//!
//! **Token exchange** (RFC 8693, as SFM uses it): an API registered with
//! [`ClientRegistration::audience`](crate::ClientRegistration::audience) (the actor)
//! authenticates with its own client
//! assertion and sends `subject_token` (an access token it received),
//! `subject_token_type=urn:ietf:params:oauth:token-type:access_token` and `scope` (the
//! downstream API's scopes, which must be granted to the actor). The subject token must
//! be an unexpired access token of this emulator whose `aud` holds one of the actor's
//! audiences; otherwise the answer is `invalid_grant`. Another `subject_token_type`,
//! an `actor_token` or a missing parameter is `invalid_request`. The new access token is
//! for the downstream scopes but keeps the identity of the subject token: `client_id`,
//! `client_amr`, `sub`, `amr`, `auth_time`, `idp` and every `helseid://claims/...` claim
//! (organisations, pid, security level), adds `act: {"client_id": <actor>}` (nesting
//! the subject token's own `act`), and expires no later than the subject token. The
//! response adds `issued_token_type`.
//! [`Emulator::token_exchanges`](crate::Emulator::token_exchanges) counts them.

use std::sync::atomic::Ordering;

use axum::response::Response;
use serde_json::{Map, Value, json};

use crate::idp::client_auth::AuthenticatedClient;
use crate::idp::issue::{granted_scopes, issue_access_token, resources, token_response};
use crate::idp::state::State;
use crate::server::form::TokenForm;
use crate::server::response::{TokenError, quote};
use crate::server::unix_now;

/// The token type of access tokens (RFC 8693 section 3): the only `subject_token_type`
/// and `requested_token_type` accepted, and the `issued_token_type` of every exchange.
pub(crate) const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";

/// Claims of the subject token that the exchanged token keeps, besides every claim
/// whose name starts with [`KEPT_PREFIX`]: who the original client and user are.
const KEPT_CLAIMS: &[&str] = &["client_id", "client_amr", "sub", "amr", "auth_time", "idp"];

/// The prefix of HelseID's client and identity claims
/// (`helseid://claims/client/claims/orgnr_parent`, `helseid://claims/identity/pid`, ...),
/// which the exchanged token keeps.
const KEPT_PREFIX: &str = "helseid://claims/";

/// The token exchange grant, for an actor that has authenticated. With `jkt` (the
/// actor's DPoP key) the new token is bound to the actor's key.
pub(crate) fn exchange(
    state: &State,
    form: &TokenForm,
    actor: &AuthenticatedClient<'_>,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    match form.get("subject_token_type") {
        Some(ACCESS_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(TokenError::invalid_request(format!(
                "subject_token_type {} is not supported; HelseID exchanges access tokens only: {ACCESS_TOKEN_TYPE}",
                quote(other)
            )));
        }
        None => {
            return Err(TokenError::invalid_request(format!(
                "subject_token_type is missing; it must be {ACCESS_TOKEN_TYPE}"
            )));
        }
    }
    let Some(subject_token) = form.get("subject_token") else {
        return Err(TokenError::invalid_request(
            "subject_token is missing: it must be the access token to exchange",
        ));
    };
    if form.get("actor_token").is_some() || form.get("actor_token_type").is_some() {
        return Err(TokenError::invalid_request(
            "actor_token is not supported: the actor is the client that authenticates the request",
        ));
    }
    match form.get("requested_token_type") {
        None | Some(ACCESS_TOKEN_TYPE) => {}
        Some(other) => {
            return Err(TokenError::invalid_request(format!(
                "requested_token_type {} is not supported; the exchange issues {ACCESS_TOKEN_TYPE}",
                quote(other)
            )));
        }
    }
    if form.get("audience").is_some() {
        return Err(TokenError::invalid_target(
            "the audience parameter is not supported: name the downstream API's scopes in scope",
        ));
    }
    let Some(requested) = form.get("scope").filter(|s| !s.trim().is_empty()) else {
        return Err(TokenError::invalid_request(
            "scope is missing: a token exchange names the downstream API's scopes",
        ));
    };
    let resources = resources(form)?;

    let subject = match state.verify_access_token(subject_token) {
        Ok(Value::Object(claims)) => claims,
        Ok(_) => {
            return Err(TokenError::invalid_grant(
                "the subject_token's claims are not a JSON object",
            ));
        }
        Err(reason) => {
            return Err(TokenError::invalid_grant(format!(
                "the subject_token is not a valid access token from this emulator: {reason}"
            )));
        }
    };
    let exp = subject.get("exp").and_then(Value::as_i64).ok_or_else(|| {
        TokenError::invalid_grant("the subject_token's exp is not a whole number of seconds")
    })?;
    if exp <= unix_now() {
        return Err(TokenError::invalid_grant("the subject_token has expired"));
    }
    check_audience(&subject, actor)?;
    if !matches!(subject.get("client_id"), Some(Value::String(id)) if !id.is_empty()) {
        return Err(TokenError::invalid_grant(
            "the subject_token has no client_id claim",
        ));
    }
    let scopes = granted_scopes(Some(requested), actor.client)?;

    let mut identity: Map<String, Value> = subject
        .iter()
        .filter(|(name, _)| KEPT_CLAIMS.contains(&name.as_str()) || name.starts_with(KEPT_PREFIX))
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    let mut act = Map::new();
    act.insert("client_id".into(), json!(actor.client.id));
    if let Some(earlier) = subject.get("act") {
        act.insert("act".into(), earlier.clone());
    }
    identity.insert("act".into(), Value::Object(act));

    let issued = issue_access_token(state, identity, &scopes, resources, Some(exp), jkt)?;
    state.token_exchanges.fetch_add(1, Ordering::Relaxed);
    tracing::debug!(actor = %actor.client.id, "helseid emulator exchanged a token");
    let mut body = issued.response_body();
    if let Value::Object(map) = &mut body {
        map.insert("issued_token_type".into(), json!(ACCESS_TOKEN_TYPE));
    }
    Ok(token_response(body))
}

/// The subject token must be meant for the actor: its `aud` holds an API the actor is.
fn check_audience(
    subject: &Map<String, Value>,
    actor: &AuthenticatedClient<'_>,
) -> Result<(), TokenError> {
    let client = actor.client;
    let audiences: Vec<&str> = match subject.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if audiences.is_empty() {
        return Err(TokenError::invalid_grant(
            "the subject_token has no aud: it is not meant for any API",
        ));
    }
    if client.audiences.is_empty() {
        return Err(TokenError::invalid_grant(format!(
            "the subject_token is not meant for client {}: the client is registered as no API (no audience), so no token is meant for it",
            quote(&client.id)
        )));
    }
    if audiences
        .iter()
        .any(|aud| client.audiences.iter().any(|own| own == aud))
    {
        return Ok(());
    }
    let quoted = |list: &mut dyn Iterator<Item = &str>| -> String {
        list.map(quote).collect::<Vec<_>>().join(", ")
    };
    Err(TokenError::invalid_grant(format!(
        "the subject_token is not meant for client {}: its aud {} holds none of the client's audiences {}",
        quote(&client.id),
        quoted(&mut audiences.iter().copied()),
        quoted(&mut client.audiences.iter().map(String::as_str)),
    )))
}
