//! The refresh token grant: a session's refresh token for a new access token and the
//! next refresh token.

use super::*;
use crate::idp::client_auth::AuthenticatedClient;
use crate::idp::issue::{client_claims, issue_access_token, split_scopes, token_response};
use crate::idp::state::State;
use crate::idp::tenancy::{self};
use crate::server::form::TokenForm;
use crate::server::response::{TokenError, quote};

/// The `refresh_token` grant, for a client that has authenticated, with a DPoP proof
/// by the key `jkt` or none.
pub(crate) fn refresh(
    state: &State,
    form: &TokenForm,
    client: &AuthenticatedClient<'_>,
    jkt: Option<&str>,
) -> Result<Response, TokenError> {
    let Some(refresh_token) = form.get("refresh_token") else {
        return Err(TokenError::invalid_request("refresh_token is missing"));
    };
    let resources = crate::idp::issue::resources(form)?;
    // The organisation the assertion names when it names none: none for a multi-tenant
    // client, the registered parent for a single-tenant one. An assertion that names
    // organisations gets a token for them (NHN's pattern since 2026: one user session,
    // tokens per organisation); one that names none, for the session's.
    let unnamed = tenancy::organisation(&Map::new(), client.client)?;
    let named = (client.organisation != unnamed).then(|| client.organisation.clone());
    let requested = form.get("scope").filter(|s| !s.trim().is_empty());
    let (session, next) = state
        .refresh_tokens
        .redeem(refresh_token, &client.client.id, jkt, |session| {
            let Some(requested) = requested else {
                return Ok(session.scopes.clone());
            };
            let scopes = split_scopes(requested);
            let widened: Vec<String> = scopes
                .iter()
                .filter(|s| !session.scopes.contains(s))
                .map(|s| quote(s))
                .collect();
            if !widened.is_empty() {
                return Err(TokenError::invalid_scope(format!(
                    "scope {} was not granted with the refresh_token; a refresh may narrow the scopes, not widen them",
                    widened.join(", ")
                )));
            }
            Ok(scopes)
        })?;
    let organisation = named.as_ref().unwrap_or(&session.organisation);
    let mut identity = client_claims(client.client, organisation);
    identity.extend(session.user);
    let issued = issue_access_token(
        state,
        identity,
        &session.scopes,
        resources,
        None,
        session.jkt.as_deref(),
    )?;
    state.refreshes.fetch_add(1, Ordering::Relaxed);
    let mut body = issued.response_body();
    if let Value::Object(map) = &mut body {
        map.insert("refresh_token".into(), json!(next.refresh_token));
        map.insert("rt_expires_in".into(), json!(next.rt_expires_in));
    }
    Ok(token_response(body))
}
