//! `POST /test-token`: user token sets for tests, in the spirit of HelseID's test token
//! service. It exists only in the emulator: there is no client authentication.
//!
//! **Test tokens** come from `POST /test-token`, which exists only in the emulator and
//! needs no client authentication: its JSON body ([`TestTokenRequest`]) names a
//! registered client and its scopes, and optionally a `pid`, a `securityLevel` and the
//! organisations; it answers like a token response with an access token carrying the
//! client's claims and a test person's (`sub`, `amr`, `helseid://claims/identity/pid`,
//! `helseid://claims/identity/security_level`, ...) and the first refresh token of a
//! session. An unknown client, a scope not granted or a malformed body gets 400 with an
//! OAuth error body. [`Emulator::mint_user_tokens`](crate::Emulator::mint_user_tokens)
//! does the same from Rust.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::{HeaderMap, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::idp::clients::RegisteredClient;
use crate::idp::clients::Tenancy;
use crate::idp::issue::{client_claims, granted_scopes, issue_access_token, token_response};
use crate::idp::people::{is_pid, user_claims};
use crate::idp::refresh::Session;
use crate::idp::state::State;
use crate::idp::tenancy::{Organisation, is_orgnr};
use crate::server::response::{TokenError, escape, quote};

/// The fødselsnummer of the synthetic test person used when a request names none.
pub(crate) const DEFAULT_PID: &str = "13116900216";

/// The security level used when a request names none: 4, high (BankID and the like).
const DEFAULT_SECURITY_LEVEL: &str = "4";

/// A request for a user token set: the JSON body of `POST /test-token`, or the argument
/// of [`Emulator::mint_test_token`](crate::Emulator::mint_test_token).
///
/// ```json
/// {"clientId": "my-client", "scopes": ["e-helse:sfm.api/access"],
///  "pid": "13116900216", "securityLevel": "4",
///  "parentOrgnr": "912345678", "childOrgnr": "987654321"}
/// ```
///
/// Only `clientId` is required. Unknown members are refused.
#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TestTokenRequest {
    client_id: String,
    #[serde(default)]
    scopes: Vec<String>,
    #[serde(default)]
    pid: Option<String>,
    #[serde(default)]
    security_level: Option<String>,
    #[serde(default)]
    parent_orgnr: Option<String>,
    #[serde(default)]
    child_orgnr: Option<String>,
}

impl TestTokenRequest {
    /// A token set for the registered client `client_id` with these scopes (all of the
    /// client's scopes when empty), for the default test person at security level 4.
    pub fn new(
        client_id: impl Into<String>,
        scopes: impl IntoIterator<Item = impl Into<String>>,
    ) -> Self {
        TestTokenRequest {
            client_id: client_id.into(),
            scopes: scopes.into_iter().map(Into::into).collect(),
            ..TestTokenRequest::default()
        }
    }

    /// The user's fødselsnummer or D-number (eleven digits with valid check digits).
    /// Default: `13116900216`, a synthetic test person.
    pub fn pid(mut self, pid: impl Into<String>) -> Self {
        self.pid = Some(pid.into());
        self
    }

    /// The user's security level: `"3"` (substantial) or `"4"` (high). Default: `"4"`.
    pub fn security_level(mut self, level: impl Into<String>) -> Self {
        self.security_level = Some(level.into());
        self
    }

    /// The organisations the client acts for, as a client assertion's
    /// `assertion_details` would name them. A multi-tenant client may name a parent
    /// organisation and, with it, a child; a single-tenant client has its registered
    /// parent (naming another one is refused) and may name a child. Default: none (a
    /// single-tenant client still gets its registered parent).
    pub fn organisation(mut self, parent: Option<&str>, child: Option<&str>) -> Self {
        self.parent_orgnr = parent.map(str::to_owned);
        self.child_orgnr = child.map(str::to_owned);
        self
    }
}

/// `POST /test-token`.
pub(crate) async fn test_token(
    Extract(state): Extract<Arc<State>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let result = parse(&headers, &body).and_then(|request| mint(&state, &request));
    match result {
        Ok(body) => token_response(body),
        Err(error) => {
            tracing::debug!(
                error = error.code(),
                description = error.description(),
                "helseid emulator refused a test token request"
            );
            error.into_response()
        }
    }
}

