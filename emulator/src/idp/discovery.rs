//! The discovery document and the JWKS.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::State as Extract;
use serde_json::{Value, json};

use crate::idp::dpop;
use crate::idp::login::IDENTITY_SCOPES;
use crate::idp::state::State;
use crate::idp::token::TOKEN_EXCHANGE;

/// `GET /.well-known/openid-configuration`.
pub(crate) async fn configuration(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    Json(document(&state))
}

/// The discovery document: what `GET /.well-known/openid-configuration` answers, and
/// what the emulator's own APIs read in-process to find the keys.
pub(crate) fn document(state: &State) -> Value {
    let scopes: BTreeSet<&str> = state
        .clients
        .values()
        .flat_map(|client| client.scopes.iter().map(String::as_str))
        .chain(IDENTITY_SCOPES)
        .collect();
    json!({
        "issuer": state.issuer,
        "jwks_uri": state.jwks_uri(),
        "token_endpoint": state.token_endpoint,
        "pushed_authorization_request_endpoint": format!("{}/connect/par", state.issuer),
        "require_pushed_authorization_requests": true,
        "authorization_endpoint": format!("{}/connect/authorize", state.issuer),
        "end_session_endpoint": format!("{}/connect/endsession", state.issuer),
        "revocation_endpoint": format!("{}/connect/revocation", state.issuer),
        "response_types_supported": ["code"],
        "code_challenge_methods_supported": ["S256"],
        "id_token_signing_alg_values_supported": ["RS256"],
        "authorization_response_iss_parameter_supported": true,
        "grant_types_supported":
            ["authorization_code", "client_credentials", "refresh_token", TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported":
            ["RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"],
        "dpop_signing_alg_values_supported": dpop::ALGS,
        "scopes_supported": scopes,
    })
}

/// `GET /.well-known/openid-configuration/jwks`.
pub(crate) async fn jwks(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    Json(state.signing_jwks())
}
