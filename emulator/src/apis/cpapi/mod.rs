//! The CommunicationParty API v2 side of the emulator ("cpapi"): the register of
//! [`crate::apis::register`] as a slim event feed with sequence numbers, parties and an
//! export, behind DPoP-bound HelseID tokens, documented with utoipa and served at
//! `/cpapi/openapi.json`.
//!
//! The types are NHN's schemas ([`crate::apis::cpapi::model`]);
//! `tests/cpapi_openapi_drift.rs`
//! holds the utoipa document made from them and from the operations here against
//! `openapi/cpapi.json`. Beyond what cpapi.json declares, every operation answers a
//! malformed or out-of-range parameter or body with 400 and a ProblemDetails body
//! (`application/problem+json`) whose `detail` names the parameter, and 404 with one as
//! well.
//!
//! **CommunicationParty API v2** ([`CPAPI_SCOPE`](crate::CPAPI_SCOPE),
//! `nhn:cp-api/access-v2-dpop`), with the
//! issuer as its base URL
//! ([`Emulator::cpapi_base_url`](crate::Emulator::cpapi_base_url)), serves the same
//! register as CPE
//! with NHN's 11 operations and NHN's model (the schemas of `openapi/cpapi.json`, which
//! are NHN's; camelCase JSON, `null` for what a party lacks where NHN allows `null`,
//! date-times always with their offset):
//!
//! - `GET /api/v1/event?fromSequenceNumber=..&maxEvents=..`: `{"results": [Event],
//!   "count": n}`, the events whose `sequenceNumber` is at least `fromSequenceNumber`
//!   (1 to 2147483647, default 1), ascending, at most `maxEvents` (1 to 1000, default
//!   1000); past the end `results` is empty. An `Event` is `{"sequenceNumber", "herId",
//!   "eventType", "eventTimestamp"}` with `eventType` `CommunicationPartyCreated` or
//!   `CommunicationPartyUpdated`. The feed is CPE's: the 487 seeded events have sequence
//!   numbers 1 to 487 in feed order, and each
//!   [`Emulator::publish_cpe_update`](crate::Emulator::publish_cpe_update) appends the
//!   next ([`Emulator::cpapi_events`](crate::Emulator::cpapi_events));
//! - `GET /api/v1/event/latest`: the event with the highest sequence number (404 when
//!   there is none);
//! - `GET /api/v1/communicationparty/{herId}`: the party in NHN's full model: `type`
//!   (Organization, Person or Service) and its details (`organizationDetails` with the
//!   organisation number, business type, persons and services; `personDetails` with the
//!   HPR number and the organisation; `serviceDetails` with the service type and the
//!   organisation), contact details, `postalAddress`, `amqpTransportStatus` and
//!   `amqpAddress`, the current signing and encryption certificates (organisations and
//!   services), `validFrom` and `validTo` (left out for no end);
//! - `POST /api/v1/communicationparty` with `{"herIds": [..]}` (at most 100): the parties
//!   found, unknown HER-ids left out;
//! - `GET /api/v1/communicationparty/{herId}/legacy`: the party in the older model;
//! - `POST /api/v1/communicationparty/search?Page=..&Size=..` with `SearchParameters`:
//!   the matches by HER-id, `Page` from 1, `Size` 1 to 100 (default 10);
//! - `GET /api/v1/organization/{organizationNumber}`: the organisation with these nine
//!   digits;
//! - `GET /api/v1/certificate/{herId}[?includeHistoric=true]`, `/signing`,
//!   `/encryption`: real X.509 certificates (DER, base64 in `certificateValue`) issued
//!   by the emulator's own authority, the same on every run; up to two earlier pairs
//!   with `includeHistoric`; persons have none;
//! - `GET /api/v1/communicationparty/export?includeDeactivated=..`:
//!   `{"lastSequenceNumber", "count", "communicationParties": [herId]}`, the active
//!   parties (no `validTo`, or one in the future), or all with `includeDeactivated=true`;
//! - `GET /cpapi/openapi.json`: the API's OpenAPI 3.1 document (no token needed; also
//!   [`cpapi_openapi`](crate::cpapi_openapi)), with a security scheme `DPoP`.
//!
//! Each call needs `Authorization: DPoP <token>` with an unexpired access token this
//! emulator issued, for the audience `nhn:cp-api` with the scope and a `cnf.jkt`, and a
//! `DPoP` proof for the request's method at the URL called (without the query, from the
//! issuer as the public base URL), with `ath` = base64url(SHA-256(token)) and a key whose
//! thumbprint is the token's `cnf.jkt`: `helseid::verify`'s `VerifyLayer` checks them in
//! front of the routes ([`crate::server::verify`]) and the handlers read the verified
//! claims from the request's extensions. The refusals are RFC 9449's: no token gets 401
//! with `WWW-Authenticate: DPoP algs="RS256 ... ES512"` and no error; a Bearer,
//! foreign, expired or unbound token 401 `error="invalid_token"` (a Bearer token with no
//! error, as a scheme the API does not take); a missing or bad proof 401
//! `error="invalid_dpop_proof"`; a Bearer token sent with a proof 400
//! `error="invalid_request"`; each `error_description` a fixed text that never quotes
//! the token or the proof. With
//! [`EmulatorBuilder::cpapi_require_nonce`](crate::EmulatorBuilder::cpapi_require_nonce),
//! a proof must also carry the API's own nonce, or the answer is 401
//! `error="use_dpop_nonce"` with the nonce in `DPoP-Nonce`. A good token and proof
//! without the scope get 403 with `error="insufficient_scope"`.
//! Parameters and bodies are read as strictly as CPE's, and a bad one gets 400 (an
//! unknown `herId` 404) with a ProblemDetails body as `application/problem+json` whose
//! `detail` names the parameter.
//! [`Emulator::cpapi_requests`](crate::Emulator::cpapi_requests) counts the calls.

