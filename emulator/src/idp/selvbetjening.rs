//! Selvbetjening's client-secret API, as a client with the scope
//! `nhn:selvbetjening/client` rotates its own key: `GET /v1/client-secret` tells the
//! current key's expiration, `POST /v1/client-secret` with a new public JWK registers
//! it. Both need a DPoP-bound access token of this emulator with that scope and a proof
//! for the request; errors are `application/problem+json`.
//!
//! Keys expire: a client's key has an expiration, and an expired key is refused at the
//! token endpoint (`invalid_client`). A registered key replaces the old one, which is
//! refused from then on; with a propagation delay
//! ([`EmulatorBuilder::key_propagation_delay`](crate::EmulatorBuilder::key_propagation_delay)),
//! the old key keeps working and the new one is refused until the delay has passed, as
//! while HelseID has not picked up a change yet.
//!
//! **Keys and Selvbetjening.** A client's key expires
//! ([`EmulatorBuilder::key_lifetime`](crate::EmulatorBuilder::key_lifetime),
//! default a year;
//! [`ClientRegistration::key_expires_in`](crate::ClientRegistration::key_expires_in));
//! an expired key is
//! `invalid_client`. `GET /v1/client-secret` answers `{"expiration": "<RFC 3339>"}` for
//! the client whose DPoP-bound token (scope
//! [`SELVBETJENING_SCOPE`](crate::SELVBETJENING_SCOPE), with a matching
//! proof) it gets, and `POST /v1/client-secret` with a public JWK registers that client's
//! new key; from then on (after
//! [`EmulatorBuilder::key_propagation_delay`](crate::EmulatorBuilder::key_propagation_delay))
//! the old key
//! is refused. Errors are `application/problem+json`; a 401 carries a `DPoP` challenge.
//! [`Emulator::set_selvbetjening_open`](crate::Emulator::set_selvbetjening_open) makes
//! it refuse new keys (503).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes;
use axum::extract::State as Extract;
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::idp::clients::ClientKey;
use crate::idp::state::State;
use crate::server::response::ProblemDetails;
use crate::server::{lock, unix_now};
use helseid::key::PublicJwk;
use helseid::verify::HelseIdClaims;

/// The scope a client needs to read and rotate its own key.
pub const SCOPE: &str = "nhn:selvbetjening/client";

/// The path of the client-secret API.
pub(crate) const PATH: &str = "/v1/client-secret";

/// The audience of Selvbetjening's tokens (those with [`SCOPE`]).
pub(crate) const AUDIENCE: &str = "nhn:selvbetjening";

