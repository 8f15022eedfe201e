//! Who may call the Meldingstjener, and for which HER-ids.
//!
//! **Tokens.** Every operation (not `/msh/openapi.json`) is behind the emulator's
//! verifier for the API ([`crate::server::verify`]: `helseid::verify`'s `VerifyLayer`,
//! as any API verifies HelseID's tokens): `Authorization: DPoP <token>` with an
//! unexpired access token of this emulator for the audience [`AUDIENCE`] (`nhn:msh`)
//! carrying the scope [`SCOPE`] (`nhn:msh/api`), bound to the key of the `DPoP` proof
//! sent with it (RFC 9449: `htm`, `htu` = the URL called from the issuer as the public
//! base URL, `ath`, a key whose thumbprint is the token's `cnf.jkt`, a `jti` not seen
//! before). The refusals are RFC 6750's and RFC 9449's: no token, or a Bearer token, 401
//! with a bare `WWW-Authenticate: DPoP algs=".."` challenge; another API's token, an
//! expired or unbound one 401 `error="invalid_token"`; a missing or bad proof 401
//! `error="invalid_dpop_proof"`; the audience without the scope 403
//! `error="insufficient_scope"`; never quoting the token or the proof. The verified
//! claims reach the handlers in the request's extensions.
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

use axum::extract::Request;
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use helseid::verify::HelseIdClaims;

use crate::apis::cpe::model::CommunicationParty;
use crate::apis::msh::answer::Failure;
use crate::apis::register::Register;
use crate::apis::register::dotnet::parse_dotnet;

/// The scope a token needs.
pub(crate) const SCOPE: &str = "nhn:msh/api";

/// The audience a token must name.
pub(crate) const AUDIENCE: &str = "nhn:msh";

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
    fn from_claims(claims: &HelseIdClaims) -> Self {
        let orgnrs = [&claims.orgnr_parent, &claims.orgnr_child]
            .into_iter()
            .flatten()
            .cloned()
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

/// The middleware behind the verifier, in front of every operation: checks the two
/// headers and hands the [`Caller`] (from the verified claims) to the handler.
pub(crate) async fn guard(request: Request, next: Next) -> Response {
    let (mut parts, body) = request.into_parts();
    let Some(claims) = parts.extensions.get::<Arc<HelseIdClaims>>().cloned() else {
        // Only a route without the verifier in front of it gets here.
        return Failure::other(
            StatusCode::INTERNAL_SERVER_ERROR,
            "The request reached the API without verified claims".to_owned(),
        )
        .into_response();
    };
    if let Err(failure) = headers(&parts) {
        return failure.into_response();
    }
    parts.extensions.insert(Caller::from_claims(&claims));
    next.run(Request::from_parts(parts, body)).await
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