pub(crate) mod certificates;
pub(crate) mod model;
pub(crate) mod register;

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State as Extract};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use serde::de::DeserializeOwned;
use utoipa::openapi::security::{ApiKey, ApiKeyValue, SecurityScheme};
use utoipa::openapi::server::Server;
use utoipa::{Modify, OpenApi};

use crate::apis::cpapi::certificates::{Certificates, Use};
pub(crate) use crate::apis::cpapi::model::*;
use crate::apis::cpe::strict_query;
use crate::apis::register::Register;
use crate::apis::state::State;
use crate::server::response::problem;
use crate::server::response::quote;
use helseid::verify::HelseIdClaims;

/// The scope a token needs for the CommunicationParty API v2.
pub(crate) const CPAPI_SCOPE: &str = "nhn:cp-api/access-v2-dpop";

/// The most events one call of `GET /api/v1/event` returns, and its default.
pub(crate) const MAX_EVENTS: i32 = 1000;

/// The most HER-ids one bulk lookup may carry.
pub(crate) const MAX_HER_IDS: usize = 100;

/// The most parties one page of a search holds.
pub(crate) const MAX_PAGE_SIZE: i32 = 100;

/// How many parties a page of a search holds when `Size` is not given.
pub(crate) const DEFAULT_PAGE_SIZE: i32 = 10;

/// The content type of ProblemDetails answers.
const PROBLEM_JSON: &str = "application/problem+json";

/// The CommunicationParty API v2's OpenAPI document.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "CommunicationParty API v2 (cpapi)",
        version = "v1",
        description = "Norsk Helsenett's CommunicationParty API (Adresseregisteret) with \
            DPoP-bound HelseID tokens, as the helseid emulator serves it. Every call needs \
            `Authorization: DPoP <token>` with the scope `nhn:cp-api/access-v2-dpop` and a \
            `DPoP` proof (RFC 9449) for the call."
    ),
    paths(
        certificates,
        signing_certificate,
        encryption_certificate,
        party,
        parties,
        legacy_party,
        search,
        export,
        events,
        latest_event,
        organization
    ),
    components(schemas(
        AdministrativeCode,
        AmqpAddress,
        AmqpTransportStatus,
        Certificate,
        CertificateMetadata,
        CertificatePairInfo,
        Code,
        CommunicationParty,
        CommunicationPartyExport,
        CommunicationPartyType,
        CommunicationPartyTypeLegacy,
        CommunicationPartyLegacy,
        CoverageInfo,
        ElectronicAddress,
        Event,
        EventType,
        EventsResponse,
        FutureElectronicAddress,
        HprInformation,
        HerIdInputCollection,
        InterMunicipalityCoverageArea,
        OrganizationDetails,
        OrganizationSearchParameters,
        ParentOrganization,
        Period,
        Person,
        PersonDetails,
        PersonSearchParameters,
        PhysicalAddress,
        PostalAddress,
        SearchParameters,
        SearchResponse,
        ServiceDetails,
        ServiceSearchParameters
    )),
    modifiers(&DpopScheme),
    security(("DPoP" = []))
)]
struct CpapiDoc;