/// RFC 3339 in UTC with whole seconds, as the API writes its `expiration`.
pub(crate) fn rfc3339(unix: i64) -> String {
    chrono::DateTime::from_timestamp(unix, 0)
        .unwrap_or_default()
        .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// A refusal: a problem+json body, with the DPoP challenge on a 401.
struct Refusal {
    status: StatusCode,
    detail: String,
    /// The `WWW-Authenticate` error code of a 401.
    error: Option<&'static str>,
}

impl Refusal {
    fn new(status: StatusCode, detail: impl Into<String>) -> Self {
        Refusal {
            status,
            detail: detail.into(),
            error: None,
        }
    }

    fn unauthorized(error: &'static str, detail: impl Into<String>) -> Self {
        Refusal {
            error: Some(error),
            ..Refusal::new(StatusCode::UNAUTHORIZED, detail)
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        tracing::debug!(status = self.status.as_u16(), detail = %self.detail, "helseid emulator refused a Selvbetjening request");
        let body = ProblemDetails {
            kind: Some("https://tools.ietf.org/html/rfc9110#section-15.5".to_owned()),
            title: self.status.canonical_reason().map(str::to_owned),
            status: Some(i32::from(self.status.as_u16())),
            detail: Some(self.detail.clone()),
            instance: Some(PATH.to_owned()),
        };
        let mut response = (self.status, axum::Json(body)).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if let Some(error) = self.error {
            let challenge = format!(
                "DPoP error=\"{error}\", error_description=\"{}\"",
                crate::server::response::challenge_text(&self.detail)
            );
            if let Ok(value) = HeaderValue::from_str(&challenge) {
                headers.insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// The client a request is from: the `client_id` of the verified token the API's
/// verifier (`helseid::verify`, in front of the route: a DPoP-bound token of this
/// emulator for `nhn:selvbetjening` with [`SCOPE`], and a proof for this request) put in
/// the request's extensions.
fn authorize(request: &Parts) -> Result<String, Refusal> {
    let claims = request
        .extensions
        .get::<Arc<HelseIdClaims>>()
        .ok_or_else(|| {
            Refusal::unauthorized("invalid_token", "the request has no verified token")
        })?;
    match &claims.client_id {
        Some(id) if !id.is_empty() => Ok(id.clone()),
        _ => Err(Refusal::unauthorized(
            "invalid_token",
            "the access token has no client_id",
        )),
    }
}

/// `GET /v1/client-secret`: the current key's expiration.
pub(crate) async fn get(Extract(state): Extract<Arc<State>>, request: Parts) -> Response {
    let client_id = match authorize(&request) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    let Some(client) = state.clients.get(&client_id) else {
        return Refusal::new(
            StatusCode::NOT_FOUND,
            "the token's client is not registered",
        )
        .into_response();
    };
    let (_, expires_at) = client.keys.current();
    axum::Json(json!({ "expiration": rfc3339(expires_at) })).into_response()
}

/// `POST /v1/client-secret` with a public JWK: the client's new key.
pub(crate) async fn post(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
    body: Bytes,
) -> Response {
    let client_id = match authorize(&request) {
        Ok(id) => id,
        Err(refusal) => return refusal.into_response(),
    };
    match register(&state, &client_id, &body) {
        Ok(expires_at) => axum::Json(json!({ "expiration": rfc3339(expires_at) })).into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

fn register(state: &State, client_id: &str, body: &[u8]) -> Result<i64, Refusal> {
    if !state.selvbetjening_open.load(Ordering::Relaxed) {
        return Err(Refusal::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "Selvbetjening takes no new keys at the moment (the emulator was told to refuse them)",
        ));
    }
    let Some(client) = state.clients.get(client_id) else {
        return Err(Refusal::new(
            StatusCode::NOT_FOUND,
            "the token's client is not registered",
        ));
    };
    let bad = |detail: String| Refusal::new(StatusCode::BAD_REQUEST, detail);
    let jwk: Value = serde_json::from_slice(body)
        .map_err(|_| bad("the body is not a JSON public JWK".to_owned()))?;
    let Value::Object(members) = &jwk else {
        return Err(bad(
            "the body is not a JSON object (a public JWK)".to_owned()
        ));
    };
    for private in ["d", "p", "q", "dp", "dq", "qi", "oth", "k"] {
        if members.contains_key(private) {
            return Err(bad(format!(
                "the JWK has the private member `{private}`: send the public key only"
            )));
        }
    }
    let public: PublicJwk = serde_json::from_value(jwk.clone())
        .map_err(|_| bad("the body is not a public JWK".to_owned()))?;
    let key = ClientKey::from_jwk(&public).map_err(bad)?;
    let (current, _) = client.keys.current();
    if current.same_key(&key) {
        return Err(bad(
            "this key is the client's current key: register a new one".to_owned(),
        ));
    }
    let now = unix_now();
    let delay = i64::try_from(lock(&state.key_settings).propagation.as_secs()).unwrap_or(i64::MAX);
    let lifetime = i64::try_from(lock(&state.key_settings).lifetime.as_secs()).unwrap_or(i64::MAX);
    let expires_at = now.saturating_add(lifetime);
    client
        .keys
        .register(key, now.saturating_add(delay), expires_at);
    tracing::debug!(client_id, "helseid emulator registered a new client key");
    Ok(expires_at)
}
