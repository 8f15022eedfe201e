//! Who may call the Meldingstjener, and for which HER-ids.
//!
//! **Tokens.** Every operation (not `/msh/openapi.json`) needs `Authorization: DPoP
//! <token>` with an unexpired access token of this emulator whose `aud` holds
//! [`AUDIENCE`] (`nhn:msh`) and whose scope holds [`SCOPE`] (`nhn:msh/api`), bound to
//! the key of the `DPoP` proof sent with it (RFC 9449: the proof's `htm`, `htu` = the
//! URL called without its query, `ath`, and a key whose thumbprint is the token's
//! `cnf.jkt`). A Bearer token, a token without `cnf.jkt`, another API's token (wrong
//! audience) and a missing or bad proof get 401 with `WWW-Authenticate: DPoP
//! error="invalid_token"` or `error="invalid_dpop_proof"` and a description that never
//! quotes the token or the proof; the right audience without the scope gets 403
//! `error="insufficient_scope"`.
//!
//! **Headers.** Then every operation needs `api-version: 2` (`2.0` is taken too) and a
//! non-empty `nhn-source-system`; otherwise 400 with the API's `ErrorMessage` body
//! (`errorCode` 1000, `validationErrors` naming the header).
//!
//! **Tenancy: the HER-ids a client may act for.** The organisations a token acts for
//! are its `helseid://claims/client/claims/orgnr_parent` and `orgnr_child` (a
//! multi-tenant client names them in its client assertion, a single-tenant client has
//! its registered parent). The client may act for a HER-id when the register holds an
//! active party with that HER-id whose organisation (the party itself for an
//! organisation, the organisation it belongs to for a service or a person) has one of
//! those organisation numbers. A token that names no organisation may act for no
//! HER-id. Acting for a HER-id it may not gets 403 with `Not authorized for HerId(s):
//! ..` naming them.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::extract::{Request, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde_json::Value;

use crate::apis::cpe::model::CommunicationParty;
use crate::apis::msh::answer::Failure;
use crate::apis::register::Register;
use crate::apis::register::dotnet::parse_dotnet;
use crate::idp::dpop;
use crate::idp::state::State as Idp;
use crate::idp::verify::check_scope;
use crate::server::response::challenge_text;

/// The scope a token needs.
pub(crate) const SCOPE: &str = "nhn:msh/api";

/// The audience a token must name.
pub(crate) const AUDIENCE: &str = "nhn:msh";

/// The API's name in descriptions.
pub(crate) const API: &str = "the Meldingstjener (MSH) API v2";

/// The header that names the API version.
const API_VERSION: &str = "api-version";

/// The header that names the calling system.
const SOURCE_SYSTEM: &str = "nhn-source-system";

/// Whether a party is active: no `Valid.To`, or one in the future.
pub(crate) fn is_active(party: &CommunicationParty) -> bool {
    match &party.valid.to {
        None => true,
        Some(to) => parse_dotnet(to).is_ok_and(|to| to > Utc::now()),
    }
}

/// The organisations a verified token acts for.
#[derive(Clone, Debug, Default)]
pub(crate) struct Caller {
    /// `orgnr_parent` and `orgnr_child`, those present.
    pub(crate) orgnrs: Vec<String>,
}

impl Caller {
    /// From a verified token's claims.
    fn from_claims(claims: &Value) -> Self {
        let orgnrs = ["orgnr_parent", "orgnr_child"]
            .iter()
            .filter_map(|name| {
                claims
                    .get(format!("helseid://claims/client/claims/{name}"))
                    .and_then(Value::as_str)
                    .map(str::to_owned)
            })
            .collect();
        Caller { orgnrs }
    }

    /// Whether the caller may act for `her_id` (see the module's rule).
    pub(crate) fn may_act_for(&self, register: &Register, her_id: i32) -> bool {
        let Some(party) = register.party(her_id) else {
            return false;
        };
        if !is_active(party) {
            return false;
        }
        let organisation = register.organisation_of(party);
        organisation
            .organization_number
            .is_some_and(|n| self.orgnrs.iter().any(|o| *o == format!("{n:09}")))
    }