/// Adds the `DPoP` security scheme.
struct DpopScheme;

impl Modify for DpopScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        // The crate's license is not the API's.
        openapi.info.license = None;
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "DPoP",
            SecurityScheme::ApiKey(ApiKey::Header(ApiKeyValue::with_description(
                "Authorization",
                "`DPoP <access token>`: a DPoP-bound HelseID access token with the scope \
                 `nhn:cp-api/access-v2-dpop`, sent with a `DPoP` header holding a proof \
                 (RFC 9449) whose `ath` is the token's hash.",
            ))),
        );
    }
}

/// The CommunicationParty API v2's OpenAPI document, without servers.
pub(crate) fn document() -> utoipa::openapi::OpenApi {
    CpapiDoc::openapi()
}

/// `GET /cpapi/openapi.json`: the API's OpenAPI document, with this emulator as its
/// server. Needs no token.
pub(crate) async fn openapi(Extract(state): Extract<Arc<State>>) -> Response {
    let mut doc = document();
    doc.servers = Some(vec![Server::new(state.idp.issuer.clone())]);
    Json(doc).into_response()
}

/// The description of the 401 every operation documents.
const UNAUTHORIZED: &str =
    "The access token or the DPoP proof is missing, invalid or expired (see `WWW-Authenticate`)";

/// The description of the 403 every operation documents.
const FORBIDDEN: &str = "The access token lacks the scope `nhn:cp-api/access-v2-dpop`";

/// The description of the 400 the emulator documents beyond cpapi.json.
const BAD_REQUEST: &str = "A parameter or the body is malformed or out of range; an `application/problem+json` body names it";

/// `GET /api/v1/certificate/{herId}`.
#[utoipa::path(
    get,
    path = "/api/v1/certificate/{herId}",
    operation_id = "getCertificateByHerId",
    tag = "Certificate",
    summary = "A party's certificate pairs",
    description = "The current signing and encryption certificates as a pair (thumbprints and \
        validity), and with `includeHistoric=true` the earlier pairs too.",
    params(
        ("herId" = i32, Path, description = "The party's HER-id."),
        ("includeHistoric" = Option<bool>, Query, description = "Whether to list earlier pairs too. Default: false."),
    ),
    responses(
        (status = 200, description = "The pairs, the current one first", body = Vec<CertificatePairInfo>),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
    )
)]
pub(crate) async fn certificates(
    Extract(state): Extract<Arc<State>>,
    Path(her_id): Path<String>,
    request: Parts,
) -> Result<Json<Vec<CertificatePairInfo>>, Refusal> {
    let [historic] = authorized(&request, ["includeHistoric"])?;
    let her_id = her_id_in(&her_id, &request)?;
    let historic = boolean(historic.as_deref(), "includeHistoric", &request)?;
    let register = state.cpe.register();
    let party = register
        .party(her_id)
        .ok_or_else(|| unknown_party(her_id, &request))?;
    let organisation = register.organisation_of(party);
    Ok(Json(state.cpapi.certificates.pairs(
        party,
        organisation,
        historic,
    )))
}

/// `GET /api/v1/certificate/{herId}/signing`.
#[utoipa::path(
    get,
    path = "/api/v1/certificate/{herId}/signing",
    operation_id = "getCertificateSigningByHerId",
    tag = "Certificate",
    summary = "A party's current signing certificate",
    params(("herId" = i32, Path, description = "The party's HER-id.")),
    responses(
        (status = 200, description = "The certificate, DER in `certificateValue`", body = Certificate),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "No party has this HER-id, or it has no signing certificate"),
    )
)]
pub(crate) async fn signing_certificate(
    Extract(state): Extract<Arc<State>>,
    Path(her_id): Path<String>,
    request: Parts,
) -> Result<Json<Certificate>, Refusal> {
    current_certificate(&state, &her_id, &request, Use::Signing)
}

