//! What the token endpoint's grants share: the scopes a client may have, the claims of
//! a client, and the access token issued with the response that carries it.
//!
//! Issued access tokens are RS256 JWTs with `typ: at+jwt`, signed with a key the
//! emulator generates when it starts;
//! [`Emulator::verify_access_token`](crate::Emulator::verify_access_token) checks them.

use crate::idp::clients::RegisteredClient;
use crate::idp::clients::Tenancy;
use crate::idp::login::is_identity_scope;
use crate::idp::state::State;
use crate::idp::tenancy::Organisation;
use crate::server::error::b64;
use crate::server::form::TokenForm;
use crate::server::response::{TokenError, no_store, quote};
use crate::server::unix_now;
use axum::Json;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::atomic::Ordering;

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

/// The audience of SFM, whose tokens carry the client's SFM claims.
pub(crate) const SFM_AUDIENCE: &str = "e-helse:sfm.api";

/// The SFM instance claim of tokens for [`SFM_AUDIENCE`].
const SFM_ID_CLAIM: &str = "e-helse:sfm.api/client/claims/sfm-id";

/// The journal id claim of a multi-tenant client's tokens for [`SFM_AUDIENCE`].
pub(crate) const JOURNAL_ID_CLAIM: &str = "nhn:sfm:journal-id";

/// The claims that say which client a token was issued to: `client_id`, `client_amr`,
/// the client's name, the tenancy, and the organisations it acts for (the supplier's
/// when registered).
pub(crate) fn client_claims(
    client: &RegisteredClient,
    organisation: &Organisation,
) -> Map<String, Value> {
    let mut claims = Map::new();
    claims.insert("client_id".into(), json!(client.id));
    claims.insert("client_amr".into(), json!("private_key_jwt"));
    claims.insert(
        "helseid://claims/client/client_name".into(),
        json!(client.profile.name.as_deref().unwrap_or(&client.id)),
    );
    if let Some(supplier) = &client.profile.supplier_orgnr {
        claims.insert(
            "helseid://claims/client/claims/orgnr_supplier".into(),
            json!(supplier),
        );
    }
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
    if audiences.contains(&SFM_AUDIENCE) {
        sfm_claims(state, &mut claims);
    } else {
        claims.remove(JOURNAL_ID_CLAIM);
    }
    let access_token = state
        .signing_keys
        .sign("at+jwt", &claims)
        .ok_or_else(|| TokenError::server_error("cannot sign the access token"))?;
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

/// Adds the SFM claims of the token's client (by its `client_id`, the original
/// client's after an exchange): `sfm-id` and, for a multi-tenant client, the journal id,
/// each as registered or derived from the client id.
fn sfm_claims(state: &State, claims: &mut Map<String, Value>) {
    let Some(client) = claims
        .get("client_id")
        .and_then(Value::as_str)
        .and_then(|id| state.clients.get(id))
    else {
        return;
    };
    let derived = |what: &str| {
        let hash = aws_lc_rs::digest::digest(
            &aws_lc_rs::digest::SHA256,
            format!("helseid-emulator-{what}:{}", client.id).as_bytes(),
        );
        let hex: String = hash.as_ref()[..16]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    };
    let profile = &client.profile;
    let sfm_id = profile.sfm_id.clone().unwrap_or_else(|| derived("sfm-id"));
    claims.insert(SFM_ID_CLAIM.into(), json!(sfm_id));
    if client.tenancy == Tenancy::Multi {
        // The assertion's journal id when it named one, else the registered one.
        if !claims.contains_key(JOURNAL_ID_CLAIM) {
            let journal_id = profile
                .journal_id
                .clone()
                .unwrap_or_else(|| derived("journal-id"));
            claims.insert(JOURNAL_ID_CLAIM.into(), json!(journal_id));
        }
    } else {
        claims.remove(JOURNAL_ID_CLAIM);
    }
}

/// A successful token response: the body as JSON, with `Cache-Control: no-store`.
pub(crate) fn token_response(body: Value) -> Response {
    no_store(Json(body).into_response())
}