    /// The 403 when the caller may not act for every one of `her_ids`.
    pub(crate) fn require(&self, register: &Register, her_ids: &[i32]) -> Result<(), Failure> {
        let refused: Vec<String> = her_ids
            .iter()
            .filter(|h| !self.may_act_for(register, **h))
            .map(ToString::to_string)
            .collect();
        if refused.is_empty() {
            Ok(())
        } else {
            Err(Failure::forbidden(&refused))
        }
    }
}

/// What [`guard`] needs: the IdP whose tokens it takes, and the request counter.
pub(crate) struct Guard {
    pub(crate) idp: Arc<Idp>,
    pub(crate) requests: Arc<AtomicU64>,
}

impl std::fmt::Debug for Guard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Guard")
            .field("requests", &self.requests)
            .finish_non_exhaustive()
    }
}

/// The middleware in front of every operation: counts the request, verifies the token
/// and the proof, checks the two headers, and hands the [`Caller`] to the handler.
pub(crate) async fn guard(
    Extract(guard): Extract<Arc<Guard>>,
    request: Request,
    next: Next,
) -> Response {
    guard.requests.fetch_add(1, Ordering::Relaxed);
    let (mut parts, body) = request.into_parts();
    let caller = match verify(&guard.idp, &parts) {
        Ok(caller) => caller,
        Err((error, description)) => return unauthorized(error, &description),
    };
    if let Err(failure) = headers(&parts) {
        return failure.into_response();
    }
    parts.extensions.insert(caller);
    next.run(Request::from_parts(parts, body)).await
}

/// The token and the proof, or the error code and description of the 401/403 to
/// answer with.
fn verify(idp: &Idp, parts: &Parts) -> Result<Caller, (&'static str, String)> {
    let claims = crate::idp::verify::check_bound_request(idp, parts, API, None)
        .map_err(|refusal| (refusal.error, refusal.description))?;
    let audiences: Vec<&str> = match claims.get("aud") {
        Some(Value::String(aud)) => vec![aud.as_str()],
        Some(Value::Array(auds)) => auds.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if !audiences.contains(&AUDIENCE) {
        return Err((
            "invalid_token",
            format!("the access token is not meant for {API}: its aud must be {AUDIENCE}"),
        ));
    }
    check_scope(&claims, SCOPE, API).map_err(|description| ("insufficient_scope", description))?;
    Ok(Caller::from_claims(&claims))
}

/// The two headers every operation needs.
fn headers(parts: &Parts) -> Result<(), Failure> {
    let mut problems = Vec::new();
    let value = |name: &str| {
        let mut all = parts.headers.get_all(name).iter();
        match (all.next(), all.next()) {
            (Some(_), Some(_)) => Err(format!("the {name} header is given more than once")),
            (Some(v), None) => v
                .to_str()
                .map(|v| Some(v.trim().to_owned()))
                .map_err(|_| format!("the {name} header is not visible ASCII")),
            (None, _) => Ok(None),
        }
    };
    match value(API_VERSION) {
        Ok(Some(v)) if v == "2" || v == "2.0" => {}
        Ok(Some(v)) => problems.push(format!(
            "{API_VERSION} {} is not supported: this is version 2 (send {API_VERSION}: 2)",
            crate::server::response::quote(&v)
        )),
        Ok(None) => problems.push(format!(
            "the {API_VERSION} header is required (send {API_VERSION}: 2)"
        )),
        Err(problem) => problems.push(problem),
    }
    match value(SOURCE_SYSTEM) {
        Ok(Some(v)) if !v.is_empty() => {}
        Ok(_) => problems.push(format!(
            "the {SOURCE_SYSTEM} header is required: the calling system's name and version, \
             for example `MyEpj, v1.2`"
        )),
        Err(problem) => problems.push(problem),
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Failure::validation(problems))
    }
}

/// A 401 with `WWW-Authenticate: DPoP error="..", error_description="..", algs=".."`
/// (403 for `insufficient_scope`).
fn unauthorized(error: &str, description: &str) -> Response {
    tracing::debug!(
        error,
        description,
        "helseid emulator refused an MSH request"
    );
    let challenge = format!(
        "DPoP error=\"{error}\", error_description=\"{}\", algs=\"{}\"",
        challenge_text(description),
        dpop::ALGS.join(" ")
    );
    let status = if error == "insufficient_scope" {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::UNAUTHORIZED
    };
    let mut response = status.into_response();
    if let Ok(challenge) = HeaderValue::from_str(&challenge) {
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, challenge);
    }
    response
}