/// `GET /api/v1/certificate/{herId}/encryption`.
#[utoipa::path(
    get,
    path = "/api/v1/certificate/{herId}/encryption",
    operation_id = "getCertificateEncryptionByHerId",
    tag = "Certificate",
    summary = "A party's current encryption certificate",
    params(("herId" = i32, Path, description = "The party's HER-id.")),
    responses(
        (status = 200, description = "The certificate, DER in `certificateValue`", body = Certificate),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "No party has this HER-id, or it has no encryption certificate"),
    )
)]
pub(crate) async fn encryption_certificate(
    Extract(state): Extract<Arc<State>>,
    Path(her_id): Path<String>,
    request: Parts,
) -> Result<Json<Certificate>, Refusal> {
    current_certificate(&state, &her_id, &request, Use::Encryption)
}

fn current_certificate(
    state: &State,
    her_id: &str,
    request: &Parts,
    usage: Use,
) -> Result<Json<Certificate>, Refusal> {
    let [] = authorized(request, [])?;
    let her_id = her_id_in(her_id, request)?;
    let register = state.cpe.register();
    let party = register
        .party(her_id)
        .ok_or_else(|| unknown_party(her_id, request))?;
    let organisation = register.organisation_of(party);
    state
        .cpapi
        .certificates
        .current(party, organisation, usage)
        .map(|made| Json(made.certificate()))
        .ok_or_else(|| Refusal::Problem {
            status: StatusCode::NOT_FOUND,
            detail: format!("the communication party {her_id} has no such certificate"),
            instance: request.uri.path().to_owned(),
        })
}

/// `GET /api/v1/communicationparty/{herId}`.
#[utoipa::path(
    get,
    path = "/api/v1/communicationparty/{herId}",
    operation_id = "getCommunicationPartyByHerId",
    tag = "CommunicationParty",
    summary = "One communication party",
    params(("herId" = i32, Path, description = "The party's HER-id.")),
    responses(
        (status = 200, description = "The party", body = CommunicationParty),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "No party has this HER-id"),
    )
)]
pub(crate) async fn party(
    Extract(state): Extract<Arc<State>>,
    Path(her_id): Path<String>,
    request: Parts,
) -> Result<Json<CommunicationParty>, Refusal> {
    one_party(&state, &her_id, &request, Register::party_v2)
}

/// `POST /api/v1/communicationparty`.
#[utoipa::path(
    post,
    path = "/api/v1/communicationparty",
    operation_id = "postCommunicationParty",
    tag = "CommunicationParty",
    summary = "Many communication parties at once",
    description = "The parties with the HER-ids of the body, at most 100, in the body's order; \
        unknown HER-ids are left out.",
    request_body(content = HerIdInputCollection, content_type = "application/json"),
    responses(
        (status = 200, description = "The parties found", body = Vec<CommunicationParty>),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
    )
)]
pub(crate) async fn parties(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
    body: Bytes,
) -> Result<Json<Vec<CommunicationParty>>, Refusal> {
    let [] = authorized(&request, [])?;
    let input: HerIdInputCollection = json_body(&body, &request)?;
    let her_ids = input.her_ids.unwrap_or_default();
    if her_ids.len() > MAX_HER_IDS {
        return Err(Refusal::bad_request(
            format!(
                "herIds holds {} HER-ids: at most {MAX_HER_IDS} are looked up in one call",
                her_ids.len()
            ),
            &request.uri,
        ));
    }
    let register = state.cpe.register();
    Ok(Json(
        her_ids
            .into_iter()
            .filter_map(|her_id| register.party_v2(her_id, &state.cpapi.certificates))
            .collect(),
    ))
}

/// `GET /api/v1/communicationparty/{herId}/legacy`.
#[utoipa::path(
    get,
    path = "/api/v1/communicationparty/{herId}/legacy",
    operation_id = "getCommunicationPartyLegacyByHerId",
    tag = "CommunicationParty",
    summary = "One communication party, in the older data model",
    params(("herId" = i32, Path, description = "The party's HER-id.")),
    responses(
        (status = 200, description = "The party", body = CommunicationPartyLegacy),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "No party has this HER-id"),
    )
)]
#[deprecated]
pub(crate) async fn legacy_party(
    Extract(state): Extract<Arc<State>>,
    Path(her_id): Path<String>,
    request: Parts,
) -> Result<Json<CommunicationPartyLegacy>, Refusal> {
    one_party(&state, &her_id, &request, Register::party_legacy)
}