/// Checks the content type and reads the JSON body.
fn parse(headers: &HeaderMap, body: &[u8]) -> Result<TestTokenRequest, TokenError> {
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let essence = content_type.split(';').next().unwrap_or_default().trim();
    if !essence.eq_ignore_ascii_case("application/json") {
        return Err(TokenError::invalid_request(format!(
            "a test token request must be a POST with Content-Type application/json (got {})",
            if content_type.is_empty() {
                "none".to_owned()
            } else {
                quote(content_type)
            }
        )));
    }
    serde_json::from_slice(body).map_err(|e| {
        // serde's message may repeat a member's name as sent.
        TokenError::invalid_request(format!(
            "the body is not a test token request: {}",
            escape(&e.to_string())
        ))
    })
}

/// Mints a user token set: an access token with the client's and the user's claims,
/// and the first refresh token of a new session. Answers like a token response.
pub(crate) fn mint(state: &State, request: &TestTokenRequest) -> Result<Value, TokenError> {
    let Some(client) = state.clients.get(&request.client_id) else {
        return Err(TokenError::invalid_client(format!(
            "clientId {} is not a registered client",
            quote(&request.client_id)
        )));
    };
    for scope in &request.scopes {
        if scope.is_empty() || scope.contains(char::is_whitespace) {
            return Err(TokenError::invalid_request(format!(
                "scopes: {} is not a scope (one scope per array element, no spaces)",
                quote(scope)
            )));
        }
    }
    let requested = request.scopes.join(" ");
    let scopes = granted_scopes(Some(&requested), client)?;
    let pid = request.pid.as_deref().unwrap_or(DEFAULT_PID);
    if !is_pid(pid) {
        return Err(TokenError::invalid_request(format!(
            "pid {} is not a fødselsnummer or D-number: eleven digits with valid check digits",
            quote(pid)
        )));
    }
    let level = request
        .security_level
        .as_deref()
        .unwrap_or(DEFAULT_SECURITY_LEVEL);
    let assurance = match level {
        "4" => "high",
        "3" => "substantial",
        other => {
            return Err(TokenError::invalid_request(format!(
                "securityLevel {} is not supported: it must be \"3\" or \"4\"",
                quote(other)
            )));
        }
    };
    let organisation = organisation(client, request)?;

    let user = user_claims(pid, level, assurance);

    let mut identity = client_claims(client, &organisation);
    identity.extend(user.clone());
    let issued = issue_access_token(state, identity, &scopes, &[], None, None)?;
    let refresh = state.refresh_tokens.start(Session {
        client_id: client.id.clone(),
        scopes,
        organisation,
        user,
        jkt: None,
    })?;
    let mut body = issued.response_body();
    if let Value::Object(map) = &mut body {
        map.insert("refresh_token".into(), json!(refresh.refresh_token));
        map.insert("rt_expires_in".into(), json!(refresh.rt_expires_in));
    }
    tracing::debug!(client_id = %client.id, "helseid emulator minted a test token set");
    Ok(body)
}

/// The organisations of a test token, by the client's tenancy.
fn organisation(
    client: &RegisteredClient,
    request: &TestTokenRequest,
) -> Result<Organisation, TokenError> {
    for (name, value) in [
        ("parentOrgnr", &request.parent_orgnr),
        ("childOrgnr", &request.child_orgnr),
    ] {
        if let Some(value) = value
            && !is_orgnr(value)
        {
            return Err(TokenError::invalid_request(format!(
                "{name} {} is not an organisation number: nine digits",
                quote(value)
            )));
        }
    }
    match &client.tenancy {
        Tenancy::Multi => {
            if request.child_orgnr.is_some() && request.parent_orgnr.is_none() {
                return Err(TokenError::invalid_request(
                    "childOrgnr needs parentOrgnr: a multi-tenant client names the parent organisation with the child",
                ));
            }
            Ok(Organisation {
                parent: request.parent_orgnr.clone(),
                child: request.child_orgnr.clone(),
            })
        }
        Tenancy::Single { parent_orgnr } => {
            if let Some(parent) = &request.parent_orgnr
                && parent != parent_orgnr
            {
                return Err(TokenError::invalid_request(format!(
                    "parentOrgnr {} is not the parent organisation registered for single-tenant client {}",
                    quote(parent),
                    quote(&client.id)
                )));
            }
            Ok(Organisation {
                parent: Some(parent_orgnr.clone()),
                child: request.child_orgnr.clone(),
            })
        }
    }
}