/// `POST /api/v1/communicationparty/search`.
#[utoipa::path(
    post,
    path = "/api/v1/communicationparty/search",
    operation_id = "postCommunicationPartySearch",
    tag = "CommunicationParty",
    summary = "Search for communication parties",
    description = "The parties that match every criterion of the body, by HER-id, one page at \
        a time. Default: page 1 of 10.",
    params(
        ("Page" = Option<i32>, Query, minimum = 1, maximum = 2147483647,
            description = "Which page, from 1."),
        ("Size" = Option<i32>, Query, minimum = 1, maximum = 100,
            description = "How many parties a page holds, 1 to 100."),
    ),
    request_body(content = SearchParameters, content_type = "application/json"),
    responses(
        (status = 200, description = "One page of the matches", body = SearchResponse),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
    )
)]
pub(crate) async fn search(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
    body: Bytes,
) -> Result<Json<SearchResponse>, Refusal> {
    let [page, size] = authorized(&request, ["Page", "Size"])?;
    let page = match page {
        Some(value) => number_in::<i32>(&value, "Page", 1, i32::MAX),
        None => Ok(1),
    }
    .map_err(|detail| Refusal::bad_request(detail, &request.uri))?;
    let size = match size {
        Some(value) => number_in::<i32>(&value, "Size", 1, MAX_PAGE_SIZE),
        None => Ok(DEFAULT_PAGE_SIZE),
    }
    .map_err(|detail| Refusal::bad_request(detail, &request.uri))?;
    let criteria: SearchParameters = if body.is_empty() {
        SearchParameters {
            organization_search_parameters: None,
            person_search_parameters: None,
            service_search_parameters: None,
            name: None,
        }
    } else {
        json_body(&body, &request)?
    };
    let found = state
        .cpe
        .register()
        .search_v2(&criteria, page, size, &state.cpapi.certificates);
    Ok(Json(SearchResponse {
        communication_parties: Some(found),
    }))
}

/// `GET /api/v1/communicationparty/export`.
#[utoipa::path(
    get,
    path = "/api/v1/communicationparty/export",
    operation_id = "getCommunicationPartyExport",
    tag = "CommunicationParty",
    summary = "The HER-ids of the register's parties",
    description = "The HER-ids of the active parties (of all, with `includeDeactivated=true`), \
        with the sequence number of the feed's last event: continue with the events after it.",
    params(
        ("includeDeactivated" = Option<bool>, Query,
            description = "Whether to include deactivated parties. Default: false."),
    ),
    responses(
        (status = 200, description = "The export", body = CommunicationPartyExport),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
    )
)]
pub(crate) async fn export(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
) -> Result<Json<CommunicationPartyExport>, Refusal> {
    let [include] = authorized(&request, ["includeDeactivated"])?;
    let include_deactivated = boolean(include.as_deref(), "includeDeactivated", &request)?;
    let export = state
        .cpe
        .register()
        .export_v2(include_deactivated, Utc::now());
    Ok(Json(export))
}

/// `GET /api/v1/event`.
#[utoipa::path(
    get,
    path = "/api/v1/event",
    operation_id = "getEvent",
    tag = "Event",
    summary = "Events from (and including) a sequence number",
    description = "At most `maxEvents` events whose sequence number is `fromSequenceNumber` \
        or more, by ascending sequence number. Past the end of the feed, `results` is empty. \
        Continue with `fromSequenceNumber` = the last sequence number read + 1.",
    params(
        ("fromSequenceNumber" = Option<i64>, Query, minimum = 1, maximum = 2147483647,
            description = "The first sequence number to return. Default: 1."),
        ("maxEvents" = Option<i32>, Query, minimum = 1, maximum = 1000,
            description = "The most events to return. Default: 1000."),
    ),
    responses(
        (status = 200, description = "The events", body = EventsResponse),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
    )
)]
pub(crate) async fn events(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
) -> Result<Json<EventsResponse>, Refusal> {
    let [from, max] = authorized(&request, ["fromSequenceNumber", "maxEvents"])?;
    let from = match from {
        Some(value) => number_in::<i64>(&value, "fromSequenceNumber", 1, i64::from(i32::MAX)),
        None => Ok(1),
    }
    .map_err(|detail| Refusal::bad_request(detail, &request.uri))?;
    let max = match max {
        Some(value) => number_in::<i32>(&value, "maxEvents", 1, MAX_EVENTS),
        None => Ok(MAX_EVENTS),
    }
    .map_err(|detail| Refusal::bad_request(detail, &request.uri))?;
    let results = state
        .cpe
        .register()
        .sequenced_events(from, usize::try_from(max).unwrap_or_default());
    let count = i32::try_from(results.len()).unwrap_or(i32::MAX);
    Ok(Json(EventsResponse {
        results: Some(results),
        count: Some(count),
    }))
}

/// `GET /api/v1/event/latest`.
#[utoipa::path(
    get,
    path = "/api/v1/event/latest",
    operation_id = "getEventLatest",
    tag = "Event",
    summary = "The feed's last event",
    responses(
        (status = 200, description = "The event with the highest sequence number", body = Event),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "The feed holds no events"),
    )
)]
pub(crate) async fn latest_event(
    Extract(state): Extract<Arc<State>>,
    request: Parts,
) -> Result<Json<Event>, Refusal> {
    let [] = authorized(&request, [])?;
    let latest = state.cpe.register().latest_sequenced_event();
    latest.map(Json).ok_or_else(|| Refusal::Problem {
        status: StatusCode::NOT_FOUND,
        detail: "the feed holds no events".to_owned(),
        instance: request.uri.path().to_owned(),
    })
}

/// `GET /api/v1/organization/{organizationNumber}`.
#[utoipa::path(
    get,
    path = "/api/v1/organization/{organizationNumber}",
    operation_id = "getOrganizationByOrganizationNumber",
    tag = "Organization",
    summary = "The organisation with an organisation number",
    params(("organizationNumber" = String, Path, pattern = r"^\d{9}$",
        description = "The organisation number: nine digits.")),
    responses(
        (status = 200, description = "The organisation", body = CommunicationParty),
        (status = 400, description = BAD_REQUEST),
        (status = 401, description = UNAUTHORIZED),
        (status = 403, description = FORBIDDEN),
        (status = 404, description = "No organisation has this organisation number"),
    )
)]
pub(crate) async fn organization(
    Extract(state): Extract<Arc<State>>,
    Path(number): Path<String>,
    request: Parts,
) -> Result<Json<CommunicationParty>, Refusal> {
    let [] = authorized(&request, [])?;
    if number.len() != 9 || !number.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::bad_request(
            format!(
                "organizationNumber {} is not an organisation number: nine digits are expected",
                quote(&number)
            ),
            &request.uri,
        ));
    }
    let found = state
        .cpe
        .register()
        .organization_v2(&number, &state.cpapi.certificates);
    found.map(Json).ok_or_else(|| Refusal::Problem {
        status: StatusCode::NOT_FOUND,
        detail: format!("no organisation has organizationNumber {number}"),
        instance: request.uri.path().to_owned(),
    })
}

/// A HER-id from the path, or the 400 to answer with.
/// The party with the path's HER-id as `view` shows it, or a 404 naming the HER-id.
fn one_party<T>(
    state: &State,
    her_id: &str,
    request: &Parts,
    view: fn(&Register, i32, &Certificates) -> Option<T>,
) -> Result<Json<T>, Refusal> {
    let [] = authorized(request, [])?;
    let her_id = her_id_in(her_id, request)?;
    let found = view(&state.cpe.register(), her_id, &state.cpapi.certificates);
    found
        .map(Json)
        .ok_or_else(|| unknown_party(her_id, request))
}

fn her_id_in(her_id: &str, request: &Parts) -> Result<i32, Refusal> {
    her_id.parse::<i32>().map_err(|_| {
        Refusal::bad_request(
            format!(
                "herId {} is not a HER-id: a 32-bit integer is expected",
                quote(her_id)
            ),
            &request.uri,
        )
    })
}

/// The 404 for a HER-id no party has.
fn unknown_party(her_id: i32, request: &Parts) -> Refusal {
    Refusal::Problem {
        status: StatusCode::NOT_FOUND,
        detail: format!("no communication party has herId {her_id}"),
        instance: request.uri.path().to_owned(),
    }
}

/// A boolean query parameter (absent: false), or the 400 to answer with.
fn boolean(value: Option<&str>, name: &str, request: &Parts) -> Result<bool, Refusal> {
    match value {
        None | Some("false") => Ok(false),
        Some("true") => Ok(true),
        Some(other) => Err(Refusal::bad_request(
            format!(
                "{name} {} is not a boolean: use true or false",
                quote(other)
            ),
            &request.uri,
        )),
    }
}

/// A JSON request body, or the 400 to answer with.
fn json_body<T: DeserializeOwned>(body: &[u8], request: &Parts) -> Result<T, Refusal> {
    let is_json = request
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| {
            let essence = v.split(';').next().unwrap_or_default().trim();
            essence.ends_with("/json") || essence.ends_with("+json")
        });
    if !is_json {
        return Err(Refusal::Problem {
            status: StatusCode::UNSUPPORTED_MEDIA_TYPE,
            detail: "the body must be JSON (Content-Type: application/json)".to_owned(),
            instance: request.uri.path().to_owned(),
        });
    }
    serde_json::from_slice(body).map_err(|e| {
        Refusal::bad_request(
            format!("the body is not what the operation takes: {e}"),
            &request.uri,
        )
    })
}

/// A whole number in `low..=high` from a query parameter.
fn number_in<T>(value: &str, name: &str, low: T, high: T) -> Result<T, String>
where
    T: std::str::FromStr + PartialOrd + std::fmt::Display,
{
    let bits = std::mem::size_of::<T>() * 8;
    if value.is_empty() {
        return Err(format!(
            "the query parameter {name} is empty; leave it out for its default"
        ));
    }
    let all_digits = value
        .strip_prefix('-')
        .unwrap_or(value)
        .bytes()
        .all(|b| b.is_ascii_digit());
    let Ok(number) = value.parse::<T>() else {
        return Err(if all_digits {
            format!(
                "{name} {} is out of range: it must be from {low} to {high}",
                quote(value)
            )
        } else {
            format!(
                "{name} {} is not a whole number: a {bits}-bit integer is expected",
                quote(value)
            )
        });
    };
    if number < low || number > high {
        return Err(format!(
            "{name} {number} is out of range: it must be from {low} to {high}"
        ));
    }
    Ok(number)
}

/// Why a request was refused, and how to answer. (A refused token or proof never
/// reaches a handler: the API's verifier answers it.)
#[derive(Debug)]
pub(crate) enum Refusal {
    /// A ProblemDetails answer.
    Problem {
        status: StatusCode,
        detail: String,
        instance: String,
    },
}

impl Refusal {
    /// 400 with a ProblemDetails body for the request at `uri`.
    fn bad_request(detail: String, uri: &Uri) -> Self {
        Refusal::Problem {
            status: StatusCode::BAD_REQUEST,
            detail,
            instance: uri.path().to_owned(),
        }
    }
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::Problem {
                status,
                detail,
                instance,
            } => problem_json(status, detail, &instance),
        }
    }
}

/// A ProblemDetails answer with `Content-Type: application/problem+json`.
fn problem_json(status: StatusCode, detail: String, instance: &str) -> Response {
    let mut response = problem(status, detail, instance);
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(PROBLEM_JSON));
    response
}

/// [`authorize`], then the query read strictly (see [`strict_query`]): the values of
/// the `known` parameters.
fn authorized<const N: usize>(
    request: &Parts,
    known: [&str; N],
) -> Result<[Option<String>; N], Refusal> {
    authorize(request)?;
    let uri = &request.uri;
    strict_query(uri.query().unwrap_or_default(), known, uri.path())
        .map_err(|detail| Refusal::bad_request(detail, uri))
}

/// The verified claims the API's verifier (`helseid::verify`, see
/// [`crate::server::verify`]) put in the request's extensions: it checked
/// `Authorization: DPoP <token>` (this emulator's, unexpired, for `nhn:cp-api` with
/// [`CPAPI_SCOPE`], DPoP-bound) and the `DPoP` proof (for the request's method at this
/// URL, `ath`, the key the token is bound to, the API's nonce when required) before the
/// handler runs.
fn authorize(request: &Parts) -> Result<Arc<HelseIdClaims>, Refusal> {
    let claims = request
        .extensions
        .get::<Arc<HelseIdClaims>>()
        .cloned()
        .ok_or_else(|| Refusal::Problem {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            detail: "the request reached the API without a verified token".to_owned(),
            instance: request.uri.path().to_owned(),
        })?;
    tracing::debug!(
        client_id = %helseid::text::escape(claims.client_id.as_deref().unwrap_or_default()),
        "helseid emulator serves the CommunicationParty API v2"
    );
    Ok(claims)
}
